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

import logging

import numpy as np

from ..checkpoint import runner

log = logging.getLogger(__name__)

__all__ = ["DEFAULT_MODEL", "certainty", "choose_scale", "labels_from_boundaries", "learned_available", "segment_learned"]

#: The shipped boundary model ``segment(method="learned")`` uses without ``model=``.
DEFAULT_MODEL = "grain-boundary-unet"

#: The zooms ``scale="auto"`` tries (:func:`choose_scale`): from a third of the pixels to twice.
SCALE_CANDIDATES = (0.35, 0.5, 0.71, 1.0, 1.41, 2.0)
#: Side in pixels of the window each candidate zoom is judged on (after zooming; about one
#: 384² prediction per candidate, whatever the image size).
SCALE_WINDOW = 384
#: Smallest zoomed window (pixels a side) a candidate is judged on: a smaller one gives the network
#: too little context and it is confidently blank.
MIN_JUDGED = 128
#: A zoom other than 1 is taken only when its certainty beats the image's own pixels by this much.
SCALE_MARGIN = 0.01
#: A map that marks less than this fraction of its pixels as boundary (``p >= 0.5``) has
#: :func:`certainty` 0: a blank map is decided, but it has stopped seeing grains (texture finer
#: than the network resolves once shrunk).
MIN_BOUNDARY_FRACTION = 0.01
#: The largest image (pixels) a zoom may enlarge to.
MAX_ZOOMED_PIXELS = 16_000_000


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
    from skimage.morphology import disk
    from skimage.segmentation import relabel_sequential, watershed

    p = np.asarray(prob, dtype=np.float32)
    if smooth and smooth > 0:
        p = ndi.gaussian_filter(p, smooth)
    interior = p < threshold
    if marker_erosion > 0:
        interior = ndi.binary_erosion(interior, structure=disk(marker_erosion))
    markers, _ = ndi.label(interior)
    if min_area > 1:
        small = np.bincount(markers.ravel()) < min_area
        small[0] = False
        markers[small[markers]] = 0
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


def _card(model):
    """The model card of a checkpoint path, pretrained name or Predictor (None for a bare module)."""
    from pathlib import Path

    if isinstance(model, (str, Path)):
        return runner("predictor")(model, device="cpu").card
    if isinstance(model, tuple) and len(model) == 2:  # (module, card)
        return model[1]
    return getattr(model, "card", None)


def _extra(card) -> dict:
    extra = getattr(card, "extra", None) or {}
    return extra if isinstance(extra, dict) else {}


def _postprocess(card) -> dict:
    """The model card's ``extra["postprocess"]``: the :func:`labels_from_boundaries` settings
    chosen for that model on its validation data (empty for a bare module)."""
    post = _extra(card).get("postprocess", {})
    return {k: post[k] for k in ("threshold", "merge", "marker_erosion", "smooth") if k in post}


def certainty(prob) -> float:
    """How decided a boundary probability map is, boundary and interior weighed alike.

    The mean of ``|2p - 1|`` over the pixels called boundary (``p >= 0.5``) and,
    separately, over the rest, averaged: a map with fewer boundaries (a zoomed-in
    image) is not more certain for that alone. A map with less than
    :data:`MIN_BOUNDARY_FRACTION` boundary scores 0: it sees no grains.

    Examples
    --------
    >>> p = np.full((10, 10), 0.1)
    >>> p[5] = 0.9                              # one row of boundary
    >>> round(certainty(p), 3)
    0.8
    >>> certainty(np.zeros((10, 10)))          # blank: no grains seen
    0.0
    """
    p = np.asarray(prob, dtype=np.float64)
    edge = p >= 0.5
    if edge.mean() < MIN_BOUNDARY_FRACTION or edge.all():
        return 0.0
    return 0.5 * (float(np.mean(2 * p[edge] - 1)) + float(np.mean(1 - 2 * p[~edge])))


def choose_scale(image, calibration=None, model=None, *, candidates=SCALE_CANDIDATES, window: int = SCALE_WINDOW,
                 margin: float = SCALE_MARGIN, **params) -> tuple[float, dict]:
    """The zoom at which a boundary model is most certain of an image: its grains look familiar.

    A model trained on grains of some size draws crisp 0/1 maps of grains of that
    size, and hesitant ones of grains much larger (it finds texture inside them)
    or much smaller (it finds patches). For each candidate zoom the central
    window of the image (``window`` px a side once zoomed, at least
    :data:`MIN_JUDGED`; candidates that leave less are skipped) is resampled and
    predicted, and its map (on the zoomed grid) scored by :func:`certainty`;
    the most certain zoom wins when it beats zoom 1 by ``margin``. An almost
    blank map scores 0: there the network no longer sees grains at all.

    Parameters
    ----------
    image : array_like, shape (H, W) or (H, W, 3)
    calibration : Calibration, optional
    model : str, Path, Predictor, (module, card) or torch.nn.Module
        A ``"segment"`` model.
    candidates : sequence of float
        Zooms to try (1 is always tried).
    window : int
        Side of the judged window after zooming, pixels.
    margin : float
        Certainty a zoom other than 1 must gain.
    **params
        Passed to the boundary predictor (``device``, ...).

    Returns
    -------
    zoom : float
    certainties : dict
        ``{zoom: certainty}`` of every candidate.

    Examples
    --------
    >>> import torch
    >>> net = torch.nn.Conv2d(1, 1, 1)         # logit 20·x − 10: bright pixels are boundary
    >>> _ = net.weight.data.fill_(20.0), net.bias.data.fill_(-10.0)
    >>> img = np.zeros((256, 256), np.float32)
    >>> img[::16] = 1                          # one-pixel lines: blurred away when shrunk
    >>> zoom, seen = choose_scale(img, None, net, candidates=(0.5, 1.0), window=128, device="cpu")
    >>> zoom, seen[1.0] > seen[0.5]
    (1.0, True)
    """
    x = _luminance(image)
    h, w = x.shape
    from ..preprocess.resample import resize

    predict = runner("segment")
    seen = {}
    for z in sorted(set(candidates) | {1.0}):
        if not z > 0:
            raise ValueError(f"candidate zooms must be positive, got {z!r}")
        side = min(h, w, max(16, int(round(window / z))))
        top, left = (h - side) // 2, (w - side) // 2
        crop = x[top: top + side, left: left + side]
        zoomed = round(side * z)
        if z != 1.0:
            if zoomed < MIN_JUDGED:  # too little context left to judge
                continue
            crop = resize(crop, (zoomed, zoomed), order=1)
        seen[z] = certainty(predict(crop, _resampled(calibration, z), model, **params))
    best = max(seen, key=seen.get)
    zoom = best if seen[best] >= seen[1.0] + margin else 1.0
    return float(zoom), seen


