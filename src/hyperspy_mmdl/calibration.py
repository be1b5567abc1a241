"""Physical calibration of image axes: pixel size, units, offsets, names.

A :class:`Calibration` describes every axis of an array in array (C) order, so a
``(frames, y, x)`` stack has three entries and a single image two. Compute
functions take the array plus its calibration and return results in physical
units; the front ends (HyperSpy, napari, the CLI) translate it to and from their
own axis descriptions.

Units are normalised with pint to short, printable symbols (``"nm"``, ``"µm"``,
``"Å"``, ``"s"``, ``"1/nm"``). An axis without a unit is in pixels (``"px"``).
"""

from __future__ import annotations

import functools
import math
import sys
from dataclasses import dataclass, field, replace
from typing import Iterable, Sequence

from .errors import CalibrationError

__all__ = ["Calibration", "normalize_unit", "convert_length", "is_length", "is_known_unit", "readable_unit", "PIXEL"]

PIXEL = "px"

# Spellings seen in DM, TIFF (ImageJ, FEI, Zeiss) and HyperSpy files.
_ALIASES = {
    "": PIXEL, "px": PIXEL, "pixel": PIXEL, "pixels": PIXEL, "<undefined>": PIXEL, "undefined": PIXEL,
    "none": PIXEL, "t.b.d.": PIXEL,
    "micron": "µm", "microns": "µm", "um": "µm", "μm": "µm", "µm": "µm", "micrometer": "µm",
    "micrometre": "µm",
    "nanometer": "nm", "nanometre": "nm", "nm": "nm",
    "a": "Å", "ang": "Å", "angstrom": "Å", "å": "Å", "Å": "Å", "angstroms": "Å",
    "pm": "pm", "mm": "mm", "cm": "cm", "m": "m", "meter": "m", "metre": "m",
    "s": "s", "sec": "s", "ms": "ms", "µs": "µs", "us": "µs", "ns": "ns", "min": "min",
    "ev": "eV", "kev": "keV",
    "1/nm": "1/nm", "nm^-1": "1/nm", "1/a": "1/Å", "1/å": "1/Å", "1/um": "1/µm", "1/µm": "1/µm",
}


@functools.lru_cache(maxsize=1)
def _ureg():
    import pint

    return pint.UnitRegistry()


@functools.lru_cache(maxsize=256)
def normalize_unit(unit: str | None) -> str:
    """Return the canonical short symbol of a unit string.

    Parameters
    ----------
    unit : str or None
        A unit as written by a file format (``"um"``, ``"micron"``, ``"nm"``,
        ``"<undefined>"`` ...).

    Returns
    -------
    str
        ``"px"`` for missing or pixel units, otherwise pint's abbreviated
        symbol (``"µm"``, ``"nm"``, ``"Å"``, ``"1/nm"``). A string pint does not
        know is returned stripped but otherwise unchanged.
    """
    if unit is None:
        return PIXEL
    u = str(unit).strip()
    key = u.lower()
    if key in _ALIASES:
        return _ALIASES[key]
    if u in _ALIASES:
        return _ALIASES[u]
    try:
        q = _ureg().parse_units(u.replace("µ", "u").replace("μ", "u"))
    except Exception:
        return u
    text = f"{q:~P}"
    return text.replace("μ", "µ") or PIXEL


def convert_length(value: float, from_unit: str, to_unit: str) -> float:
    """Convert a length (or any pint-compatible quantity) between units."""
    a, b = normalize_unit(from_unit), normalize_unit(to_unit)
    if a == b:
        return float(value)
    if PIXEL in (a, b):
        raise CalibrationError(f"cannot convert between {a!r} and {b!r}: the axis is not calibrated")
    ureg = _ureg()
    try:
        q = ureg.Quantity(float(value), _pint_name(a))
        return float(q.to(_pint_name(b)).magnitude)
    except Exception as err:  # noqa: BLE001 - pint's undefined-unit and dimensionality errors
        raise CalibrationError(f"cannot convert {value:g} {a} to {b}: {err}") from None


_READABLE = ("nm", "µm", "mm")


def is_length(unit: str) -> bool:
    """True when ``unit`` is a length pint knows (``"nm"``, ``"Å"``, ``"m"`` ...)."""
    u = normalize_unit(unit)
    if u == PIXEL:
        return False
    try:
        return _ureg().Quantity(1.0, _pint_name(u)).check("[length]")
    except Exception:  # noqa: BLE001 - pint raises many kinds for unknown strings
        return False


