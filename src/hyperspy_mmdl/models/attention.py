"""Attention blocks shared by the model families (SPEC §1.1.2, §1.1.6, §1.3.1, §1.4.2–1.4.7).

Each block's ``forward(x)`` returns the transformed tensor; the attention map
it computed last is kept in ``self.last_map`` (detached) so models can return
it on ``return_attention=True`` without changing the block signatures.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

__all__ = [
    "CBAM", "FrequencyChannelAttention", "SelfAttention2d", "ExternalAttention",
    "CrossScaleCoordinateAttention", "SpatialChunkingAttention", "ChannelChunkingAttention",
    "LearnableMomentum", "PCA", "make_slot_attention",
]


class CBAM(nn.Module):
    """Convolutional block attention (Woo et al. 2018): channel then spatial attention.

    Parameters
    ----------
    channels : int
    reduction : int
        MLP reduction r (hidden width ``max(1, C // r)``); SPEC default 4.
    kernel_size : int
        Spatial-attention kernel (7).

    ``last_map`` is the spatial map ``(B, H, W)`` in (0, 1).
    """

    def __init__(self, channels: int, reduction: int = 4, kernel_size: int = 7):
        super().__init__()
        hidden = max(1, channels // reduction)
        self.mlp = nn.Sequential(nn.Linear(channels, hidden, bias=False), nn.ReLU(inplace=True),
                                 nn.Linear(hidden, channels, bias=False))
        self.spatial = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=False)
        self.last_map = None

    def forward(self, x):
        avg = self.mlp(x.mean((2, 3)))
        mx = self.mlp(x.amax((2, 3)))
        x = x * torch.sigmoid(avg + mx)[:, :, None, None]
        s = torch.sigmoid(self.spatial(torch.cat([x.mean(1, keepdim=True), x.amax(1, keepdim=True)], 1)))
        self.last_map = s[:, 0].detach()
        return x * s


# FcaNet "low16" frequency indices on a 7x7 DCT grid (Qin et al. 2021)
_LOW16_X = [0, 0, 1, 1, 0, 2, 2, 1, 2, 0, 3, 4, 0, 1, 3, 0]
_LOW16_Y = [0, 1, 0, 1, 2, 0, 1, 2, 2, 3, 0, 0, 4, 3, 1, 5]


def _dct_filters(channels: int, size: int, n_freq: int) -> torch.Tensor:
    def basis(pos, freq, n):
        v = math.cos(math.pi * freq * (pos + 0.5) / n) / math.sqrt(n)
        return v if freq == 0 else v * math.sqrt(2)

    filt = torch.zeros(channels, size, size)
    part = channels // n_freq
    for i, (u, v) in enumerate(zip(_LOW16_X[:n_freq], _LOW16_Y[:n_freq])):
        for tx in range(size):
            for ty in range(size):
                filt[i * part:(i + 1) * part, tx, ty] = basis(tx, u, size) * basis(ty, v, size)
    return filt


class FrequencyChannelAttention(nn.Module):
    """FcaNet-style multi-spectral channel attention (SPEC §1.1.6).

    The map is average-pooled to ``dct_size²``; channel groups are projected on
    fixed 2-D DCT bases of the lowest frequencies (the FcaNet "low" selection,
    as many as divide C, at most 16); the resulting vector goes through the
    CBAM-style MLP and a sigmoid. ``last_map`` is the channel weights ``(B, C)``.
    """

    def __init__(self, channels: int, reduction: int = 4, dct_size: int = 7):
        super().__init__()
        n_freq = next(n for n in (16, 8, 4, 2, 1) if channels % n == 0)
        self.dct_size = dct_size
        self.register_buffer("dct", _dct_filters(channels, dct_size, n_freq), persistent=False)
        hidden = max(1, channels // reduction)
        self.mlp = nn.Sequential(nn.Linear(channels, hidden, bias=False), nn.ReLU(inplace=True),
                                 nn.Linear(hidden, channels, bias=False))
        self.last_map = None

    def forward(self, x):
        y = F.adaptive_avg_pool2d(x, self.dct_size)
        w = torch.sigmoid(self.mlp((y * self.dct).sum((2, 3))))
        self.last_map = w.detach()
        return x * w[:, :, None, None]


class SelfAttention2d(nn.Module):
    """SAGAN-style non-local self-attention with a learnable residual gate (γ=0 at start).

    Queries at every pixel; keys and values from the map max-pooled by
    ``pool`` (4) so the score matrix stays small at 112² (12,544 × 784).
    ``last_map`` is the attention each pooled position receives, ``(B, h, w)``
    at the pooled resolution.
    """

    def __init__(self, channels: int, reduction: int = 8, pool: int = 4):
        super().__init__()
        inner = max(1, channels // reduction)
        self.q = nn.Conv2d(channels, inner, 1)
        self.k = nn.Conv2d(channels, inner, 1)
        self.v = nn.Conv2d(channels, channels, 1)
        self.pool = pool
        self.gamma = nn.Parameter(torch.zeros(1))
        self.last_map = None

    def forward(self, x):
        b, c, h, w = x.shape
        kv = F.max_pool2d(x, self.pool) if min(h, w) >= self.pool else x
        hp, wp = kv.shape[-2:]
        q = self.q(x).flatten(2).transpose(1, 2)  # B, N, c'
        k = self.k(kv).flatten(2)  # B, c', M
        att = torch.softmax(q @ k / math.sqrt(k.shape[1]), dim=-1)  # B, N, M
        out = (self.v(kv).flatten(2) @ att.transpose(1, 2)).reshape(b, c, h, w)
        self.last_map = att.mean(1).reshape(b, hp, wp).detach()
        return x + self.gamma * out


def make_slot_attention(kind: str | None, channels: int, reduction: int = 4):
    """The PSC encoder's attention slot: ``"cbam"``, ``"fca"``, ``"self"`` or ``"none"``."""
    kind = "none" if kind is None else str(kind).lower()
    if kind == "cbam":
        return CBAM(channels, reduction)
    if kind == "fca":
        return FrequencyChannelAttention(channels, reduction)
    if kind == "self":
        return SelfAttention2d(channels)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"attention must be 'cbam', 'fca', 'self' or 'none', got {kind!r}")


class ExternalAttention(nn.Module):
    """Multi-head external attention with double normalisation (SPEC §1.3.1–1.3.2).

    ``x (B, N, d) -> Linear(d, coef·d) -> (B, coef·heads, N, dh) -> M_k -> softmax over
    N -> L1 over S (+eps) -> dropout -> M_v -> (B, N, coef·d) -> Linear(coef·d, d)``.
    ``last_map`` is the attention ``(B, coef·heads, N, S)``; it sums to 1 over S.
    """

    def __init__(self, dim: int = 64, num_heads: int = 4, coef: int = 4, memory: int = 64,
                 attn_drop: float = 0.2, proj_drop: float = 0.2, eps: float = 1e-9):
        super().__init__()
        self.heads = num_heads * coef
        inner = dim * coef
        if inner % self.heads:
            raise ValueError(f"dim*coef={inner} is not divisible by num_heads*coef={self.heads}")
        self.head_dim = inner // self.heads
        self.eps = eps
        self.trans = nn.Linear(dim, inner)
        self.mk = nn.Linear(self.head_dim, memory)
        self.mv = nn.Linear(memory, self.head_dim)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(inner, dim)
        self.proj_drop = nn.Dropout(proj_drop)
        self.last_map = None

    def attention(self, x):
        """``(B, heads, N, head_dim)`` tokens -> double-normalised ``(B, heads, N, S)``."""
        a = torch.softmax(self.mk(x), dim=2)  # over the token axis N
        return a / (self.eps + a.sum(dim=-1, keepdim=True))  # L1 over the memory axis S

    def forward(self, x):
        b, n, _ = x.shape
        h = self.trans(x).reshape(b, n, self.heads, self.head_dim).transpose(1, 2)
        a = self.attention(h)
        self.last_map = a.detach()
        o = self.mv(self.attn_drop(a)).transpose(1, 2).reshape(b, n, -1)
        return self.proj_drop(self.proj(o))


class CrossScaleCoordinateAttention(nn.Module):
    """Φ(A, B) of [CER] Eq. 1–4: A re-weighted by coordinate gates from A's rows and B's columns.

    ``m = max(8, C // reduction)``; params ``26C + 24`` for m = 8.
    """

    def __init__(self, channels: int, reduction: int = 32, min_hidden: int = 8):
        super().__init__()
        m = max(min_hidden, channels // reduction)
        self.conv = nn.Conv2d(channels, m, 1)
        self.bn = nn.BatchNorm2d(m)
        self.conv_h = nn.Conv2d(m, channels, 1)
        self.conv_w = nn.Conv2d(m, channels, 1)

    def forward(self, a, b):
        h, w = a.shape[-2:]
        a_h = a.mean(3, keepdim=True)  # C x H x 1
        b_w = b.mean(2, keepdim=True).transpose(2, 3)  # C x W x 1
        s = self.bn(self.conv(torch.cat([a_h, b_w], dim=2)))
        v = s * F.hardsigmoid(s)  # h-swish
        v_h, v_w = torch.split(v, [h, w], dim=2)
        d_x = torch.sigmoid(self.conv_h(v_h))  # C x H x 1
        d_y = torch.sigmoid(self.conv_w(v_w.transpose(2, 3)))  # C x 1 x W
        return a * d_x * d_y


class LearnableMomentum(nn.Module):
    """``m = 0.5·γ/(1+|γ|) + 0.5`` ∈ (0, 1), γ learnable, 0 at start (m = 0.5); blends ``m·y + (1−m)·x``."""

    def __init__(self, gamma: float = 0.0):
        super().__init__()
        self.gamma = nn.Parameter(torch.tensor(float(gamma)))

    @property
    def value(self) -> torch.Tensor:
        return 0.5 * self.gamma / (1 + self.gamma.abs()) + 0.5

    def forward(self, y, x):
        m = self.value
        return m * y + (1 - m) * x


def _next_square(n: int) -> int:
    return math.ceil(math.sqrt(n)) ** 2


class SpatialChunkingAttention(nn.Module):
    """PA of [CER] Eq. 9–12: patch-local values, patch-pooled global keys, momentum blend.

    The map is mirror-padded to the next perfect squares ``H'×W'`` (extra row /
    column at the bottom / right; replicate padding when the map is too small
    for reflect), projected (Q, K: C→C/r; V: C→C), cut into ``√H'×√W'``
    patches of ``√H'×√W'`` pixels, attended, cropped back, blended.
    ``last_map`` is the mean attention each key patch receives ``(B, √H', √W')``.
    """

    def __init__(self, channels: int, reduction: int = 32):
        super().__init__()
        inner = max(1, channels // reduction)
        self.q = nn.Conv2d(channels, inner, 1)
        self.k = nn.Conv2d(channels, inner, 1)
        self.v = nn.Conv2d(channels, channels, 1)
        self.momentum = LearnableMomentum()
        self.last_map = None

    def forward(self, x):
        b, c, h, w = x.shape
        hp, wp = _next_square(h), _next_square(w)
        ph, pw = hp - h, wp - w
        pad = (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2)
        if any(pad):
            mode = "reflect" if max(pad[0], pad[1]) < w and max(pad[2], pad[3]) < h else "replicate"
            xp = F.pad(x, pad, mode=mode)
        else:
            xp = x
        gh, gw = math.isqrt(hp), math.isqrt(wp)  # patches down/across; a patch is gh x gw pixels
        q, k, v = self.q(xp), self.k(xp), self.v(xp)
        ci = q.shape[1]
        k_pool = F.adaptive_avg_pool2d(k, (gh, gw)).flatten(2).transpose(1, 2)  # B, T, ci

        def patches(t):  # B, C, H', W' -> B, P, T, C  (P patches of T = gh*gw pixels)
            cc = t.shape[1]
            t = t.reshape(b, cc, gh, hp // gh, gw, wp // gw).permute(0, 2, 4, 3, 5, 1)
            return t.reshape(b, gh * gw, (hp // gh) * (wp // gw), cc)

        scores = patches(q) @ k_pool[:, None].transpose(2, 3) / math.sqrt(ci)  # B, P, T, T
        att = torch.softmax(scores, dim=-1)
        y = att @ patches(v)  # B, P, T, C
        y = y.reshape(b, gh, gw, hp // gh, wp // gw, c).permute(0, 5, 1, 3, 2, 4).reshape(b, c, hp, wp)
        y = y[:, :, pad[2]:pad[2] + h, pad[0]:pad[0] + w]
        self.last_map = att.mean((1, 2)).reshape(b, gh, gw).detach()
        return self.momentum(y, x)


class ChannelChunkingAttention(nn.Module):
    """CA of [CER] Eq. 13–16: √SC chunks of √SC channels, chunk-pooled keys, momentum blend.

    ``SC = ⌈√C⌉²``. One shared ``Conv1×1(C→SC)`` gives Q = K = V (the form
    that reproduces the tables); ``separate_qkv=True`` uses three convs as the
    text's Eq. 13 shows. ``last_map`` is the chunk-averaged ``(B, g, g)`` channel attention.
    """

    def __init__(self, channels: int, separate_qkv: bool = False):
        super().__init__()
        self.sc = _next_square(channels)
        self.g = math.isqrt(self.sc)
        self.separate_qkv = bool(separate_qkv)
        self.qkv = nn.Conv2d(channels, self.sc * (3 if separate_qkv else 1), 1)
        self.proj = nn.Conv2d(self.sc, channels, 1)
        self.momentum = LearnableMomentum()
        self.last_map = None

    def forward(self, x):
        b, c, h, w = x.shape
        g = self.g
        u = self.qkv(x).reshape(b, -1, g, g, h * w)
        q, k, v = (u[:, 0], u[:, 1], u[:, 2]) if self.separate_qkv else (u[:, 0],) * 3
        k_pool = k.mean(2)  # B, g(chunks), HW
        att = torch.softmax(q @ k_pool[:, None].transpose(2, 3) / math.sqrt(h * w), dim=-1)  # B, g, g, g
        y = (att @ v).reshape(b, self.sc, h, w)
        self.last_map = att.mean(1).detach()
        return self.momentum(self.proj(y), x)


class PCA(nn.Module):
    """PA and CA combined: ``"serial"`` CA(PA(x)) or ``"parallel"`` PA(x) + CA(x) (SPEC §1.4.7)."""

    def __init__(self, channels: int, mode: str = "parallel"):
        super().__init__()
        if mode not in ("serial", "parallel"):
            raise ValueError(f"PCA mode must be 'serial' or 'parallel', got {mode!r}")
        self.mode = mode
        self.pa = SpatialChunkingAttention(channels)
        self.ca = ChannelChunkingAttention(channels)

    def forward(self, x):
        if self.mode == "serial":
            return self.ca(self.pa(x))
        return self.pa(x) + self.ca(x)
