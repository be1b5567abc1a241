"""Parameter and FLOP counts, thop convention (SPEC §0).

FLOPs are multiply–accumulates of one forward pass for one image, counted with
forward hooks on leaf modules as ``thop.profile`` does, with BatchNorm at 2 ops
per element (the convention that reproduces the [CER] tables):

* ``Conv{1,2,3}d``: ``out.numel() · (C_in / groups) · prod(kernel)``;
* ``Linear``: ``out.numel() · in_features``;
* ``BatchNorm`` / ``LayerNorm`` / ``GroupNorm``: ``2 · in.numel()``;
* ``AvgPool``: ``out.numel()``; ``AdaptiveAvgPool``: ``out.numel() · (kernel + 1)``;
* ReLU, max-pool, dropout, embeddings, functional matmuls, softmax and
  elementwise products: 0.

The counter works on the ``meta`` device (no memory, no arithmetic), so even the
98 M-parameter variants are counted in well under a second.
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["count_parameters", "count_flops"]


def count_parameters(model: nn.Module, trainable: bool = True) -> int:
    """Number of (trainable) scalars of ``model``."""
    return int(sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable))


def _conv(m, inp, out):
    return out.numel() * (m.in_channels // m.groups) * math.prod(m.kernel_size)


def _linear(m, inp, out):
    return out.numel() * m.in_features


def _norm(m, inp, out):
    return 2 * inp[0].numel()


def _avgpool(m, inp, out):
    return out.numel()


def _adaptive_avgpool(m, inp, out):
    in_hw, out_hw = inp[0].shape[2:], out.shape[2:]
    kernel = math.prod(i // o for i, o in zip(in_hw, out_hw))
    return out.numel() * (kernel + 1)


_RULES = (
    ((nn.Conv1d, nn.Conv2d, nn.Conv3d), _conv),
    ((nn.Linear,), _linear),
    ((nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.LayerNorm, nn.GroupNorm), _norm),
    ((nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d), _avgpool),
    ((nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d), _adaptive_avgpool),
)


def _rule(module):
    for types, fn in _RULES:
        if isinstance(module, types):
            return fn
    return None


def count_flops(model: nn.Module, input_size=None, *, inputs=None, device="meta") -> int:
    """Multiply–accumulate count of one forward pass at batch 1 (thop convention).

    Parameters
    ----------
    model : torch.nn.Module
        Built on any device; it is copied to ``device`` for counting when that differs.
    input_size : tuple of int, optional
        ``(C, H, W)`` of one image (default: ``model.default_cfg["input_size"]``).
    inputs : tuple, optional
        Explicit positional inputs (batch 1) instead of ``input_size``; models
        with several inputs (PSC-Fusion) get suitable zeros when left out.
    device : str
        ``"meta"`` (default, shape-only) or a real device. PSC-Fusion models, whose
        forward pass reads the image's values, are counted on the CPU.

    Returns
    -------
    int
    """
    import copy

    if str(device) == "meta" and hasattr(model, "gates") and hasattr(model, "embeddings"):
        device = "cpu"  # PSC-Fusion looks at its image's values (a missing image is NaN): real zeros
    if input_size is None:
        input_size = getattr(model, "default_cfg", {}).get("input_size")
        if input_size is None:
            raise ValueError("count_flops needs input_size=(C, H, W) for a model without default_cfg")
    dev = torch.device(device)
    params = list(model.parameters())
    if params and params[0].device != dev:
        model = copy.deepcopy(model).to(dev) if params[0].device.type != "meta" else model.to_empty(device=dev)
    was_training = model.training
    model.eval()
    total = [0]
    handles = []
    for mod in model.modules():
        fn = _rule(mod)
        if fn is not None:
            handles.append(mod.register_forward_hook(lambda m, i, o, fn=fn: total.__setitem__(0, total[0] + fn(m, i, o))))
    try:
        if inputs is None:
            x = torch.zeros((1, *input_size), device=dev)
            inputs = (x,)
            if hasattr(model, "gates") and hasattr(model, "embeddings"):  # PSC-Fusion
                comp_dim = model.composition[0].in_features - int(getattr(model, "composition_numeric_dim", 0))
                inputs = (x, torch.zeros(1, comp_dim, device=dev),
                          torch.zeros(1, len(model.embeddings), dtype=torch.long, device=dev))
                if model.numeric_dim:
                    inputs = (*inputs, torch.zeros(1, model.numeric_dim, device=dev))
        with torch.no_grad():
            model(*inputs)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return int(total[0])
