"""Find and remove the information strip ("data bar") at the bottom of SEM images.

FEI/Thermo, Zeiss and JEOL microscopes burn a strip of text (high voltage,
magnification, working distance, a scale bar, a logo) into the bottom rows of
the saved image. It must not be analysed as microstructure. The strip has a
signature that natural image rows lack: its rows are mostly one flat
background level (black, white or light grey) with sparse, high-contrast text
of the opposite polarity, and it is often topped by a one-pixel separator line.

:func:`find_data_bar` scans the rows from the bottom up with that test and
returns the first row of the strip; :func:`remove_data_bar` crops or masks it.

When the file carries no calibration, the bar's scale bar still fixes one:
:func:`find_scale_bar` measures the bar's length in pixels (a solid rectangle,
JEOL style, or a line with end ticks, Zeiss style) and
:func:`offer_calibration` turns it, with the length printed next to it (or the
printed field-of-view width), into a :class:`CalibrationOffer` that the user
confirms. The printed text itself is not read (no OCR): the user types the
value they see.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..calibration import Calibration

__all__ = [
    "CalibrationOffer",
    "DataBar",
    "ScaleBar",
    "find_data_bar",
    "find_scale_bar",
    "offer_calibration",
    "remove_data_bar",
]

_LEVELS = 64  # grey levels of the row histograms
_MAX_FRACTION = 0.4  # a data bar covers at most this fraction of the image height
_MIN_ROWS = 6


@dataclass(frozen=True)
class DataBar:
    """Location of a data bar.

    Attributes
    ----------
    top : int
        First row of the bar; the image proper is ``image[:top]``.
    height : int
        Number of rows of the image (the bar spans ``top:height``).
    background : str
        ``"dark"`` (black strip, bright text: FEI, JEOL, most Zeiss) or ``"bright"``.
    """

    top: int
    height: int
    background: str

    @property
    def rows(self) -> slice:
        """Row slice of the bar."""
        return slice(self.top, self.height)

    @property
    def n_rows(self) -> int:
        return self.height - self.top


def _gray01(image) -> np.ndarray:
    """2-D float image in [0, 1] from a gray or RGB(A) array of any real dtype."""
    from .color import split_colour

    a, _ = split_colour(image)
    if a.ndim != 2:
        raise ValueError(f"find_data_bar expects a 2-D gray or an RGB(A) image, got shape {np.shape(image)}")
    if a.dtype == bool:
        return a.astype(np.float32)
    a = a.astype(np.float32)
    finite = np.isfinite(a)
    if not finite.all():
        a = np.where(finite, a, np.nanmin(np.where(finite, a, np.inf)) if finite.any() else 0.0)
    lo, hi = float(a.min()), float(a.max())
    if hi <= lo:
        return np.zeros_like(a)
    return (a - lo) / (hi - lo)


def _row_classes(g):
    """Per row: background level, fraction at it, fraction of 'text' pixels far from it, uniformity.

    Returns arrays ``level`` (0..1), ``flat`` (fraction within 3/64 of the row's mode),
    ``binary`` (fraction either at the background or far from it, i.e. not mid-grey).
    """
    q = np.minimum((g * _LEVELS).astype(np.int32), _LEVELS - 1)
    h, w = q.shape
    hist = np.bincount((np.arange(h, dtype=np.int64)[:, None] * _LEVELS + q).ravel(),
                       minlength=h * _LEVELS).reshape(h, _LEVELS).astype(np.int32)
    mode = hist.argmax(axis=1)
    cums = np.concatenate([np.zeros((h, 1), np.int32), np.cumsum(hist, axis=1)], axis=1)
    lo = np.clip(mode - 3, 0, _LEVELS)
    hi = np.clip(mode + 4, 0, _LEVELS)
    rows = np.arange(h)
    flat = (cums[rows, hi] - cums[rows, lo]) / w
    level = (mode + 0.5) / _LEVELS
    # pixels far (> 0.45) from the background: the text and scale-bar strokes
    far_lo = np.clip(((level - 0.45) * _LEVELS).astype(int), 0, _LEVELS)
    far_hi = np.clip(((level + 0.45) * _LEVELS).astype(int) + 1, 0, _LEVELS)
    far = (cums[rows, far_lo] + (w - cums[rows, far_hi])) / w
    return level, flat, far


def find_data_bar(image, *, max_fraction: float = _MAX_FRACTION) -> DataBar | None:
    """Locate the data bar at the bottom of an SEM image.

    Parameters
    ----------
    image : array_like
        2-D gray image or ``(H, W, 3|4)`` RGB(A) image, any real dtype.
    max_fraction : float
        Largest fraction of the image height a bar may cover.

    Returns
    -------
    DataBar or None
        None when the bottom rows do not look like an information strip (natural
        image content, or a uniformly flat image).

    Notes
    -----
    A row belongs to the bar when at least 45 % of its pixels sit at one flat
    background level, at least 85 % are either at that level or far (> 0.45 of
    the range) from it (sharp, saturated text, no mid-grey texture), and the
    level is near black or near white, or when it is a flat separator line
    (> 90 % at one level). Starting at the bottom, rows are added while they
    belong to the bar (gaps of two rows are bridged); blank rows at the bar's
    background level are then dropped from its top, so that a bar under a flat
    image starts at its frame line or first text. A candidate is kept when it
    holds text (at least three rows with strokes), spans at least
    ``_MIN_ROWS`` rows and at most ``max_fraction`` of the image, and (unless
    the image above is flat) most of the 20 rows above it are not bar-like, so
    that a bright image with thin dark lines (an etched metal) is no strip.
    """
    g = _gray01(image)
    h, w = g.shape
    if h < 4 * _MIN_ROWS or w < 16:
        return None
    start = int(h * (1 - max_fraction)) - 1
    level, flat, far = _row_classes(g[start:])
    bottom = h - start
    # background of the bar: the commonest level of the bottom rows
    k = max(3, bottom // 20)
    q = np.minimum((g[h - k:] * _LEVELS).astype(np.int32), _LEVELS - 1)
    bg = (np.bincount(q.ravel(), minlength=_LEVELS).argmax() + 0.5) / _LEVELS
    if 0.25 < bg < 0.75:  # a bar background is black, white or light grey
        return None
    near_bg = np.abs(level - bg) < 0.1
    binary = flat + far
    text_row = near_bg & (flat >= 0.45) & (binary >= 0.85) & (far >= 0.005)
    blank_row = near_bg & (flat >= 0.995)
    line_row = flat >= 0.9
    member = text_row | blank_row | line_row
    i = bottom - 1
    gap = 0
    top = bottom
    while i >= 0:
        if member[i]:
            top = i
            gap = 0
        else:
            gap += 1
            if gap > 2:
                break
        i -= 1
    if i < 0:
        # the run reached the top of the window: the image above is as flat as the bar's
        # background, so the bar starts at its frame line or first text, not at a blank row
        while top < bottom and blank_row[top]:
            top += 1
    n_rows = bottom - top
    n_text = int(text_row[top:].sum())
    if n_rows < _MIN_ROWS or n_text < 3:
        return None
    if i < 0 and top == 0:  # the whole window is bar-like: a flat image, not a strip
        return None
    if i >= 0:
        # a strip ends at a clear change: most of the rows just above it are image rows
        above = member[max(0, top - 24):max(0, top - 3)]
        if len(above) and above.mean() > 0.3:
            return None
    return DataBar(top=int(start + top), height=int(h), background="dark" if bg < 0.5 else "bright")


def remove_data_bar(image, calibration: Calibration | None = None, mode: str = "crop", bar=None):
    """Crop or mask the data bar of an image (or of every frame of a stack).

    Parameters
    ----------
    image : ndarray
        ``(H, W)``, ``(H, W, 3|4)`` or a stack ``(n, H, W)``; for a stack the bar
        is found on the first frame.
    calibration : Calibration, optional
        The image's calibration; returned adjusted (offset unchanged for a crop
        from the top, since the bar is at the bottom).
    mode : {"crop", "mask"}
        ``"crop"`` returns ``image[..., :top, :]``; ``"mask"`` returns a
        :class:`numpy.ma.MaskedArray` of the full image with the bar rows masked.
    bar : DataBar, optional
        A bar found earlier; found with :func:`find_data_bar` when omitted.

    Returns
    -------
    image : ndarray or numpy.ma.MaskedArray
    calibration : Calibration or None

    Image and calibration come back unchanged (a mask of zeros in ``"mask"``
    mode) when there is no bar; call :func:`find_data_bar` to know where it was.
    """
    if mode not in ("crop", "mask"):
        raise ValueError(f"mode must be 'crop' or 'mask', got {mode!r}")
    a = np.asarray(image)
    rgb = a.ndim == 3 and a.shape[-1] in (3, 4)
    stack = a.ndim == 3 and not rgb
    if bar is None:
        bar = find_data_bar(a[0] if stack else a)
    if bar is None:
        return (np.ma.MaskedArray(a, mask=np.zeros(a.shape, bool)) if mode == "mask" else a), calibration
    row_axis = a.ndim - 3 if rgb else a.ndim - 2
    if mode == "crop":
        index = [slice(None)] * a.ndim
        index[row_axis] = slice(0, bar.top)
        out = a[tuple(index)]
        cal = calibration.cropped(rows=slice(0, bar.top)) if calibration is not None else None
        return out, cal
    mask = np.zeros(a.shape, dtype=bool)
    index = [slice(None)] * a.ndim
    index[row_axis] = slice(bar.top, None)
    mask[tuple(index)] = True
    return np.ma.MaskedArray(a, mask=mask), calibration


# --------------------------------------------------------------------------- scale bar
@dataclass(frozen=True)
class ScaleBar:
    """A scale bar found in a data bar.

    Attributes
    ----------
    rows, cols : slice
        Bounding box in the full image (array order).
    length_px : float
        Length of the bar in pixels: the width of a solid bar, or the distance
        between the centres of the end ticks of a ticked line.
    style : str
        ``"solid"`` (filled rectangle, JEOL style) or ``"ticks"`` (line with end
        ticks, Zeiss style).
    """

    rows: slice
    cols: slice
    length_px: float
    style: str


def _tick_length(comp: np.ndarray) -> float:
    cols = np.flatnonzero(comp.mean(axis=0) >= 0.5)
    groups = np.split(cols, np.flatnonzero(np.diff(cols) > 1) + 1)
    if len(groups) < 2:
        return float(comp.shape[1] - 1)
    return float(groups[-1].mean() - groups[0].mean())


def find_scale_bar(image, bar: DataBar | None = None) -> ScaleBar | None:
    """Find the scale bar printed in the data bar of an SEM image.

    Parameters
    ----------
    image : array_like
        2-D gray or RGB(A) image with a data bar.
    bar : DataBar, optional
        The image's data bar (found with :func:`find_data_bar` when omitted).

    Returns
    -------
    ScaleBar or None
        The widest candidate; None when there is no data bar or no bar-like mark.

    Notes
    -----
    The strip's "ink" (pixels of the opposite polarity to its background) is
    split into 8-connected pieces after removing frame lines (rows or columns
    more than half ink). A piece is a solid scale bar when it fills at least
    97 % of its box, is at least 3 px high, 10 px wide and twice as wide as
    high; it is a ticked scale bar when one of its rows spans at least 95 % of
    its width, both end columns are mostly ink (the ticks) and it fills less
    than 60 % of its box.
    """
    from scipy import ndimage as ndi

    g = _gray01(image)
    if bar is None:
        bar = find_data_bar(image)
    if bar is None:
        return None
    strip = g[bar.top:]
    ink = strip > 0.5 if bar.background == "dark" else strip < 0.5
    ink[ink.mean(axis=1) > 0.5, :] = False
    ink[:, ink.mean(axis=0) > 0.5] = False
    lab, _ = ndi.label(ink, structure=np.ones((3, 3)))
    best = None
    for i, sl in enumerate(ndi.find_objects(lab), 1):
        if sl is None:
            continue
        h, w = sl[0].stop - sl[0].start, sl[1].stop - sl[1].start
        comp = lab[sl] == i
        solid = comp.mean() >= 0.97 and h >= 3 and w >= 10 and w >= 2 * h
        ticks = (w >= 15 and h >= 3 and comp.sum(axis=1).max() >= 0.95 * w and comp[:, 0].mean() >= 0.5
                 and comp[:, -1].mean() >= 0.5 and comp.mean() < 0.6)
        if not (solid or ticks):
            continue
        length = float(w) if solid else _tick_length(comp)
        if best is None or length > best.length_px:
            best = ScaleBar(rows=slice(bar.top + sl[0].start, bar.top + sl[0].stop), cols=sl[1],
                            length_px=length, style="solid" if solid else "ticks")
    return best


@dataclass(frozen=True)
class CalibrationOffer:
    """The calibration a data bar implies, for the user to confirm.

    Attributes
    ----------
    calibration : Calibration
        Square pixels of ``pixel_size`` ``unit``.
    pixel_size : float
    unit : str
    source : str
        ``"scale bar"`` or ``"field of view"``.
    explanation : str
        A sentence saying how it was derived (for the UI).
    """

    calibration: Calibration
    pixel_size: float
    unit: str
    source: str
    explanation: str


def _length(value, unit):
    from ..calibration import normalize_unit

    if isinstance(value, str):
        import re

        m = re.fullmatch(r"\s*([0-9.eE+-]+)\s*([^\s0-9].*?)?\s*", value)
        if not m:
            raise ValueError(f"cannot read a length from {value!r}; write e.g. '1 µm' or '500 nm'")
        value, unit = float(m.group(1)), (m.group(2) or unit)
    if unit is None:
        raise ValueError("give the unit of the length, e.g. '1 µm'")
    value = float(value)
    if not np.isfinite(value) or value <= 0:
        raise ValueError(f"the length must be positive, got {value}")
    return value, normalize_unit(unit)


def offer_calibration(image, scale_bar_length=None, *, field_of_view=None, unit=None,
                      bar: DataBar | None = None) -> CalibrationOffer | None:
    """The pixel size implied by the data bar's scale bar or printed field of view.

    Parameters
    ----------
    image : array_like
        The full image, data bar included.
    scale_bar_length : str or float, optional
        The length printed next to the scale bar (``"1 µm"``, or a number with
        ``unit``). The bar's pixel length is measured with :func:`find_scale_bar`.
    field_of_view : str or float, optional
        The printed field-of-view width (FEI "HFW", JEOL "FOV", Zeiss "Width"),
        which spans the full image width.
    unit : str, optional
        Unit of a numeric length.

    Returns
    -------
    CalibrationOffer or None
        None when a scale-bar length is given but no scale bar is found. With
        no length given, the offer is in pixels of the bar: ``pixel_size`` is
        ``1 / length_px`` per printed unit (``unit`` ``"bar"``), so the UI can
        show "the scale bar is N px long; what length does it print?".
    """
    a = np.asarray(image)
    if field_of_view is not None:
        value, u = _length(field_of_view, unit)
        width = a.shape[1]
        size = value / width
        return CalibrationOffer(Calibration.from_pixel_size(size, u), size, u, "field of view",
                                f"field of view {value:g} {u} over {width} px = {size:.4g} {u}/px")
    value, u = _length(scale_bar_length, unit) if scale_bar_length is not None else (None, None)
    sb = find_scale_bar(a, bar)
    if sb is None:
        return None
    if scale_bar_length is None:
        size = 1.0 / sb.length_px
        return CalibrationOffer(Calibration.uncalibrated(), size, "bar", "scale bar",
                                f"scale bar of {sb.length_px:g} px found; enter the length it prints")
    size = value / sb.length_px
    return CalibrationOffer(Calibration.from_pixel_size(size, u), size, u, "scale bar",
                            f"scale bar {value:g} {u} = {sb.length_px:g} px -> {size:.4g} {u}/px")
