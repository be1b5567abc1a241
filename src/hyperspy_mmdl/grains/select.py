"""Select grains by size and circularity ranges, as ImageJ's *Analyze Particles* does.

ImageJ's dialog takes ``size=0-Infinity`` (calibrated units², or pixels with
"Pixel units") and ``circularity=0.00-1.00``; a particle is kept when its pixel
count lies in the size range and its circularity in the circularity range,
bounds included (``ij/plugin/filter/ParticleAnalyzer.java`` 1.53t: the size
range is converted to pixels by dividing by the pixel area, and the pixel count
is compared with it). :func:`select_grains` applies the same rule to a grain
table of :func:`hyperspy_mmdl.grains.measure`; :func:`keep_labels` clears the
labels of the grains left out, so that a summary of the selection can be
computed on the labels that remain.
"""

from __future__ import annotations

import math
import re

import numpy as np

__all__ = ["parse_range", "select_grains", "keep_labels", "FULL_SIZE", "FULL_CIRCULARITY"]

FULL_SIZE = "0-Infinity"
FULL_CIRCULARITY = "0.00-1.00"

_NUMBER = r"(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?"
_RANGE = re.compile(rf"^\s*({_NUMBER})\s*(?:-\s*({_NUMBER}|infinity|inf)\s*)?$", re.IGNORECASE)


def parse_range(text, name: str = "range") -> tuple[float, float]:
    """``(low, high)`` from an ImageJ range such as ``"0-Infinity"``, ``"0.2-0.9"`` or ``"50"``.

    Parameters
    ----------
    text : str, tuple or None
        ``"low-high"``; ``"low"`` alone means ``low-Infinity`` (as ImageJ);
        ``None`` or ``""`` is ``0-Infinity``; a ``(low, high)`` pair is checked
        and returned.
    name : str
        What the range is of, for error messages (``"size"``, ``"circularity"``).

    Returns
    -------
    tuple of float

    Raises
    ------
    ValueError
        Unreadable text, a negative bound, or ``low > high``.

    Example
    -------
    >>> parse_range("0-Infinity"), parse_range("0.25-0.9"), parse_range("50")
    ((0.0, inf), (0.25, 0.9), (50.0, inf))
    """
    if text is None or (isinstance(text, str) and not text.strip()):
        return 0.0, math.inf
    if isinstance(text, str):
        m = _RANGE.match(text)
        if not m:
            raise ValueError(f"{name}: cannot read the range {text!r}; write it as ImageJ does, "
                             f"e.g. '0-Infinity' or '0.50-1.00'")
        low = float(m.group(1))
        high = math.inf if m.group(2) is None or m.group(2).lower().startswith("inf") else float(m.group(2))
    else:
        low, high = (float(v) for v in text)
    if not (low >= 0 and high >= 0) or math.isnan(low) or math.isnan(high):
        raise ValueError(f"{name}: bounds must be non-negative numbers, got {low:g}-{high:g}")
    if low > high:
        raise ValueError(f"{name}: the lower bound {low:g} is above the upper bound {high:g}")
    return low, high


def select_grains(table, size=None, circularity=None, *, pixel_units: bool = False) -> np.ndarray:
    """Which grains of a table lie inside ImageJ-style size and circularity ranges.

    Parameters
    ----------
    table : pandas.DataFrame
        A grain table of :func:`hyperspy_mmdl.grains.measure` (``area`` and
        ``circularity`` columns, ``attrs["pixel_size"]``).
    size : str or (float, float), optional
        Area range (see :func:`parse_range`) in the table's area unit
        (``attrs["units"]["area"]``, e.g. ``µm²``), or in pixels with
        ``pixel_units=True``; all sizes when omitted.
    circularity : str or (float, float), optional
        Circularity range within ``0-1``; all when omitted.
    pixel_units : bool
        The size range is in pixels (ImageJ's "Pixel units").

    Returns
    -------
    numpy.ndarray of bool
        One entry per table row, True for the grains kept.

    Notes
    -----
    As ImageJ, the grain's pixel count is compared with the size range divided
    by the pixel area, and circularities above 1 count as 1 when the upper
    bound is at most 1.

    Example
    -------
    >>> import pandas as pd
    >>> t = pd.DataFrame({"area": [4.0, 25.0, 100.0], "circularity": [0.9, 0.5, 0.95]})
    >>> t.attrs["pixel_size"] = (1.0, 1.0)
    >>> select_grains(t, "10-Infinity", "0.60-1.00").tolist()
    [False, False, True]
    """
    lo, hi = parse_range(size, "size")
    clo, chi = parse_range(circularity, "circularity")
    n = len(table)
    keep = np.ones(n, dtype=bool)
    if n == 0:
        return keep
    if (lo, hi) != (0.0, math.inf):
        if "area" not in table.columns:
            raise ValueError("the grain table has no 'area' column to select sizes on")
        sy, sx = table.attrs.get("pixel_size", (1.0, 1.0))
        pixel_area = float(sy) * float(sx)
        pixels = np.rint(np.asarray(table["area"], dtype=np.float64) / pixel_area)
        unit_squared = 1.0 if pixel_units else pixel_area
        keep &= (pixels >= lo / unit_squared) & (pixels <= hi / unit_squared)
    if (clo, chi) != (0.0, math.inf) and (clo, chi) != (0.0, 1.0):
        if "circularity" not in table.columns:
            raise ValueError("the grain table has no 'circularity' column to select on")
        circ = np.asarray(table["circularity"], dtype=np.float64)
        if chi <= 1.0:
            circ = np.minimum(circ, 1.0)
        keep &= (circ >= clo) & (circ <= chi)
    return keep


def keep_labels(labels, keep) -> np.ndarray:
    """A copy of ``labels`` where every label not in ``keep`` is 0.

    Parameters
    ----------
    labels : array_like of int
        A label image (any dimension).
    keep : array_like of int
        The label values to keep.

    Example
    -------
    >>> keep_labels(np.array([[1, 2], [3, 0]]), [2, 3]).tolist()
    [[0, 2], [3, 0]]
    """
    lab = np.asarray(labels)
    keep = np.asarray(keep, dtype=np.int64).ravel()
    return np.where(np.isin(lab, keep[keep > 0]), lab, 0).astype(lab.dtype, copy=False)
