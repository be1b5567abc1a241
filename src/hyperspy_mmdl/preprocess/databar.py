"""Find and remove the information strip ("data bar") at the bottom of SEM images.

FEI/Thermo, Zeiss and JEOL microscopes burn a strip of text (high voltage,
magnification, working distance, a scale bar, a logo) into the bottom rows of
the saved image. It must not be analysed as microstructure. The strip has a
signature that natural image rows lack: its rows are mostly one flat
background level (black, white or light grey) with sparse, high-contrast text
of the opposite polarity, and it is often topped by a one-pixel separator line.

:func:`find_data_bar` scans the rows from the bottom up with that test and
returns the first row of the strip; :func:`remove_data_bar` crops or masks it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..calibration import Calibration

__all__ = ["DataBar", "find_data_bar", "remove_data_bar"]

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
    a = np.asarray(image)
    if a.ndim == 3 and a.shape[-1] in (3, 4):
        a = a[..., :3].mean(axis=-1) if a.dtype.kind == "f" else a[..., :3].astype(np.float32).mean(-1)
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
