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
own) and returns float32. A "frame" is the last ``frame_ndim`` axes (2 by
default); ``frame_ndim=3`` takes the statistics over a whole ``(C, H, W)`` image,
which is what training and inference do with a model input
(:func:`hyperspy_mmdl.train.transforms.normalize` and the inference
predictor call this module: it is the only normalisation in the package).
"""

from __future__ import annotations

import numpy as np

__all__ = ["METHODS", "clahe", "clean_nonfinite", "histogram_figure", "intensity_histogram", "minmax",
           "normalize",
           "normalize_whole", "zscore"]

METHODS = ("minmax", "zscore", "clahe", "none")


def _as_float_image(image, name="image") -> np.ndarray:
    a = np.asarray(image)
    if a.dtype.kind not in "biuf":
        raise ValueError(f"{name} must be a real-valued array, got dtype {a.dtype}")
    if a.ndim < 2:
        raise ValueError(f"{name} must be a 2-D image or a stack (..., H, W), got shape {a.shape}")
    return a.astype(np.float32, copy=False)


def clean_nonfinite(image, fill: str | float = "median", frame_ndim: int = 2) -> np.ndarray:
    """Replace NaN and ±inf and cast to float32.

    Parameters
    ----------
    image : array_like
        Image or stack (``(..., H, W)``).
    fill : {"median", "zero"} or float
        Replacement: the median of the finite pixels of each frame, 0, or a value.
    frame_ndim : int
        Number of trailing axes that make one frame (2, or 3 for ``(C, H, W)``).

    Returns
    -------
    numpy.ndarray
        float32, a copy when anything was replaced; all-non-finite frames become 0.

    Examples
    --------
    >>> clean_nonfinite(np.array([[1.0, np.nan], [3.0, np.inf]])).tolist()
    [[1.0, 2.0], [3.0, 2.0]]
    """
    a = _as_float_image(image)
    bad = ~np.isfinite(a)
    if not bad.any():
        return a
    a = a.copy()
    if isinstance(fill, str):
        if fill not in ("median", "zero"):
            raise ValueError(f"fill must be 'median', 'zero' or a number, got {fill!r}")
        frames = _frames(a, frame_ndim)
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


def _frames(a, frame_ndim: int = 2):
    if not 2 <= frame_ndim <= max(a.ndim, 2):
        raise ValueError(f"frame_ndim must be in [2, {a.ndim}] for shape {a.shape}, got {frame_ndim}")
    return a.reshape((-1,) + a.shape[a.ndim - frame_ndim:])


def _axes(f):
    """The axes of one frame in a ``(n, *frame)`` array."""
    return tuple(range(1, f.ndim))


def minmax(image, frame_ndim: int = 2) -> np.ndarray:
    """Scale each frame to [0, 1]: ``(x − min)/(max − min)``; a constant frame becomes 0.

    Examples
    --------
    >>> minmax(np.array([[2.0, 4.0], [6.0, 10.0]])).tolist()
    [[0.0, 0.25], [0.5, 1.0]]
    """
    a = clean_nonfinite(image, frame_ndim=frame_ndim)
    f = _frames(a, frame_ndim)
    lo = f.min(axis=_axes(f), keepdims=True)
    hi = f.max(axis=_axes(f), keepdims=True)
    rng = hi - lo
    out = np.where(rng > 0, (f - lo) / np.where(rng > 0, rng, 1), 0).astype(np.float32)
    return out.reshape(a.shape)


def zscore(image, mean: float | None = None, std: float | None = None, frame_ndim: int = 2) -> np.ndarray:
    """``(x − μ)/σ`` per frame, or with the given (dataset) ``mean`` and ``std``.

    A constant frame becomes 0 (σ = 0 is replaced by 1).

    Examples
    --------
    >>> zscore(np.array([[1.0, 3.0], [1.0, 3.0]])).tolist()
    [[-1.0, 1.0], [-1.0, 1.0]]
    """
    a = clean_nonfinite(image, frame_ndim=frame_ndim)
    if (mean is None) != (std is None):
        raise ValueError("give both mean and std (dataset statistics) or neither")
    if mean is not None:
        if not std > 0:
            raise ValueError(f"std must be > 0, got {std}")
        return ((a - float(mean)) / float(std)).astype(np.float32)
    f = _frames(a, frame_ndim).astype(np.float64)
    mu = f.mean(axis=_axes(f), keepdims=True)
    sd = f.std(axis=_axes(f), keepdims=True)
    return ((f - mu) / np.where(sd > 0, sd, 1)).astype(np.float32).reshape(a.shape)


def clahe(image, kernel_size=None, clip_limit: float = 0.01, nbins: int = 256,
          frame_ndim: int = 2) -> np.ndarray:
    """Contrast-limited adaptive histogram equalisation of each frame, into [0, 1].

    The frame is min-max scaled as a whole (over ``frame_ndim`` axes), then
    every 2-D plane is equalised.

    Parameters
    ----------
    image : array_like
    kernel_size : int or (int, int), optional
        Tile size; default 1/8 of the image height and width (scikit-image's default).
    clip_limit : float
        Clip limit in (0, 1].
    nbins : int
        Histogram bins.
    frame_ndim : int
        Trailing axes of one frame for the min-max scaling.

    Examples
    --------
    >>> out = clahe(np.random.default_rng(0).random((32, 32)))
    >>> out.dtype, bool(0 <= out.min() and out.max() <= 1)
    (dtype('float32'), True)
    """
    from skimage.exposure import equalize_adapthist

    if not 0 < clip_limit <= 1:
        raise ValueError(f"clip_limit must be in (0, 1], got {clip_limit}")
    a = minmax(image, frame_ndim)
    out = np.stack([equalize_adapthist(f, kernel_size=kernel_size, clip_limit=clip_limit, nbins=nbins)
                    for f in _frames(a, 2)])
    return out.astype(np.float32).reshape(a.shape)


def normalize(image, method: str = "minmax", *, frame_ndim: int = 2, **kwargs) -> np.ndarray:
    """Normalise with ``method`` in :data:`METHODS` (``"none"`` only cleans non-finite values).

    Parameters
    ----------
    image : array_like
        A 2-D image or a stack ``(..., H, W)``.
    method : {"minmax", "zscore", "clahe", "none"}
    frame_ndim : int
        Trailing axes of one frame: 2 (each ``(H, W)`` on its own) or 3 for a
        model input ``(C, H, W)`` normalised as a whole, as in training.
    **kwargs
        Passed to :func:`zscore` or :func:`clahe`.

    Returns
    -------
    numpy.ndarray of float32, same shape.

    Examples
    --------
    >>> normalize(np.array([[0.0, 5.0], [5.0, 10.0]]), "minmax").tolist()
    [[0.0, 0.5], [0.5, 1.0]]
    >>> float(normalize(np.ones((2, 3, 3)), "zscore", frame_ndim=3).max())
    0.0
    """
    if method not in METHODS:
        raise ValueError(f"unknown normalisation {method!r}; choose one of {', '.join(METHODS)}")
    if method == "none":
        return clean_nonfinite(image, frame_ndim=frame_ndim)
    fn = {"minmax": minmax, "zscore": zscore, "clahe": clahe}[method]
    return fn(image, frame_ndim=frame_ndim, **kwargs)


def normalize_whole(image, method: str = "minmax", **kwargs) -> np.ndarray:
    """One model input, ``(H, W)`` or ``(C, H, W)``, normalised as a whole.

    NaN/inf are replaced by the median, then ``minmax``, ``zscore``, ``clahe``
    or ``none`` with the statistics of the whole array: the convention of the
    training data loaders (:func:`hyperspy_mmdl.train.transforms.normalize`)
    and of inference (:func:`hyperspy_mmdl.inference.prepare.normalize`), which
    are this function.

    Examples
    --------
    >>> normalize_whole(np.array([[[0.0, 2.0]], [[4.0, 8.0]]]), "minmax").ravel().tolist()
    [0.0, 0.25, 0.5, 1.0]
    """
    x = np.asarray(image)
    return normalize(x, method, frame_ndim=max(x.ndim, 2), **kwargs)


def intensity_histogram(data, bins: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """``(counts, edges)`` of the finite pixels of ``data`` (what :func:`histogram_figure` draws).

    Computed apart from the drawing so that a GUI can count pixels in a worker thread
    and draw on its own thread.

    Examples
    --------
    >>> counts, edges = intensity_histogram(np.arange(100.0), bins=10)
    >>> int(counts.sum()), len(edges)
    (100, 11)
    """
    v = np.asarray(data, dtype=np.float64).ravel()
    v = v[np.isfinite(v)]
    if v.size == 0:
        return np.zeros(bins, np.int64), np.linspace(0.0, 1.0, bins + 1)
    return np.histogram(v, bins=bins)


def histogram_figure(before=None, after=None, bins: int = 256, labels=("before", "after"), figure=None,
                     histograms=None):
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
    histograms : ((counts, edges), (counts, edges)), optional
        Histograms already counted by :func:`intensity_histogram` (``before`` and
        ``after`` are then not needed).

    Returns
    -------
    matplotlib.figure.Figure
        Each panel holds one filled step artist (drawn in milliseconds, whatever the image size).

    Examples
    --------
    >>> img = np.arange(100.0).reshape(10, 10)
    >>> fig = histogram_figure(img, minmax(img), bins=10)
    >>> [ax.get_title() for ax in fig.axes]
    ['before', 'after']
    """
    if histograms is None:
        histograms = (intensity_histogram(before, bins), intensity_histogram(after, bins))
    if figure is None:
        from matplotlib.figure import Figure

        figure = Figure(figsize=(8, 3))
    figure.clear()
    axes = figure.subplots(1, 2)
    for ax, (counts, edges), title in zip(axes, histograms, labels):
        ax.stairs(counts, edges, fill=True, color="0.3")
        ax.set_title(title)
        ax.set_xlabel("intensity")
        ax.set_ylabel("pixels")
    figure.subplots_adjust(left=0.13, right=0.97, bottom=0.2, top=0.88, wspace=0.45)
    return figure
