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
    FIELD_SETS,
    SPEC_VOCABULARIES,
    _missing,
    _take_unit_rows,
    build_vocabularies,
    encode_composition,
    encode_process,
    find_grain_columns,
    find_image_column,
    grain_feature_columns,
    numeric_input_names,
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
    "load_table_images",
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

    @property
    def composition_numeric(self) -> list[str]:
        """Numeric columns that go with the composition (first in :attr:`numeric_columns`)."""
        return numeric_input_names(self.vocabularies)["composition"]

    @property
    def grain_features(self) -> dict:
        """``{column: {"factor", "unit"}}``: numeric columns that are grain feature factors."""
        return grain_feature_columns(self.vocabularies)

    @property
    def has_images(self) -> bool:
        """True when at least one row names an SEM image."""
        return self.image_paths is not None and any(p is not None for p in self.image_paths)

    def inputs(self) -> list[str]:
        """The inputs this table gives a model: ``image``, ``grain features``, ``composition``, ``process``."""
        out = ["image"] if self.has_images else []
        if self.grain_features:
            out.append("grain features")
        if self.composition_dim or self.composition_numeric:
            out.append("composition")
        if self.process_sizes or len(self.numeric_columns) > len(self.composition_numeric) + len(self.grain_features):
            out.append("process")
        return out

    def summary(self) -> dict:
        return {"source": self.source, "n": len(self), "target": self.target_name,
                "target_range": [float(self.target.min()), float(self.target.max())],
                "composition_dim": self.composition_dim, "process_sizes": self.process_sizes,
                "numeric_columns": list(self.numeric_columns),
                "grain_features": self.grain_features,
                "images": int(sum(p is not None for p in self.image_paths)) if self.image_paths else 0,
                "inputs": self.inputs()}


