"""Where does a model look? Grad-CAM, the models' own attention maps, modality attributions.

* :func:`gradcam` / :class:`GradCAM`: gradient-weighted class activation maps
  (Selvaraju et al. 2017) for any convolutional model. The target layer is
  found automatically (:func:`find_target_layer`: the output of the last
  convolutional block, i.e. the last module after the last ``Conv2d`` that
  keeps its spatial size); PSC-Fusion's image branch is explained through
  :class:`FixedTabular`, which holds the composition and process inputs fixed.
* :func:`attention_map`: one entry point for Grad-CAM and the attention the
  models compute themselves (``model(x, return_attention=True)``): CBAM's
  spatial map, external attention per token reshaped to the patch grid, and
  the spatial chunking attention (PA) of the ceramic network. Large images are
  tiled and blended like every dense output of :mod:`hyperspy_mmdl.inference`,
  and the maps come back at the image's own size (and so its calibration).
* :func:`modality_attributions`: exact Shapley values of the three PSC-Fusion
  inputs (image, composition, process) computed by switching modalities off
  (``2**3`` forward passes), with the fusion weights of SPEC §1.1.5.
"""

from __future__ import annotations

import threading
from typing import Callable

import numpy as np

from . import inference as inf

__all__ = [
    "METHODS",
    "find_target_layer",
    "GradCAM",
    "FixedTabular",
    "gradcam",
    "attention_map",
    "iter_attention_map",
    "modality_attributions",
    "own_attention_tile_fn",
    "gradcam_tile_fn",
]

METHODS = ("gradcam", "cbam", "external", "chunking")


# --------------------------------------------------------------------------- target layer
def _module_trace(model, x):
    """Run ``model(x)`` and list ``(name, module, output_shape)`` in completion order."""
    import torch

    names = {m: n for n, m in model.named_modules()}
    trace, hooks = [], []
    me = threading.get_ident()

    def hook(mod, _inp, out):
        # other threads may run the same model meanwhile (dask, HyperSpy map): record only ours
        if isinstance(out, torch.Tensor) and threading.get_ident() == me:
            trace.append((names.get(mod, ""), mod, tuple(out.shape)))

    for m in model.modules():
        hooks.append(m.register_forward_hook(hook))
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in hooks:
            h.remove()
    return trace


def find_target_layer(model, example):
    """The layer whose activations Grad-CAM uses: the end of the last convolutional block.

    The model is run once on ``example``; among the modules that finish after
    the last ``Conv2d`` runs, the last one that still returns a 4-D map larger
    than 1×1 is chosen (the output of the block holding that convolution,
    after its activation, pooling, residual sum or attention module), never
    the whole model.

    Parameters
    ----------
    model : torch.nn.Module
    example : torch.Tensor
        A ``(B, C, H, W)`` input of the size the model will see.

    Returns
    -------
    name : str
        Dotted module name (``model.get_submodule(name)``).
    module : torch.nn.Module

    Raises
    ------
    ValueError
        The model has no convolution with a spatial output larger than 1×1
        (a transformer: use its attention instead).
    """
    import torch

    trace = _module_trace(model, example)
    conv_idx = [i for i, (_, m, s) in enumerate(trace)
                if isinstance(m, torch.nn.Conv2d) and len(s) == 4 and s[-1] * s[-2] > 1]
    if not conv_idx:
        raise ValueError(f"{type(model).__name__} has no convolutional layer with a spatial output; "
                         "Grad-CAM needs one (for transformers use method='external')")
    last = conv_idx[-1]
    chosen = trace[last]
    for name, mod, shape in trace[last + 1:]:
        # the end of the block that holds the last convolution: activation, pooling, residual
        # sum or an attention module that crops its padded maps back; never the whole model
        if mod is not model and len(shape) == 4 and shape[-2] * shape[-1] > 1:
            chosen = (name, mod, shape)
    return chosen[0], chosen[1]


