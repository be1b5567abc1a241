"""Learned grain segmentation: boundary probability from a model, then watershed labels.

:func:`segment_learned` is what ``segment(image, calibration, method="learned",
model=...)`` calls. The boundary probability comes from the inference
predictor (:func:`hyperspy_mmdl.inference.segment.predict_boundaries`: the
checkpoint is loaded once per process, the image resampled to the model's
pixel size, tiled with feathered overlap); it is looked up with
:func:`hyperspy_mmdl.checkpoint.runner` because the inference package sits
above ``grains``. :func:`labels_from_boundaries` turns the map into labels.
"""

from __future__ import annotations

import numpy as np

from ..checkpoint import runner

__all__ = ["DEFAULT_MODEL", "labels_from_boundaries", "learned_available", "segment_learned"]

#: The shipped boundary model ``segment(method="learned")`` uses without ``model=``.
DEFAULT_MODEL = "grain-boundary-unet"


def learned_available(model=None) -> bool:
    """Whether ``method="learned"`` can run: a model is given, or the default one is shipped.

    Examples
    --------
    >>> learned_available(object())
    True
    """
    if model is not None:
        return True
    from ..models.pretrained import list_pretrained

    return DEFAULT_MODEL in list_pretrained()


def labels_from_boundaries(prob, *, threshold: float = 0.5, min_area: int = 16, marker_erosion: int = 1,
                           merge: float | None = None, smooth: float = 1.0, zero: str = "mask") -> np.ndarray:
    """Closed grains from a boundary probability map: marker watershed, then merging of weak boundaries.

    1. ``prob`` is smoothed (Gaussian, ``smooth`` px) so that single noisy pixels
       neither open nor close a boundary.
    2. Markers are the connected interiors (``prob < threshold``, eroded by
       ``marker_erosion`` px, regions smaller than ``min_area`` px dropped); the
       watershed floods ``prob`` from them, so every pixel belongs to a grain.
    3. Optionally (``merge``), over-segmentation is undone: two neighbouring grains whose shared
       boundary has a mean probability below ``merge`` become one (a region
       adjacency graph cut, :func:`skimage.graph.cut_threshold`); a boundary the
       model drew only faintly does not split a grain.
    4. One-pixel lines (0) are left between the grains.

    Parameters
    ----------
    prob : array_like, shape (H, W)
        Boundary probability.
    threshold : float
        Pixels with ``prob >= threshold`` are boundary.
    min_area : int
        Smallest marker in pixels.
    marker_erosion : int
        Erosion radius of the markers in pixels.
    merge : float or None
        Boundaries weaker than this (mean probability along them) are removed; ``None`` (default):
        none. On the TBM validation micrographs merging did not change F1 (0.558 either way), and
        it merges away the weak boundaries of a briefly trained model.
    smooth : float
        Gaussian smoothing of ``prob`` in pixels (0: none).
    zero : {"mask", "line"}
        ``"mask"``: every pixel with ``prob >= threshold`` on a kept boundary is
        also 0 (grains exclude the boundary band, as in hand-drawn masks);
        ``"line"``: only the one-pixel lines are 0.

    Returns
    -------
    ndarray of int32, shape (H, W)

    Examples
    --------
    >>> prob = np.zeros((40, 40), np.float32)
    >>> prob[19:21, :] = 1                      # a clear boundary ...
    >>> prob[:19, 19:21] = 0.55                 # ... and a faint one
    >>> int(labels_from_boundaries(prob, min_area=4, smooth=0, merge=0.6).max())
    2
    >>> int(labels_from_boundaries(prob, min_area=4, smooth=0, merge=None).max())
    3
    """
    if zero not in ("mask", "line"):
        raise ValueError(f"zero must be 'mask' or 'line', got {zero!r}")
    from scipy import ndimage as ndi
    from skimage.morphology import disk, remove_small_objects
    from skimage.segmentation import relabel_sequential, watershed

    p = np.asarray(prob, dtype=np.float32)
    if smooth and smooth > 0:
        p = ndi.gaussian_filter(p, smooth)
    interior = p < threshold
    if marker_erosion > 0:
        interior = ndi.binary_erosion(interior, structure=disk(marker_erosion))
    markers, _ = ndi.label(interior)
    if min_area > 1:
        markers = remove_small_objects(markers, max_size=min_area - 1)
    markers, _, _ = relabel_sequential(markers)
    if markers.max() == 0:
        return np.zeros(p.shape, np.int32)
    tiles = watershed(p, markers)
    if merge is not None and tiles.max() > 1:
        from skimage import graph

        rag = graph.rag_boundary(tiles, p.astype(np.float64))
        tiles = graph.cut_threshold(tiles, rag, merge, in_place=True) + 1
    lines = np.zeros(p.shape, bool)  # one-pixel lines: the lower/right pixel of each differing pair
    lines[1:] |= tiles[1:] != tiles[:-1]
    lines[:, 1:] |= tiles[:, 1:] != tiles[:, :-1]
    labels = np.where(lines, 0, tiles)
    if zero == "mask":
        band = ndi.binary_dilation(lines, iterations=2) & (p >= threshold)
        labels[band] = 0
    return relabel_sequential(labels)[0].astype(np.int32)


