"""Grain labels as files ImageJ / Fiji measure as we do: a 16-bit label TIFF and a binary mask.

A label image written as a plain binary mask (``labels > 0``) loses the grains:
grains separated by one-pixel boundary lines still touch diagonally, and
ImageJ's *Analyze Particles* (8-connected particles) merges them (237 grains
became 102 particles on an SEM film). :func:`separated_mask` removes the few
pixels where two grains touch, so each grain stays one 8-connected particle
of its own; :func:`write_binary_tiff` writes that mask (8-bit, 0/255) and
:func:`write_label_tiff` the labels themselves (16-bit, 32-bit beyond 65535
labels). Both TIFFs carry the calibration as ImageJ reads it (resolution tags
and ``unit=`` in the ImageJ description) and as DigitalMicrograph and
:func:`hyperspy_mmdl.io.load` read it, through :func:`hyperspy_mmdl.io.save`.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from ..calibration import Calibration

__all__ = ["separated_mask", "count_particles", "write_label_tiff", "write_binary_tiff"]

_TIFF = (".tif", ".tiff")
_MAX_ROUNDS = 8


def _check(labels) -> np.ndarray:
    lab = np.asarray(labels)
    if lab.ndim < 2:
        raise ValueError(f"expected a 2-D label image or a stack of them, got shape {lab.shape}")
    if lab.dtype == bool:
        from skimage.measure import label

        lab = np.stack([label(f, connectivity=2) for f in lab.reshape((-1,) + lab.shape[-2:])]).reshape(lab.shape)
    if not np.issubdtype(lab.dtype, np.integer):
        raise ValueError(f"labels must be integers, got {lab.dtype}")
    if lab.size and lab.min() < 0:
        raise ValueError("labels must be non-negative (0 is background)")
    return lab


def _pieces(lab: np.ndarray, n: int) -> np.ndarray:
    """Number of 8-connected pieces of each label ``0..n`` of a compact 2-D label image."""
    from skimage.measure import label

    regions = label(lab, connectivity=2, background=0)
    if regions.max() == 0:
        return np.zeros(n + 1, np.int64)
    first = np.unique(regions.ravel(), return_index=True)[1]
    values = lab.ravel()[first]
    return np.bincount(values[values > 0], minlength=n + 1)


def _separate_frame(lab: np.ndarray) -> np.ndarray:
    from scipy import ndimage as ndi

    values, compact = np.unique(lab, return_inverse=True)
    compact = compact.reshape(lab.shape)
    if values[0] != 0:  # no background: shift so that 0 stays background
        compact = compact + 1
    n = int(compact.max())
    if n <= 1:
        return compact > 0
    before = _pieces(compact, n)
    rank = np.arange(n + 1, dtype=np.int64)  # who keeps a contested pixel: the higher rank
    for _ in range(_MAX_ROUNDS):
        r = rank[compact]
        keep = (compact > 0) & (ndi.maximum_filter(r, size=3, mode="constant", cval=0) <= r)
        after = _pieces(np.where(keep, compact, 0), n)
        damaged = np.flatnonzero((after != before)[1:]) + 1  # a grain split or gone
        if not len(damaged):
            return keep
        rank[damaged] = rank.max() + 1 + np.arange(len(damaged))
    return keep


def separated_mask(labels) -> np.ndarray:
    """A foreground mask in which no two grains touch, not even diagonally.

    Parameters
    ----------
    labels : array_like of int
        ``(H, W)`` labels (0 = background) or a stack ``(..., H, W)``, each
        frame separated on its own.

    Returns
    -------
    numpy.ndarray of bool
        True on grain pixels, except where a grain has an 8-neighbour of
        another grain: there the grain with the lower label gives the pixel up
        (one pixel of gap), unless that would split it or remove it, in which
        case its neighbour does. Each grain is then its own 8-connected
        particle (:func:`count_particles` equals the number of grains).

    Example
    -------
    >>> lab = np.array([[1, 1, 0, 0],
    ...                 [1, 1, 0, 0],
    ...                 [0, 0, 2, 2],
    ...                 [0, 0, 2, 2]])
    >>> count_particles(lab > 0), count_particles(separated_mask(lab))
    (1, 2)
    """
    lab = _check(labels)
    frames = lab.reshape((-1,) + lab.shape[-2:])
    return np.stack([_separate_frame(f) for f in frames]).reshape(lab.shape)


def count_particles(mask) -> int:
    """The number of 8-connected particles of a mask (or of a stack's frames together): what
    ImageJ's *Analyze Particles* counts.

    Example
    -------
    >>> count_particles(np.eye(3, dtype=bool))
    1
    """
    from skimage.measure import label

    m = np.asarray(mask) > 0
    return int(sum(label(f, connectivity=2).max() for f in m.reshape((-1,) + m.shape[-2:])))


def _calibration(calibration: Calibration | None, ndim: int) -> Calibration:
    cal = calibration if calibration is not None else Calibration.uncalibrated(2)
    if cal.ndim == ndim:
        return cal
    if cal.ndim == 2 and ndim == 3:
        return cal.with_frames()
    if cal.ndim > ndim:
        return Calibration(cal.scale[-ndim:], cal.units[-ndim:], cal.offset[-ndim:], cal.names[-ndim:],
                           cal.navigate[-ndim:])
    raise ValueError(f"a {cal.ndim}-axis calibration for {ndim}-D labels")


def _tiff_path(path) -> Path:
    p = Path(path)
    if p.suffix.lower() not in _TIFF:
        raise ValueError(f"{p}: ImageJ label and mask files are written as .tif or .tiff")
    return p


def write_label_tiff(path, labels, calibration: Calibration | None = None, *, title: str = "") -> Path:
    """Write labels as a calibrated 16-bit TIFF that ImageJ / Fiji opens with its scale.

    Parameters
    ----------
    path : str or Path
        ``.tif`` / ``.tiff`` file.
    labels : array_like of int
        ``(H, W)`` or ``(frames, H, W)`` labels, 0 = background.
    calibration : Calibration, optional
        Of the labels (2 axes, or 3 for a stack); pixels when omitted.
    title : str
        Stored as the image title.

    Returns
    -------
    Path

    Notes
    -----
    16-bit unsigned when the largest label is below 65536, else 32-bit
    unsigned (ImageJ opens that as a 32-bit image, exact up to 2²⁴).

    Example
    -------
    >>> import tempfile, os
    >>> lab = np.zeros((8, 8), int); lab[2:5, 2:5] = 3
    >>> p = write_label_tiff(os.path.join(tempfile.mkdtemp(), "g.tif"), lab, Calibration.from_pixel_size(10, "nm"))
    >>> import tifffile; tifffile.imread(p).dtype
    dtype('uint16')
    """
    p = _tiff_path(path)
    lab = _check(labels)
    dtype = np.uint16 if lab.max(initial=0) < 2**16 else np.uint32
    from .. import io

    return io.save(p, lab.astype(dtype), _calibration(calibration, lab.ndim), title=title or p.stem)


def write_binary_tiff(path, labels, calibration: Calibration | None = None, *, title: str = "") -> Path:
    """Write the grains as a calibrated 8-bit binary TIFF (0 / 255) in which they stay apart.

    ImageJ's *Analyze Particles* on this file finds one particle per grain
    (:func:`separated_mask`); the grains touching another grain lose the
    contact pixels, so areas are slightly smaller there than in the labels.

    Parameters
    ----------
    path : str or Path
        ``.tif`` / ``.tiff`` file.
    labels : array_like of int
        ``(H, W)`` or ``(frames, H, W)`` labels, 0 = background.
    calibration : Calibration, optional
        Of the labels; pixels when omitted.
    title : str
        Stored as the image title.

    Returns
    -------
    Path

    Example
    -------
    >>> import tempfile, os, tifffile
    >>> lab = np.zeros((8, 8), int); lab[1:4, 1:4] = 1; lab[4:7, 4:7] = 2
    >>> p = write_binary_tiff(os.path.join(tempfile.mkdtemp(), "m.tif"), lab)
    >>> count_particles(tifffile.imread(p))
    2
    """
    p = _tiff_path(path)
    lab = _check(labels)
    mask = separated_mask(lab)
    grains = sum(len(np.unique(f[f > 0])) for f in lab.reshape((-1,) + lab.shape[-2:]))
    found = count_particles(mask)
    if found != grains:
        warnings.warn(f"{p.name}: {grains} grains give {found} particles in the binary mask "
                      f"(a grain in several pieces, or too thin to keep apart)", stacklevel=2)
    from .. import io

    return io.save(p, mask.astype(np.uint8) * 255, _calibration(calibration, lab.ndim), title=title or p.stem)
