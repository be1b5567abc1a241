"""ResNet50 and the ceramic MSFB-ResNet50 with chunking attention ([CER], SPEC §1.4).

``resnet50`` is the torchvision layout (7×7 stem); ``msfb_resnet50`` replaces
every bottleneck by the multi-scale fusion bottleneck (Res2Net 26w×4s widths,
three shared cross-scale coordinate attentions Φ per block) on the Res2Net-v1b
deep stem. Both take ``attention=None|"pa"|"ca"|"pca_serial"|"pca_parallel"``
placed after every block of the stages that ``version`` selects (Table VII):
A = all four, B = 1 and 4 (default), C = 2–4, D = 4.

``return_attention=True`` adds ``{"pa.layer<i>.<j>": (B, h, w), "ca.layer<i>.<j>": (B, g, g)}``.
"""

from __future__ import annotations

import torch
from torch import nn

from .attention import (
    PCA,
    ChannelChunkingAttention,
    CrossScaleCoordinateAttention,
    SpatialChunkingAttention,
)
from .registry import register_model

__all__ = ["ResNet", "Bottleneck", "MSFBottleneck", "resnet50", "msfb_resnet50", "VERSIONS"]

VERSIONS = {"A": (1, 2, 3, 4), "B": (1, 4), "C": (2, 3, 4), "D": (4,)}
ATTENTIONS = (None, "pa", "ca", "pca_serial", "pca_parallel")


def _conv_bn(cin, cout, k=1, stride=1, relu=True):
    layers = [nn.Conv2d(cin, cout, k, stride, k // 2, bias=False), nn.BatchNorm2d(cout)]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


def _shortcut(cin, cout, stride):
    if stride == 1 and cin == cout:
        return nn.Identity()
    return nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))


class Bottleneck(nn.Module):
    """ResNet v1.5 bottleneck (stride on the 3×3 conv)."""

    expansion = 4

    def __init__(self, cin, planes, stride=1, first=False):
        super().__init__()
        cout = planes * 4
        self.conv1 = _conv_bn(cin, planes, 1)
        self.conv2 = _conv_bn(planes, planes, 3, stride)
        self.conv3 = _conv_bn(planes, cout, 1, relu=False)
        self.shortcut = _shortcut(cin, cout, stride)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        return self.relu(self.conv3(self.conv2(self.conv1(x))) + self.shortcut(x))


class MSFBottleneck(nn.Module):
    """Multi-scale fusion bottleneck ([CER] Eq. 5–6, Alg. 2; SPEC §1.4.3).

    ``scale`` splits of width ``w = 26·planes // 64``; the first block of a
    stage ("stage" type) convolves every split on its own (stride there) and
    average-pools the last one; later blocks add the previous output
    (hierarchical). One Φ per adjacent pair, used in both directions; the
    ``3s−2`` chunks are fused by a 1×1 conv.
    """

    def __init__(self, cin, planes, stride=1, first=False, scale=4, base_width=26):
        super().__init__()
        w = base_width * planes // 64
        cout = planes * 4
        self.w, self.scale, self.first = w, scale, first
        self.conv1 = _conv_bn(cin, w * scale, 1)
        self.convs = nn.ModuleList(_conv_bn(w, w, 3, stride) for _ in range(scale - 1))
        self.pool = nn.AvgPool2d(3, stride, 1) if first else None
        self.phi = nn.ModuleList(CrossScaleCoordinateAttention(w) for _ in range(scale - 1))
        self.conv3 = _conv_bn((3 * scale - 2) * w, cout, 1, relu=False)
        self.shortcut = _shortcut(cin, cout, stride)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        xs = torch.split(self.conv1(x), self.w, dim=1)
        ys = []
        for i, conv in enumerate(self.convs):
            ys.append(conv(xs[i] if self.first or i == 0 else xs[i] + ys[-1]))
        ys.append(self.pool(xs[-1]) if self.first else xs[-1])
        z = [ys[0]]
        for i, phi in enumerate(self.phi):
            z += [phi(ys[i], ys[i + 1]), phi(ys[i + 1], ys[i]), ys[i + 1]]
        return self.relu(self.conv3(torch.cat(z, 1)) + self.shortcut(x))


