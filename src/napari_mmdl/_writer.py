"""npe2 writers: Labels layers to calibrated ``.tif`` / ``.zspy``, binary masks, grain tables to ``.csv``.

The files go through :func:`hyperspy_mmdl.io.save`, so the layer's ``scale``,
``translate`` and ``units`` are stored as the axes' scale, offset and units and
:func:`hyperspy_mmdl.io.load` (and this plugin's reader) read them back.
Label TIFFs are 16-bit with ImageJ's resolution tags and unit
(:func:`hyperspy_mmdl.grains.export.write_label_tiff`), so ImageJ / Fiji open
them calibrated; the "binary mask" writer writes a 0/255 mask in which
neighbouring grains stay separate 8-connected particles
(:func:`hyperspy_mmdl.grains.export.write_binary_tiff`). A Labels layer's
``features`` (the Grains widget's per-grain table) are written as CSV, without
napari's ``index`` column. HyperSpy and pandas are imported only when a file
is written.
"""

from __future__ import annotations

from pathlib import Path

LABEL_SUFFIXES = (".tif", ".tiff", ".zspy")
TIFF_SUFFIXES = (".tif", ".tiff")


def layer_meta_calibration(meta: dict, ndim: int | None = None):
    """The :class:`~hyperspy_mmdl.calibration.Calibration` of a layer's metadata
    (:meth:`Calibration.from_napari <hyperspy_mmdl.calibration.Calibration.from_napari>`)."""
    from hyperspy_mmdl.calibration import Calibration

    return Calibration.from_napari(meta)


def _labels_array(data):
    import numpy as np

    return np.asarray(data[0] if isinstance(data, list) else data)  # multiscale: full resolution


def write_labels(path: str, data, meta: dict) -> list[str]:
    """Write a Labels layer as a calibrated ``.tif``, ``.tiff`` (16-bit, ImageJ-calibrated)
    or ``.zspy`` file."""
    import numpy as np

    from hyperspy_mmdl import io

    p = Path(path)
    if p.suffix.lower() not in LABEL_SUFFIXES:
        raise ValueError(f"{p}: labels are written as {', '.join(LABEL_SUFFIXES)}")
    arr = _labels_array(data)
    cal = layer_meta_calibration(meta, arr.ndim)
    title = str(meta.get("name") or p.stem)
    if p.suffix.lower() in TIFF_SUFFIXES:
        from hyperspy_mmdl.grains.export import write_label_tiff

        write_label_tiff(p, arr, cal, title=title)
        return [str(p)]
    if arr.max(initial=0) < 2**31:
        arr = arr.astype(np.int32)
    io.save(p, arr, cal, title=title, metadata={"kind": "grain labels"})
    return [str(p)]


def write_binary(path: str, data, meta: dict) -> list[str]:
    """Write a Labels layer as a calibrated 8-bit binary ``.tif`` in which the grains stay
    separate particles for ImageJ's *Analyze Particles* (8-connected)."""
    from hyperspy_mmdl.grains.export import write_binary_tiff

    p = Path(path)
    if p.suffix.lower() not in TIFF_SUFFIXES:
        raise ValueError(f"{p}: binary masks are written as {', '.join(TIFF_SUFFIXES)}")
    arr = _labels_array(data)
    write_binary_tiff(p, arr, layer_meta_calibration(meta, arr.ndim), title=str(meta.get("name") or p.stem))
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
