"""Read and write calibrated micrographs (DM, TIFF, EMD, HSPY, ZSPY ... anything rosettasciio reads).

:func:`load` returns an :class:`Image`: the data in array order (frames first) and a
:class:`~hyperspy_mmdl.calibration.Calibration` with pint-normalised units.
Files are read with :func:`hyperspy.api.load`, which applies rosettasciio's
metadata mapping (instrument, beam energy, magnification).

Conventions
-----------
* **Several signals in one file** (DM files with an image and a plot, Olympus SIS
  TIFFs with an RGB preview and the raw data, multipage TIFFs): the images are
  kept, the first *calibrated* one is returned (else the first one) and a
  warning names the others; ``index=`` chooses any signal of the file by its
  position in ``hs.load``'s list.
* **Spectra and spectrum images** (a 1-D signal axis, or an energy axis such as
  ``eV``) are not micrographs: :class:`MicrographReadError` says what the file holds.
* **RGB(A)** (HyperSpy's structured ``rgb8``/``rgb16`` dtypes) becomes a plain
  ``(..., H, W, 3)`` array (:attr:`Image.rgb`; alpha dropped with a warning): the
  colour is kept, and the analysis applies the one colour policy of
  :mod:`hyperspy_mmdl.preprocess.color`.
* **Complex** data becomes its magnitude (float32) with a warning; **bool** becomes uint8.
* **Uncalibrated** images get pixel units (``"px"``) and a warning.
* The calibration comes from :meth:`Calibration.from_axes`, the one converter of
  every route: one readable length unit for both image axes (metres of SEM TIFFs
  become nm or µm; Å × nm DM images are converted).
* ``lazy=None`` means *auto*: lazy when the file is larger than :data:`LAZY_AUTO_BYTES`
  (stacks that would not comfortably fit in memory), eager otherwise. Formats or
  data rosettasciio cannot read lazily (PNG, JPEG, BMP, RGB DM) are read eagerly.
"""

from __future__ import annotations

import logging
import math
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .calibration import PIXEL, Calibration, convert_length, normalize_unit
from .errors import CalibrationError, ReadError

__all__ = ["Image", "MicrographReadError", "load", "load_signal", "save", "LAZY_AUTO_BYTES"]

LAZY_AUTO_BYTES = 256 * 2**20
"""File size above which ``load(..., lazy=None)`` reads lazily."""

_ENERGY_UNITS = {"eV", "keV", "meV", "MeV"}
_SAVE_SUFFIXES = (".tif", ".tiff", ".hspy", ".zspy")


#: A file cannot be read as a micrograph (the name earlier versions used for :class:`ReadError`).
MicrographReadError = ReadError


@dataclass
class Image:
    """A micrograph (one image or a stack of frames) with its calibration.

    Attributes
    ----------
    data : numpy.ndarray or dask.array.Array
        Array order, frames first: ``(y, x)`` or ``(frames, y, x)``; colour images
        have a last channel axis of 3 (:attr:`rgb`).
    calibration : Calibration
        One entry per axis of ``data``; frame axes have ``navigate=True``.
    title : str
        The file's title (DM/HyperSpy title), else the file name without suffix.
    metadata : dict
        A small summary: ``original_format``, ``signal_type``, ``instrument``,
        ``beam_energy`` (kV), ``magnification``, ``acquisition_date``,
        ``acquisition_time``, ``signal_index`` and ``n_signals`` in the file, and
        ``conversion`` when the data was converted (RGB, complex, bool).
    path : Path
        The file read.
    """

    data: Any
    calibration: Calibration
    title: str
    metadata: dict = field(default_factory=dict)
    path: Path | None = None

    @property
    def rgb(self) -> bool:
        """True for colour data: one axis more than the calibration, R, G, B last."""
        return self.data.ndim == self.calibration.ndim + 1

    @property
    def is_stack(self) -> bool:
        return self.data.ndim - int(self.rgb) > 2

    @property
    def is_lazy(self) -> bool:
        return not isinstance(self.data, np.ndarray)


