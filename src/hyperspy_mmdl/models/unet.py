"""A small U-Net that predicts a grain-boundary probability map (``unet_boundary``).

Not from the source papers: napari-mmdl's learned segmenter for
``grains.segment(method="learned")``. Encoder of ``depth`` stages (two 3×3
conv–BN–ReLU each, channels ``base_channels·2^i``), 2×2 max-pool between
stages, a bottleneck, and a decoder with bilinear up-sampling and skip
concatenation; a 1×1 conv gives one boundary logit per pixel. Inputs of any
size are reflect-padded to a multiple of ``2^depth`` and cropped back.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["UNetBoundary", "unet_boundary"]


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
    )


class UNetBoundary(nn.Module):
    """U-Net with one output channel (boundary logit).

    Parameters
    ----------
    in_chans : int
        Input channels (1 for grey micrographs).
    num_classes : int
        Output channels; 1 (boundary vs interior).
    base_channels : int
        Channels of the first stage (doubled per stage).
    depth : int
        Number of down-sampling steps.
    """

    def __init__(self, in_chans: int = 1, num_classes: int = 1, base_channels: int = 16, depth: int = 3):
        super().__init__()
        if depth < 1:
            raise ValueError(f"depth must be >= 1, got {depth}")
        chans = [base_channels * 2**i for i in range(depth + 1)]
        self.depth = depth
        self.down = nn.ModuleList([_block(in_chans, chans[0])] + [_block(chans[i], chans[i + 1])
                                                                  for i in range(depth)])
        self.up = nn.ModuleList([_block(chans[i + 1] + chans[i], chans[i]) for i in reversed(range(depth))])
        self.head = nn.Conv2d(chans[0], num_classes, 1)
        self.default_cfg = {
            "name": "unet_boundary",
            "input_size": (in_chans, 256, 256),
            "num_classes": num_classes,
            "config": {"in_chans": in_chans, "num_classes": num_classes, "base_channels": base_channels,
                       "depth": depth},
        }

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        m = 2**self.depth
        ph, pw = (-h) % m, (-w) % m
        if ph or pw:
            mode = "reflect" if (ph < h and pw < w) else "replicate"
            x = F.pad(x, (0, pw, 0, ph), mode=mode)
        skips = []
        for i, block in enumerate(self.down):
            x = block(x)
            if i < self.depth:
                skips.append(x)
                x = F.max_pool2d(x, 2)
        for block in self.up:
            skip = skips.pop()
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = block(torch.cat([x, skip], dim=1))
        return self.head(x)[..., :h, :w]


def unet_boundary(num_classes: int = 1, in_chans: int = 1, **config) -> UNetBoundary:
    """Registry entry: ``models.create("unet_boundary", in_chans=1, base_channels=16, depth=3)``."""
    return UNetBoundary(in_chans=in_chans, num_classes=num_classes, **config)