def read_pce_table(path_or_frame, *, target: str = DEFAULT_TARGET, target_unit: str | None = None,
                   composition: dict | None = None, process: dict | None = None,
                   numeric: list | None = None, composition_numeric: list | None = None,
                   grain_features=None, image_column: str | None = None, fields: str = "spec",
                   vocabulary: str | dict = "data", min_count: int = 2) -> PCETable:
    """Read and encode a PCE table.

    Parameters
    ----------
    path_or_frame : str, Path or DataFrame
        CSV file (encoding auto-detected; a units row under the header is read
        into ``attrs["units"]``) or a DataFrame.
    target : str
        PCE column (default the Perovskite Database ``JV_default_PCE``).
    target_unit : str, optional
        Unit of the target; default the table's units row, else ``"%"``.
    composition, process : dict, optional
        ``{field: column}``; default the field set ``fields``. Default columns
        absent from the table are dropped with a warning; explicitly requested
        ones raise.
    numeric : list of str, optional
        Numeric process columns (temperatures, times ...); non-numeric cells
        become NaN (the model fills in the training mean).
    composition_numeric : list of str, optional
        Numeric composition columns (band gap, ion fractions ...).
    grain_features : None, False or dict
        Columns holding SPEC §3.1.7 grain feature factors (``{column: factor}``
        or ``{column: {"factor", "unit"}}``); they are numeric process inputs
        that :func:`~hyperspy_mmdl.inference.predict_pce` fills from the grains
        measured on an image. ``None``: found by name
        (:func:`~hyperspy_mmdl.tabular.find_grain_columns`); ``False``: none.
    image_column : str, optional
        Column of SEM image paths (relative to the CSV's folder); ``None``: a
        column whose cells all name image files, if there is one
        (:func:`~hyperspy_mmdl.tabular.find_image_column`); ``""``: none.
    fields : {"spec", "extended"}
        The default field set (:data:`~hyperspy_mmdl.tabular.FIELD_SETS`).
    vocabulary : {"data", "spec"} or dict
        Build the vocabularies from the data / use SPEC §3.1.8 / use a given
        vocabulary (e.g. from a model card, to encode new data the same way).
    min_count : int
        Rarer tokens map to "unknown" (data vocabularies only).

    Notes
    -----
    A table with none of the field set's columns and no fields given (e.g.
    the grain-size table of ``malyadeb_grain_size_pce``) takes all its numeric
    columns as composition values, except the target, identifiers, the other
    device results (:data:`~hyperspy_mmdl.tabular.OUTCOME_COLUMNS`) and the
    grain features; a warning lists them.

    Examples
    --------
    >>> table = read_pce_table("devices.csv", fields="extended")   # doctest: +SKIP
    >>> table.inputs()                                              # doctest: +SKIP
    ['composition', 'process']
    """
    import pandas as pd

    if isinstance(path_or_frame, pd.DataFrame):
        frame, source, base = path_or_frame.reset_index(drop=True), "<DataFrame>", Path(".")
        frame = _take_unit_rows(frame)
    else:
        frame, source = read_table(path_or_frame), str(path_or_frame)
        base = Path(path_or_frame).parent
    units = dict(frame.attrs.get("units") or {})
    if target not in frame:
        raise ValueError(f"{source}: no target column {target!r}; columns: {list(map(str, frame.columns))}")
    y = pd.to_numeric(frame[target], errors="coerce")
    keep = y.notna().to_numpy()
    if not keep.all():
        warnings.warn(f"{source}: {int((~keep).sum())} rows without a numeric {target} dropped", UserWarning,
                      stacklevel=2)
        frame = frame.loc[keep].reset_index(drop=True)
        frame.attrs["units"] = units
        y = y[keep].reset_index(drop=True)
    if target_unit is None:
        target_unit = units.get(target) or "%"
    if isinstance(vocabulary, dict):
        vocab = dict(vocabulary)
        composition, process = vocab["columns"]["composition"], vocab["columns"]["process"]
        numeric_cols = [str(c) for c in vocab.get("numeric") or []]
        comp_numeric = numeric_input_names(vocab)["composition"]
        grains = grain_feature_columns(vocab)
    else:
        if fields not in FIELD_SETS:
            raise ValueError(f"fields must be one of {list(FIELD_SETS)}, got {fields!r}")
        d_comp, d_proc, d_cnum, d_pnum = FIELD_SETS[fields]
        nothing_given = composition is None and process is None and numeric is None and composition_numeric is None
        known = [c for c in list(d_comp.values()) + list(d_proc.values()) if c in frame]
        if grain_features is None:
            grains = find_grain_columns(frame, units)
        elif grain_features is False:
            grains = {}
        else:
            grains = _grain_spec(frame, grain_features, units, source)
        if nothing_given and not known:
            composition, process, numeric = {}, {}, []
            composition_numeric = _auto_numeric(frame, target, exclude=set(grains))
            warnings.warn(f"{source}: none of the {fields!r} device fields are columns of this table; numeric "
                          f"inputs: {composition_numeric}"
                          + (f", grain features: {list(grains)}" if grains else ""), UserWarning, stacklevel=2)
        composition = _columns(frame, composition, d_comp, source)
        process = _columns(frame, process, d_proc, source)
        if composition_numeric is None:
            composition_numeric = [c for c in d_cnum if c in frame]
        if numeric is None:
            numeric = [c for c in d_pnum if c in frame]
        comp_numeric = [str(c) for c in composition_numeric]
        # grain features are numeric process inputs (the film's morphology is the process's outcome)
        numeric_cols = comp_numeric + [str(c) for c in numeric if str(c) not in comp_numeric]
        numeric_cols += [c for c in grains if c not in numeric_cols]
        vocab = build_vocabularies(frame, composition, process, source=vocabulary, min_count=min_count)
        vocab["numeric"] = numeric_cols
        vocab["numeric_composition"] = comp_numeric
        vocab["grain_features"] = grains
        vocab["units"] = {c: units[c] for c in numeric_cols + [target] if c in units}
    absent = [c for c in numeric_cols if c not in frame]
    if absent and not isinstance(vocabulary, dict):
        raise ValueError(f"{source}: no numeric column {absent[0]!r}")
    if absent:  # encoding new data for a model: the model fills in its training mean
        warnings.warn(f"{source}: numeric inputs {absent} are not columns of this table: the model's training "
                      "means are used", UserWarning, stacklevel=2)
    num = (np.stack([pd.to_numeric(frame[c], errors="coerce").to_numpy(float) if c in frame
                     else np.full(len(frame), np.nan) for c in numeric_cols], axis=1)
           if numeric_cols else np.zeros((len(frame), 0)))
    if image_column is None:
        image_column = find_image_column(frame)
    images = None
    if image_column:
        if image_column not in frame:
            raise ValueError(f"{source}: no image column {image_column!r}")
        images = [str((base / str(p)).resolve()) if not _missing(p) else None for p in frame[image_column]]
    if not vocab["composition"] and not vocab["process"] and not numeric_cols and not images:
        raise ValueError(f"{source}: no inputs: none of the composition/process columns "
                         f"{list(FIELD_SETS[fields][0].values()) + list(FIELD_SETS[fields][1].values())} "
                         f"and no numeric or image columns; name them (composition=, process=, numeric=)")
    return PCETable(frame=frame, target=y.to_numpy(np.float32), composition=encode_composition(frame, vocab),
                    process=encode_process(frame, vocab), numeric=num.astype(np.float32), vocabularies=vocab,
                    target_name=target, target_unit=target_unit, numeric_columns=numeric_cols,
                    image_paths=images, source=source)


