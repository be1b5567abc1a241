"""npe2 reader: microscope files (DM, TIFF, EMD, HSPY, ZSPY ...) as calibrated image layers.

``get_reader`` only looks at the file name; HyperSpy is imported when a file is
actually read. Layers carry ``scale``, ``translate`` (the file's offsets),
``units`` and ``axis_labels`` from :func:`hyperspy_mmdl.io.load`; stacks open
as one 3-D layer whose frame axis keeps its own scale and unit.

TIFF files without a calibration we understand are left to napari's builtin
reader (``get_reader`` then returns ``None``); the probe reads headers and
metadata only (never the pixels), and a TIFF whose headers are damaged (truncated,
dimensions the file cannot hold) is reported by this reader rather than handed on. Files that cannot be read as a
micrograph (spectra, truncated or foreign files) raise one
:class:`~hyperspy_mmdl.io.MicrographReadError` naming the file, which napari
reports without crashing.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

SUFFIXES = (".dm3", ".dm4", ".tif", ".tiff", ".emd", ".hspy", ".zspy", ".h5", ".mrc", ".ser", ".emi",
            ".blo", ".sur", ".prz")
_TIFF = (".tif", ".tiff")
# Files above this size are read lazily (dask), frames loaded as napari shows them.
LAZY_BYTES = 64 * 2**20


def get_reader(path):
    """Return :func:`read_micrograph` for a file we read, else None.

    For ``.tif``/``.tiff`` the headers are checked (:func:`hyperspy_mmdl.io.check_file`) and the
    file is opened lazily, metadata only, to see whether it carries a calibration; without one
    napari's builtin reader is a better choice. A damaged TIFF (truncated, dimensions its data
    cannot hold, not a regular file) gets a reader that raises the :class:`ReadError` saying so.
    """
    if isinstance(path, (list, tuple)):
        if len(path) != 1:
            return None
        path = path[0]
    p = Path(os.fspath(path))
    if p.suffix.lower() not in SUFFIXES:
        return None
    if p.is_dir() and p.suffix.lower() != ".zspy":
        return None
    if p.suffix.lower() in _TIFF:
        from hyperspy_mmdl.errors import ReadError
        from hyperspy_mmdl.io import check_file

        try:
            check_file(p, lazy=True)  # headers only: a damaged TIFF is reported, not handed on
        except ReadError as err:
            return _raising(err)
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                img = _load(p, lazy=True)  # the probe reads metadata only, never the pixels
        except Exception:  # noqa: BLE001 - napari's builtin reader may still open it
            return None
        if not img.calibration.is_calibrated:
            return None  # quietly: napari's builtin reader opens it

        def read_probed_tiff(_path):
            for w in caught:  # the probe's warnings, shown now that this reader is used
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
            if _size(p) <= LAZY_BYTES:  # small: read now, as read_micrograph would
                import dataclasses

                import numpy as np

                data = img.data  # a lazy read of some TIFFs is already in memory
                data = data.compute(scheduler="synchronous") if hasattr(data, "compute") else data
                return [_layer_tuple(dataclasses.replace(img, data=np.asarray(data)))]
            return [_layer_tuple(img)]

        return read_probed_tiff
    return read_micrograph


def _raising(err):
    """A reader that raises ``err`` (napari shows it): the file is ours to report, not to hand on."""
    def read_damaged(_path):
        raise err

    return read_damaged


def _size(path: Path) -> int:
    return path.stat().st_size if path.is_file() else 0


def _load(path: Path, lazy: bool | None = None):
    from hyperspy_mmdl.io import load

    # io's warnings (several signals in the file, pixel units, RGB/complex conversion) reach napari's notifications
    return load(path, lazy=_size(path) > LAZY_BYTES if lazy is None else lazy)


def _layer_tuple(img) -> tuple:
    kwargs = img.calibration.to_napari()
    md = dict(img.metadata)
    md["path"] = str(img.path)
    md["pixel_size"] = img.calibration.pixel_size
    md["unit"] = img.calibration.image.units[-1]
    kwargs.update(name=img.title, metadata=md, rgb=bool(img.rgb))
    return (img.data, kwargs, "image")


def read_micrograph(path) -> list[tuple]:
    """Read one micrograph file into a napari image-layer data tuple.

    Raises
    ------
    hyperspy_mmdl.io.MicrographReadError
        The file cannot be read as a micrograph; the message names it.
    """
    if isinstance(path, (list, tuple)):
        return [t for p in path for t in read_micrograph(p)]
    return [_layer_tuple(_load(Path(os.fspath(path))))]