# --------------------------------------------------------------------------- Grad-CAM
class FixedTabular:
    """PSC-Fusion as an image-only model, composition and process held fixed.

    Parameters
    ----------
    model : torch.nn.Module
        ``forward(image, composition, process)``.
    composition : torch.Tensor
        ``(d_c,)`` multi-hot vector (repeated over the batch).
    process : torch.Tensor
        ``(n_fields,)`` category indices (repeated over the batch).
    """

    def __init__(self, model, composition, process):
        import torch

        class _Wrapped(torch.nn.Module):
            def __init__(self, inner):
                super().__init__()
                self.inner = inner

            def forward(self, x):
                b = x.shape[0]
                c = composition.to(x.device).reshape(1, -1).expand(b, -1)
                p = process.to(x.device).reshape(1, -1).expand(b, -1)
                out = self.inner(x, c, p)
                return out[0] if isinstance(out, (tuple, list)) else out

        self.module = _Wrapped(model)

    def __call__(self, x):
        return self.module(x)


class GradCAM:
    """Grad-CAM of one layer of a model.

    Parameters
    ----------
    model : torch.nn.Module
        Returns class scores ``(B, K)``, a scalar per image ``(B,)`` (a
        regressor), or ``(output, attention)``.
    layer : torch.nn.Module or str, optional
        The layer (or its dotted name); found with :func:`find_target_layer`
        on the first call when omitted.

    Notes
    -----
    ``cam = ReLU(sum_k alpha_k A_k)`` with ``alpha_k`` the spatial mean of
    ``d score / d A_k``; the score is the target logit (before softmax) for
    classifiers and the output itself for regressors.
    """

    def __init__(self, model, layer=None):
        self.model = model
        self.layer = model.get_submodule(layer) if isinstance(layer, str) else layer
        self.layer_name = layer if isinstance(layer, str) else None

    def __call__(self, x, target=None):
        """Maps ``(B, h, w)`` at the layer's resolution (not normalised) for input ``x``.

        ``target``: class index, a sequence of indices per image, or ``None``
        for each image's highest-scoring class (ignored for regressors).
        """
        import torch

        if self.layer is None:
            self.layer_name, self.layer = find_target_layer(self.model, x[:1])
        store = {}
        me = threading.get_ident()

        def hook(_m, _i, out):
            # the model may run in several threads at once (dask blocks of a lazy signal):
            # keep only this call's activation
            if threading.get_ident() == me:
                store["act"] = out

        h = self.layer.register_forward_hook(hook)
        try:
            with torch.enable_grad():
                xin = x.detach().requires_grad_(False)
                out = inf.main_output(self.model(xin))
                act = store["act"]
                if out.ndim == 1 or (out.ndim == 2 and out.shape[1] == 1):
                    score = out.reshape(-1).sum()
                else:
                    if target is None:
                        idx = out.argmax(1)
                    else:
                        idx = torch.as_tensor(target, device=out.device).long().reshape(-1)
                        idx = idx.expand(out.shape[0]) if idx.numel() == 1 else idx
                        if idx.numel() != out.shape[0] or (idx < 0).any() or (idx >= out.shape[1]).any():
                            raise ValueError(f"target {target!r} is not a class index in "
                                             f"[0, {out.shape[1]}) for each of {out.shape[0]} images")
                    score = out.gather(1, idx.reshape(-1, 1)).sum()
                (grad,) = torch.autograd.grad(score, act)
        finally:
            h.remove()
        weights = grad.float().mean(dim=(2, 3), keepdim=True)
        cam = torch.relu((weights * act.float()).sum(1))
        return cam.detach()


def _tabular_tensors(pred, composition, process):
    import torch

    comp, proc, _ = inf.encode_tabular(pred.card, composition, process)
    return torch.from_numpy(comp), torch.from_numpy(proc)


def gradcam_tile_fn(target=None, layer=None, composition=None, process=None) -> Callable:
    """A ``tile_fn`` for :func:`hyperspy_mmdl.inference.predict_dense` computing Grad-CAM."""
    cams: dict = {}

    def fn(pred, batch):
        key = id(pred)
        if key not in cams:
            net = pred.model
            if pred.is_fusion:
                c, p = _tabular_tensors(pred, composition, process)
                net = FixedTabular(pred.model, c, p).module
            cams[key] = GradCAM(net, layer)
        cam = cams[key](pred.to_tensor(batch), target)
        return cam[:, None].cpu().numpy()

    return fn