def _grain_spec(frame, given, units, source) -> dict:
    """``{column: {"factor", "unit"}}`` from a user's ``grain_features`` argument."""
    from ..tabular import GRAIN_FEATURE_UNITS

    found = find_grain_columns(frame, units)
    out = {}
    items = given.items() if isinstance(given, dict) else ((c, None) for c in given)
    for col, spec in items:
        if col not in frame:
            raise ValueError(f"{source}: no grain feature column {col!r}")
        if spec is None:
            if col not in found:
                raise ValueError(f"{source}: cannot tell which grain feature {col!r} is or its unit; "
                                 "pass {column: {'factor': 'mean_ecd', 'unit': 'nm'}}")
            out[col] = found[col]
            continue
        spec = {"factor": spec} if isinstance(spec, str) else dict(spec)
        factor = {"sd_ecd": "std_ecd", "sd_aspect_ratio": "std_aspect_ratio"}.get(spec["factor"], spec["factor"])
        if factor not in GRAIN_FEATURE_UNITS:
            raise ValueError(f"{source}: {col!r}: unknown grain feature {spec['factor']!r}; one of "
                             f"{list(GRAIN_FEATURE_UNITS)}")
        unit = spec.get("unit") or units.get(col) or (found.get(col) or {}).get("unit") or ""
        if GRAIN_FEATURE_UNITS[factor] != "ratio" and not unit:
            raise ValueError(f"{source}: {col!r}: the length unit of the grain feature {factor} is not known; "
                             "give it ({'factor': ..., 'unit': 'nm'})")
        out[col] = {"factor": factor, "unit": unit if GRAIN_FEATURE_UNITS[factor] != "ratio" else ""}
    return out


def _auto_numeric(frame, target, exclude=()) -> list[str]:
    """Numeric columns usable as inputs: not the target, an identifier, a device result or ``exclude``."""
    import pandas as pd

    from ..tabular import _ID_COLUMNS, OUTCOME_COLUMNS

    outcomes = {c.lower() for c in OUTCOME_COLUMNS}
    out = []
    for c in frame.columns:
        name = str(c)
        if name == target or name in exclude or name.lower() in outcomes or _ID_COLUMNS.match(name.strip()):
            continue
        values = pd.to_numeric(frame[c], errors="coerce")
        if values.notna().mean() >= 0.5 and values.nunique() > 1:
            out.append(name)
    return out


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

    The same inputs the deep model gets (grain features included, as numeric
    columns). Returns ``(X, names, fill)``; NaNs in numeric columns are
    replaced with ``numeric_fill`` (default: the median over ``rows``), returned
    as ``fill`` so test folds use training medians.
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
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN column: filled with 0
            numeric_fill = (np.nanmedian(num, axis=0) if num.shape[1] and num.shape[0] else np.zeros(num.shape[1]))
        numeric_fill = np.where(np.isfinite(numeric_fill), numeric_fill, 0.0)
    num = np.where(np.isfinite(num), num, numeric_fill)
    comp_names = []
    for name, tokens in table.vocabularies["composition"].items():
        comp_names += [f"{name}:{t}" for t in tokens] + [f"{name}:unknown"]
    X = np.concatenate([comp] + onehots + [num.astype(np.float32)], axis=1)
    return X, comp_names + names + list(table.numeric_columns), numeric_fill


