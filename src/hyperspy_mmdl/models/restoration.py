"""Image-restoration networks: super-resolution (``srcnn``, ``rcan_lite``) and denoising (``n2v_unet``).

* ``srcnn`` — SRCNN (Dong et al. 2014) as in SPEC §2.4: Conv9×9(1→64)–ReLU →
  Conv1×1(64→32)–ReLU → Conv5×5(32→1) on the **bicubic-upsampled** image
  (same size in and out, zero-padded "same" convolutions). ``residual=True``
  (default) adds the input to the output, so the net learns the correction to
  bicubic (VDSR's global skip); it starts at bicubic quality and trains in a
  few hundred CPU steps. ``residual=False`` is the literal 2014 network.
* ``rcan_lite`` — a small RCAN (Zhang et al. 2018, one of the [PSC] Table S2
  methods): a 3×3 head conv, ``n_groups`` residual groups of ``n_blocks``
  residual channel-attention blocks (conv–ReLU–conv–channel attention with
  reduction ``reduction``, local skip) each closed by a conv and a group skip,
  a long skip, then a sub-pixel (PixelShuffle) upsampler ×``scale`` and a 3×3
  tail conv. It takes the **low-resolution** image; the bicubic upsampling of
  the input is added to the output (global residual), which speeds up training.
* ``n2v_unet`` — the boundary U-Net of :mod:`.unet` with one output, used as the
  Noise2Void denoiser (blind-spot training in :mod:`hyperspy_mmdl.preprocess.denoise`).

``num_classes`` is the number of output channels (1) for all three.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .registry import register_model
from .unet import UNetBoundary

__all__ = ["SRCNN", "RCANLite", "n2v_unet", "rcan_lite", "srcnn"]


class SRCNN(nn.Module):
    """SRCNN on a bicubic-upsampled image (SPEC §2.4).

    Parameters
    ----------
    in_chans, num_classes : int
        Input and output channels (1 for grey images).
    residual : bool
        Add the input to the output (learn the correction to bicubic).
    """

    upsamples = False  # takes the bicubic-upsampled image

    def __init__(self, in_chans: int = 1, num_classes: int = 1, residual: bool = True):
        super().__init__()
        self.residual = bool(residual)
        self.conv1 = nn.Conv2d(in_chans, 64, 9, padding=4)
        self.conv2 = nn.Conv2d(64, 32, 1)
        self.conv3 = nn.Conv2d(32, num_classes, 5, padding=2)
        if self.residual:
            nn.init.normal_(self.conv3.weight, std=1e-3)
            nn.init.zeros_(self.conv3.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv3(F.relu(self.conv2(F.relu(self.conv1(x)))))
        return x + y if self.residual and y.shape == x.shape else y


class _ChannelAttention(nn.Module):
    def __init__(self, c: int, reduction: int):
        super().__init__()
        hidden = max(1, c // reduction)
        self.body = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(c, hidden, 1), nn.ReLU(inplace=True),
                                  nn.Conv2d(hidden, c, 1), nn.Sigmoid())

    def forward(self, x):
        return x * self.body(x)


class _RCAB(nn.Module):
    def __init__(self, c: int, reduction: int):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(c, c, 3, padding=1), nn.ReLU(inplace=True),
                                  nn.Conv2d(c, c, 3, padding=1), _ChannelAttention(c, reduction))

    def forward(self, x):
        return x + self.body(x)


class _ResidualGroup(nn.Module):
    def __init__(self, c: int, n_blocks: int, reduction: int):
        super().__init__()
        self.body = nn.Sequential(*[_RCAB(c, reduction) for _ in range(n_blocks)],
                                  nn.Conv2d(c, c, 3, padding=1))

    def forward(self, x):
        return x + self.body(x)


def _upsampler(c: int, scale: int) -> nn.Sequential:
    if scale in (2, 3):
        return nn.Sequential(nn.Conv2d(c, c * scale * scale, 3, padding=1), nn.PixelShuffle(scale))
    if scale == 4:
        return nn.Sequential(nn.Conv2d(c, 4 * c, 3, padding=1), nn.PixelShuffle(2),
                             nn.Conv2d(c, 4 * c, 3, padding=1), nn.PixelShuffle(2))
    raise ValueError(f"rcan_lite supports scale 2, 3 or 4, got {scale}")


class RCANLite(nn.Module):
    """A small residual channel-attention network (RCAN) for ×2, ×3, ×4 super-resolution.

    Parameters
    ----------
    in_chans, num_classes : int
        Input and output channels.
    scale : {2, 3, 4}
        Upscaling factor (the net takes the low-resolution image).
    channels : int
        Feature channels.
    n_groups, n_blocks : int
        Residual groups and channel-attention blocks per group.
    reduction : int
        Channel-attention reduction.
    """

    upsamples = True  # takes the low-resolution image

    def __init__(self, in_chans: int = 1, num_classes: int = 1, scale: int = 2, channels: int = 32,
                 n_groups: int = 2, n_blocks: int = 4, reduction: int = 8):
        super().__init__()
        self.scale = int(scale)
        self.head = nn.Conv2d(in_chans, channels, 3, padding=1)
        self.body = nn.Sequential(*[_ResidualGroup(channels, n_blocks, reduction) for _ in range(n_groups)],
                                  nn.Conv2d(channels, channels, 3, padding=1))
        self.up = _upsampler(channels, self.scale)
        self.tail = nn.Conv2d(channels, num_classes, 3, padding=1)
        nn.init.normal_(self.tail.weight, std=1e-3)
        nn.init.zeros_(self.tail.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        base = F.interpolate(x, scale_factor=self.scale, mode="bicubic", align_corners=False)
        f = self.head(x)
        f = f + self.body(f)
        y = self.tail(self.up(f))
        return base + y if y.shape == base.shape else y


@register_model("srcnn", input_size=(1, 64, 64), num_classes=1)
def srcnn(num_classes: int = 1, in_chans: int = 1, **config) -> SRCNN:
    """Registry entry: ``models.create("srcnn", residual=True)``."""
    return SRCNN(in_chans=in_chans, num_classes=num_classes, **config)


@register_model("rcan_lite", input_size=(1, 32, 32), num_classes=1)
def rcan_lite(num_classes: int = 1, in_chans: int = 1, **config) -> RCANLite:
    """Registry entry: ``models.create("rcan_lite", scale=2, channels=32, n_groups=2, n_blocks=4)``."""
    return RCANLite(in_chans=in_chans, num_classes=num_classes, **config)


@register_model("n2v_unet", input_size=(1, 64, 64), num_classes=1)
def n2v_unet(num_classes: int = 1, in_chans: int = 1, base_channels: int = 16, depth: int = 2) -> UNetBoundary:
    """Registry entry: the Noise2Void denoiser, a U-Net ``(base_channels, depth)`` with one output."""
    return UNetBoundary(in_chans=in_chans, num_classes=num_classes, base_channels=base_channels, depth=depth)