# ----------------------------------------------------------------------------- reading
@contextmanager
def _quiet_hyperspy():
    """Silence HyperSpy's and rosettasciio's log lines (errors become MicrographReadError,
    missing calibration a warning of :func:`load`)."""
    loggers = [logging.getLogger(name) for name in ("hyperspy", "rsciio")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def _check_path(path: Path) -> None:
    if not path.exists():
        raise MicrographReadError(f"{path}: no such file")
    if path.is_dir():
        if path.suffix.lower() == ".zspy":
            return
        raise MicrographReadError(f"{path}: is a directory, not a micrograph file")
    if path.stat().st_size == 0:
        raise MicrographReadError(f"{path}: the file is empty (0 bytes)")


#: Formats rosettasciio reads eagerly only (its image reader has no lazy mode).
EAGER_ONLY = (".png", ".jpg", ".jpeg", ".bmp", ".gif")


def _read_signals(path: Path, lazy: bool) -> list:
    import hyperspy.api as hs

    if lazy and path.suffix.lower() in EAGER_ONLY:
        lazy = False
    with _quiet_hyperspy(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            out = hs.load(str(path), lazy=lazy)
        except Exception as err:  # noqa: BLE001 - any reader failure becomes one clear error
            if lazy:  # some readers or data (RGB DM) have no lazy mode: an eager read may work
                return _read_signals(path, lazy=False)
            kind = type(err).__name__
            raise ReadError(
                f"{path}: cannot read the file ({kind}: {err}); it is truncated, corrupt or not "
                f"in a format rosettasciio reads") from None
    return out if isinstance(out, list) else [out]


def _describe(signal) -> str:
    """What a non-image signal is, in words (for error messages)."""
    am = signal.axes_manager
    st = signal.metadata.get_item("Signal.signal_type", "") or ""
    kind = f" ({st})" if st else ""
    units = [normalize_unit(ax.units) if isinstance(ax.units, str) else PIXEL for ax in am._axes]
    if am.signal_dimension == 1:
        if am.navigation_dimension == 0 or all(ax.size == 1 for ax in am.navigation_axes):
            return f"a 1-D spectrum{kind} of {am.signal_shape[0]} channels, not an image"
        nav = "×".join(str(n) for n in am.navigation_shape[::-1])
        return f"a spectrum image{kind} ({nav} positions × {am.signal_shape[0]} channels), not an image"
    if any(u in _ENERGY_UNITS for u in units):
        return f"a spectrum image{kind} (an energy axis in {', '.join(sorted(set(units) & _ENERGY_UNITS))}), not an image"
    if am.signal_dimension == 0:
        return "a 0-D signal (single values), not an image"
    if am.signal_dimension > 2:
        return f"a {am.signal_dimension}-D signal, not an image"
    if am.navigation_dimension > 1:
        return (f"a {am.navigation_dimension}-D grid of images (e.g. 4D-STEM), not an image "
                f"or a stack of frames")
    return "not an image"


def _is_image(signal) -> bool:
    am = signal.axes_manager
    # NCEM EMD (and some HDF5) stacks come back as 3-D signals: the first axis is then the frame axis
    stack_as_signal = am.signal_dimension == 3 and am.navigation_dimension == 0
    if not stack_as_signal and (am.signal_dimension != 2 or am.navigation_dimension > 1):
        return False
    for ax in am._axes:
        u = ax.units if isinstance(ax.units, str) else ""
        if normalize_unit(u) in _ENERGY_UNITS:
            return False
    return True


def _convert(data, path: Path, notes: list[str]):
    """Structured RGB(A) -> ``(..., 3)`` channels (the colour is kept: see
    :mod:`hyperspy_mmdl.preprocess.color`), complex -> magnitude float32, bool -> uint8."""
    from .preprocess.color import as_channels

    dt = data.dtype
    if dt.names is not None:  # structured RGB(A): fields R, G, B[, A]
        if not all(c in dt.names for c in ("R", "G", "B")):
            raise ReadError(f"{path}: unsupported structured dtype {dt}")
        # colour has no lazy mode here; synchronous: this may run inside a dask.distributed task
        arr = np.asarray(data) if isinstance(data, np.ndarray) else data.compute(scheduler="synchronous")
        if "A" in dt.names:
            notes.append("RGBA: the alpha channel is dropped")
        return as_channels(arr)
    if np.issubdtype(dt, np.complexfloating):
        notes.append("complex data: its magnitude (float32) is used")
        return abs(data).astype(np.float32)
    if dt == bool:
        notes.append("boolean data converted to uint8 (0/1)")
        return data.astype(np.uint8)
    return data


def _small_metadata(signal, path: Path, index: int, n_signals: int) -> dict:
    md = signal.metadata
    out = {"original_format": path.suffix.lower().lstrip(".") or "zspy",
           "signal_type": md.get_item("Signal.signal_type", "") or "",
           "signal_index": index, "n_signals": n_signals}
    for mic in ("SEM", "TEM"):
        base = f"Acquisition_instrument.{mic}"
        if md.has_item(base):
            out["microscope_type"] = mic
            for key, item in (("instrument", "microscope"), ("beam_energy", "beam_energy"),
                              ("magnification", "magnification"), ("acquisition_mode", "acquisition_mode")):
                v = md.get_item(f"{base}.{item}")
                if v is not None:
                    out[key] = v if isinstance(v, (str, int, float)) else str(v)
    for key in ("date", "time"):
        v = md.get_item(f"General.{key}")
        if v is not None:
            out[f"acquisition_{key}"] = str(v)
    return out


def _auto_lazy(path: Path) -> bool:
    if path.is_dir():
        size = sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    else:
        size = path.stat().st_size
    return size > LAZY_AUTO_BYTES


def load(path, *, lazy: bool | None = False, index: int | None = None) -> Image:
    """Read a micrograph (or a stack of frames) with its calibration.

    Parameters
    ----------
    path : str or Path
        Any file rosettasciio reads (dm3, dm4, tif/tiff, emd, hspy, zspy, mrc, ...).
    lazy : bool or None
        Read the data lazily as a dask array (frames are read when computed).
        ``None``: lazy when the file is larger than :data:`LAZY_AUTO_BYTES`.
    index : int, optional
        Which signal of a file holding several (position in ``hs.load``'s list).
        By default the first calibrated image, else the first image.

    Returns
    -------
    Image

    Raises
    ------
    MicrographReadError
        The path is missing, a directory, empty, truncated, not a readable
        format, or holds no image (spectra, spectrum images); the message names
        the file and what it holds.
    """
    path = Path(path)
    _check_path(path)
    if lazy is None:
        lazy = _auto_lazy(path)
    signals = _read_signals(path, bool(lazy))
    n = len(signals)
    if index is not None:
        if not -n <= index < n:
            raise MicrographReadError(f"{path}: index={index} is out of range; the file holds {n} signal(s)")
        index = index % n
        if not _is_image(signals[index]):
            raise MicrographReadError(f"{path}: signal {index} holds {_describe(signals[index])}")
    else:
        images = [i for i, s in enumerate(signals) if _is_image(s)]
        if not images:
            what = "; ".join(_describe(s) for s in signals)
            raise MicrographReadError(f"{path}: holds {what}")
        calibrated = [i for i in images if Calibration.from_signal(signals[i]).is_calibrated]
        index = (calibrated or images)[0]
        if n > 1:
            others = ", ".join(f"{i}: {_label(s)}" for i, s in enumerate(signals) if i != index)
            warnings.warn(f"{path}: the file holds {n} signals; using signal {index} "
                          f"({_label(signals[index])}); others: {others} (choose with index=)",
                          UserWarning, stacklevel=2)
    signal = signals[index]
    try:
        cal = Calibration.from_signal(signal)
    except CalibrationError as err:
        raise ReadError(f"{path}: {err}") from None
    notes: list[str] = []
    data = _convert(signal.data, path, notes)
    for note in notes:
        warnings.warn(f"{path}: {note}", UserWarning, stacklevel=2)
    if not cal.is_calibrated:
        warnings.warn(f"{path}: no spatial calibration in the file; the image is in pixel units",
                      UserWarning, stacklevel=2)
    title = signal.metadata.get_item("General.title", "") or ""
    title = str(title).strip() or (path.name[: -len(path.suffix)] if path.suffix else path.name)
    md = _small_metadata(signal, path, index, n)
    if notes:
        md["conversion"] = "; ".join(notes)
    return Image(data=data, calibration=cal, title=title, metadata=md, path=path)


def _label(signal) -> str:
    title = signal.metadata.get_item("General.title", "") or "untitled"
    shape = "×".join(str(k) for k in signal.data.shape)
    kind = "image" if _is_image(signal) else ("spectrum" if signal.axes_manager.signal_dimension == 1
                                              else f"{signal.axes_manager.signal_dimension}-D signal")
    return f"{title!r} {kind} {shape}"


def load_signal(path, lazy: bool | None = False, index: int | None = None):
    """Read a micrograph as a ``"microstructure"`` HyperSpy signal.

    Same conventions as :func:`load`; a lazy read gives a lazy signal. The same
    as ``hs.load(path, signal_type="microstructure")`` for files with one image.
    """
    img = load(path, lazy=lazy, index=index)
    return to_signal(img)


def _signal(data, calibration: Calibration, signal_type: str = "microstructure"):
    """A (lazy) HyperSpy Signal2D of ``signal_type`` with the axes of ``calibration``.

    Colour ``(..., H, W, 3)`` data becomes HyperSpy's structured ``rgb8``/``rgb16``.
    """
    from hyperspy.signals import Signal2D

    lazy = not isinstance(data, np.ndarray)
    if data.ndim == calibration.ndim + 1:  # colour: R, G, B last
        dt = np.dtype([(c, data.dtype) for c in "RGB"])
        arr = np.asarray(data) if not lazy else data.compute(scheduler="synchronous")
        data = np.ascontiguousarray(arr).view(dt)[..., 0]
        lazy = False
    s = Signal2D(data, axes=calibration.to_axes(data.shape))
    if lazy:
        s = s.as_lazy()
    s.set_signal_type(signal_type)
    return s


def to_signal(img: Image):
    """An :class:`Image` as a (lazy) ``"microstructure"`` signal with its axes and title."""
    s = _signal(img.data, img.calibration)
    s.metadata.General.title = img.title
    if img.path is not None:
        s.metadata.General.original_filename = img.path.name
    return s


# ----------------------------------------------------------------------------- writing
def save(path, data, calibration: Calibration | None = None, *, title: str = "",
         metadata: dict | None = None, overwrite: bool = True) -> Path:
    """Write a micrograph with its calibration (``.tif``/``.tiff``, ``.hspy``, ``.zspy``).

    TIFFs are written by rosettasciio's TIFF writer, which stores scale, units
    and offsets so :func:`load` reads them back; float64 is written as float32.

    Parameters
    ----------
    path : str or Path
        Output file; the suffix selects the format.
    data : array_like
        ``(y, x)`` or ``(frames, y, x)``.
    calibration : Calibration, optional
        Defaults to pixel units.
    title : str
        Stored as the signal title.
    metadata : dict, optional
        Small scalar items stored under ``metadata.General.mmdl`` (HyperSpy formats).
    overwrite : bool
        Replace an existing file.

    Returns
    -------
    Path
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in _SAVE_SUFFIXES:
        raise ValueError(f"{path}: cannot save as {suffix or 'no suffix'!r}; use one of {_SAVE_SUFFIXES}")
    arr = data
    if arr.dtype == np.float64:
        arr = arr.astype(np.float32)
    if arr.dtype == bool:
        arr = arr.astype(np.uint8)
    if calibration is None:
        calibration = Calibration.uncalibrated(arr.ndim)
    if calibration.ndim not in (arr.ndim, arr.ndim - 1):  # (colour data: R, G, B last)
        raise ValueError(f"{path}: a {calibration.ndim}-axis calibration for data of shape {arr.shape}")
    s = _signal(arr, calibration)
    s.metadata.General.title = title or path.stem
    if metadata and suffix != ".tif" and suffix != ".tiff":
        clean = {str(k): v for k, v in metadata.items() if isinstance(v, (str, int, float, bool))}
        s.metadata.set_item("General.mmdl", clean)
    path.parent.mkdir(parents=True, exist_ok=True)
    with _quiet_hyperspy(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        s.save(str(path), overwrite=overwrite)
    return path
