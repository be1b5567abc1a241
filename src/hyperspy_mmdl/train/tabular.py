"""PCE tables for training: device records (composition, process, optional SEM image) with a PCE target.

The vocabularies and encoders live in the core module :mod:`hyperspy_mmdl.tabular`
(inference encodes new records with them); this module reads and encodes whole
tables (:func:`read_pce_table`), builds classical feature matrices
(:func:`tabular_features`) and the PSC-Fusion dataset (:class:`PCEDataset`).
Vocabularies are read from the data, with the SPEC Table S1 lists available as a
fixed alternative (``vocabulary="spec"``).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..tabular import (  # noqa: F401  (re-exported: the names train code and tests use)
    DEFAULT_COMPOSITION_COLUMNS,
    DEFAULT_PROCESS_COLUMNS,
    DEFAULT_TARGET,
    FEATURE_FACTORS,
    SPEC_VOCABULARIES,
    _missing,
    _process_token,
    _tokens,
    build_vocabularies,
    encode_composition,
    encode_process,
    read_table,
)

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
