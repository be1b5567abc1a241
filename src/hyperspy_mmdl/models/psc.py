"""[PSC] PSC-Fusion: SEM image + composition + process → PCE (SPEC §1.1).

``psc_encoder`` is the image branch g1 alone (Table S4 with BasicBlocks,
1×224² → 32); ``psc_fusion`` adds the composition MLP g2 (d_c-16-20-32), the
process embeddings g3 (8 per field, then 16-20-32), the adaptive sigmoid
fusion and the 32-neuron regressor; ``psc_fusion_ensemble`` averages several of
them (a deep ensemble, the tabular benchmark's model).

Modality masking: ``modalities=("composition", "process")`` at build time, or
``model.set_modality_mask(["image"])`` later, removes a branch's term from
the fused vector; with the image branch masked ``image`` may be ``None``.
"""

from __future__ import annotations

import torch
from torch import nn

from .attention import make_slot_attention
from .registry import register_model

__all__ = ["PSCEncoder", "PSCFusion", "PSCFusionEnsemble", "BasicBlock", "psc_encoder", "psc_fusion",
           "psc_fusion_ensemble", "MODALITIES"]

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
        Numeric process values (temperatures, the grain feature factors measured
        from the SEM image ...) concatenated with g3's embeddings before its first
        Linear (SPEC §1.1.4).
    composition_numeric_dim : int
        Numeric composition values (band gap, ion fractions ...) concatenated
        with the multi-hot vector before g2's first Linear.
    attention : {"cbam", "fca", "self", "none"}
    gate : {"vector", "scalar"}
    modalities : sequence of str
        Branches switched on (default all three).
    embed_dim, hidden : int, tuple
        Process embedding size (8) and the branch MLP widths (16, 20).
    dim : int
        Width of the modality vectors and of the regressor (32).
    dropout : float
        Dropout after each hidden layer of g2, g3 and the regressor (0: the
        paper's network).

    Notes
    -----
    A sample whose image is all NaN has no image: its image term is zero (a
    table where only some devices have an SEM image trains one model).

    The numeric inputs are one vector ``numeric`` of ``composition_numeric_dim +
    numeric_dim`` values (composition values first). They are standardised
    inside the model with the buffers ``numeric_mean`` / ``numeric_std`` (set from
    the training rows by :meth:`set_numeric_scaling`, saved with the weights);
    a missing value (NaN, or ``numeric=None``) becomes the training mean.
    A branch without any input (``composition_dim == 0`` and no numeric
    composition values, say) is off for good.
    """

    def __init__(self, in_chans=1, composition_dim=36, process_sizes=(3, 12, 14, 8), numeric_dim=0,
                 attention="cbam", reduction=4, gate="vector", modalities=MODALITIES, embed_dim=8,
                 hidden=(16, 20), dim=32, composition_numeric_dim=0, dropout=0.0):
        super().__init__()
        if gate not in ("vector", "scalar"):
            raise ValueError(f"gate must be 'vector' or 'scalar', got {gate!r}")
        self.encoder = PSCEncoder(in_chans, attention, reduction, dim)
        h1, h2 = hidden
        self.composition_numeric_dim = int(composition_numeric_dim)
        self.numeric_dim = int(numeric_dim)
        self.dropout = float(dropout)
        comp_in = int(composition_dim) + self.composition_numeric_dim
        proc_in = embed_dim * len(process_sizes) + self.numeric_dim
        self.composition = _mlp(comp_in, h1, h2, dim, self.dropout)
        self.embeddings = nn.ModuleList(nn.Embedding(int(n), embed_dim) for n in process_sizes)
        self.process = _mlp(proc_in, h1, h2, dim, self.dropout)
        self.gates = nn.ModuleList(nn.Linear(dim, dim if gate == "vector" else 1) for _ in MODALITIES)
        self.regressor = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(inplace=True),
                                       *([nn.Dropout(self.dropout)] if self.dropout else []), nn.Linear(dim, 1))
        n_num = self.composition_numeric_dim + self.numeric_dim
        self.register_buffer("numeric_mean", torch.zeros(n_num))
        self.register_buffer("numeric_std", torch.ones(n_num))
        self.dim = dim
        #: branches without any input: off whatever the mask says
        self.absent = {m for m, n in (("composition", comp_in), ("process", proc_in)) if n == 0}
        self.mask: set = set()
        self.set_modality_mask([m for m in MODALITIES if m not in set(modalities)])

    def set_modality_mask(self, masked) -> None:
        """Switch the named branches off (``[]`` switches all on but those without inputs)."""
        masked = {str(m) for m in (masked or [])}
        bad = masked - set(MODALITIES)
        if bad:
            raise ValueError(f"unknown modality {sorted(bad)}; one of {MODALITIES}")
        if masked | self.absent == set(MODALITIES):
            raise ValueError("at least one modality must stay switched on"
                             + (f" ({', '.join(sorted(self.absent))}: no inputs)" if self.absent else ""))
        self.mask = masked | self.absent

    def set_numeric_scaling(self, mean, std) -> None:
        """Standardisation of the numeric inputs (training means and SDs; SD 0 counts as 1)."""
        mean = torch.as_tensor(mean, dtype=torch.float32).reshape(-1)
        std = torch.as_tensor(std, dtype=torch.float32).reshape(-1)
        if mean.numel() != self.numeric_mean.numel() or std.numel() != self.numeric_std.numel():
            raise ValueError(f"expected {self.numeric_mean.numel()} numeric means and SDs, got "
                             f"{mean.numel()} and {std.numel()}")
        std = torch.where(torch.isfinite(std) & (std > 0), std, torch.ones_like(std))
        self.numeric_mean.copy_(torch.nan_to_num(mean))
        self.numeric_std.copy_(std)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # files written before the numeric scaling buffers existed: identity scaling
        for name in ("numeric_mean", "numeric_std"):
            if prefix + name not in state_dict:
                state_dict[prefix + name] = getattr(self, name).detach().clone()
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def _numeric(self, numeric, ref, b):
        n = self.numeric_mean.numel()
        if not n:
            return None
        if numeric is None:
            return ref.new_zeros(b, n, dtype=torch.float32)
        x = numeric.float().to(ref.device).reshape(-1, n)
        if x.shape[0] != b:
            x = x.expand(b, n)
        return torch.nan_to_num((x - self.numeric_mean) / self.numeric_std, nan=0.0, posinf=0.0, neginf=0.0)

    def forward(self, image, composition, process, numeric=None, return_attention=False):
        masked = set(self.mask)
        ref = next(t for t in (image, composition, process) if t is not None)
        b = ref.shape[0]
        num = self._numeric(numeric, ref, b)
        kc = self.composition_numeric_dim
        vs, maps = [], {}
        if "image" in masked:
            vs.append(None)
        else:
            if image is None:
                raise ValueError("image is None but the image branch is switched on "
                                 "(mask it with set_modality_mask(['image']))")
            # a device without an SEM image (an all-NaN image in a training batch): no image term
            present = torch.isfinite(image.reshape(b, -1)).all(1)
            if bool(present.all()):
                vs.append(self.encoder.features(image))
                maps.update(self.encoder.attention_maps())
            else:
                v1 = image.new_zeros(b, self.dim, dtype=torch.float32)
                if bool(present.any()):
                    v1 = v1.index_put((present,), self.encoder.features(image[present]).float())
                vs.append(v1)
        if "composition" in masked:
            vs.append(None)
        else:
            parts = [composition.float().reshape(b, -1)] + ([num[:, :kc]] if kc else [])
            vs.append(self.composition(torch.cat(parts, 1)))
        if "process" in masked:
            vs.append(None)
        else:
            e = [emb(process[:, i].long()) for i, emb in enumerate(self.embeddings)]
            if self.numeric_dim:
                e.append(num[:, kc:])
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


def _mlp(n_in, h1, h2, dim, dropout):
    """``Linear(n_in→h1) → ReLU → Linear(h1→h2) → ReLU → Linear(h2→dim)`` (dropout after each ReLU)."""
    drop = [nn.Dropout(dropout)] if dropout else []
    return nn.Sequential(nn.Linear(n_in, h1), nn.ReLU(inplace=True), *drop, nn.Linear(h1, h2),
                         nn.ReLU(inplace=True), *drop, nn.Linear(h2, dim))


class _MeanHead(nn.Module):
    """The members' regressors averaged (the ensemble's ``f`` on a fused vector)."""

    def __init__(self, heads):
        super().__init__()
        self.heads = nn.ModuleList(heads)

    def forward(self, z):
        return torch.stack([h(z) for h in self.heads], 0).mean(0)


class PSCFusionEnsemble(nn.Module):
    """A deep ensemble of PSC-Fusion networks: the mean of the members' outputs and fusion gates.

    Every member is a :class:`PSCFusion` with the same configuration, trained
    on its own shuffles (and inner validation split) of the training rows; the
    prediction is the members' mean, in the standardised target of the card.

    Parameters
    ----------
    n_members : int
    **kwargs
        :class:`PSCFusion` options.
    """

    def __init__(self, n_members=5, **kwargs):
        super().__init__()
        if int(n_members) < 1:
            raise ValueError(f"n_members must be >= 1, got {n_members}")
        self.members = nn.ModuleList(PSCFusion(**kwargs) for _ in range(int(n_members)))
        #: in training, return every member's output ``(B, n_members)`` (each member is fitted by its own
        #: loss: the members share no weights, so a summed loss trains them as if one by one)
        self.member_outputs = False

    @property
    def mask(self) -> set:
        return set(self.members[0].mask)

    @property
    def absent(self) -> set:
        return set(self.members[0].absent)

    @property
    def encoder(self):
        return self.members[0].encoder

    @property
    def regressor(self):
        """The members' regressors averaged (for the all-modalities-off baseline)."""
        return _MeanHead([m.regressor for m in self.members])

    def set_modality_mask(self, masked) -> None:
        for m in self.members:
            m.set_modality_mask(masked)

    def set_numeric_scaling(self, mean, std) -> None:
        for m in self.members:
            m.set_numeric_scaling(mean, std)

    def forward(self, image, composition, process, numeric=None, return_attention=False):
        outs = [m(image, composition, process, numeric=numeric, return_attention=return_attention)
                for m in self.members]
        if not return_attention:
            if self.member_outputs and self.training:
                return torch.stack(outs, 1)
            return torch.stack(outs, 0).mean(0)
        maps = dict(outs[0][1])
        maps["fusion_weights"] = torch.stack([o[1]["fusion_weights"] for o in outs], 0).mean(0)
        return torch.stack([o[0] for o in outs], 0).mean(0), maps