def readable_unit(pixel_size: float, unit: str) -> str:
    """The length unit (nm, µm or mm) in which numbers of a micrograph read best.

    The largest of nm, µm and mm in which the pixel size is at least 0.1; nm for
    anything finer (TEM images at 0.05 nm/px stay in nm). A 5.6 nm SEM pixel gives
    nm, a 111.6 nm one µm (0.1116 µm/px), a 0.225 µm optical pixel µm.

    Example
    -------
    >>> readable_unit(1.116e-7, "m"), readable_unit(5.6, "nm"), readable_unit(0.5, "Å")
    ('µm', 'nm', 'nm')
    """
    for target in reversed(_READABLE):
        if convert_length(pixel_size, unit, target) >= 0.1:
            return target
    return _READABLE[0]


def is_known_unit(unit: str) -> bool:
    """True for pixels and for any unit pint knows (``"nm"``, ``"1/nm"``, ``"s"``, ``"eV"``).

    Example
    -------
    >>> is_known_unit("µm"), is_known_unit("px"), is_known_unit("furlong-ish")
    (True, True, False)
    """
    u = normalize_unit(unit)
    if u == PIXEL:
        return True
    try:
        _ureg().Quantity(1.0, _pint_name(u))
        return True
    except Exception:  # noqa: BLE001 - pint raises many kinds for unknown strings
        return False


def _check_image_axes(scale, units) -> None:
    """Image axes: units pint knows, and pixel areas that floating point can hold (no underflow)."""
    for u in units:
        if not is_known_unit(u):
            raise CalibrationError(f"unit {u!r} of the image axes is not a unit pint knows; use a length unit "
                                   f"such as 'nm', 'µm' or 'mm' (or 'px' for pixels)")
    if all(u != PIXEL for u in units) and all(is_length(u) for u in units):
        area = scale[0] * scale[1]
        try:
            area_nm2 = convert_length(scale[0], units[0], "nm") * convert_length(scale[1], units[1], "nm")
        except CalibrationError:
            area_nm2 = area
        # the area of a pixel must be a normal float in its own unit and in nm² (the finest readable
        # unit): a pixel of 1e-300 nm has an area of 0.0 and every grain would measure 0
        for a in (area, area_nm2):
            if not (sys.float_info.min < a < sys.float_info.max):
                raise CalibrationError(
                    f"pixel size {scale[0]:g} × {scale[1]:g} {units[0]}: a pixel's area ({a:g} in "
                    f"{'nm²' if a is area_nm2 else units[0] + '²'}) {'underflows to 0' if a < 1 else 'overflows'} "
                    f"in floating point; check the calibration (a pixel size of picometres to metres is expected)")


def _pint_name(unit: str) -> str:
    return unit.replace("µ", "u").replace("Å", "angstrom")


def _tuple(values: Iterable | None, n: int, default) -> tuple:
    if values is None:
        return tuple(default(i) for i in range(n))
    out = tuple(values)
    if len(out) != n:
        raise ValueError(f"expected {n} values, got {len(out)}: {out!r}")
    return out


