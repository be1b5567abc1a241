"""PCE tables: device records (composition, process, optional SEM image) with a PCE target.

Columns default to the Perovskite Database names (Jacobsson et al. 2022) for the
fields of SPEC §3.1.8; vocabularies are read from the data, with the SPEC
Table S1 lists available as a fixed alternative (``vocabulary="spec"``).

Encoding (SPEC §1.1.3–1.1.4):

* composition fields → one multi-hot vector; a cell such as
  ``"TiO2-c | TiO2-mp"`` (layers ``|``, mixtures ``;``) sets one slot per
  token; every field has a trailing ``unknown`` slot set for missing/unseen
  values;
* process fields → one integer per field for ``nn.Embedding``; 0 is
  unknown/missing/rare.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = [
    "DEFAULT_TARGET",
    "DEFAULT_COMPOSITION_COLUMNS",
    "DEFAULT_PROCESS_COLUMNS",
    "SPEC_VOCABULARIES",
    "FEATURE_FACTORS",
    "PCETable",
    "read_table",
    "read_pce_table",
    "build_vocabularies",
    "encode_composition",
    "encode_process",
    "tabular_features",
    "PCEDataset",
]

DEFAULT_TARGET = "JV_default_PCE"

#: SPEC §3.1.8 composition fields → Perovskite Database columns
DEFAULT_COMPOSITION_COLUMNS = {
    "perovskite_type": "Perovskite_composition_short_form",
    "etl": "ETL_stack_sequence",
    "htl": "HTL_stack_sequence",
    "htl_additive": "HTL_additives_compounds",
}
#: SPEC §3.1.8 process fields → Perovskite Database columns
DEFAULT_PROCESS_COLUMNS = {
    "deposition_process": "Perovskite_deposition_number_of_deposition_steps",
    "deposition_method": "Perovskite_deposition_procedure",
    "solvent": "Perovskite_deposition_solvents",
    "antisolvent": "Perovskite_deposition_quenching_media",
}

#: SPEC §3.1.8 (PSC Table S1) category lists
SPEC_VOCABULARIES = {
    "perovskite_type": ["MAPbI3", "MAPbBr3", "MAPbBr3-xClx", "MAPbI3-xBrx", "MAPbI3-xClx", "MASn1-xPbxI3",
                        "FA-based", "Cs-based", "Sn-based", "mixed-cation", "mixed-halide"],
    "etl": ["C60", "SnO2", "TiO2", "doped TiO2", "ZnO", "doped ZnO", "Fe2O3", "graphene", "PCBM",
            "doped PCBM", "PCBM+C60", "none"],
    "htl": ["Spiro-OMeTAD", "CuSCN", "P3HT", "PEDOT", "PTAA", "SWNT", "none"],
    "htl_additive": ["LiTFSI+TBP", "LiTFSI+TBP+FK102", "LiTFSI+TBP+FK209", "LiTFSI", "LiTFSI+2,6-lutidine",
                     "none"],
    "deposition_process": ["one-step", "two-step"],
    "deposition_method": ["spin", "spin 2-3", "spin-dip", "spin 2-3-dip", "dip coating", "VASP", "CVD",
                          "evaporation-spin", "spin-spray", "spray", "spin-dripping"],
    "solvent": ["DMF", "DMA", "DMF+DMSO", "DMF+CHP", "DMF+DIO", "DMF+GBL", "DMF+H3P", "DMF+HI", "DMSO",
                "DMSO+GBL", "DMSO+SnF2", "GBL", "2-methoxyethanol+CHP"],
    "antisolvent": ["chlorobenzene", "toluene", "diethyl ether", "trifluorotoluene", "ethyl acetate",
                    "ethanol", "none"],
}

#: SPEC §3.1.7 feature-factor vector (names of hyperspy_mmdl.grains.summarize)
FEATURE_FACTORS = ["mean_ecd", "mean_major_axis", "mean_aspect_ratio", "gbld", "std_ecd",
                   "std_aspect_ratio"]

_MISSING = {"", "nan", "unknown", "none known", "n/a", "na"}
_SPLIT = re.compile(r"\s*(?:\||;)\s*")


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value)) or str(value).strip().lower() in _MISSING


def _tokens(value) -> list[str]:
    if _missing(value):
        return []
    return [t for t in _SPLIT.split(str(value).strip()) if t and t.lower() not in _MISSING]


def _process_token(value) -> str | None:
    if _missing(value):
        return None
    text = str(value).strip()
    try:  # 1.0 and 1 are the same category
        f = float(text)
        if f.is_integer():
            text = str(int(f))
    except ValueError:
        pass
    return text


def read_table(path):
    """Read a CSV (UTF-8, UTF-8 with BOM or latin-1, auto-detected) into a DataFrame."""
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"table not found: {path}")
    for enc in ("utf-8-sig", "latin-1"):
        try:
            return pd.read_csv(path, encoding=enc, low_memory=False)
        except UnicodeDecodeError:
            continue
    raise ValueError(f"{path}: cannot decode the CSV")  # pragma: no cover - latin-1 never fails


def build_vocabularies(frame, composition: dict, process: dict, *, source: str = "data",
                       min_count: int = 2) -> dict:
    """Token lists per field.

    Parameters
    ----------
    frame : DataFrame
    composition, process : dict
        ``{field: column}`` maps.
    source : {"data", "spec"}
        ``"data"``: tokens seen at least ``min_count`` times in the column,
        most frequent first; ``"spec"``: the SPEC §3.1.8 lists.
    """
    vocab = {"composition": {}, "process": {}, "columns": {"composition": dict(composition),
                                                          "process": dict(process)}, "source": source}
    for kind, mapping in (("composition", composition), ("process", process)):
        for name, column in mapping.items():
            if source == "spec":
                if name not in SPEC_VOCABULARIES:
                    raise ValueError(f"no SPEC vocabulary for field {name!r}; use source='data'")
                vocab[kind][name] = list(SPEC_VOCABULARIES[name])
                continue
            counts: dict[str, int] = {}
            for v in frame[column] if column in frame else []:
                toks = _tokens(v) if kind == "composition" else [_process_token(v)]
                for t in toks:
                    if t is not None:
                        counts[t] = counts.get(t, 0) + 1
            vocab[kind][name] = [t for t, c in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
                                 if c >= min_count]
    return vocab


def encode_composition(frame, vocab: dict) -> np.ndarray:
    """Multi-hot ``(N, Σ(len(tokens_f) + 1))`` float32; the last slot of each field is 'unknown'."""
    blocks = []
    for name, tokens in vocab["composition"].items():
        column = vocab["columns"]["composition"][name]
        index = {t: i for i, t in enumerate(tokens)}
        block = np.zeros((len(frame), len(tokens) + 1), dtype=np.float32)
        values = frame[column] if column in frame else [None] * len(frame)
        for r, v in enumerate(values):
            hit = False
            for t in _tokens(v):
                if t in index:
                    block[r, index[t]] = 1.0
                    hit = True
            if not hit:
                block[r, -1] = 1.0
        blocks.append(block)
    return np.concatenate(blocks, axis=1) if blocks else np.zeros((len(frame), 0), np.float32)


def encode_process(frame, vocab: dict) -> np.ndarray:
    """Indices ``(N, n_fields)`` int64; 0 = unknown, token i → i + 1."""
    cols = []
    for name, tokens in vocab["process"].items():
        column = vocab["columns"]["process"][name]
        index = {t: i + 1 for i, t in enumerate(tokens)}
        values = frame[column] if column in frame else [None] * len(frame)
        cols.append([index.get(_process_token(v), 0) for v in values])
    return np.asarray(cols, dtype=np.int64).T.reshape(len(frame), len(cols))


@dataclass
class PCETable:
    """An encoded PCE table (see :func:`read_pce_table`)."""

    frame: object
    target: np.ndarray
    composition: np.ndarray
    process: np.ndarray
    numeric: np.ndarray
    vocabularies: dict
    target_name: str = DEFAULT_TARGET
    target_unit: str = "%"
    numeric_columns: list = field(default_factory=list)
    image_paths: list | None = None
    source: str = ""

    def __len__(self):
        return int(self.target.size)

    @property
    def process_sizes(self) -> list[int]:
        """Embedding table sizes ``len(tokens) + 1`` per process field."""
        return [len(t) + 1 for t in self.vocabularies["process"].values()]

    @property
    def composition_dim(self) -> int:
        return int(self.composition.shape[1])

    def summary(self) -> dict:
        return {"source": self.source, "n": len(self), "target": self.target_name,
                "target_range": [float(self.target.min()), float(self.target.max())],
                "composition_dim": self.composition_dim, "process_sizes": self.process_sizes,
                "numeric_columns": list(self.numeric_columns),
                "images": self.image_paths is not None}


def read_pce_table(path_or_frame, *, target: str = DEFAULT_TARGET, target_unit: str = "%",
                   composition: dict | None = None, process: dict | None = None,
                   numeric: list | None = None, image_column: str | None = None,
                   vocabulary: str | dict = "data", min_count: int = 2) -> PCETable:
    """Read and encode a PCE table.

    Parameters
    ----------
    path_or_frame : str, Path or DataFrame
        CSV file (encoding auto-detected) or a DataFrame.
    target : str
        PCE column (default the Perovskite Database ``JV_default_PCE``).
    composition, process : dict, optional
        ``{field: column}``; default :data:`DEFAULT_COMPOSITION_COLUMNS` and
        :data:`DEFAULT_PROCESS_COLUMNS`. Default columns absent from the table
        are dropped with a warning; explicitly requested ones raise.
    numeric : list of str, optional
        Numeric columns (feature factors, band gap, temperatures); non-numeric
        cells become NaN and are later filled with the training median.
    image_column : str, optional
        Column of SEM image paths (relative to the CSV's folder).
    vocabulary : {"data", "spec"} or dict
        Build the vocabularies from the data / use SPEC §3.1.8 / use a given
        vocabulary (e.g. from a model card, to encode new data the same way).
    min_count : int
        Rarer tokens map to "unknown" (data vocabularies only).
    """
    import pandas as pd

    if isinstance(path_or_frame, pd.DataFrame):
        frame, source, base = path_or_frame.reset_index(drop=True), "<DataFrame>", Path(".")
    else:
        frame, source = read_table(path_or_frame), str(path_or_frame)
        base = Path(path_or_frame).parent
    if target not in frame:
        raise ValueError(f"{source}: no target column {target!r}")
    y = pd.to_numeric(frame[target], errors="coerce")
    keep = y.notna().to_numpy()
    if not keep.all():
        warnings.warn(f"{source}: {int((~keep).sum())} rows without a numeric {target} dropped", UserWarning,
                      stacklevel=2)
        frame = frame.loc[keep].reset_index(drop=True)
        y = y[keep].reset_index(drop=True)
    if isinstance(vocabulary, dict):
        vocab = vocabulary
        composition, process = vocab["columns"]["composition"], vocab["columns"]["process"]
    else:
        composition = _columns(frame, composition, DEFAULT_COMPOSITION_COLUMNS, source)
        process = _columns(frame, process, DEFAULT_PROCESS_COLUMNS, source)
        vocab = build_vocabularies(frame, composition, process, source=vocabulary, min_count=min_count)
    numeric = list(numeric or [])
    for c in numeric:
        if c not in frame:
            raise ValueError(f"{source}: no numeric column {c!r}")
    num = (np.stack([pd.to_numeric(frame[c], errors="coerce").to_numpy(float) for c in numeric], axis=1)
           if numeric else np.zeros((len(frame), 0)))
    images = None
    if image_column:
        if image_column not in frame:
            raise ValueError(f"{source}: no image column {image_column!r}")
        images = [str((base / str(p)).resolve()) if not _missing(p) else None for p in frame[image_column]]
    vocab["numeric"] = numeric
    return PCETable(frame=frame, target=y.to_numpy(np.float32), composition=encode_composition(frame, vocab),
                    process=encode_process(frame, vocab), numeric=num.astype(np.float32), vocabularies=vocab,
                    target_name=target, target_unit=target_unit, numeric_columns=numeric,
                    image_paths=images, source=source)


def _columns(frame, given, default, source):
    if given is not None:
        missing = [c for c in given.values() if c not in frame]
        if missing:
            raise ValueError(f"{source}: columns not found: {missing}")
        return dict(given)
    present = {k: v for k, v in default.items() if v in frame}
    absent = [v for v in default.values() if v not in frame]
    if absent:
        warnings.warn(f"{source}: default columns absent, fields skipped: {absent}", UserWarning, stacklevel=3)
    return present


def tabular_features(table: PCETable, rows=None, *, numeric_fill=None):
    """Flat feature matrix for classical models: composition multi-hot, process one-hot, numeric.

    Returns ``(X, names, fill)``; NaNs in numeric columns are replaced with
    ``numeric_fill`` (default: the median over ``rows``), returned as ``fill``
    so test folds use training medians.
    """
    rows = np.arange(len(table)) if rows is None else np.asarray(rows)
    comp = table.composition[rows]
    onehots, names = [], []
    for (name, tokens), size, j in zip(table.vocabularies["process"].items(), table.process_sizes,
                                        range(table.process.shape[1])):
        oh = np.zeros((rows.size, size), np.float32)
        oh[np.arange(rows.size), table.process[rows, j]] = 1
        onehots.append(oh)
        names += [f"{name}=unknown"] + [f"{name}={t}" for t in tokens]
    num = table.numeric[rows].astype(np.float64)
    if numeric_fill is None:
        numeric_fill = (np.nanmedian(num, axis=0) if num.shape[1] and num.shape[0] else np.zeros(num.shape[1]))
        numeric_fill = np.where(np.isfinite(numeric_fill), numeric_fill, 0.0)
    num = np.where(np.isfinite(num), num, numeric_fill)
    comp_names = []
    for name, tokens in table.vocabularies["composition"].items():
        comp_names += [f"{name}:{t}" for t in tokens] + [f"{name}:unknown"]
    X = np.concatenate([comp] + onehots + [num.astype(np.float32)], axis=1)
    return X, comp_names + names + list(table.numeric_columns), numeric_fill


class PCEDataset:
    """Items ``((image, composition, process), pce)`` for PSC-Fusion.

    Parameters
    ----------
    table : PCETable
    rows : array_like of int
        Which rows.
    images : list of ndarray (1, H, W), optional
        Pre-loaded, normalised images per table row (``None`` entries allowed);
        without images the image tensor is a ``(1, 1, 1)`` zero placeholder and
        the model's image branch must be masked.
    size : int
        Image side.
    target_mean, target_std : float
        Standardise the target (``(y − mean)/std``).
    augment : Augment, optional
    """

    def __init__(self, table: PCETable, rows, *, images=None, size: int = 224, target_mean: float = 0.0,
                 target_std: float = 1.0, augment=None, seed: int = 2024):
        self.table, self.rows = table, np.asarray(rows)
        self.images, self.size, self.augment, self.seed = images, int(size), augment, int(seed)
        self.mean, self.std = float(target_mean), float(target_std)
        self.rng = np.random.default_rng(self.seed)

    def set_epoch(self, epoch):
        self.rng = np.random.default_rng([self.seed, int(epoch)])

    def __len__(self):
        return int(self.rows.size)

    def __getitem__(self, i):
        import torch

        from . import transforms as T

        r = int(self.rows[i])
        img = None if self.images is None else self.images[r]
        if img is None:
            x = np.zeros((1, 1, 1) if self.images is None else (1, self.size, self.size), np.float32)
        elif self.augment is not None:
            x = self.augment(self.rng, img)
        else:
            x = T.center_crop(img, self.size)
        y = (float(self.table.target[r]) - self.mean) / self.std
        comp = torch.from_numpy(self.table.composition[r])
        proc = torch.from_numpy(self.table.process[r])
        return (torch.from_numpy(np.ascontiguousarray(x)), comp, proc), torch.tensor(y, dtype=torch.float32)