@register_model(input_size=(1, 224, 224), num_classes=32)
def psc_encoder(num_classes=32, in_chans=1, attention="cbam", reduction=4, head=False):
    """[PSC] image encoder g1 (≈79.4 k params); returns the 32-d v1, or logits when ``head=True``."""
    if not head and num_classes != 32:
        raise ValueError(f"psc_encoder without head returns the 32-d feature v1; got num_classes="
                         f"{num_classes}: pass head=True for a {num_classes}-class linear head")
    return PSCEncoder(in_chans, attention, reduction, 32, num_classes if head else None)


def _fusion_kwargs(in_chans, composition_dim, process_sizes, numeric_dim, attention, reduction, gate, modalities,
                   embed_dim, hidden, dim, composition_numeric_dim, dropout):
    return dict(in_chans=in_chans, composition_dim=composition_dim, process_sizes=tuple(process_sizes),
                numeric_dim=numeric_dim, attention=attention, reduction=reduction, gate=gate,
                modalities=tuple(modalities), embed_dim=embed_dim, hidden=tuple(hidden), dim=dim,
                composition_numeric_dim=composition_numeric_dim, dropout=dropout)


@register_model(input_size=(1, 224, 224), num_classes=1)
def psc_fusion(num_classes=1, in_chans=1, composition_dim=36, process_sizes=(3, 12, 14, 8), numeric_dim=0,
               attention="cbam", reduction=4, gate="vector", modalities=MODALITIES, embed_dim=8,
               hidden=(16, 20), dim=32, composition_numeric_dim=0, dropout=0.0):
    """[PSC] PSC-Fusion PCE regressor.

    ``forward(image, composition, process, numeric=None, return_attention=False)``.
    """
    if num_classes != 1:
        raise ValueError(f"psc_fusion predicts one value (PCE); num_classes must be 1, got {num_classes}")
    return PSCFusion(**_fusion_kwargs(in_chans, composition_dim, process_sizes, numeric_dim, attention, reduction,
                                      gate, modalities, embed_dim, hidden, dim, composition_numeric_dim, dropout))


@register_model(input_size=(1, 224, 224), num_classes=1)
def psc_fusion_ensemble(num_classes=1, in_chans=1, composition_dim=36, process_sizes=(3, 12, 14, 8),
                        numeric_dim=0, attention="cbam", reduction=4, gate="vector", modalities=MODALITIES,
                        embed_dim=8, hidden=(16, 20), dim=32, composition_numeric_dim=0, dropout=0.0,
                        n_members=5):
    """A deep ensemble of ``n_members`` PSC-Fusion regressors (mean prediction); same inputs as ``psc_fusion``."""
    if num_classes != 1:
        raise ValueError(f"psc_fusion_ensemble predicts one value (PCE); num_classes must be 1, got {num_classes}")
    return PSCFusionEnsemble(n_members, **_fusion_kwargs(in_chans, composition_dim, process_sizes, numeric_dim,
                                                         attention, reduction, gate, modalities, embed_dim, hidden,
                                                         dim, composition_numeric_dim, dropout))
