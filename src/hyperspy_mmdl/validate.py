"""One check of an image's shape and values before anything is measured on it.

:func:`check_frame` is called at the entrance of the per-frame chain
(:func:`hyperspy_mmdl.pipeline.analyze_frame`, :func:`~hyperspy_mmdl.pipeline.measure_frame`)
and of :func:`hyperspy_mmdl.grains.segment`; it applies one policy:

* **Empty and degenerate shapes** (0×N, 1×N, 2×2 ... anything with a side under
  :data:`MIN_SIDE` pixels) cannot hold a grain: :class:`~hyperspy_mmdl.errors.ImageError`.
* **NaN and ±Inf pixels** become *invalid area*: their values are filled from the nearest
  finite pixel (so filters and thresholds see a plausible image), no grain may include
  them (:func:`exclude_invalid`) and they are left out of the analysed area; a warning
  gives their fraction. An image without one finite pixel is an error.
* **Extreme dynamic range** (float values offset by 1e10, scaled by 1e300 or 1e-300,
  ranges float32 cannot resolve) is normalised to [0, 1] in float64 first.
* **Constant images** give a warning and 0 grains, and say so in the result's notes.

Example
-------
>>> import numpy as np
>>> img = np.random.default_rng(0).random((32, 32)); img[:4, :4] = np.nan
>>> checked = check_frame(img, warn=False)
>>> checked.invalid.sum(), bool(np.isfinite(checked.image).all())
(16, True)
>>> checked.notes[0][:38]
'1.6 % of the pixels are NaN or infinit'
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import numpy as np

from .errors import ImageError

__all__ = ["CheckedFrame", "check_frame", "check_labels", "exclude_invalid", "MIN_SIDE"]

MIN_SIDE = 8
"""The smallest image side (pixels) in which a grain can be segmented."""

_HUGE = 1e30
_TINY = 1e-30
_RESOLUTION = 1e-4  # a range below this fraction of the values' magnitude is lost in float32


@dataclass
class CheckedFrame:
    """What :func:`check_frame` found, and the frame to analyse.

    Attributes
    ----------
    image : numpy.ndarray
        The frame with finite values only (non-finite pixels filled from their nearest
        finite neighbour), rescaled to [0, 1] (float32) when its range was extreme;
        the input itself when nothing needed changing.
    invalid : numpy.ndarray or None
        ``(H, W)`` True where the input was NaN or ±Inf; None when every pixel was finite.
    constant : bool
        Every (finite) pixel has the same value: no grain can be found.
    rescaled : bool
        The values were normalised to [0, 1] in float64.
    notes : list of str
        What a person should know, for :attr:`FrameAnalysis.notes`.
    """

    image: np.ndarray
    invalid: np.ndarray | None = None
    constant: bool = False
    rescaled: bool = False
    notes: list = field(default_factory=list)

    @property
    def changed(self) -> bool:
        """True when the frame to analyse differs from the input (or there is nothing to find)."""
        return self.invalid is not None or self.rescaled or self.constant

    @property
    def invalid_fraction(self) -> float:
        return 0.0 if self.invalid is None else float(self.invalid.mean())


def _shape_check(shape, what: str) -> None:
    if len(shape) < 2 or shape[0] == 0 or shape[1] == 0:
        raise ImageError(f"{what} is empty (shape {tuple(shape)}): there is nothing to analyse")
    h, w = shape[0], shape[1]
    if min(h, w) < MIN_SIDE:
        raise ImageError(f"{what} is {h}×{w} pixels, too small to hold a grain: segmentation needs at least "
                         f"{MIN_SIDE}×{MIN_SIDE} pixels")


def check_labels(labels, what: str = "the labels") -> np.ndarray:
    """``labels`` as a 2-D array, refusing empty ones (0×N) with :class:`ImageError`."""
    lab = np.asarray(labels)
    if lab.ndim == 2 and (lab.shape[0] == 0 or lab.shape[1] == 0):
        raise ImageError(f"{what} are empty (shape {lab.shape}): there is nothing to measure")
    return lab


def check_frame(image, *, what: str = "the image", warn: bool = True) -> CheckedFrame:
    """Check one frame's shape and values and return the frame to analyse (see the module docstring).

    Parameters
    ----------
    image : array_like
        ``(H, W)`` grey or ``(H, W, 3|4)`` colour, any real dtype.
    what : str
        How messages name the frame (``"film.dm4 frame 3"``).
    warn : bool
        Also issue a :class:`UserWarning` for non-finite pixels and constant images
        (the notes are returned either way).

    Returns
    -------
    CheckedFrame

    Raises
    ------
    ImageError
        An empty frame, a frame too small to hold a grain, or one without a finite pixel.
    """
    a = np.asarray(image)
    if a.dtype.names is not None:  # structured RGB: the colour module handles it; shape only
        _shape_check(a.shape, what)
        return CheckedFrame(image=a)
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[-1] not in (3, 4)):
        raise ImageError(f"{what}: expected a 2-D image or an (H, W, 3|4) colour image, got shape {a.shape}")
    _shape_check(a.shape, what)
    colour = a.ndim == 3
    out = CheckedFrame(image=a)
    if a.dtype.kind == "c":
        return out
    if a.dtype.kind == "f":
        finite = np.isfinite(a)
        if colour:
            finite = finite.all(axis=-1)
        if not finite.all():
            n_bad = int(finite.size - np.count_nonzero(finite))
            if n_bad == finite.size:
                raise ImageError(f"{what} has no finite pixel (every value is NaN or infinite): "
                                 f"nothing can be measured")
            grey_bad = a if not colour else a.max(axis=-1)
            n_nan = int(np.count_nonzero(np.isnan(grey_bad)))
            invalid = ~finite
            from scipy import ndimage as ndi

            idx = ndi.distance_transform_edt(invalid, return_distances=False, return_indices=True)
            a = a[idx[0], idx[1]]
            if not np.isfinite(a).all():  # a colour pixel with one bad channel: its neighbour's value
                a = np.where(np.isfinite(a), a, np.nanmedian(a[np.isfinite(a)]))
            out.image, out.invalid = a, invalid
            frac = n_bad / invalid.size
            out.notes.append(f"{100 * frac:.1f} % of the pixels are NaN or infinite ({n_nan} NaN, "
                             f"{n_bad - n_nan} ±Inf): left out of the analysed area, no grain includes them")
    lo, hi = _range(out.image)
    if not hi > lo:
        out.constant = True
        out.notes.append(f"the image is constant (every pixel {lo:g}): no grain can be found")
    elif a.dtype.kind == "f" and _extreme(lo, hi):
        b = out.image.astype(np.float64)
        mag = max(abs(lo), abs(hi))
        if not math.isfinite(hi - lo):  # the range itself overflows: scale first
            b = b / mag
            lo, hi = lo / mag, hi / mag
        out.image = ((b - lo) / (hi - lo)).astype(np.float32)
        out.rescaled = True
        out.notes.append(f"values from {lo:.6g} to {hi:.6g} (an extreme range for float32): normalised to "
                         f"[0, 1] in float64 before the analysis")
    if warn:
        for note in out.notes:
            if "NaN" in note or "constant" in note:
                warnings.warn(f"{what}: {note}", UserWarning, stacklevel=3)
    return out


def _range(a: np.ndarray) -> tuple[float, float]:
    if a.dtype.kind in "fc":
        return float(np.min(a).real.astype(np.float64)), float(np.max(a).real.astype(np.float64))
    return float(np.min(a)), float(np.max(a))


def _extreme(lo: float, hi: float) -> bool:
    mag = max(abs(lo), abs(hi))
    span = hi - lo
    return (not math.isfinite(span) or mag > _HUGE or mag < _TINY
            or span < _RESOLUTION * mag)


def exclude_invalid(labels, invalid) -> np.ndarray:
    """Labels with no grain on an invalid (NaN/Inf) pixel: those pixels become 0 and grains cut
    in pieces by them are renumbered as separate grains (4-connected), 1..n.

    Example
    -------
    >>> lab = np.zeros((5, 5), np.int32); lab[1:4, 0:5] = 1
    >>> bad = np.zeros((5, 5), bool); bad[:, 2] = True
    >>> exclude_invalid(lab, bad).max()
    2
    """
    lab = np.asarray(labels, dtype=np.int32)
    if invalid is None or not np.any(invalid):
        return lab
    from skimage.measure import label as cc_label

    lab = lab.copy()
    lab[np.asarray(invalid, bool)[: lab.shape[0], : lab.shape[1]]] = 0
    return cc_label(lab, background=0, connectivity=1).astype(np.int32)
