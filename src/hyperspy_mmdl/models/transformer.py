"""[STEEL] EANet (external attention) and its ViT baseline (SPEC §1.3).

Patch embedding ``Linear(P²·C → d)`` + a learnable position table of N
vectors; 8 pre-LayerNorm blocks; mean over tokens; ``Linear(d → K)``. The
position table fixes the input size: a different size raises a ValueError
naming ``img_size`` (build with ``img_size=...`` to change it; no interpolation,
so a trained model sees exactly the geometry it was trained on).
"""

from __future__ import annotations

import torch
from torch import nn

from .attention import ExternalAttention
from .registry import register_model

__all__ = ["PatchTransformer", "MultiHeadSelfAttention", "eanet", "vit"]


class MultiHeadSelfAttention(nn.Module):
    """Keras-style MHA: ``heads`` heads of ``key_dim`` each, output projection to d."""

    def __init__(self, dim=64, num_heads=4, key_dim=64, attn_drop=0.2, proj_drop=0.2):
        super().__init__()
        self.h, self.kd = num_heads, key_dim
        self.q = nn.Linear(dim, num_heads * key_dim)
        self.k = nn.Linear(dim, num_heads * key_dim)
        self.v = nn.Linear(dim, num_heads * key_dim)
        self.proj = nn.Linear(num_heads * key_dim, dim)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj_drop = nn.Dropout(proj_drop)
        self.last_map = None

    def forward(self, x):
        b, n, _ = x.shape
        q, k, v = (f(x).reshape(b, n, self.h, self.kd).transpose(1, 2) for f in (self.q, self.k, self.v))
        a = torch.softmax(q @ k.transpose(2, 3) / self.kd ** 0.5, dim=-1)
        self.last_map = a.detach()
        o = (self.attn_drop(a) @ v).transpose(1, 2).reshape(b, n, -1)
        return self.proj_drop(self.proj(o))


class Block(nn.Module):
    def __init__(self, dim, attn, mlp_dim=64, drop=0.2):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-5)
        self.attn = attn
        self.norm2 = nn.LayerNorm(dim, eps=1e-5)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_dim), nn.GELU(), nn.Dropout(drop),
                                 nn.Linear(mlp_dim, dim), nn.Dropout(drop))

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class PatchTransformer(nn.Module):
    """Patch embedding + position table + ``depth`` blocks + token mean + linear head.

    Parameters
    ----------
    kind : {"external", "self"}
    img_size, patch_size : int
    dim, depth, mlp_dim, num_heads : int
    memory : int
        External-attention memory size S (64).
    drop : float
        Attention / projection / MLP dropout (0.2).
    """

    def __init__(self, kind="external", num_classes=3, in_chans=1, img_size=224, patch_size=16, dim=64,
                 depth=8, mlp_dim=64, num_heads=4, memory=64, drop=0.2):
        super().__init__()
        if img_size % patch_size:
            raise ValueError(f"img_size {img_size} is not a multiple of patch_size {patch_size}")
        self.kind, self.p, self.img_size = kind, patch_size, img_size
        self.input_hw = (img_size, img_size)
        n = (img_size // patch_size) ** 2
        self.embed = nn.Linear(patch_size * patch_size * in_chans, dim)
        self.pos = nn.Embedding(n, dim)

        def attn():
            if kind == "external":
                return ExternalAttention(dim, num_heads, 4, memory, drop, drop)
            return MultiHeadSelfAttention(dim, num_heads, 64, drop, drop)

        self.blocks = nn.ModuleList(Block(dim, attn(), mlp_dim, drop) for _ in range(depth))
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x, return_attention=False):
        b, c, h, w = x.shape
        if (h, w) != self.input_hw:
            raise ValueError(f"this {'EANet' if self.kind == 'external' else 'ViT'} was built for "
                             f"{self.img_size}×{self.img_size} inputs (img_size={self.img_size}, its position "
                             f"table has one entry per {self.p}×{self.p} patch); got {h}×{w}")
        p = self.p
        t = x.reshape(b, c, h // p, p, w // p, p).permute(0, 2, 4, 3, 5, 1).reshape(b, (h // p) * (w // p), -1)
        t = self.embed(t) + self.pos.weight[None]
        maps = {}
        key = "external" if self.kind == "external" else "self_attention"
        for i, blk in enumerate(self.blocks):
            t = blk(t)
            maps[f"{key}.{i}"] = blk.attn.last_map
        out = self.head(t.mean(1))
        return (out, maps) if return_attention else out


@register_model(input_size=(1, 224, 224), num_classes=3)
def eanet(num_classes=3, in_chans=1, img_size=224, patch_size=16, dim=64, depth=8, mlp_dim=64, num_heads=4,
          memory=64, drop=0.2):
    """[STEEL] EANet: 8 external-attention blocks (≈0.38 M params at 224², P=16)."""
    return PatchTransformer("external", num_classes, in_chans, img_size, patch_size, dim, depth, mlp_dim,
                            num_heads, memory, drop)


@register_model(input_size=(1, 224, 224), num_classes=3)
def vit(num_classes=3, in_chans=1, img_size=224, patch_size=16, dim=64, depth=8, mlp_dim=64, num_heads=4,
        drop=0.2):
    """[STEEL] ViT baseline: EANet with 4-head self-attention (≈0.63 M params)."""
    return PatchTransformer("self", num_classes, in_chans, img_size, patch_size, dim, depth, mlp_dim,
                            num_heads, 64, drop)
