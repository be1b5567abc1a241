"""Loss functions: focal loss (SPEC §2.5), BCE+Dice for boundary maps, and a factory from recipes."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["FocalLoss", "BCEDiceLoss", "inverse_frequency_weights", "build_loss"]


def inverse_frequency_weights(labels, num_classes: int) -> torch.Tensor:
    """α_c ∝ 1/frequency of class c, normalised to sum to 1 (classes absent get 0)."""
    counts = np.bincount(np.asarray(labels, dtype=int), minlength=num_classes).astype(float)
    inv = np.where(counts > 0, 1.0 / np.maximum(counts, 1), 0.0)
    return torch.tensor(inv / inv.sum(), dtype=torch.float32)


class FocalLoss(nn.Module):
    """Softmax multi-class focal loss ``FL = −α_t (1 − p_t)^γ log p_t``, mean over the batch.

    Parameters
    ----------
    gamma : float
        Focusing parameter; ``gamma=0`` with ``alpha=None`` is cross-entropy.
    alpha : sequence of float or Tensor, optional
        Per-class weights α_c (e.g. :func:`inverse_frequency_weights`).
    """

    def __init__(self, gamma: float = 2.0, alpha=None):
        super().__init__()
        if gamma < 0:
            raise ValueError(f"gamma must be >= 0, got {gamma}")
        self.gamma = float(gamma)
        self.register_buffer("alpha", None if alpha is None else torch.as_tensor(alpha, dtype=torch.float32))

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logp = F.log_softmax(logits.float(), dim=1)
        logp_t = logp.gather(1, target[:, None]).squeeze(1)
        p_t = logp_t.exp()
        loss = -((1 - p_t) ** self.gamma) * logp_t
        if self.alpha is not None:
            loss = loss * self.alpha.to(loss.device)[target]
        return loss.mean()


class BCEDiceLoss(nn.Module):
    """Binary cross-entropy (with positive weight) plus soft Dice, for thin boundary maps."""

    def __init__(self, pos_weight: float = 1.0, dice_weight: float = 1.0):
        super().__init__()
        self.pos_weight = float(pos_weight)
        self.dice_weight = float(dice_weight)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logits = logits.float()
        target = target.float()
        pw = torch.tensor(self.pos_weight, device=logits.device)
        bce = F.binary_cross_entropy_with_logits(logits, target, pos_weight=pw)
        prob = torch.sigmoid(logits)
        inter = (prob * target).sum(dim=(-2, -1))
        denom = prob.sum(dim=(-2, -1)) + target.sum(dim=(-2, -1))
        dice = 1 - (2 * inter + 1) / (denom + 1)
        return bce + self.dice_weight * dice.mean()


def build_loss(spec: dict, *, train_labels=None, num_classes: int | None = None) -> nn.Module:
    """Loss module from a recipe's ``[loss]`` section.

    ``name`` is ``"mse"``, ``"cross_entropy"``, ``"focal"`` (``gamma``, ``alpha``:
    ``"inverse_frequency"`` | ``"none"`` | list) or ``"bce_dice"`` (``pos_weight``).
    """
    name = str(spec.get("name", "cross_entropy")).lower()
    if name == "mse":
        return nn.MSELoss()
    if name in ("cross_entropy", "ce"):
        return nn.CrossEntropyLoss(label_smoothing=float(spec.get("label_smoothing", 0.0)))
    if name == "focal":
        alpha = spec.get("alpha", "inverse_frequency")
        if isinstance(alpha, str):
            if alpha == "inverse_frequency":
                if train_labels is None or num_classes is None:
                    raise ValueError("focal loss with alpha='inverse_frequency' needs the training labels")
                alpha = inverse_frequency_weights(train_labels, num_classes)
            elif alpha == "none":
                alpha = None
            else:
                raise ValueError(f"focal loss alpha must be 'inverse_frequency', 'none' or a list, got {alpha!r}")
        return FocalLoss(gamma=float(spec.get("gamma", 2.0)), alpha=alpha)
    if name == "bce_dice":
        return BCEDiceLoss(pos_weight=float(spec.get("pos_weight", 1.0)),
                           dice_weight=float(spec.get("dice_weight", 1.0)))
    raise ValueError(f"unknown loss {name!r} (mse, cross_entropy, focal, bce_dice)")
