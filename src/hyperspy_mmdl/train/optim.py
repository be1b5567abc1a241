"""Optimisers and learning-rate schedules from a recipe (SPEC §2.1–2.6)."""

from __future__ import annotations

import math

import torch

__all__ = ["build_optimizer", "build_scheduler", "warmup_cosine_lr"]


def build_optimizer(params, spec: dict) -> torch.optim.Optimizer:
    """Optimiser from a recipe's ``[optimizer]`` section.

    ``name``: ``"adam"``, ``"adamw"`` or ``"sgd"``. For AdamW, ``decoupled_decay``
    (λ applied per step as ``θ ← (1−λ)θ − α∇``, SPEC §2.5) is converted to
    PyTorch's ``weight_decay = λ / lr``, because PyTorch multiplies the decay by
    the learning rate; ``weight_decay`` is used as is otherwise.
    """
    name = str(spec.get("name", "adam")).lower()
    lr = float(spec.get("lr", 1e-3))
    wd = float(spec.get("weight_decay", 0.0))
    if spec.get("decoupled_decay") is not None:
        if name != "adamw":
            raise ValueError("decoupled_decay is defined for AdamW only")
        wd = float(spec["decoupled_decay"]) / lr
    betas = tuple(float(b) for b in spec.get("betas", (0.9, 0.999)))
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, betas=betas, weight_decay=wd)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, betas=betas, weight_decay=wd)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=float(spec.get("momentum", 0.0)), weight_decay=wd,
                               nesterov=bool(spec.get("nesterov", False)))
    raise ValueError(f"unknown optimizer {name!r} (adam, adamw, sgd)")


def warmup_cosine_lr(epoch: float, *, base_lr: float, epochs: int, warmup_epochs: int = 0,
                     warmup_start_lr: float | None = None, min_lr: float = 0.0) -> float:
    """Learning rate at (possibly fractional) ``epoch`` (SPEC §2.6).

    Linear warm-up ``warmup_start_lr → base_lr`` over ``warmup_epochs`` epochs
    (``lr = start + (base − start)·e/warmup`` for ``e < warmup``), then cosine
    annealing to ``min_lr`` over the remaining ``epochs − warmup_epochs``.
    """
    start = base_lr if warmup_start_lr is None else warmup_start_lr
    if epoch < warmup_epochs:
        return start + (base_lr - start) * epoch / warmup_epochs
    span = max(epochs - warmup_epochs, 1)
    t = min(max(epoch - warmup_epochs, 0.0), span)
    return min_lr + 0.5 * (base_lr - min_lr) * (1 + math.cos(math.pi * t / span))


def build_scheduler(optimizer, spec: dict, *, epochs: int, steps_per_epoch: int):
    """Per-iteration ``LambdaLR`` from a recipe's ``[schedule]`` section, or ``None``.

    ``name``: ``"constant"`` (None), ``"warmup_cosine"`` (``warmup_epochs``,
    ``warmup_start_lr``, ``min_lr``) or ``"cosine"``.
    """
    name = str(spec.get("name", "constant")).lower()
    if name in ("constant", "none"):
        return None
    base = optimizer.param_groups[0]["lr"]
    if name == "cosine":
        warm, start = 0, None
    elif name == "warmup_cosine":
        warm, start = int(spec.get("warmup_epochs", 0)), spec.get("warmup_start_lr")
    else:
        raise ValueError(f"unknown schedule {name!r} (constant, cosine, warmup_cosine)")
    min_lr = float(spec.get("min_lr", 0.0))
    steps = max(int(steps_per_epoch), 1)

    def factor(step):
        lr = warmup_cosine_lr(step / steps, base_lr=base, epochs=epochs, warmup_epochs=warm,
                              warmup_start_lr=start, min_lr=min_lr)
        return lr / base

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