def _attention_module(kind, channels, separate_qkv=False):
    if kind == "pa":
        return SpatialChunkingAttention(channels)
    if kind == "ca":
        return ChannelChunkingAttention(channels, separate_qkv=separate_qkv)
    if kind in ("pca_serial", "pca_parallel"):
        m = PCA(channels, kind.split("_")[1])
        if separate_qkv:
            m.ca = ChannelChunkingAttention(channels, separate_qkv=True)
        return m
    raise ValueError(f"attention must be one of {ATTENTIONS}, got {kind!r}")


class ResNet(nn.Module):
    """Four-stage bottleneck network, [3, 4, 6, 3] blocks, GAP + linear head.

    Parameters
    ----------
    block : {"bottleneck", "msfb"}
    num_classes, in_chans : int
    stem : {"7x7", "deep"}
    attention : None or {"pa", "ca", "pca_serial", "pca_parallel"}
    version : {"A", "B", "C", "D"}
    separate_qkv : bool
        CA with three Q/K/V convs (the text's Eq. 13) instead of the shared one.
    layers : sequence of int
    """

    def __init__(self, block="bottleneck", num_classes=24, in_chans=3, stem="7x7", attention=None,
                 version="B", separate_qkv=False, layers=(3, 4, 6, 3)):
        super().__init__()
        if stem not in ("7x7", "deep"):
            raise ValueError(f"stem must be '7x7' or 'deep', got {stem!r}")
        if attention not in ATTENTIONS:
            raise ValueError(f"attention must be one of {ATTENTIONS}, got {attention!r}")
        version = str(version).upper()
        if version not in VERSIONS:
            raise ValueError(f"version must be one of {sorted(VERSIONS)}, got {version!r}")
        blk = {"bottleneck": Bottleneck, "msfb": MSFBottleneck}[block]
        if stem == "7x7":
            self.stem = nn.Sequential(nn.Conv2d(in_chans, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64),
                                      nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1))
        else:
            self.stem = nn.Sequential(_conv_bn(in_chans, 32, 3, 2), _conv_bn(32, 32, 3), _conv_bn(32, 64, 3),
                                      nn.MaxPool2d(3, 2, 1))
        cin = 64
        self.attn = nn.ModuleDict()
        stages = []
        for i, (n, planes) in enumerate(zip(layers, (64, 128, 256, 512)), start=1):
            blocks = []
            for j in range(n):
                stride = 2 if (j == 0 and i > 1) else 1
                blocks.append(blk(cin, planes, stride, first=(j == 0)))
                cin = planes * 4
                if attention and i in VERSIONS[version]:
                    self.attn[f"layer{i}_{j}"] = _attention_module(attention, cin, separate_qkv)
            stages.append(nn.ModuleList(blocks))
        self.layers = nn.ModuleList(stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x, return_attention=False):
        x = self.stem(x)
        for i, stage in enumerate(self.layers, start=1):
            for j, block in enumerate(stage):
                x = block(x)
                key = f"layer{i}_{j}"
                if key in self.attn:
                    x = self.attn[key](x)
        logits = self.fc(torch.flatten(self.pool(x), 1))
        if not return_attention:
            return logits
        maps = {}
        for key, mod in self.attn.items():
            name = key.replace("_", ".")
            pa = mod if isinstance(mod, SpatialChunkingAttention) else getattr(mod, "pa", None)
            ca = mod if isinstance(mod, ChannelChunkingAttention) else getattr(mod, "ca", None)
            if pa is not None and pa.last_map is not None:
                maps[f"pa.{name}"] = pa.last_map
            if ca is not None and ca.last_map is not None:
                maps[f"ca.{name}"] = ca.last_map
        return logits, maps


@register_model(input_size=(3, 224, 224), num_classes=24)
def resnet50(num_classes=24, in_chans=3, stem="7x7", attention=None, version="B", separate_qkv=False):
    """ResNet50 (torchvision layout, 23,557,208 params at 24 classes), optional PA/CA/PCA."""
    return ResNet("bottleneck", num_classes, in_chans, stem, attention, version, separate_qkv)


@register_model(input_size=(3, 224, 224), num_classes=24)
def msfb_resnet50(num_classes=24, in_chans=3, stem="deep", attention=None, version="B", separate_qkv=False):
    """MSFB-ResNet50 ([CER]); ``attention="pca_parallel"`` + version B is the paper's model (76.094 M)."""
    return ResNet("msfb", num_classes, in_chans, stem, attention, version, separate_qkv)