# --------------------------------------------------------------------------- own attention
def _attention_dict(pred, x, composition=None, process=None):
    import torch

    with torch.inference_mode(), pred.autocast():
        if pred.is_fusion:
            c, p = _tabular_tensors(pred, composition, process)
            b = x.shape[0]
            out = pred.model(x, c.to(x.device).reshape(1, -1).expand(b, -1),
                             p.to(x.device).reshape(1, -1).expand(b, -1), return_attention=True)
        else:
            out = pred.model(x, return_attention=True)
    if not (isinstance(out, (tuple, list)) and len(out) == 2 and isinstance(out[1], dict)):
        raise ValueError(f"{pred.card.architecture} does not return (output, attention dict) with "
                         "return_attention=True")
    return out[1]


def _pick(att: dict, method: str, arch: str):
    keys = [k for k in att if method in k.lower() or (method == "chunking" and k.lower().startswith("pa"))]
    if method == "cbam":
        keys = [k for k in keys if "spatial" in k.lower()] or keys
    if method == "chunking":
        keys = [k for k in keys if "pa" in k.lower() or "spatial" in k.lower()] or keys
    if not keys:
        raise ValueError(f"{arch} has no {method!r} attention; it returns {sorted(att)}")
    return keys


def _token_grid(n_tokens: int, tile_shape) -> tuple[int, int]:
    th, tw = tile_shape
    gh = int(round((n_tokens * th / tw) ** 0.5))
    gw = n_tokens // max(gh, 1)
    if gh * gw != n_tokens:
        raise ValueError(f"cannot arrange {n_tokens} tokens on a patch grid for a {th}×{tw} input")
    return gh, gw


def _to_maps(value, method, tile_shape):
    """Reduce one attention tensor to ``(B, h, w)``."""
    v = value.float()
    if method == "external":
        # (B, [heads,] N, S): for every memory unit, its attention over the N tokens (the
        # column normalised to sum 1), averaged over the S memory units and the heads; a
        # token's value is the share of the memories' attention it receives.
        if v.ndim == 4:
            v = v.mean(1)
        if v.ndim != 3:
            raise ValueError(f"external attention of shape {tuple(value.shape)} is not (B, [heads,] N, S)")
        tok = (v / v.sum(1, keepdim=True).clamp_min(1e-12)).mean(-1)
        gh, gw = _token_grid(tok.shape[1], tile_shape)
        return tok.reshape(v.shape[0], gh, gw)
    if v.ndim == 4:  # (B, C, h, w) -> mean over channels
        return v.mean(1)
    if v.ndim == 3:
        return v
    raise ValueError(f"cannot turn attention of shape {tuple(value.shape)} into a map")


def own_attention_tile_fn(method: str, composition=None, process=None) -> Callable:
    """A ``tile_fn`` returning the model's own attention map (the deepest one of that kind)."""
    import torch

    def fn(pred, batch):
        x = pred.to_tensor(batch)
        att = _attention_dict(pred, x, composition, process)
        keys = _pick(att, method, pred.card.architecture)
        # several modules of the kind (one per block): average their maps at the finest size
        maps = [_to_maps(att[k], method, batch.shape[-2:]) for k in keys]
        size = max((m.shape[-2:] for m in maps), key=lambda s: s[0] * s[1])
        maps = [torch.nn.functional.interpolate(m[:, None], size=size, mode="bilinear",
                                                align_corners=False)[:, 0] if m.shape[-2:] != size
                else m for m in maps]
        return torch.stack(maps).mean(0)[:, None].cpu().numpy()

    return fn