def _postprocess(model) -> dict:
    """The model card's ``extra["postprocess"]``: the :func:`labels_from_boundaries` settings
    chosen for that model on its validation data (empty for a bare module)."""
    from pathlib import Path

    if isinstance(model, (str, Path)):
        card = runner("predictor")(model, device="cpu").card
    else:
        card = getattr(model, "card", None)
    extra = getattr(card, "extra", None) or {}
    post = extra.get("postprocess", {}) if isinstance(extra, dict) else {}
    return {k: post[k] for k in ("threshold", "merge", "marker_erosion", "smooth") if k in post}


def segment_learned(image, calibration=None, model=None, *, threshold: float | None = None, min_area_px: int = 16,
                    return_probability: bool = False, **params):
    """Label image (int32, 0 on boundaries) of a micrograph with a learned boundary model.

    Parameters
    ----------
    image : array_like, shape (H, W) or (H, W, 3)
    calibration : Calibration, optional
        When the model card records a training pixel size and ``calibration``
        is calibrated, the image is resampled to that pixel size for the
        prediction and the map brought back to the input grid.
    model : str, Path, Predictor, (module, card) or torch.nn.Module
        Boundary U-Net or its checkpoint (loaded once per process).
    threshold, min_area_px
        See :func:`labels_from_boundaries` (``min_area``). The threshold, and the
        ``merge``, ``marker_erosion`` and ``smooth`` settings, default to those
        the model card records (``extra["postprocess"]``, chosen on validation data).
    return_probability : bool
        Also return the boundary probability map.
    **params
        Passed to :func:`hyperspy_mmdl.inference.segment.predict_boundaries`
        (``device``, ``tile``, ``overlap``, ``batch_size``).

    Returns
    -------
    ndarray of int32, shape (H, W)
        And the probability map (float32) with ``return_probability=True``.

    Raises
    ------
    WrongTaskError
        The model is not a ``"segment"`` model.

    Examples
    --------
    >>> import torch
    >>> net = torch.nn.Conv2d(1, 1, 1)         # logit 20·x − 10: bright pixels are boundary
    >>> _ = net.weight.data.fill_(20.0), net.bias.data.fill_(-10.0)
    >>> img = np.zeros((40, 40), np.float32)
    >>> img[19:21, :] = 1                      # a bright boundary line
    >>> lab = segment_learned(img, None, net, device="cpu", min_area_px=4)
    >>> int(lab.max())
    2
    """
    model = DEFAULT_MODEL if model is None else model
    post = _postprocess(model)
    for k in ("merge", "marker_erosion", "smooth"):
        if k in params:
            post[k] = params.pop(k)
    if threshold is not None:
        post["threshold"] = threshold
    prob = runner("segment")(image, calibration, model, **params)
    labels = labels_from_boundaries(prob, min_area=min_area_px, **post)
    return (labels, prob) if return_probability else labels