def load_table_images(table: PCETable, *, in_chans: int = 1, pixel_size: float | None = None, unit: str = "µm",
                      normalization: str = "minmax", mask_data_bar: bool = True):
    """The SEM image of every row of ``table`` (``None`` where a row names none), as training sees them.

    Each file is read once (:func:`~hyperspy_mmdl.train.datasets.load_micrograph`:
    data bar cropped, resampled to ``pixel_size`` when given, normalised).

    Returns
    -------
    images : list of ndarray (C, H, W) or None
    pixel : (float or None, str)
        The pixel size and unit of the loaded images (``(None, "px")`` when
        they were not resampled and differ or are uncalibrated).
    """
    from .datasets import load_micrograph

    if not table.image_paths:
        return [None] * len(table), (None, "px")
    cache, cals = {}, []
    for p in table.image_paths:
        if p is not None and p not in cache:
            if not Path(p).is_file():
                raise FileNotFoundError(f"{table.source}: image {p} does not exist")
            cache[p] = load_micrograph(p, in_chans=in_chans, pixel_size=pixel_size, unit=unit,
                                       mask_data_bar=mask_data_bar, normalization=normalization)
            cals.append(cache[p][1])
    sizes = {(round(float(min(c.pixel_size)), 9), c.unit) for c in cals if c.is_calibrated}
    if pixel_size is not None:
        pixel = (float(pixel_size), unit)
    elif len(sizes) == 1 and all(c.is_calibrated for c in cals):
        pixel = next(iter(sizes))
    else:
        pixel = (None, "px")
    return [None if p is None else cache[p][0] for p in table.image_paths], pixel


class PCEDataset:
    """Items ``((image, composition, process, numeric), pce)`` for PSC-Fusion.

    Parameters
    ----------
    table : PCETable
    rows : array_like of int
        Which rows.
    images : list of ndarray (1, H, W), optional
        Pre-loaded, normalised images per table row (``None`` entries allowed:
        those rows get a NaN image, which PSC-Fusion reads as "no image for this
        device"); without images the image tensor is a ``(1, 1, 1)`` zero
        placeholder and the model's image branch must be masked.
    size : int
        Image side.
    target_mean, target_std : float
        Standardise the target (``(y − mean)/std``).
    augment : Augment, optional

    Batches are fetched whole (``__getitems__``), which keeps tabular training fast.
    """

    def __init__(self, table: PCETable, rows, *, images=None, size: int = 224, target_mean: float = 0.0,
                 target_std: float = 1.0, augment=None, seed: int = 2024):
        self.table, self.rows = table, np.asarray(rows, dtype=int)
        self.images, self.size, self.augment, self.seed = images, int(size), augment, int(seed)
        self.mean, self.std = float(target_mean), float(target_std)
        self.rng = np.random.default_rng(self.seed)

    def set_epoch(self, epoch):
        self.rng = np.random.default_rng([self.seed, int(epoch)])

    def __len__(self):
        return int(self.rows.size)

    def _image(self, r):
        from . import transforms as T

        img = None if self.images is None else self.images[r]
        if self.images is None:
            return np.zeros((1, 1, 1), np.float32)
        if img is None:
            chans = next((im.shape[0] for im in self.images if im is not None), 1)
            return np.full((chans, self.size, self.size), np.nan, np.float32)
        if self.augment is not None:
            return self.augment(self.rng, img)
        return T.center_crop(img, self.size)

    def __getitem__(self, i):
        (x, c, p, n), y = self.__getitems__([i])
        return (x[0], c[0], p[0], n[0]), y[0]

    def __getitems__(self, indices):
        import torch

        rows = self.rows[np.asarray(indices, dtype=int)]
        if self.images is None:  # no images: one placeholder per row (the image branch is masked)
            x = np.zeros((rows.size, 1, 1, 1), np.float32)
        else:
            x = np.stack([np.ascontiguousarray(self._image(int(r)), dtype=np.float32) for r in rows])
        y = (self.table.target[rows].astype(np.float64) - self.mean) / self.std
        return ((torch.from_numpy(x), torch.from_numpy(self.table.composition[rows]),
                 torch.from_numpy(self.table.process[rows]), torch.from_numpy(self.table.numeric[rows])),
                torch.from_numpy(y.astype(np.float32)))

    @staticmethod
    def collate(batch):
        """Batches come whole from ``__getitems__``."""
        return batch