def _luminance(image) -> np.ndarray:
    x = np.asarray(image, dtype=np.float32)
    if x.ndim == 3 and x.shape[-1] in (3, 4):
        from ..preprocess.color import luminance

        x = luminance(x[..., :3])
    return x


def _resampled(calibration, zoom):
    """The calibration of an image resampled by ``zoom`` (None stays None)."""
    if zoom != 1.0 and calibration is not None and getattr(calibration, "is_calibrated", False):
        return calibration.resampled((zoom, zoom))
    return calibration


def _zoomed_probability(predict, image, calibration, model, zoom, params):
    """Boundary probability predicted on the image resampled by ``zoom``, brought back to its grid."""
    from ..preprocess.resample import resize

    x = _luminance(image)
    shape = x.shape[-2:]
    small = tuple(max(1, int(round(n * zoom))) for n in shape)
    if calibration is not None and getattr(calibration, "is_calibrated", False):
        calibration = calibration.resampled((small[0] / shape[0], small[1] / shape[1]))
    prob = predict(resize(x, small, order=1), calibration, model, **params)
    return np.clip(resize(prob, shape, order=1, mode="edge"), 0, 1)


def segment_learned(image, calibration=None, model=None, *, threshold: float | None = None, min_area_px: int = 16,
                    scale="auto", return_probability: bool = False, return_info: bool = False, **params):
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
    scale : "auto" or float
        Zoom the image by this factor for the prediction (the map is brought back
        to the image's grid). ``"auto"`` (default): the zoom at which the model is
        most certain of the image's central window (:func:`choose_scale`), so that
        grains much larger or smaller than the model's training grains are
        brought nearer to them. Not applied when the card records a pixel size
        and the image is calibrated: the image is then resampled to that pixel
        size instead (a number is then ignored with a warning). A zoom never
        enlarges past :data:`MAX_ZOOMED_PIXELS` nor shrinks below 16 px a side.
    return_probability : bool
        Also return the boundary probability map.
    return_info : bool
        Also return a dict: ``scale`` (the zoom used) and, for ``scale="auto"``,
        ``certainty`` (``{zoom: certainty}`` of the candidates).
    **params
        Passed to :func:`hyperspy_mmdl.inference.segment.predict_boundaries`
        (``device``, ``tile``, ``overlap``, ``batch_size``).

    Returns
    -------
    ndarray of int32, shape (H, W)
        And the probability map (float32) with ``return_probability=True``, and
        the info dict with ``return_info=True``, in that order.

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
    card = _card(model)
    post = _postprocess(card)
    for k in ("merge", "marker_erosion", "smooth"):
        if k in params:
            post[k] = params.pop(k)
    if threshold is not None:
        post["threshold"] = threshold
    auto = isinstance(scale, str) and scale == "auto"
    if not auto and (isinstance(scale, (bool, str)) or not isinstance(scale, (int, float, np.number))
                     or not np.isfinite(scale) or scale <= 0):
        raise ValueError(f"scale must be 'auto' or a positive number, got {scale!r}")
    predict = runner("segment")
    info = {"scale": 1.0}
    physical = (getattr(card, "pixel_size", None) and calibration is not None
                and getattr(calibration, "is_calibrated", False))
    if physical:  # the predictor resamples to the card's pixel size: a zoom would be undone
        if not auto and float(scale) != 1.0:
            log.warning("scale=%s ignored: the model works at its own pixel size and the image is calibrated",
                        scale)
        zoom = 1.0
    elif auto:
        zoom, info["certainty"] = choose_scale(image, calibration, model, **params)
    else:
        zoom = float(scale)
    shape = np.shape(image)[:2]
    if zoom > 1:  # no larger than MAX_ZOOMED_PIXELS
        zoom = max(1.0, min(zoom, (MAX_ZOOMED_PIXELS / float(np.prod(shape))) ** 0.5))
    if zoom < 1:  # no smaller than 16 px a side
        zoom = min(1.0, max(zoom, 16.0 / max(1, min(shape))))
    zoom = float(zoom)
    info["scale"] = zoom
    prob = (predict(image, calibration, model, **params) if zoom == 1.0
            else _zoomed_probability(predict, image, calibration, model, zoom, params))
    labels = labels_from_boundaries(prob, min_area=min_area_px, **post)
    out = (labels,) + ((prob,) if return_probability else ()) + ((info,) if return_info else ())
    return out if len(out) > 1 else labels
