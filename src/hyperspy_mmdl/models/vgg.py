"""VGG-style classifiers: the [PSC] grain-size CNN and the [STEEL] VGG16-BN baselines (SPEC §1.2, §1.3.4).

``vgg16_bn`` / ``vgg16_bn_cbam`` are trained from scratch here: no pretrained
weights are downloaded (the model card must say so). ``vgg16_bn_cbam`` puts a
CBAM (r=16) at the end of each of the 5 conv blocks, before its max-pool.
"""

from __future__ import annotations

import torch
from torch import nn

from .attention import CBAM
from .registry import register_model

__all__ = ["VGGGrain", "VGG16BN", "vgg_grain", "vgg16_bn", "vgg16_bn_cbam"]


def init_vgg_weights(module: nn.Module) -> None:
    """torchvision's VGG initialisation: Kaiming-normal convs (fan-out, ReLU), N(0, 0.01) linears, zero biases.

    PyTorch's default (Kaiming-uniform with a = √5) shrinks the signal about
    threefold per layer; without BatchNorm (``vgg_grain``) the logits start
    near 1e-5 and SGD at the paper's 0.005 does not get going.
    """
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


class VGGGrain(nn.Module):
    """[PSC] Table S7 grain-size classifier: convs 16, 16-16, 32-32, 64-64 (3×3 + ReLU, no BN), 2×2 pools,
    flatten 14·14·64 = 12,544 → 512 → 512 → K with dropout 0.4. Needs a 224×224 input."""

    input_hw = (224, 224)

    def __init__(self, num_classes=3, in_chans=1, dropout=0.4):
        super().__init__()
        layers, cin = [], in_chans
        for n, c in ((1, 16), (2, 16), (2, 32), (2, 64)):
            for _ in range(n):
                layers += [nn.Conv2d(cin, c, 3, padding=1), nn.ReLU(inplace=True)]
                cin = c
            layers.append(nn.MaxPool2d(2, 2))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(
            nn.Linear(64 * 14 * 14, 512), nn.ReLU(inplace=True), nn.Dropout(dropout),
            nn.Linear(512, 512), nn.ReLU(inplace=True), nn.Dropout(dropout), nn.Linear(512, num_classes))
        init_vgg_weights(self)

    def forward(self, x, return_attention=False):
        if tuple(x.shape[-2:]) != self.input_hw:
            raise ValueError(f"vgg_grain needs a 224×224 input (its head flattens 14×14×64 = 12,544 "
                             f"features); got {tuple(x.shape[-2:])}")
        out = self.classifier(torch.flatten(self.features(x), 1))
        return (out, {}) if return_attention else out


_VGG16 = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512))


class VGG16BN(nn.Module):
    """VGG16 with BatchNorm (torchvision layout: adaptive 7×7 pool, 4096-4096 head, dropout 0.5)."""

    def __init__(self, num_classes=3, in_chans=3, cbam=False, cbam_reduction=16, dropout=0.5):
        super().__init__()
        blocks, cin = [], in_chans
        self.cbam = nn.ModuleList()
        for widths in _VGG16:
            layers = []
            for c in widths:
                layers += [nn.Conv2d(cin, c, 3, padding=1), nn.BatchNorm2d(c), nn.ReLU(inplace=True)]
                cin = c
            blocks.append(nn.Sequential(*layers))
            if cbam:
                self.cbam.append(CBAM(cin, cbam_reduction))
        self.blocks = nn.ModuleList(blocks)
        self.maxpool = nn.MaxPool2d(2, 2)
        self.avgpool = nn.AdaptiveAvgPool2d(7)
        self.classifier = nn.Sequential(
            nn.Linear(512 * 49, 4096), nn.ReLU(inplace=True), nn.Dropout(dropout),
            nn.Linear(4096, 4096), nn.ReLU(inplace=True), nn.Dropout(dropout), nn.Linear(4096, num_classes))
        init_vgg_weights(self.blocks)  # the CBAMs keep their own initialisation
        init_vgg_weights(self.classifier)

    def forward(self, x, return_attention=False):
        if min(x.shape[-2:]) < 32:
            raise ValueError(f"vgg16_bn needs an input of at least 32×32 (five 2× pools); got {tuple(x.shape[-2:])}")
        maps = {}
        for i, block in enumerate(self.blocks):
            x = block(x)
            if len(self.cbam):
                x = self.cbam[i](x)
                maps[f"cbam_spatial.{i}"] = self.cbam[i].last_map
            x = self.maxpool(x)
        out = self.classifier(torch.flatten(self.avgpool(x), 1))
        return (out, maps) if return_attention else out


@register_model(input_size=(1, 224, 224), num_classes=3)
def vgg_grain(num_classes=3, in_chans=1, dropout=0.4):
    """[PSC] grain-size classifier (≈6.76 M params at 1 channel, 3 classes)."""
    return VGGGrain(num_classes, in_chans, dropout)


@register_model(input_size=(3, 224, 224), num_classes=3)
def vgg16_bn(num_classes=3, in_chans=3, dropout=0.5):
    """[STEEL] "VGG" baseline: VGG16-BN, trained from scratch (no pretrained weights)."""
    return VGG16BN(num_classes, in_chans, cbam=False, dropout=dropout)


@register_model(input_size=(3, 224, 224), num_classes=3)
def vgg16_bn_cbam(num_classes=3, in_chans=3, cbam_reduction=16, dropout=0.5):
    """[STEEL] "VGG + Attention": VGG16-BN with CBAM after each conv block, trained from scratch."""
    return VGG16BN(num_classes, in_chans, cbam=True, cbam_reduction=cbam_reduction, dropout=dropout)
