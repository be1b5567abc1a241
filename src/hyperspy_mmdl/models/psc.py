"""[PSC] PSC-Fusion: SEM image + composition + process → PCE (SPEC §1.1).

``psc_encoder`` is the image branch g1 alone (Table S4 with BasicBlocks,
1×224² → 32); ``psc_fusion`` adds the composition MLP g2 (d_c-16-20-32), the
process embeddings g3 (8 per field, then 16-20-32), the adaptive sigmoid
fusion and the 32-neuron regressor.

Modality masking: ``modalities=("composition", "process")`` at build time, or
``model.set_modality_mask(["image"])`` later, removes a branch's term from
the fused vector; with the image branch masked ``image`` may be ``None``.
"""

from __future__ import annotations

import torch
from torch import nn

from .attention import make_slot_attention
from .registry import register_model

__all__ = ["PSCEncoder", "PSCFusion", "BasicBlock", "psc_encoder", "psc_fusion", "MODALITIES"]

MODALITIES = ("image", "composition", "process")


class BasicBlock(nn.Module):
    """ResNet BasicBlock; 1×1 conv + BN shortcut when the channel count changes."""

    def __init__(self, cin, cout):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = (nn.Identity() if cin == cout else
                         nn.Sequential(nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout)))

    def forward(self, x):
        y = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        return self.relu(y + self.shortcut(x))


class PSCEncoder(nn.Module):
    """Image encoder g1: stage 1 conv-BN-ReLU-pool + attention slot, three BasicBlock stages
    (16, 32, 64) each followed by a 2×2 pool, 1×1 compression to ``out_dim``, GAP.

    Parameters
    ----------
    in_chans : int
    attention : {"cbam", "fca", "self", "none"}
    reduction : int
        CBAM / FCA reduction r (4).
    num_classes : int or None
        When given, a linear head ``out_dim → num_classes`` (the encoder used alone as a classifier).
    """

    def __init__(self, in_chans=1, attention="cbam", reduction=4, out_dim=32, num_classes=None):
        super().__init__()
        self.stage1 = nn.Sequential(nn.Conv2d(in_chans, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16),
                                    nn.ReLU(inplace=True), nn.MaxPool2d(2, 2))
        self.attention_kind = "none" if attention is None else str(attention).lower()
        self.attn = make_slot_attention(self.attention_kind, 16, reduction)
        self.stage2 = BasicBlock(16, 16)
        self.stage3 = BasicBlock(16, 32)
        self.stage4 = BasicBlock(32, 64)
        self.pool = nn.MaxPool2d(2, 2)
        self.compress = nn.Sequential(nn.Conv2d(64, out_dim, 1, bias=False), nn.BatchNorm2d(out_dim),
                                      nn.ReLU(inplace=True))
        self.head = nn.Linear(out_dim, num_classes) if num_classes else None

    def features(self, x):
        """``(B, C, H, W)`` → ``(B, out_dim)`` (v1)."""
        if min(x.shape[-2:]) < 16:
            raise ValueError(f"the PSC encoder needs at least 16×16 inputs (four 2× pools); got {tuple(x.shape[-2:])}")
        x = self.attn(self.stage1(x))
        for stage in (self.stage2, self.stage3, self.stage4):
            x = self.pool(stage(x))
        return self.compress(x).mean((2, 3))

    def attention_maps(self) -> dict:
        m = getattr(self.attn, "last_map", None)
        if m is None:
            return {}
        key = {"cbam": "cbam_spatial", "fca": "fca_channel", "self": "self_attention"}[self.attention_kind]
        return {key: m}

    def forward(self, x, return_attention=False):
        v = self.features(x)
        out = self.head(v) if self.head is not None else v
        return (out, self.attention_maps()) if return_attention else out


