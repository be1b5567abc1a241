"""Units in table headers: the one convention of every table napari-mmdl writes or shows.

In memory a table keeps plain column names (``area``, ``ecd``) and its units in
``DataFrame.attrs["units"]`` (``{"area": "µm²", "ecd": "µm"}``). Wherever a
person reads it (CSV and Parquet files, the napari table, report tables) the
unit goes into the header in square brackets: ``area [µm²]``, ``ecd [µm]``,
``gbld [µm⁻¹]``; columns without a unit (counts, ratios, angles in degrees say
``[deg]``) keep their name. :func:`read_table` turns such a file back into plain
names plus ``attrs["units"]``.

Example
-------
>>> import pandas as pd
>>> df = pd.DataFrame({"label": [1], "area": [0.5]})
>>> df.attrs["units"] = {"area": "µm²", "label": ""}
>>> list(with_unit_headers(df).columns)
['label', 'area [µm²]']
>>> list(strip_unit_headers(with_unit_headers(df)).attrs["units"].items())
[('area', 'µm²')]
"""

from __future__ import annotations

import re
from pathlib import Path

__all__ = ["header", "split_header", "with_unit_headers", "strip_unit_headers", "read_table", "write_table"]

_HEADER = re.compile(r"^(?P<name>.*?) \[(?P<unit>[^\[\]]+)\]$")


def header(name: str, unit: str | None) -> str:
    """``"name [unit]"``, or ``name`` for a column without a unit."""
    return f"{name} [{unit}]" if unit else str(name)


def split_header(text: str) -> tuple[str, str]:
    """``("name", "unit")`` from ``"name [unit]"`` (``""`` without a unit)."""
    m = _HEADER.match(str(text))
    return (m["name"], m["unit"]) if m else (str(text), "")


def with_unit_headers(df, units: dict | None = None):
    """A copy of ``df`` whose headers carry their units (``attrs["units"]`` or ``units``)."""
    units = dict(df.attrs.get("units") or {}) if units is None else dict(units)
    out = df.rename(columns={c: header(c, units.get(c)) for c in df.columns})
    out.attrs = {}
    return out


def strip_unit_headers(df):
    """The inverse of :func:`with_unit_headers`: plain names, units in ``attrs["units"]``."""
    names, units = {}, {}
    for c in df.columns:
        name, unit = split_header(c)
        names[c] = name
        if unit:
            units[name] = unit
    out = df.rename(columns=names)
    out.attrs["units"] = units
    return out


def write_table(df, path, units: dict | None = None) -> Path:
    """Write ``df`` as CSV or Parquet (by suffix) with units in the headers."""
    path = Path(path)
    table = with_unit_headers(df, units)
    if path.suffix.lower() == ".parquet":
        table.to_parquet(path, index=False)
    else:
        table.to_csv(path, index=False, lineterminator="\n")
    return path


def read_table(path):
    """Read a CSV or Parquet table written by napari-mmdl: plain names, ``attrs["units"]``."""
    import pandas as pd

    path = Path(path)
    df = pd.read_parquet(path) if path.suffix.lower() == ".parquet" else pd.read_csv(path)
    return strip_unit_headers(df)
