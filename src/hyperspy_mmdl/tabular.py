"""Composition and process vocabularies and their encoders (shared by training and inference).

A PSC-Fusion model sees a device record as (SPEC §1.1.3–1.1.4):

* composition fields → one multi-hot vector; a cell such as
  ``"TiO2-c | TiO2-mp"`` (layers ``|``, mixtures ``;``) sets one slot per
  token; every field has a trailing ``unknown`` slot set for missing/unseen
  values;
* process fields → one integer per field for ``nn.Embedding``; 0 is
  unknown/missing/rare.

Columns default to the Perovskite Database names (Jacobsson et al. 2022) for the
fields of SPEC §3.1.8. The vocabularies are built from training data
(:func:`build_vocabularies`, used by :mod:`hyperspy_mmdl.train.tabular`), stored in
the model card, and used again by :func:`encode_record` to encode a new record at
inference exactly as the training table was encoded. This module is a core module:
it depends on numpy and pandas only.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Mapping

import numpy as np

__all__ = [
    "DEFAULT_TARGET",
    "DEFAULT_COMPOSITION_COLUMNS",
    "DEFAULT_PROCESS_COLUMNS",
    "SPEC_VOCABULARIES",
    "FEATURE_FACTORS",
    "read_table",
    "build_vocabularies",
    "encode_composition",
    "encode_process",
    "encode_record",
    "vocabulary_fields",
    "FIELD_SETS",
    "OUTCOME_COLUMNS",
    "GRAIN_FEATURE_UNITS",
    "grain_feature_columns",
    "grain_feature_values",
    "find_grain_columns",
    "find_image_column",
    "numeric_input_names",
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

#: what each feature factor is: a length, a reciprocal length (GBLD) or a ratio
GRAIN_FEATURE_UNITS = {"mean_ecd": "length", "mean_major_axis": "length", "mean_aspect_ratio": "ratio",
                       "gbld": "per length", "std_ecd": "length", "std_aspect_ratio": "ratio"}
#: the grains package names the two SDs sd_*: either name is accepted
_FACTOR_ALIASES = {"sd_ecd": "std_ecd", "sd_aspect_ratio": "std_aspect_ratio", "grain_size": "mean_ecd",
                   "mean_grain_size": "mean_ecd", "ecd": "mean_ecd"}

#: Device-record fields by name. ``"spec"``: the SPEC §3.1.8 fields (Table S1), the default.
#: ``"extended"``: more of the Perovskite Database's device description (ion sites, cell architecture,
#: substrate, back contact, additives, atmospheres, the other layers' deposition) and the band gap
#: as a numeric composition value: the encoding of ``benchmarks/pce_folds.py`` and of the shipped
#: PCE model. Each entry: ``(composition {field: column}, process {field: column},
#: numeric composition columns, numeric process columns)``.
FIELD_SETS = {
    "spec": (DEFAULT_COMPOSITION_COLUMNS, DEFAULT_PROCESS_COLUMNS, [], []),
    "extended": (
        {**DEFAULT_COMPOSITION_COLUMNS,
         "a_ions": "Perovskite_composition_a_ions", "b_ions": "Perovskite_composition_b_ions",
         "c_ions": "Perovskite_composition_c_ions", "architecture": "Cell_architecture",
         "substrate": "Substrate_stack_sequence", "backcontact": "Backcontact_stack_sequence",
         "perovskite_additive": "Perovskite_additives_compounds", "etl_additive": "ETL_additives_compounds"},
        {**DEFAULT_PROCESS_COLUMNS,
         "atmosphere": "Perovskite_deposition_synthesis_atmosphere",
         "annealing_atmosphere": "Perovskite_deposition_thermal_annealing_atmosphere",
         "etl_deposition": "ETL_deposition_procedure", "htl_deposition": "HTL_deposition_procedure",
         "backcontact_deposition": "Backcontact_deposition_procedure"},
        ["Perovskite_band_gap"],
        [],
    ),
}

#: device results, never inputs (PCE = Voc·Jsc·FF / P_in): left out of automatically chosen inputs
OUTCOME_COLUMNS = ("PCE", "Voc", "Jsc", "FF", "JV_default_PCE", "JV_default_Voc", "JV_default_Jsc",
                   "JV_default_FF", "Eff", "Efficiency")
_ID_COLUMNS = re.compile(r"^(id|index|no\.?|ref.*|unnamed.*|sample.*|device.*)$", re.IGNORECASE)
_GRAIN_NAME = re.compile(r"grain|gr\.\s*size", re.IGNORECASE)
IMAGE_SUFFIXES = (".tif", ".tiff", ".png", ".jpg", ".jpeg", ".bmp", ".dm3", ".dm4", ".emd", ".hspy", ".zspy")

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
    """Read a CSV (UTF-8, UTF-8 with BOM or latin-1, auto-detected) into a DataFrame.

    A row of units under the header (cells such as ``(nm)``, ``(eV)``; blank rows
    beside it) is taken out and kept in ``frame.attrs["units"]`` (``{column:
    unit}``); empty unnamed columns (a trailing comma) are dropped.

    Examples
    --------
    >>> frame = read_table("devices.csv")  # doctest: +SKIP
    >>> frame.attrs["units"].get("Gr. Size")  # doctest: +SKIP
    'nm'
    """
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"table not found: {path}")
    for enc in ("utf-8-sig", "latin-1"):
        try:
            frame = pd.read_csv(path, encoding=enc, low_memory=False)
            break
        except UnicodeDecodeError:
            continue
    else:  # pragma: no cover - latin-1 never fails
        raise ValueError(f"{path}: cannot decode the CSV")
    return _take_unit_rows(frame)


_UNIT_CELL = re.compile(r"^\s*[\(\[](.*)[\)\]]\s*$")


def _take_unit_rows(frame):
    """Leading units / blank rows out of ``frame`` (units into ``attrs["units"]``), numbers parsed."""
    import pandas as pd

    frame = frame.drop(columns=[c for c in frame.columns
                                if str(c).startswith("Unnamed:") and frame[c].isna().all()])
    units, drop = {}, []
    for i in range(min(3, len(frame))):
        cells = frame.iloc[i].dropna()
        cells = cells[cells.astype(str).str.strip() != ""]
        if len(cells) and all(_UNIT_CELL.match(str(v)) for v in cells):
            units.update({str(c): _UNIT_CELL.match(str(v)).group(1).strip() for c, v in cells.items()})
            drop.append(frame.index[i])
        elif not len(cells):
            drop.append(frame.index[i])
        else:
            break
    if not drop:
        return frame
    frame = frame.drop(index=drop).reset_index(drop=True)
    for c in frame.columns:  # columns read as text because of the units row: numbers again
        if not pd.api.types.is_numeric_dtype(frame[c]):
            num = pd.to_numeric(frame[c], errors="coerce")
            if num.notna().sum() == frame[c].notna().sum():
                frame[c] = num
    frame.attrs["units"] = units
    return frame


def find_grain_columns(frame, units=None) -> dict:
    """Columns of a table that hold grain feature factors, with the unit of their values.

    A column named like a SPEC §3.1.7 feature factor (``mean_ecd``, ``gbld``,
    ``sd_ecd`` ...) is that factor; a column whose name says grain size
    (``Gr. Size``, ``grain_size``, ``Grain size``) is the mean equivalent circular
    diameter ``mean_ecd``. Lengths need a unit: from ``units`` (or
    ``frame.attrs["units"]``, the table's units row) or the column name
    (``grain_size_nm``, ``grain size [µm]``); a length column without one is
    left out (a warning says so).

    Returns
    -------
    dict
        ``{column: {"factor": name, "unit": unit}}`` (``unit`` ``""`` for ratios).

    Examples
    --------
    >>> import pandas as pd
    >>> frame = pd.DataFrame({"Gr. Size": [100.0, 250.0], "PCE": [15.0, 18.0]})
    >>> find_grain_columns(frame, {"Gr. Size": "nm"})
    {'Gr. Size': {'factor': 'mean_ecd', 'unit': 'nm'}}
    """
    import warnings

    from .calibration import is_length, normalize_unit

    units = dict(units if units is not None else frame.attrs.get("units") or {})
    found = {}
    for col in frame.columns:
        name = str(col)
        key = re.sub(r"[\s\[\(].*$", "", name.strip()).lower()
        key = re.sub(r"_(nm|um|µm|mm)$", "", key)
        factor = key if key in GRAIN_FEATURE_UNITS else _FACTOR_ALIASES.get(key)
        if factor is None and _GRAIN_NAME.search(name):
            factor = "mean_ecd"
        if factor is None:
            continue
        kind = GRAIN_FEATURE_UNITS[factor]
        if kind == "ratio":
            found[name] = {"factor": factor, "unit": ""}
            continue
        unit = units.get(name)
        if unit is None:
            m = re.search(r"[\[\(_ ](nm|um|µm|mm)[\]\)]?\s*$", name) or re.search(r"(nm|um|µm|mm)\W*$", name)
            unit = m.group(1) if m else None
        unit = None if unit is None else unit.replace("⁻¹", "").replace("^-1", "").replace("-1", "").strip()
        try:
            ok = unit is not None and is_length(normalize_unit(unit))
        except Exception:  # noqa: BLE001 - not a unit at all
            ok = False
        if not ok:
            warnings.warn(f"column {name!r} looks like the grain feature {factor} but its length unit is not "
                          f"known ({unit!r}); it is used as a plain number, not matched to measured grains",
                          UserWarning, stacklevel=2)
            continue
        found[name] = {"factor": factor, "unit": normalize_unit(unit)}
    return found


def find_image_column(frame) -> str | None:
    """The column of a table whose cells name image files (``.tif``, ``.png``, ``.dm4`` ...), if any.

    Examples
    --------
    >>> import pandas as pd
    >>> find_image_column(pd.DataFrame({"sem": ["a.tif", None], "PCE": [15.0, 16.0]}))
    'sem'
    """
    for col in frame.columns:
        values = [str(v).strip().lower() for v in frame[col].dropna()]
        if values and all(v.endswith(IMAGE_SUFFIXES) for v in values):
            return str(col)
    return None


def grain_feature_columns(vocab: dict) -> dict:
    """``{numeric column: {"factor", "unit"}}``: the numeric inputs of a model that are grain features.

    Models whose numeric inputs are exactly the six SPEC §3.1.7 factors (by
    either naming) and that name no ``grain_features`` take them in µm.

    Examples
    --------
    >>> grain_feature_columns({"numeric": ["BG", "Gr. Size"],
    ...                        "grain_features": {"Gr. Size": {"factor": "mean_ecd", "unit": "nm"}}})
    {'Gr. Size': {'factor': 'mean_ecd', 'unit': 'nm'}}
    """
    numeric = [str(c) for c in (vocab or {}).get("numeric") or []]
    given = (vocab or {}).get("grain_features")
    if given:
        return {str(c): dict(v) for c, v in given.items() if str(c) in numeric}
    names = [_FACTOR_ALIASES.get(c, c) for c in numeric]
    if names == FEATURE_FACTORS:
        return {c: {"factor": f, "unit": "" if GRAIN_FEATURE_UNITS[f] == "ratio" else "µm"}
                for c, f in zip(numeric, names)}
    return {}


def grain_feature_values(vocab: dict, factors, unit: str = "µm") -> np.ndarray:
    """The numeric inputs of a model filled from measured feature factors (NaN where not a grain feature).

    Parameters
    ----------
    vocab : dict
        The model's vocabularies (``numeric``, ``grain_features``).
    factors : array_like, shape (n, 6)
        SPEC §3.1.7 factors per frame in the order of :data:`FEATURE_FACTORS`,
        lengths in ``unit`` (as :func:`hyperspy_mmdl.pipeline.grain_feature_factors` gives them).
    unit : str
        Length unit of ``factors``.

    Returns
    -------
    ndarray of float32, shape (n, n_numeric)

    Examples
    --------
    >>> vocab = {"numeric": ["BG", "Gr. Size"], "grain_features": {"Gr. Size": {"factor": "mean_ecd", "unit": "nm"}}}
    >>> grain_feature_values(vocab, [[0.25, 0.3, 1.2, 8.0, 0.1, 0.2]]).tolist()
    [[nan, 250.0]]
    """
    from .calibration import convert_length

    f = np.asarray(factors, dtype=np.float64).reshape(-1, len(FEATURE_FACTORS))
    numeric = [str(c) for c in vocab.get("numeric") or []]
    out = np.full((len(f), len(numeric)), np.nan)
    for col, spec in grain_feature_columns(vocab).items():
        j, k = numeric.index(col), FEATURE_FACTORS.index(spec["factor"])
        kind = GRAIN_FEATURE_UNITS[spec["factor"]]
        scale = 1.0 if kind == "ratio" else convert_length(1.0, unit, spec["unit"])
        out[:, j] = f[:, k] * scale if kind != "per length" else f[:, k] / scale
    return out.astype(np.float32)


def numeric_input_names(vocab: dict) -> dict:
    """``{"composition": [...], "process": [...]}``: the numeric columns each branch of a model takes.

    Examples
    --------
    >>> numeric_input_names({"numeric": ["BG", "T"], "numeric_composition": ["BG"]})
    {'composition': ['BG'], 'process': ['T']}
    """
    numeric = [str(c) for c in (vocab or {}).get("numeric") or []]
    comp = [str(c) for c in (vocab or {}).get("numeric_composition") or []]
    return {"composition": [c for c in numeric if c in comp], "process": [c for c in numeric if c not in comp]}


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
    min_count : int
        Rarer tokens are left out (they encode as unknown).

    Returns
    -------
    dict
        ``{"composition": {field: [tokens]}, "process": {field: [tokens]}, "columns": ..., "source": ...}``.

    Examples
    --------
    >>> import pandas as pd
    >>> frame = pd.DataFrame({"ETL": ["TiO2", "TiO2 | SnO2", "SnO2"], "Solvent": ["DMF", "DMF", "DMSO"]})
    >>> vocab = build_vocabularies(frame, {"etl": "ETL"}, {"solvent": "Solvent"})
    >>> vocab["composition"], vocab["process"]
    ({'etl': ['SnO2', 'TiO2']}, {'solvent': ['DMF']})
    >>> encode_composition(frame, vocab).tolist()[1], encode_process(frame, vocab).ravel().tolist()
    ([1.0, 1.0, 0.0], [1, 1, 0])
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
    """Multi-hot ``(N, Σ(len(tokens_f) + 1))`` float32; the last slot of each field is 'unknown'.

    Examples
    --------
    >>> import pandas as pd
    >>> vocab = {"composition": {"etl": ["TiO2"]}, "columns": {"composition": {"etl": "ETL"}}}
    >>> encode_composition(pd.DataFrame({"ETL": ["TiO2", "ZnO"]}), vocab).tolist()
    [[1.0, 0.0], [0.0, 1.0]]
    """
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
    """Indices ``(N, n_fields)`` int64; 0 = unknown, token i → i + 1.

    Examples
    --------
    >>> import pandas as pd
    >>> vocab = {"process": {"solvent": ["DMF", "DMSO"]}, "columns": {"process": {"solvent": "S"}}}
    >>> encode_process(pd.DataFrame({"S": ["DMSO", "water", None]}), vocab).ravel().tolist()
    [2, 0, 0]
    """
    cols = []
    for name, tokens in vocab["process"].items():
        column = vocab["columns"]["process"][name]
        index = {t: i + 1 for i, t in enumerate(tokens)}
        values = frame[column] if column in frame else [None] * len(frame)
        cols.append([index.get(_process_token(v), 0) for v in values])
    return np.asarray(cols, dtype=np.int64).T.reshape(len(frame), len(cols))


def _as_dict(values, name) -> dict:
    if values is None:
        return {}
    if hasattr(values, "to_dict") and not isinstance(values, Mapping):  # pandas Series (a table row)
        values = values.to_dict()
    if not isinstance(values, Mapping):
        raise TypeError(f"{name} must be a dict or a pandas row (Series), got {type(values).__name__}")
    return {str(k): v for k, v in values.items()}


def _check_vocabularies(vocab) -> dict:
    if not vocab or "composition" not in vocab or "process" not in vocab:
        raise ValueError("the model card has no composition/process vocabularies (not a PSC-Fusion model?)")
    return vocab


def vocabulary_fields(vocab: dict) -> dict:
    """The fields and their tokens of a vocabulary (as stored in a PSC-Fusion model card).

    Parameters
    ----------
    vocab : dict
        ``{"composition": {field: [tokens]}, "process": {field: [tokens]}, ...}``
        from :func:`build_vocabularies`.

    Returns
    -------
    dict
        ``{"composition": {field: [tokens]}, "process": {field: [tokens]}}`` with str tokens.

    Examples
    --------
    >>> vocab = {"composition": {"etl": ["TiO2", "SnO2"]}, "process": {"solvent": ["DMF"]}}
    >>> vocabulary_fields(vocab)["composition"]
    {'etl': ['TiO2', 'SnO2']}
    """
    vocab = _check_vocabularies(vocab)
    return {kind: {str(f): [str(t) for t in toks] for f, toks in vocab[kind].items()}
            for kind in ("composition", "process")}


def encode_record(vocab: dict, composition=None, process=None, *, notes: list | None = None):
    """Encode one device record exactly as the training table was encoded.

    Parameters
    ----------
    vocab : dict
        Vocabularies from :func:`build_vocabularies` (a PSC-Fusion card's
        ``vocabularies``; ``"columns"`` maps fields to table columns and
        ``"numeric"`` lists numeric columns).
    composition, process : dict or pandas.Series, optional
        Values by field name (``"etl"``) or by the training table's column name
        (``"ETL_stack_sequence"``). A table row holding both kinds can be
        passed as either argument. A composition cell may list several tokens
        (``"TiO2 | SnO2"``). Missing fields are encoded as unknown. Values
        given by column name (a table row) encode exactly as the training
        table did: a category the model does not know is 'unknown'.
    notes : list, optional
        Receives a line for each table cell encoded as unknown that way.

    Returns
    -------
    composition : ndarray of float32, shape (d_c,)
        Multi-hot vector (:func:`encode_composition`).
    process : ndarray of int64, shape (n_process_fields,)
        Category indices, 0 = unknown (:func:`encode_process`).
    numeric : ndarray of float32, shape (n_numeric,)
        The vocabulary's numeric columns (NaN where not given).

    Raises
    ------
    ValueError
        A value given by field name is not in its field's vocabulary (the
        message lists the valid categories), or a key of a dict of field names
        is neither a field nor a column of the model.

    Examples
    --------
    >>> vocab = {"composition": {"etl": ["TiO2", "SnO2"]}, "process": {"solvent": ["DMF", "DMSO"]},
    ...          "columns": {"composition": {"etl": "ETL"}, "process": {"solvent": "Solvent"}}}
    >>> comp, proc, num = encode_record(vocab, {"etl": "SnO2"}, {"solvent": "DMSO"})
    >>> comp.tolist(), proc.tolist(), num.size
    ([0.0, 1.0, 0.0], [2], 0)
    """
    import pandas as pd

    vocab = _check_vocabularies(vocab)
    columns = vocab.get("columns") or {}
    numeric = [str(c) for c in vocab.get("numeric") or []]
    by_key = {}  # field name or column name -> (kind, field, column)
    for kind in ("composition", "process"):
        for fld in vocab[kind]:
            col = (columns.get(kind) or {}).get(fld, fld)
            by_key[str(fld)] = by_key[str(col)] = (kind, str(fld), str(col))
    column_names = {c for kind, fld, c in by_key.values() if c != fld} | set(numeric)
    values, strict = {}, set()
    for given, name in ((process, "process"), (composition, "composition")):
        d = _as_dict(given, name)
        values.update(d)
        # a dict of field names names them on purpose; a table row (a Series, or a dict holding the
        # training table's column names) has other columns too
        if isinstance(given, Mapping) and not set(d) & column_names:
            strict |= set(d)
    row, num = {}, {}
    for key, value in values.items():
        if key in numeric:
            num[key] = value
            continue
        if key not in by_key:
            if key not in strict:
                continue
            raise ValueError(f"unknown field {key!r}; this model knows composition fields "
                             f"{list(vocab['composition'])}, process fields {list(vocab['process'])}"
                             + (f" and numeric columns {numeric}" if numeric else ""))
        kind, fld, col = by_key[key]
        tokens = [str(t) for t in vocab[kind][fld]]
        if kind == "composition":
            bad = [t for t in _tokens(value) if t not in tokens]
        else:
            tok = _process_token(value)
            bad = [] if tok is None or tok in tokens else [tok]
        if bad and key == col and col != fld:
            # a table cell: rare or unseen categories are 'unknown', as the training table encoded them
            if notes is not None:
                notes.append(f"{col}: {', '.join(map(repr, bad))} not among the model's categories, "
                             "encoded as unknown")
        elif bad:
            raise ValueError(f"{kind} field {fld!r}: unknown categor{'y' if len(bad) == 1 else 'ies'} "
                             f"{bad if len(bad) > 1 else bad[0]!r}; valid categories: {tokens}")
        row[col] = value
    frame = pd.DataFrame([row]) if row else pd.DataFrame(index=[0])
    # encode_composition/encode_process look columns up in vocab["columns"]; fill in the fields themselves
    full = {**vocab, "columns": {kind: {str(f): (columns.get(kind) or {}).get(f, f) for f in vocab[kind]}
                                 for kind in ("composition", "process")}}
    comp = encode_composition(frame, full)[0]
    proc = encode_process(frame, full)[0]
    nums = np.array([pd.to_numeric(pd.Series([num.get(c)]), errors="coerce").iloc[0] for c in numeric],
                    dtype=np.float32)
    return comp.astype(np.float32), proc.astype(np.int64), nums