@dataclass(frozen=True)
class Calibration:
    """Calibration of an array's axes, in array (C) order.

    Parameters
    ----------
    scale : sequence of float
        Size of one pixel (or one frame step) along each axis.
    units : sequence of str
        Unit of each axis; normalised with :func:`normalize_unit`.
    offset : sequence of float, optional
        Physical coordinate of the first pixel centre along each axis (DM and
        HyperSpy offsets; napari ``translate``). Zeros by default.
    names : sequence of str, optional
        Axis names; ``("y", "x")`` for images, ``("frame", "y", "x")`` for stacks
        by default.
    navigate : sequence of bool, optional
        True for frame (navigation) axes, False for image (signal) axes. By
        default the last two axes are the image.

    Examples
    --------
    >>> cal = Calibration.from_pixel_size(12.5, "nm")
    >>> cal.pixel_size
    (12.5, 12.5)
    >>> cal.to_unit("µm").pixel_size
    (0.0125, 0.0125)
    """

    scale: tuple[float, ...]
    units: tuple[str, ...]
    offset: tuple[float, ...] | None = None
    names: tuple[str, ...] | None = None
    navigate: tuple[bool, ...] | None = None
    _warned: bool = field(default=False, repr=False, compare=False)

    def __post_init__(self):
        n = len(tuple(self.scale))
        try:
            scale = tuple(float(s) for s in self.scale)
        except (TypeError, ValueError):
            raise CalibrationError(f"pixel sizes must be numbers, got {tuple(self.scale)!r}") from None
        for s in scale:
            if not math.isfinite(s) or s <= 0:
                raise CalibrationError(f"pixel sizes must be finite and positive, got {scale}")
        object.__setattr__(self, "scale", scale)
        object.__setattr__(self, "units", tuple(normalize_unit(u) for u in _tuple(self.units, n, None)))
        if n >= 2:
            _check_image_axes(scale[-2:], self.units[-2:])
        object.__setattr__(self, "offset", tuple(float(o) for o in _tuple(self.offset, n, lambda i: 0.0)))
        default_names = ("y", "x") if n == 2 else tuple(
            ["frame" if n == 3 else f"axis{i}" for i in range(n - 2)] + ["y", "x"]) if n >= 2 else ("x",)
        object.__setattr__(self, "names", tuple(str(s) for s in _tuple(self.names, n, lambda i: default_names[i])))
        object.__setattr__(self, "navigate", tuple(bool(v) for v in _tuple(self.navigate, n, lambda i: i < n - 2)))

    # ------------------------------------------------------------------ constructors
    @classmethod
    def from_pixel_size(cls, pixel_size: float | Sequence[float], unit: str = "nm") -> "Calibration":
        """A 2-D image calibration from a pixel size (one value, or ``(y, x)``)."""
        if isinstance(pixel_size, (int, float)):
            sy = sx = float(pixel_size)
        else:
            sy, sx = (float(v) for v in pixel_size)
        return cls(scale=(sy, sx), units=(unit, unit))

    @classmethod
    def from_scale_bar(cls, length_px: float, length: float, unit: str) -> "Calibration":
        """Square pixels from a line of ``length_px`` pixels that is ``length`` ``unit`` long
        (ImageJ's *Set Scale*: a line drawn on the scale bar and the length it prints).

        Example
        -------
        >>> Calibration.from_scale_bar(100, 1, "µm").describe()
        '0.01 µm/px'
        """
        if not (math.isfinite(length_px) and length_px > 0 and math.isfinite(length) and length > 0):
            raise CalibrationError(f"a scale bar needs a positive length in pixels and in {unit!r}, "
                                   f"got {length_px:g} px = {length:g} {unit}")
        if not is_length(unit):
            raise CalibrationError(f"{unit!r} is not a length unit")
        return cls.from_pixel_size(float(length) / float(length_px), unit)

    @classmethod
    def uncalibrated(cls, ndim: int = 2) -> "Calibration":
        """Pixel units on every axis."""
        return cls(scale=(1.0,) * ndim, units=(PIXEL,) * ndim)

    @classmethod
    def from_axes(cls, axes: Sequence[dict]) -> "Calibration":
        """From rosettasciio / HyperSpy axis dicts: THE converter from a file's or a signal's axes.

        Every route (:func:`hyperspy_mmdl.io.load`, the HyperSpy signals, the
        napari reader) goes through here, so one file gives one calibration:

        * axes are sorted by ``index_in_array``; the last two are the image
          (named ``y``, ``x``), the others are frames;
        * a missing, zero, negative or non-finite scale, or a unit string pint
          does not know, makes that axis uncalibrated (pixels);
        * the image axes get one length unit, readable by magnitude
          (:meth:`readable`): Å × nm or nm × pm images are converted, metres of
          SEM TIFFs become nm or µm.

        Example
        -------
        >>> cal = Calibration.from_axes([
        ...     dict(index_in_array=0, scale=0.5, units="Å", name="y"),
        ...     dict(index_in_array=1, scale=0.1, units="nm", name="x")])
        >>> cal.units, tuple(round(v, 9) for v in cal.pixel_size)
        (('nm', 'nm'), (0.05, 0.1))
        """
        axes = sorted(axes, key=lambda a: a.get("index_in_array", 0))
        n = len(axes)
        default = cls.uncalibrated(n).names if n else ()
        scale, units, offset, names = [], [], [], []
        for i, a in enumerate(axes):
            s = a.get("scale", 1.0)
            try:
                s = float(1.0 if s is None else s)
            except (TypeError, ValueError):
                s = float("nan")
            u = a.get("units") if isinstance(a.get("units"), str) else None
            o = a.get("offset", 0.0)
            try:
                o = float(o or 0.0)
            except (TypeError, ValueError):
                o = 0.0
            if not math.isfinite(s) or s <= 0:  # an unusable scale: that axis is in pixels
                s, u, o = 1.0, None, 0.0
            elif u is not None and not is_known_unit(u):  # a unit string no one knows: pixels, likewise
                s, u, o = 1.0, None, 0.0
            if not math.isfinite(o):
                o = 0.0
            text = str(a.get("name") or "").strip()
            if i >= n - 2 or text.strip("<>").lower() in ("", "undefined", "t.b.d.", "image series"):
                text = default[i]  # image axes are always y, x
            scale.append(s)
            units.append(u)
            offset.append(o)
            names.append(text)
        cal = cls(scale=tuple(scale), units=tuple(units), offset=tuple(offset), names=tuple(names),
                  navigate=tuple(i < n - 2 for i in range(n)))
        return cal.readable() if n >= 2 else cal

    @classmethod
    def from_signal(cls, signal) -> "Calibration":
        """From a HyperSpy signal's ``axes_manager`` (array order); see :meth:`from_axes`."""
        axes = []
        am = signal.axes_manager
        for ax in am._axes:
            axes.append(dict(index_in_array=ax.index_in_array, scale=getattr(ax, "scale", 1.0),
                             offset=getattr(ax, "offset", 0.0), units=ax.units, name=ax.name,
                             navigate=ax.navigate))
        return cls.from_axes(axes)

    @classmethod
    def from_napari(cls, layer) -> "Calibration":
        """The calibration of a napari layer (or of a writer's layer-metadata dict): its
        ``scale``, ``translate``, ``units`` and ``axis_labels``; the inverse of :meth:`to_napari`.

        Reads attributes (or keys) only: napari is not imported. Image axes in
        different length units get one readable unit, as in :meth:`from_axes`.

        Example
        -------
        >>> layer = dict(scale=(2.0, 2.0), translate=(0.0, 0.0), units=("nanometer", "nanometer"))
        >>> Calibration.from_napari(layer).describe()
        '2 nm/px'
        """
        if isinstance(layer, dict):
            get = layer.get
        else:
            def get(key, default=None):
                return getattr(layer, key, default)
        scale = tuple(float(v) for v in (get("scale") if get("scale") is not None else (1.0, 1.0)))
        n = len(scale)
        translate = get("translate")
        translate = tuple(float(v) for v in translate) if translate is not None else (0.0,) * n
        units = get("units")
        units = tuple(str(u) for u in units) if units is not None else (PIXEL,) * n
        labels = get("axis_labels")
        names = [str(a) for a in labels] if labels is not None else [""] * n
        if all(a.lstrip("-").isdigit() for a in names):  # napari's default labels: no names
            names = [""] * n
        return cls.from_axes([dict(index_in_array=i, scale=s, units=u, offset=o, name=a)
                              for i, (s, u, o, a) in enumerate(zip(scale, units, translate, names))])

    # ------------------------------------------------------------------ views
    @property
    def ndim(self) -> int:
        return len(self.scale)

    @property
    def image(self) -> "Calibration":
        """The calibration of the last two (image) axes."""
        if self.ndim < 2:
            raise ValueError("a 1-D calibration has no image axes")
        sl = slice(self.ndim - 2, None)
        return Calibration(self.scale[sl], self.units[sl], self.offset[sl], self.names[sl], (False, False))

    @property
    def pixel_size(self) -> tuple[float, float]:
        """``(y, x)`` pixel size of the image axes, in :attr:`unit`."""
        im = self.image
        return im.scale[0], im.scale[1]

    @property
    def unit(self) -> str:
        """The unit of the image axes (they must agree: :meth:`from_axes` sees to it)."""
        uy, ux = self.image.units
        if uy != ux:
            raise CalibrationError(f"image axes have different units ({uy!r} and {ux!r}); use .readable()")
        return ux

    @property
    def is_calibrated(self) -> bool:
        """True when the image axes carry a physical unit."""
        return all(u != PIXEL for u in self.image.units)

    @property
    def is_square(self) -> bool:
        """True when the image pixels are square within 1 % (ImageJ's rule)."""
        sy, sx = self.pixel_size
        return abs(sy - sx) / sx < 0.01

    @property
    def pixel_area(self) -> float:
        sy, sx = self.pixel_size
        return sy * sx

    @property
    def area_unit(self) -> str:
        u = self.unit
        return "px²" if u == PIXEL else f"{u}²"

    # ------------------------------------------------------------------ transforms
    def to_unit(self, unit: str) -> "Calibration":
        """The same calibration with the image axes expressed in ``unit``."""
        unit = normalize_unit(unit)
        if not self.is_calibrated:
            raise CalibrationError(f"cannot express an uncalibrated image in {unit!r}")
        n = self.ndim
        scale, units, offset = list(self.scale), list(self.units), list(self.offset)
        for i in (n - 2, n - 1):
            scale[i] = convert_length(scale[i], units[i], unit)
            offset[i] = convert_length(offset[i], units[i], unit)
            units[i] = unit
        return replace(self, scale=tuple(scale), units=tuple(units), offset=tuple(offset))

    def readable(self) -> "Calibration":
        """The image axes in one length unit, chosen by magnitude (see :func:`readable_unit`).

        Pixel-unit images and images whose axes are not lengths are returned as
        they are; image axes whose units cannot be converted into each other
        (a length and a time) raise :class:`~hyperspy_mmdl.errors.CalibrationError`.
        """
        if self.ndim < 2:
            return self
        uy, ux = self.image.units
        if PIXEL in (uy, ux):
            if uy != ux:  # one axis calibrated, the other not: pixels on both, and say nothing false
                n = self.ndim
                scale, units, offset = list(self.scale), list(self.units), list(self.offset)
                for i in (n - 2, n - 1):
                    scale[i], units[i], offset[i] = 1.0, PIXEL, 0.0
                return replace(self, scale=tuple(scale), units=tuple(units), offset=tuple(offset))
            return self
        if not (is_length(uy) and is_length(ux)):
            if uy != ux:
                raise CalibrationError(f"the image axes have units {uy!r} and {ux!r}, which are not both "
                                       f"lengths; cannot measure grains in them")
            return self
        sy, sx = (convert_length(v, u, "nm") for v, u in zip(self.image.scale, (uy, ux)))
        return self.to_unit(readable_unit(min(sy, sx), "nm"))

    def pixel_size_in(self, unit: str) -> tuple[float, float]:
        """``(y, x)`` pixel size converted to ``unit``."""
        return self.to_unit(unit).pixel_size

    def resampled(self, factor: float | tuple[float, float]) -> "Calibration":
        """Calibration after resampling the image by ``factor`` (2 = twice as many pixels)."""
        fy, fx = (factor, factor) if isinstance(factor, (int, float)) else factor
        n = self.ndim
        scale = list(self.scale)
        offset = list(self.offset)
        for i, f in zip((n - 2, n - 1), (fy, fx)):
            # keep the physical position of the image edge: centre of first pixel moves
            edge = offset[i] - scale[i] / 2
            scale[i] = scale[i] / f
            offset[i] = edge + scale[i] / 2
        return replace(self, scale=tuple(scale), offset=tuple(offset))

    def cropped(self, rows: slice | None = None, cols: slice | None = None) -> "Calibration":
        """Calibration of a crop ``image[rows, cols]`` (offsets move, pixel size stays)."""
        n = self.ndim
        offset = list(self.offset)
        for i, sl in zip((n - 2, n - 1), (rows, cols)):
            if sl is not None and sl.start:
                offset[i] = offset[i] + sl.start * self.scale[i]
        return replace(self, offset=tuple(offset))

    def with_frames(self, scale: float = 1.0, unit: str = PIXEL, name: str = "frame") -> "Calibration":
        """Prepend a navigation (frame) axis to an image calibration."""
        return Calibration(
            (float(scale),) + self.scale, (unit,) + self.units, (0.0,) + self.offset,
            (name,) + self.names, (True,) + self.navigate,
        )

    # ------------------------------------------------------------------ front ends
    def to_napari(self) -> dict:
        """Keyword arguments for a napari layer: ``scale``, ``translate``, ``units``, ``axis_labels``."""
        units = tuple("pixel" if u == PIXEL else u.replace("µ", "u").replace("Å", "angstrom")
                      for u in self.units)
        return dict(scale=self.scale, translate=self.offset, units=units, axis_labels=self.names)

    def to_axes(self, shape: Sequence[int]) -> list[dict]:
        """HyperSpy axis dicts (array order) for ``hs.signals.Signal2D(data, axes=...)``."""
        if len(shape) != self.ndim:
            raise ValueError(f"shape {tuple(shape)} does not match a {self.ndim}-axis calibration")
        return [
            dict(name=n, size=int(size), scale=s, offset=o, units=("" if u == PIXEL else u),
                 navigate=nav)
            for size, n, s, o, u, nav in zip(shape, self.names, self.scale, self.offset,
                                             self.units, self.navigate)
        ]

    def describe(self) -> str:
        """A one-line human description, e.g. ``'512×512 px at 12.5 nm/px'``."""
        sy, sx = self.pixel_size
        u = self.unit if self.image.units[0] == self.image.units[1] else "/".join(self.image.units)
        size = f"{sx:g} {u}/px" if sy == sx else f"{sy:g}×{sx:g} {u}/px (y×x)"
        return size
