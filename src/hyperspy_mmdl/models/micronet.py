"""MicroNet: a small CNN backbone for micrographs, pre-trained and shipped by napari-mmdl (not from a paper).

A plain convolutional network sized for training and fine-tuning on a CPU in
minutes: a stride-2 stem, four stages of 3×3 conv–BatchNorm–ReLU (widths
``(16, 32, 64, 128)`` by default, ≈0.29 M parameters, ≈0.04 GMAC at 112×112),
2×2 max-pooling between stages, and a texture descriptor as the image feature:
the spatial mean of stage 2, and the spatial mean and standard deviation of
stages 3 and 4, concatenated (``32 + 2·64 + 2·128 = 416`` values). A linear
head maps that feature to the classes.

Mean and standard deviation of several depths describe a micrograph's texture
at several scales (grain size, boundary contrast, noise), which is what a
small labelled set of micrographs can be told apart by; a linear classifier on
that feature is the starting point of fine-tuning
(:func:`hyperspy_mmdl.train.tasks.train_classifier` with the ``finetune``
recipe). It accepts any input of at least 16×16 pixels.

Examples
--------
>>> import torch
>>> from hyperspy_mmdl import models
>>> net = models.create("micronet", num_classes=3, in_chans=1)
>>> net(torch.zeros(2, 1, 64, 64)).shape, net.feature_dim
(torch.Size([2, 3]), 416)
"""

from __future__ import annotations

import torch
from torch import nn

from .registry import register_model

__all__ = ["MicroNet", "micronet"]


def _cbr(cin: int, cout: int, stride: int = 1) -> list:
    return [nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


class MicroNet(nn.Module):
    """The MicroNet classifier (see the module docstring).

    Parameters
    ----------
    num_classes : int
    in_chans : int
    widths : sequence of 4 int
        Channels of stages 1–4.
    dropout : float
        Dropout before the linear head.
    """

    def __init__(self, num_classes: int = 3, in_chans: int = 1, widths=(16, 32, 64, 128), dropout: float = 0.2):
        super().__init__()
        w1, w2, w3, w4 = (int(w) for w in widths)
        self.stem = nn.Sequential(*_cbr(in_chans, w1, 2))
        self.stage1 = nn.Sequential(*_cbr(w1, w1))
        self.stage2 = nn.Sequential(*_cbr(w1, w2), *_cbr(w2, w2))
        self.stage3 = nn.Sequential(*_cbr(w2, w3), *_cbr(w3, w3))
        self.stage4 = nn.Sequential(*_cbr(w3, w4), *_cbr(w4, w4))
        self.pool = nn.MaxPool2d(2, 2)
        self.feature_dim = w2 + 2 * w3 + 2 * w4
        self.dropout = nn.Dropout(float(dropout))
        self.head = nn.Linear(self.feature_dim, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` → ``(B, feature_dim)``: means of stages 2–4, standard deviations of 3–4."""
        if min(x.shape[-2:]) < 16:
            raise ValueError(f"MicroNet needs inputs of at least 16×16 pixels, got {tuple(x.shape[-2:])}")
        x = self.pool(self.stage1(self.stem(x)))
        s2 = self.stage2(x)
        s3 = self.stage3(self.pool(s2))
        s4 = self.stage4(self.pool(s3))
        parts = [s2.mean((2, 3))]
        for s in (s3, s4):
            flat = s.flatten(2)
            parts += [flat.mean(2), flat.var(2, unbiased=False).add(1e-6).sqrt()]
        return torch.cat(parts, 1)

    def forward(self, x: torch.Tensor, return_attention: bool = False):
        out = self.head(self.dropout(self.features(x)))
        return (out, {}) if return_attention else out

    def backbone_state(self) -> dict:
        """The weights of everything but the head (what fine-tuning starts from)."""
        return {k: v for k, v in self.state_dict().items() if not k.startswith("head.")}


@register_model(input_size=(1, 112, 112), num_classes=3)
def micronet(num_classes=3, in_chans=1, widths=(16, 32, 64, 128), dropout=0.2):
    """MicroNet (≈0.29 M parameters): napari-mmdl's small micrograph backbone with a linear head."""
    return MicroNet(num_classes, in_chans, tuple(widths), dropout)
