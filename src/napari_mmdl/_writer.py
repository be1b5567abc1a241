"""npe2 writers: Labels layers to calibrated ``.tif`` / ``.zspy``, grain tables to ``.csv``.

The files go through :func:`hyperspy_mmdl.io.save`, so the layer's ``scale``,
``translate`` and ``units`` are stored as the axes' scale, offset and units and
:func:`hyperspy_mmdl.io.load` (and this plugin's reader) read them back.
A Labels layer's ``features`` (the Grains widget's per-grain table) are written
as CSV, without napari's ``index`` column. HyperSpy and pandas are imported only
when a file is written.
"""

from __future__ import annotations

from pathlib import Path

LABEL_SUFFIXES = (".tif", ".tiff", ".zspy")


def layer_meta_calibration(meta: dict, ndim: int | None = None):
    """The :class:`~hyperspy_mmdl.calibration.Calibration` of a layer's metadata
    (:meth:`Calibration.from_napari <hyperspy_mmdl.calibration.Calibration.from_napari>`)."""
    from hyperspy_mmdl.calibration import Calibration

    return Calibration.from_napari(meta)


def write_labels(path: str, data, meta: dict) -> list[str]:
    """Write a Labels layer as a calibrated ``.tif``, ``.tiff`` or ``.zspy`` file."""
    import numpy as np

    from hyperspy_mmdl import io

    p = Path(path)
    if p.suffix.lower() not in LABEL_SUFFIXES:
        raise ValueError(f"{p}: labels are written as {', '.join(LABEL_SUFFIXES)}")
    arr = np.asarray(data[0] if isinstance(data, list) else data)  # multiscale: full resolution
    if arr.max(initial=0) < 2**31:
        arr = arr.astype(np.int32)
    cal = layer_meta_calibration(meta, arr.ndim)
    io.save(p, arr, cal, title=str(meta.get("name") or p.stem), metadata={"kind": "grain labels"})
    return [str(p)]


def write_table(path: str, data, meta: dict) -> list[str]:
    """Write a Labels layer's ``features`` table (the per-grain measurements) as CSV."""
    import pandas as pd

    p = Path(path)
    if p.suffix.lower() != ".csv":
        raise ValueError(f"{p}: grain tables are written as .csv")
    table = meta.get("features")
    table = pd.DataFrame(table) if table is not None else pd.DataFrame()
    if table.empty:
        raise ValueError(f"layer {meta.get('name', '')!r} has no features table: run Grains "
                         f"'Segment and measure' (or 'Re-measure') first")
    from hyperspy_mmdl.tables import write_table as write

    table = table.drop(columns=[c for c in ("index",) if c in table.columns])
    units = (meta.get("metadata") or {}).get("grain_units") or {}
    write(table, p, units)  # units in the headers, as every table napari-mmdl writes
    return [str(p)]