class PSCFusion(nn.Module):
    """PSC-Fusion: ``PCE = f(Σ_i w_i ⊙ v_i)``, ``w_i = sigmoid(W_i v_i + b_i)``.

    Parameters
    ----------
    in_chans : int
    composition_dim : int
        Length of the multi-hot composition vector (36 for the SPEC §3.1.8 defaults).
    process_sizes : sequence of int
        Embedding table size per process field (``len(tokens) + 1``; index 0 = unknown).
    numeric_dim : int
        Standardised numeric process values concatenated before g3's first Linear.
    attention : {"cbam", "fca", "self", "none"}
    gate : {"vector", "scalar"}
    modalities : sequence of str
        Branches switched on (default all three).
    embed_dim, hidden : int, tuple
        Process embedding size (8) and the branch MLP widths (16, 20).
    """

    def __init__(self, in_chans=1, composition_dim=36, process_sizes=(3, 12, 14, 8), numeric_dim=0,
                 attention="cbam", reduction=4, gate="vector", modalities=MODALITIES, embed_dim=8,
                 hidden=(16, 20), dim=32):
        super().__init__()
        if gate not in ("vector", "scalar"):
            raise ValueError(f"gate must be 'vector' or 'scalar', got {gate!r}")
        self.encoder = PSCEncoder(in_chans, attention, reduction, dim)
        h1, h2 = hidden
        self.composition = nn.Sequential(nn.Linear(composition_dim, h1), nn.ReLU(inplace=True),
                                         nn.Linear(h1, h2), nn.ReLU(inplace=True), nn.Linear(h2, dim))
        self.embeddings = nn.ModuleList(nn.Embedding(int(n), embed_dim) for n in process_sizes)
        self.numeric_dim = int(numeric_dim)
        self.process = nn.Sequential(nn.Linear(embed_dim * len(process_sizes) + self.numeric_dim, h1),
                                     nn.ReLU(inplace=True), nn.Linear(h1, h2), nn.ReLU(inplace=True),
                                     nn.Linear(h2, dim))
        self.gates = nn.ModuleList(nn.Linear(dim, dim if gate == "vector" else 1) for _ in MODALITIES)
        self.regressor = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(inplace=True), nn.Linear(dim, 1))
        self.dim = dim
        self.mask: set = set()
        self.set_modality_mask([m for m in MODALITIES if m not in set(modalities)])

    def set_modality_mask(self, masked) -> None:
        """Switch the named branches off (``[]`` switches all on)."""
        masked = {str(m) for m in (masked or [])}
        bad = masked - set(MODALITIES)
        if bad:
            raise ValueError(f"unknown modality {sorted(bad)}; one of {MODALITIES}")
        if masked == set(MODALITIES):
            raise ValueError("at least one modality must stay switched on")
        self.mask = masked

    def forward(self, image, composition, process, numeric=None, return_attention=False):
        masked = set(self.mask)
        ref = next(t for t in (image, composition, process) if t is not None)
        b = ref.shape[0]
        vs, maps = [], {}
        if "image" in masked:
            vs.append(None)
        else:
            if image is None:
                raise ValueError("image is None but the image branch is switched on "
                                 "(mask it with set_modality_mask(['image']))")
            vs.append(self.encoder.features(image))
            maps.update(self.encoder.attention_maps())
        vs.append(None if "composition" in masked else self.composition(composition.float()))
        if "process" in masked:
            vs.append(None)
        else:
            e = [emb(process[:, i].long()) for i, emb in enumerate(self.embeddings)]
            if self.numeric_dim:
                if numeric is None:
                    raise ValueError(f"this model takes {self.numeric_dim} numeric process values (numeric=)")
                e.append(numeric.float())
            vs.append(self.process(torch.cat(e, 1)))
        z = ref.new_zeros(b, self.dim, dtype=torch.float32)
        ws = []
        for v, gate in zip(vs, self.gates):
            if v is None:
                ws.append(ref.new_zeros(b, gate.out_features, dtype=torch.float32))
                continue
            w = torch.sigmoid(gate(v))
            z = z + w * v
            ws.append(w)
        out = self.regressor(z)[:, 0]
        if not return_attention:
            return out
        maps["fusion_weights"] = torch.stack(ws, 1).detach()
        return out, maps


@register_model(input_size=(1, 224, 224), num_classes=32)
def psc_encoder(num_classes=32, in_chans=1, attention="cbam", reduction=4, head=False):
    """[PSC] image encoder g1 (≈79.4 k params); returns the 32-d v1, or logits when ``head=True``."""
    if not head and num_classes != 32:
        raise ValueError(f"psc_encoder without head returns the 32-d feature v1; got num_classes="
                         f"{num_classes}: pass head=True for a {num_classes}-class linear head")
    return PSCEncoder(in_chans, attention, reduction, 32, num_classes if head else None)


@register_model(input_size=(1, 224, 224), num_classes=1)
def psc_fusion(num_classes=1, in_chans=1, composition_dim=36, process_sizes=(3, 12, 14, 8), numeric_dim=0,
               attention="cbam", reduction=4, gate="vector", modalities=MODALITIES, embed_dim=8,
               hidden=(16, 20)):
    """[PSC] PSC-Fusion PCE regressor; ``forward(image, composition, process, return_attention=False)``."""
    if num_classes != 1:
        raise ValueError(f"psc_fusion predicts one value (PCE); num_classes must be 1, got {num_classes}")
    return PSCFusion(in_chans, composition_dim, tuple(process_sizes), numeric_dim, attention, reduction, gate,
                     tuple(modalities), embed_dim, tuple(hidden))
