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


def encode_record(vocab: dict, composition=None, process=None):
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
        (``"TiO2 | SnO2"``). Missing fields are encoded as unknown.

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
        A value is not in its field's vocabulary (the message lists the valid
        categories), or a key is neither a field nor a column of the model.

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
    values, strict = {}, set()
    for given, name in ((process, "process"), (composition, "composition")):
        d = _as_dict(given, name)
        values.update(d)
        if isinstance(given, Mapping):  # a dict names fields on purpose; a table row has other columns
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
        if bad:
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
