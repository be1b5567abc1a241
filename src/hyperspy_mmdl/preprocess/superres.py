"""Super-resolution of micrographs: bicubic, SRCNN and RCAN-lite, with the [PSC] evaluation (SPEC §2.4, §3.3).

* :func:`downsample` — the protocol's degradation: the high-resolution (HR)
  image, cropped to a multiple of the factor, bicubic-downsampled (with
  antialiasing, like MATLAB's ``imresize``) to the low-resolution (LR) input;
* :func:`bicubic` — bicubic upsampling;
* :func:`train_superres` — trains ``srcnn`` or ``rcan_lite``
  (:mod:`hyperspy_mmdl.models.restoration`) on pairs made by downsampling the
  user's own HR images; returns a :class:`SuperResolver` (save it as a safe checkpoint);
* :func:`super_resolve` — upscale an image or stack by 2, 3 or 4 and divide
  the calibration's pixel size by the factor;
* :func:`psnr`, :func:`ssim` — SPEC §3.3 on the Y (grey) channel after
  shaving ``scale`` pixels from each border; :func:`evaluate` runs the protocol
  for several methods and factors; :func:`format_tables` prints Tables S2–S3.

Intensities: each frame is scaled to [0, 1] by its own min and max before a
network and scaled back afterwards; metrics are computed on [0, 1] images
(``MAX = 1``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..checkpoint import runner
from .normalize import clean_nonfinite

__all__ = [
    "FACTORS",
    "MODELS",
    "SuperResolver",
    "bicubic",
    "downsample",
    "evaluate",
    "format_tables",
    "load_superres",
    "modcrop",
    "psnr",
    "ssim",
    "super_resolve",
    "to_y",
    "train_superres",
]

FACTORS = (2, 3, 4)
MODELS = ("srcnn", "rcan_lite")


def _factor(factor) -> int:
    if isinstance(factor, bool) or int(factor) != factor or int(factor) not in FACTORS:
        raise ValueError(f"factor must be one of {FACTORS}, got {factor!r}")
    return int(factor)


def _image2d(image, name="image") -> np.ndarray:
    a = clean_nonfinite(image)
    if a.ndim != 2:
        raise ValueError(f"{name} must be a 2-D grey image here, got shape {a.shape}")
    return a


def modcrop(image, factor: int) -> np.ndarray:
    """Crop the last two axes to multiples of ``factor`` (bottom and right rows go)."""
    a = np.asarray(image)
    h, w = a.shape[-2:]
    return a[..., : h - h % factor, : w - w % factor]


def _resize(image, size, antialias: bool) -> np.ndarray:
    import torch
    from torch.nn import functional as F

    a = np.asarray(image, dtype=np.float32)
    shape = a.shape
    t = torch.from_numpy(np.ascontiguousarray(a.reshape((-1, 1) + shape[-2:])))
    out = F.interpolate(t, size=tuple(int(s) for s in size), mode="bicubic", align_corners=False,
                        antialias=antialias)
    return out.numpy().reshape(shape[:-2] + tuple(size))


def downsample(hr, factor: int) -> np.ndarray:
    """Low-resolution image of the protocol: ``modcrop`` then bicubic ÷``factor`` (antialiased)."""
    f = _factor(factor)
    hr = modcrop(clean_nonfinite(hr), f)
    h, w = hr.shape[-2:]
    if h < f or w < f:
        raise ValueError(f"image of {h}×{w} px is too small to downsample by {f}")
    return _resize(hr, (h // f, w // f), antialias=True)


def bicubic(image, factor: int) -> np.ndarray:
    """Bicubic upsampling ×``factor`` of an image or stack (float32)."""
    f = _factor(factor)
    a = clean_nonfinite(image)
    h, w = a.shape[-2:]
    return _resize(a, (h * f, w * f), antialias=False)


def to_y(image) -> np.ndarray:
    """The grey (Y) channel: a 2-D image as is; RGB(A) by BT.601 luma ``0.299R + 0.587G + 0.114B``."""
    a = np.asarray(image, dtype=np.float64)
    if a.ndim == 3 and a.shape[-1] in (3, 4):
        return a[..., 0] * 0.299 + a[..., 1] * 0.587 + a[..., 2] * 0.114
    if a.ndim != 2:
        raise ValueError(f"expected a 2-D grey or an RGB(A) image, got shape {a.shape}")
    return a


def _pair(reference, test, shave):
    ref, out = to_y(reference), to_y(test)
    if ref.shape != out.shape:
        raise ValueError(f"reference {ref.shape} and test {out.shape} images differ in shape")
    if shave:
        ref, out = ref[shave:-shave, shave:-shave], out[shave:-shave, shave:-shave]
    if ref.size == 0:
        raise ValueError("nothing left after shaving the borders")
    return ref, out


def psnr(reference, test, shave: int = 0, data_range: float = 1.0) -> float:
    """``10 log10(MAX² / MSE)`` on the Y channel after shaving ``shave`` px per border (SPEC §3.3)."""
    ref, out = _pair(reference, test, shave)
    mse = float(np.mean((ref - out) ** 2))
    return float("inf") if mse == 0 else float(10 * np.log10(data_range**2 / mse))


def ssim(reference, test, shave: int = 0, data_range: float = 1.0) -> float:
    """SSIM of Wang et al. 2004: 11×11 Gaussian window σ = 1.5, ``C1 = (0.01L)², C2 = (0.03L)²``."""
    from skimage.metrics import structural_similarity

    ref, out = _pair(reference, test, shave)
    return float(structural_similarity(ref, out, data_range=data_range, gaussian_weights=True, sigma=1.5,
                                       use_sample_covariance=False, win_size=11))


def _unit_range(frame):
    lo, hi = float(frame.min()), float(frame.max())
    scale = hi - lo if hi > lo else 1.0
    return (frame - lo) / scale, lo, scale


# --------------------------------------------------------------------------- trained models
@dataclass
class SuperResolver:
    """A trained super-resolution network for one factor.

    ``resolver(image)`` upscales a 2-D image or a stack ``(..., H, W)`` by
    :attr:`factor` (float32; each frame scaled to [0, 1] for the net and back).
    """

    model: object
    factor: int
    card: object = None
    history: list = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.card.architecture if self.card is not None else type(self.model).__name__

    def model_card(self):
        """The model card (a minimal one is made when the resolver has none)."""
        from ..checkpoint import ModelCard

        if self.card is None:
            self.card = ModelCard(architecture=getattr(self.model, "default_cfg", {}).get("name", "srcnn"),
                                  task="super-resolve", normalization="minmax", scale_factor=self.factor)
        return self.card

    def upscale01(self, frame01: np.ndarray, device: str = "auto") -> np.ndarray:
        """Upscale one [0, 1] frame as it is (no rescaling; the evaluation protocol's input).

        Examples
        --------
        >>> import torch
        >>> SuperResolver(torch.nn.Identity(), 2).upscale01(np.full((4, 4), 0.5)).shape
        (8, 8)
        """
        from dataclasses import replace

        card = replace(self.model_card(), normalization="none")
        return runner("super-resolve")(np.asarray(frame01, np.float32), (self.model, card), device=device)

    def __call__(self, image, device: str = "auto") -> np.ndarray:
        """Upscale an image or stack ``(..., H, W)`` by :attr:`factor` through the inference predictor.

        Each frame is scaled to [0, 1] by its min and max for the network and
        back afterwards (:func:`hyperspy_mmdl.inference.restore.super_resolve`).

        Examples
        --------
        >>> import torch
        >>> SuperResolver(torch.nn.Identity(), 3)(np.ones((2, 5, 4))).shape
        (2, 15, 12)
        """
        return runner("super-resolve")(clean_nonfinite(image), (self.model, self.model_card()), device=device)

    def save(self, path) -> Path:
        """Write a safe checkpoint (weights + model card, no pickled code)."""
        from ..checkpoint import save_checkpoint

        return save_checkpoint(path, self.model, self.card)


def load_superres(path) -> SuperResolver:
    """Load a :class:`SuperResolver` saved with :meth:`SuperResolver.save`.

    Raises
    ------
    WrongTaskError
        The file holds a model of another task (the message names the file and both tasks).

    Examples
    --------
    >>> resolver = load_superres("srcnn_x2.pt")  # doctest: +SKIP
    """
    from ..checkpoint import load_checkpoint

    model, card = load_checkpoint(path, task="super-resolve")
    return SuperResolver(model, card.scale_factor, card)


def _training_images(images):
    if isinstance(images, np.ndarray) and images.ndim == 2:
        images = [images]
    elif isinstance(images, np.ndarray):
        images = list(images.reshape((-1,) + images.shape[-2:]))
    out = [_unit_range(_image2d(im))[0].astype(np.float32) for im in images]
    if not out:
        raise ValueError("no training images")
    return out


def train_superres(images, model: str = "srcnn", factor: int = 2, *, steps: int = 500,
                   patch_size: int = 48, batch_size: int = 16, lr: float | None = None, seed: int = 0,
                   device: str = "cpu", progress=None, should_stop=None, **config) -> SuperResolver:
    """Train a super-resolution net on pairs made by downsampling the user's own HR images.

    Parameters
    ----------
    images : array_like or list of arrays
        High-resolution grey images (any sizes; data bars already removed).
        Each is scaled to [0, 1] by its min and max.
    model : {"srcnn", "rcan_lite"}
        Architecture (:mod:`hyperspy_mmdl.models.restoration`).
    factor : {2, 3, 4}
    steps : int
        Adam steps with a cosine-decayed learning rate.
    patch_size : int
        HR patch side (rounded down to a multiple of ``factor``).
    batch_size : int
    lr : float, optional
        Default 1e-3 (SRCNN) and 5e-4 (RCAN-lite).
    seed : int
    device : str
    progress : callable, optional
        ``progress(step, steps, loss)``.
    should_stop : callable, optional
        Returns True to stop early.
    **config
        Architecture options (``residual``, ``channels``, ``n_groups``, ``n_blocks`` ...).

    Returns
    -------
    SuperResolver

    Notes
    -----
    The LR image is made once per HR image with :func:`downsample`; patches are
    cut at matching positions (LR ``p/f``, HR ``p``), with random flips and 90°
    rotations. SRCNN sees the bicubic upsampling of the LR patch and is
    trained with MSE (SPEC §2.4); RCAN-lite sees the LR patch and is trained
    with L1 (as in the RCAN paper).
    """
    import torch

    from .. import models as registry
    from ..checkpoint import ModelCard

    f = _factor(factor)
    if model not in MODELS:
        raise ValueError(f"unknown super-resolution model {model!r}; choose one of {', '.join(MODELS)}")
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    hrs = [modcrop(im, f) for im in _training_images(images)]
    p = int(patch_size) - int(patch_size) % f
    p = min([p] + [min(h.shape) - min(h.shape) % f for h in hrs])
    if p < 4 * f:
        raise ValueError(f"training images are too small for ×{f} patches (need at least {4 * f} px)")
    lrs = [downsample(h, f) for h in hrs]
    upsampled = model != "rcan_lite"
    inputs = [bicubic(l, f) for l in lrs] if upsampled else lrs
    if model == "rcan_lite":
        config = {"scale": f, **config}
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    net = registry.create(model, in_chans=1, num_classes=1, **config).to(device).train()
    lr = (1e-3 if model == "srcnn" else 5e-4) if lr is None else float(lr)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps, eta_min=lr * 0.05)
    loss_fn = torch.nn.functional.mse_loss if model == "srcnn" else torch.nn.functional.l1_loss
    lp = p // f
    areas = np.array([h.size for h in hrs], dtype=float)
    history = []
    t0 = time.perf_counter()
    for step in range(steps):
        xs, ys = [], []
        for i in rng.choice(len(hrs), batch_size, p=areas / areas.sum()):
            lh, lw = lrs[i].shape
            y0, x0 = rng.integers(0, lh - lp + 1), rng.integers(0, lw - lp + 1)
            target = hrs[i][y0 * f:(y0 + lp) * f, x0 * f:(x0 + lp) * f]
            src = inputs[i][y0 * f:(y0 + lp) * f, x0 * f:(x0 + lp) * f] if upsampled else \
                inputs[i][y0:y0 + lp, x0:x0 + lp]
            k = int(rng.integers(0, 8))
            target, src = np.rot90(target, k % 4), np.rot90(src, k % 4)
            if k >= 4:
                target, src = target[:, ::-1], src[:, ::-1]
            xs.append(np.ascontiguousarray(src))
            ys.append(np.ascontiguousarray(target))
        x = torch.from_numpy(np.stack(xs))[:, None].to(device)
        y = torch.from_numpy(np.stack(ys))[:, None].to(device)
        loss = loss_fn(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        history.append(float(loss.detach()))
        if progress is not None:
            progress(step + 1, steps, history[-1])
        if should_stop is not None and should_stop():
            break
    net.eval()
    seconds = time.perf_counter() - t0
    card = ModelCard(
        architecture=model, config=dict(net.default_cfg["config"]), task="super-resolve",
        input_size=[1, p if upsampled else lp, p if upsampled else lp], normalization="minmax",
        training_data={"images": len(hrs), "shapes": [list(h.shape) for h in hrs], "seed": int(seed)},
        recipe={"steps": len(history), "patch_size": p, "batch_size": batch_size, "lr": lr,
                "optimizer": "Adam", "schedule": "cosine", "loss": "MSE" if model == "srcnn" else "L1",
                "degradation": "bicubic downsampling (antialiased)", "seconds": round(seconds, 2)},
        metrics={"final_loss": float(np.mean(history[-20:]))},
        scale_factor=f, extra={"input": "bicubic-upsampled" if upsampled else "low-resolution"},
    )
    return SuperResolver(net, f, card, history)


def super_resolve(image, factor: int, model="bicubic", calibration=None, device: str = "auto"):
    """Upscale an image or stack ``(..., H, W)`` by ``factor``.

    Parameters
    ----------
    image : array_like
    factor : {2, 3, 4}
    model : "bicubic", SuperResolver, path, Predictor or (module, card)
        A trained :class:`SuperResolver`, or a ``"super-resolve"`` checkpoint
        (loaded once per process by the inference predictor), for ``factor``.
    calibration : Calibration, optional
        Returned with the pixel size divided by ``factor``.
    device : str

    Returns
    -------
    image : numpy.ndarray
        ``(..., H·factor, W·factor)`` float32.
    calibration : Calibration or None

    Raises
    ------
    WrongTaskError
        ``model`` is a checkpoint of another task.
    ValueError
        The model was trained for another factor.

    Examples
    --------
    >>> out, _ = super_resolve(np.ones((8, 6)), 2)
    >>> out.shape
    (16, 12)
    """
    f = _factor(factor)
    if isinstance(model, str) and model == "bicubic":
        out = bicubic(image, f)
    elif isinstance(model, SuperResolver):
        if model.factor != f:
            raise ValueError(f"the model was trained for ×{model.factor}, not ×{f}")
        out = model(image, device=device)
    elif isinstance(model, (str, Path, tuple)) or hasattr(model, "card"):
        out = runner("super-resolve")(clean_nonfinite(image), model, device=device, factor=f)
    else:
        raise ValueError(f"model must be 'bicubic', a SuperResolver or a checkpoint path, got {model!r}")
    cal = calibration.resampled(f) if calibration is not None else None
    return out, cal


# --------------------------------------------------------------------------- evaluation
def evaluate(images, methods: dict | None = None, factors=FACTORS, device: str = "cpu"):
    """PSNR and SSIM per method and scale with the protocol of SPEC §2.4.

    Parameters
    ----------
    images : list of arrays
        HR test images (not used in training). Each is scaled to [0, 1] and
        cropped to a multiple of the factor.
    methods : dict, optional
        ``{name: {factor: SuperResolver}}``; bicubic is always included first.
    factors : iterable of int
    device : str

    Returns
    -------
    pandas.DataFrame
        One row per (method, scale): ``method``, ``scale``, ``PSNR``, ``SSIM``
        (means over the images) and ``n_images``; ``attrs["per_image"]`` holds
        the per-image values.
    """
    import pandas as pd

    hrs = _training_images(images)
    methods = dict(methods or {})
    rows, per_image = [], []
    names = ["bicubic"] + [m for m in methods if m != "bicubic"]
    for name in names:
        for f in factors:
            f = _factor(f)
            if name != "bicubic" and f not in methods[name]:
                continue
            values = []
            for k, hr in enumerate(hrs):
                hr_c = modcrop(hr, f)
                lr = downsample(hr_c, f)
                if name == "bicubic":
                    sr = bicubic(lr, f)
                else:
                    sr = methods[name][f].upscale01(lr, device)
                sr = np.clip(sr, 0, 1)
                values.append((psnr(hr_c, sr, shave=f), ssim(hr_c, sr, shave=f)))
                per_image.append({"method": name, "scale": f, "image": k, "PSNR": values[-1][0],
                                  "SSIM": values[-1][1]})
            v = np.array(values)
            rows.append({"method": name, "scale": f, "PSNR": float(v[:, 0].mean()),
                         "SSIM": float(v[:, 1].mean()), "n_images": len(hrs)})
    df = pd.DataFrame(rows)
    df.attrs["per_image"] = per_image
    return df


def format_tables(results) -> str:
    """Tables S2 (PSNR, dB) and S3 (SSIM) of [PSC]: rows ×2/×3/×4, one column per method."""
    import pandas as pd

    df = pd.DataFrame(results)
    methods = list(dict.fromkeys(df["method"]))
    lines = []
    for metric, title, fmt in (("PSNR", "Table S2 layout: PSNR (dB)", "{:.2f}"),
                               ("SSIM", "Table S3 layout: SSIM", "{:.4f}")):
        lines.append(title)
        lines.append("| Scale | " + " | ".join(methods) + " |")
        lines.append("|---" * (len(methods) + 1) + "|")
        for f in sorted(set(df["scale"])):
            cells = []
            sub = df[df["scale"] == f]
            best = sub[metric].max()
            for m in methods:
                v = sub.loc[sub["method"] == m, metric]
                if v.empty:
                    cells.append("–")
                else:
                    text = fmt.format(float(v.iloc[0]))
                    cells.append(f"**{text}**" if float(v.iloc[0]) == best else text)
            lines.append(f"| ×{f} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)