# --------------------------------------------------------------------------- public API
def iter_attention_map(images, calibration, model, method="gradcam", target=None, *, device="auto",
                       batch_size=None, overlap=0.25, tile=True, channel_axis=None, resample=True,
                       layer=None, composition=None, process=None, normalize=True):
    """Generator form of :func:`attention_map` (yields ``(done, total)`` tiles)."""
    method = str(method).lower()
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    pred = inf.get_predictor(model, device=device).require_task(("classify", "regress-pce"), "attention_map")
    if method == "gradcam":
        if target is None and pred.card.task == "classify":
            probs = yield from inf.iter_classify(images, calibration, pred, batch_size=batch_size,
                                                 overlap=overlap, tile=tile, channel_axis=channel_axis,
                                                 resample=resample)
            target_idx = np.asarray(probs).reshape(-1, probs.shape[-1]).argmax(1)
        else:
            target_idx = None if target is None else _class_index(pred, target)
        if target_idx is not None and np.ndim(target_idx) == 1 and len(set(target_idx.tolist())) > 1:
            # one Grad-CAM target per frame: run the frames grouped by target
            arr = np.asarray(images)
            lead = arr.shape[:arr.ndim - (3 if channel_axis is not None else 2)]
            flat = arr.reshape((-1,) + arr.shape[len(lead):])
            out = None
            for t in np.unique(target_idx):
                sel = np.flatnonzero(target_idx == t)
                maps = yield from inf.iter_predict_dense(
                    flat[sel], calibration, pred, gradcam_tile_fn(int(t), layer, composition, process),
                    batch_size=batch_size, overlap=overlap, tile=tile, channel_axis=channel_axis,
                    resample=resample)
                if out is None:
                    out = np.zeros((flat.shape[0],) + maps.shape[1:], np.float32)
                out[sel] = maps
            maps = out.reshape(lead + out.shape[1:])
        else:
            t = None if target_idx is None else int(np.ravel(target_idx)[0])
            maps = yield from inf.iter_predict_dense(
                images, calibration, pred, gradcam_tile_fn(t, layer, composition, process),
                batch_size=batch_size, overlap=overlap, tile=tile, channel_axis=channel_axis,
                resample=resample)
    else:
        maps = yield from inf.iter_predict_dense(
            images, calibration, pred, own_attention_tile_fn(method, composition, process),
            batch_size=batch_size, overlap=overlap, tile=tile, channel_axis=channel_axis,
            resample=resample)
    maps = maps[..., 0, :, :]
    if normalize:
        flat = maps.reshape((-1,) + maps.shape[-2:])
        lo = flat.min(axis=(1, 2), keepdims=True)
        hi = flat.max(axis=(1, 2), keepdims=True)
        flat = np.where(hi > lo, (flat - lo) / np.where(hi > lo, hi - lo, 1), 0).astype(np.float32)
        maps = flat.reshape(maps.shape)
    return maps


def _class_index(pred, target):
    names = pred.class_names
    if isinstance(target, str):
        if target not in names:
            raise ValueError(f"target {target!r} is not a class of this model; classes: {names}")
        return names.index(target)
    t = int(target)
    if names and not 0 <= t < len(names):
        raise ValueError(f"target {t} is out of range for {len(names)} classes {names}")
    return t


def attention_map(images, calibration, model, method="gradcam", target=None, *, device="auto",
                  batch_size=None, overlap=0.25, tile=True, channel_axis=None, resample=True, layer=None,
                  composition=None, process=None, normalize=True, show_progressbar=False) -> np.ndarray:
    """Saliency or attention maps of a model on micrographs, at the images' own size.

    Parameters
    ----------
    images : array_like
        ``(H, W)`` or ``(N, H, W)`` (frames first).
    calibration : Calibration or None
        Calibration of the image axes (resampling to the model's pixel size);
        the returned maps have this same calibration.
    model : str, Path, Predictor or (module, card)
        See :func:`hyperspy_mmdl.inference.get_predictor`.
    method : {"gradcam", "cbam", "external", "chunking"}
        ``gradcam`` for any convolutional model; ``cbam`` (PSC-Fusion's CBAM
        spatial attention), ``external`` (EANet's external attention, one value
        per token on the patch grid) and ``chunking`` (the spatial chunking
        attention PA of MSFB/ResNet50-PCA) are the models' own maps.
    target : int or str, optional
        Grad-CAM class (index or name); by default each frame's predicted class.
    layer : str, optional
        Grad-CAM layer by dotted name (default: :func:`find_target_layer`).
    composition, process : dict or pandas.Series, optional
        PSC-Fusion's tabular inputs, held fixed (unknown when omitted).
    normalize : bool
        Scale each frame's map to [0, 1] (default).
    device, batch_size, overlap, tile, channel_axis, resample, show_progressbar
        As in :func:`hyperspy_mmdl.inference.classify`.

    Returns
    -------
    ndarray of float32
        ``(..., H, W)``, one map per frame.
    """
    return inf.run_steps(iter_attention_map(images, calibration, model, method, target, device=device,
                                            batch_size=batch_size, overlap=overlap, tile=tile,
                                            channel_axis=channel_axis, resample=resample, layer=layer,
                                            composition=composition, process=process,
                                            normalize=normalize),
                         show_progressbar, desc=method)


