"""Intensity clean-up and normalisation of micrographs (SPEC §3.2, [PSC] Fig. S3).

* :func:`clean_nonfinite` — NaN/±inf replaced by a finite value, cast to float32
  (always the first step, [REV-EDE] §6.6);
* :func:`minmax` — ``(x − min)/(max − min)`` per image, into [0, 1];
* :func:`zscore` — ``(x − μ)/σ`` per image, or with given (dataset) statistics;
* :func:`clahe` — contrast-limited adaptive histogram equalisation
  (``skimage.exposure.equalize_adapthist``: kernel 1/8 of the image, clip 0.01, 256 bins);
* :func:`normalize` — one of them by name, frame by frame for stacks;
* :func:`histogram_figure` — the before/after histograms of Fig. S3.

Every function takes a 2-D image or a stack ``(..., H, W)`` (each frame on its
own) and returns float32.
"""

from __future__ import annotations

import numpy as np

__all__ = ["METHODS", "clahe", "clean_nonfinite", "histogram_figure", "minmax", "normalize", "zscore"]

METHODS = ("minmax", "zscore", "clahe", "none")


def _as_float_image(image, name="image") -> np.ndarray:
    a = np.asarray(image)
    if a.dtype.kind not in "biuf":
        raise ValueError(f"{name} must be a real-valued array, got dtype {a.dtype}")
    if a.ndim < 2:
        raise ValueError(f"{name} must be a 2-D image or a stack (..., H, W), got shape {a.shape}")
    return a.astype(np.float32, copy=False)


def clean_nonfinite(image, fill: str | float = "median") -> np.ndarray:
    """Replace NaN and ±inf and cast to float32.

    Parameters
    ----------
    image : array_like
        Image or stack (``(..., H, W)``).
    fill : {"median", "zero"} or float
        Replacement: the median of the finite pixels of each frame, 0, or a value.

    Returns
    -------
    numpy.ndarray
        float32, a copy when anything was replaced; all-non-finite frames become 0.
    """
    a = _as_float_image(image)
    bad = ~np.isfinite(a)
    if not bad.any():
        return a
    a = a.copy()
    if isinstance(fill, str):
        if fill not in ("median", "zero"):
            raise ValueError(f"fill must be 'median', 'zero' or a number, got {fill!r}")
        frames = a.reshape((-1,) + a.shape[-2:])
        masks = bad.reshape(frames.shape)
        for f, m in zip(frames, masks):
            if m.any():
                good = f[~m]
                f[m] = float(np.median(good)) if (fill == "median" and good.size) else 0.0
        return frames.reshape(a.shape)
    value = float(fill)
    if not np.isfinite(value):
        raise ValueError(f"fill must be finite, got {fill}")
    a[bad] = value
    return a


def _frames(a):
    return a.reshape((-1,) + a.shape[-2:])


def minmax(image) -> np.ndarray:
    """Scale each frame to [0, 1]: ``(x − min)/(max − min)``; a constant frame becomes 0."""
    a = clean_nonfinite(image)
    f = _frames(a)
    lo = f.min(axis=(1, 2), keepdims=True)
    hi = f.max(axis=(1, 2), keepdims=True)
    rng = hi - lo
    out = np.where(rng > 0, (f - lo) / np.where(rng > 0, rng, 1), 0).astype(np.float32)
    return out.reshape(a.shape)


def zscore(image, mean: float | None = None, std: float | None = None) -> np.ndarray:
    """``(x − μ)/σ`` per frame, or with the given (dataset) ``mean`` and ``std``.

    A constant frame becomes 0 (σ = 0 is replaced by 1).
    """
    a = clean_nonfinite(image)
    if (mean is None) != (std is None):
        raise ValueError("give both mean and std (dataset statistics) or neither")
    if mean is not None:
        if not std > 0:
            raise ValueError(f"std must be > 0, got {std}")
        return ((a - float(mean)) / float(std)).astype(np.float32)
    f = _frames(a).astype(np.float64)
    mu = f.mean(axis=(1, 2), keepdims=True)
    sd = f.std(axis=(1, 2), keepdims=True)
    return ((f - mu) / np.where(sd > 0, sd, 1)).astype(np.float32).reshape(a.shape)


def clahe(image, kernel_size=None, clip_limit: float = 0.01, nbins: int = 256) -> np.ndarray:
    """Contrast-limited adaptive histogram equalisation of each frame, into [0, 1].

    Parameters
    ----------
    image : array_like
    kernel_size : int or (int, int), optional
        Tile size; default 1/8 of the image height and width (scikit-image's default).
    clip_limit : float
        Clip limit in (0, 1].
    nbins : int
        Histogram bins.
    """
    from skimage.exposure import equalize_adapthist

    if not 0 < clip_limit <= 1:
        raise ValueError(f"clip_limit must be in (0, 1], got {clip_limit}")
    a = minmax(image)
    out = np.stack([equalize_adapthist(f, kernel_size=kernel_size, clip_limit=clip_limit, nbins=nbins)
                    for f in _frames(a)])
    return out.astype(np.float32).reshape(a.shape)


def normalize(image, method: str = "minmax", **kwargs) -> np.ndarray:
    """Normalise with ``method`` in :data:`METHODS` (``"none"`` only cleans non-finite values)."""
    if method not in METHODS:
        raise ValueError(f"unknown normalisation {method!r}; choose one of {', '.join(METHODS)}")
    if method == "none":
        return clean_nonfinite(image)
    return {"minmax": minmax, "zscore": zscore, "clahe": clahe}[method](image, **kwargs)


def histogram_figure(before, after, bins: int = 256, labels=("before", "after"), figure=None):
    """Intensity histograms before and after normalisation, side by side (as in [PSC] Fig. S3).

    Parameters
    ----------
    before, after : array_like
        The raw and the normalised image (non-finite pixels are left out).
    bins : int
    labels : (str, str)
        Panel titles.
    figure : matplotlib.figure.Figure, optional
        Draw into this figure (cleared first); a new one otherwise.

    Returns
    -------
    matplotlib.figure.Figure
    """
    if figure is None:
        from matplotlib.figure import Figure

        figure = Figure(figsize=(8, 3))
    figure.clear()
    axes = figure.subplots(1, 2)
    for ax, data, title in zip(axes, (before, after), labels):
        v = np.asarray(data, dtype=np.float64).ravel()
        v = v[np.isfinite(v)]
        ax.hist(v, bins=bins, color="0.3")
        ax.set_title(title)
        ax.set_xlabel("intensity")
        ax.set_ylabel("pixels")
    figure.tight_layout()
    return figure
