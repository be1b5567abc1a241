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
from dataclasses import dataclass, field, replace
from typing import Iterable, Sequence

__all__ = ["Calibration", "normalize_unit", "convert_length", "PIXEL"]

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
        raise ValueError(f"cannot convert between {a!r} and {b!r}: the axis is not calibrated")
    ureg = _ureg()
    q = ureg.Quantity(float(value), a.replace("µ", "u").replace("Å", "angstrom"))
    return float(q.to(b.replace("µ", "u").replace("Å", "angstrom")).magnitude)


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
        scale = tuple(float(s) for s in self.scale)
        for s in scale:
            if not math.isfinite(s) or s <= 0:
                raise ValueError(f"pixel sizes must be finite and positive, got {scale}")
        object.__setattr__(self, "scale", scale)
        object.__setattr__(self, "units", tuple(normalize_unit(u) for u in _tuple(self.units, n, None)))
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
    def uncalibrated(cls, ndim: int = 2) -> "Calibration":
        """Pixel units on every axis."""
        return cls(scale=(1.0,) * ndim, units=(PIXEL,) * ndim)

    @classmethod
    def from_axes(cls, axes: Sequence[dict]) -> "Calibration":
        """From rosettasciio / HyperSpy axis dicts (any order; sorted by ``index_in_array``)."""
        axes = sorted(axes, key=lambda a: a.get("index_in_array", 0))
        n = len(axes)
        default = cls.uncalibrated(n).names if n else ()

        def name(i, a):  # "<undefined>" (HyperSpy/TIFF) or missing names get the default y, x, frame
            text = str(a.get("name") or "").strip()
            return default[i] if text.strip("<>").lower() in ("", "undefined", "t.b.d.") else text

        return cls(
            scale=tuple(float(a.get("scale", 1.0) or 1.0) for a in axes),
            units=tuple(a.get("units") if isinstance(a.get("units"), str) else None for a in axes),
            offset=tuple(float(a.get("offset", 0.0) or 0.0) for a in axes),
            names=tuple(name(i, a) for i, a in enumerate(axes)),
            navigate=tuple(bool(a.get("navigate", False)) for a in axes),
        )

    @classmethod
    def from_signal(cls, signal) -> "Calibration":
        """From a HyperSpy signal's ``axes_manager`` (array order)."""
        axes = []
        am = signal.axes_manager
        for ax in am._axes:
            axes.append(dict(index_in_array=ax.index_in_array, scale=getattr(ax, "scale", 1.0),
                             offset=getattr(ax, "offset", 0.0), units=ax.units, name=ax.name,
                             navigate=ax.navigate))
        return cls.from_axes(axes)

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
        """The unit of the image axes (they must agree)."""
        uy, ux = self.image.units
        if uy != ux:
            raise ValueError(f"image axes have different units ({uy!r} and {ux!r}); convert one first")
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
            raise ValueError(f"cannot express an uncalibrated image in {unit!r}")
        n = self.ndim
        scale, units, offset = list(self.scale), list(self.units), list(self.offset)
        for i in (n - 2, n - 1):
            scale[i] = convert_length(scale[i], units[i], unit)
            offset[i] = convert_length(offset[i], units[i], unit)
            units[i] = unit
        return replace(self, scale=tuple(scale), units=tuple(units), offset=tuple(offset))

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