def gradcam(images, calibration, model, target=None, **kwargs) -> np.ndarray:
    """Grad-CAM maps; shorthand for ``attention_map(..., method="gradcam")``."""
    return attention_map(images, calibration, model, "gradcam", target, **kwargs)


# --------------------------------------------------------------------------- PSC-Fusion modalities
def modality_attributions(images, calibration, model, composition=None, process=None, *, device="auto",
                          **kwargs) -> dict:
    """How much each PSC-Fusion input contributes to the predicted PCE: exact Shapley values.

    With ``f(S)`` the prediction when only the modalities in ``S`` are on (the
    others masked, as in training ablations), the contribution of modality
    ``i`` is ``φ_i = Σ_{S ⊆ M∖{i}} |S|! (m − |S| − 1)! / m! · (f(S ∪ {i}) − f(S))``.
    The values add up to ``f(M) − f(∅)``. With three modalities this is eight
    forward passes (per frame), so no sampling is needed.

    Parameters
    ----------
    images : array_like or None
        SEM frames; ``None`` leaves the image out (Shapley values of the other two).
    calibration : Calibration or None
    model : str, Path, Predictor or (module, card)
        A PSC-Fusion checkpoint.
    composition, process : dict or pandas.Series
    device : str
    **kwargs
        Passed to :func:`hyperspy_mmdl.inference.predict_pce` (``batch_size``,
        ``overlap``, ``channel_axis`` ...).

    Returns
    -------
    dict
        ``pce`` (all modalities on), ``baseline`` (all off), ``shapley``
        (``{modality: value}``, in the target unit), ``fusion_weights``
        (``{modality: mean gate}``). Values are arrays over frames for stacks.
    """
    from itertools import combinations
    from math import factorial

    pred = inf.get_predictor(model, device=device)
    trained_off = set(pred.card.masked_modalities)
    mods = [m for m in inf.MODALITIES if m not in trained_off and not (m == "image" and images is None)]
    if not mods:
        raise ValueError("no modality left to attribute")
    cache = {}

    def f(on: frozenset):
        if on not in cache and not on:
            try:  # the model may refuse to switch every branch off: f(0) from its regressor then
                inf.predict_pce(None, None, pred, composition=composition, process=process,
                                mask=list(inf.MODALITIES))
            except ValueError:
                cache[on] = (_all_off(pred), None)
        if on not in cache:
            off = [m for m in inf.MODALITIES if m not in on]
            pce, w = inf.predict_pce(None if "image" not in on else images, calibration, pred,
                                     composition=composition, process=process, mask=off, **kwargs)
            if "image" not in on and images is not None:
                arr = np.asarray(images)
                lead = arr.shape[:arr.ndim - (3 if kwargs.get("channel_axis") is not None else 2)]
                pce = np.full(lead, pce, np.float32) if lead else pce
            cache[on] = (np.asarray(pce, np.float64), np.asarray(w))
        return cache[on][0]

    m = len(mods)
    shapley = {}
    for i in mods:
        rest = [j for j in mods if j != i]
        phi = 0.0
        for k in range(len(rest) + 1):
            weight = factorial(k) * factorial(m - k - 1) / factorial(m)
            for subset in combinations(rest, k):
                s = frozenset(subset)
                phi = phi + weight * (f(s | {i}) - f(s))
        shapley[i] = phi
    full = frozenset(mods)
    total = f(full)
    weights = cache[full][1]
    return {"pce": total, "baseline": f(frozenset()),
            "shapley": shapley,
            "fusion_weights": {mod: weights[..., j] for j, mod in enumerate(inf.MODALITIES)}}


def _all_off(pred) -> float:
    """PCE with every branch switched off: the regressor applied to a zero fused vector (SPEC §1.1.5)."""
    import torch

    head = getattr(pred.model, "regressor", None)
    first = next((m for m in head.modules() if isinstance(m, torch.nn.Linear)), None) if head is not None else None
    if first is None:
        raise ValueError(f"{pred.card.architecture}: cannot evaluate the model with every modality off "
                         "(no 'regressor' head); Shapley values need that baseline")
    with torch.inference_mode():
        z = torch.zeros(1, first.in_features, device=pred.device)
        out = head(z).float().reshape(-1)[0].item()
    return out * pred.card.target_std + pred.card.target_mean
