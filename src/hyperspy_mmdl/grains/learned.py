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

__all__ = ["labels_from_boundaries", "segment_learned"]


def labels_from_boundaries(prob, *, threshold: float = 0.5, min_area: int = 16, marker_erosion: int = 1,
                           zero: str = "mask") -> np.ndarray:
    """Grain labels from a boundary probability map by marker-controlled watershed.

    Markers are the connected interiors (``prob < threshold``, eroded by
    ``marker_erosion`` px, regions smaller than ``min_area`` px dropped); the
    watershed floods ``prob`` from them and leaves one-pixel lines (0) between
    grains.

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
    zero : {"mask", "line"}
        ``"mask"``: every pixel with ``prob >= threshold`` is also 0 (grains
        exclude the boundary band, as in hand-drawn masks and the synthetic
        ground truth); ``"line"``: only the watershed lines are 0 (grains tile
        the image).

    Returns
    -------
    ndarray of int32, shape (H, W)

    Examples
    --------
    >>> prob = np.zeros((40, 40), np.float32)
    >>> prob[19:21, :] = 1
    >>> int(labels_from_boundaries(prob, min_area=4).max())
    2
    """
    if zero not in ("mask", "line"):
        raise ValueError(f"zero must be 'mask' or 'line', got {zero!r}")
    from scipy import ndimage as ndi
    from skimage.morphology import disk, remove_small_objects
    from skimage.segmentation import relabel_sequential, watershed

    p = np.asarray(prob, dtype=np.float32)
    interior = p < threshold
    if marker_erosion > 0:
        interior = ndi.binary_erosion(interior, structure=disk(marker_erosion))
    markers, _ = ndi.label(interior)
    if min_area > 1:
        markers = remove_small_objects(markers, max_size=min_area - 1)
    markers, _, _ = relabel_sequential(markers)
    labels = watershed(p, markers, watershed_line=True)
    if zero == "mask":
        labels[~interior & (p >= threshold)] = 0
    return labels.astype(np.int32)


def segment_learned(image, calibration=None, model=None, *, threshold: float = 0.5, min_area_px: int = 16,
                    **params) -> np.ndarray:
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
        See :func:`labels_from_boundaries` (``min_area``).
    **params
        Passed to :func:`hyperspy_mmdl.inference.segment.predict_boundaries`
        (``device``, ``tile``, ``overlap``, ``batch_size``).

    Returns
    -------
    ndarray of int32, shape (H, W)

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
    if model is None:
        raise ValueError("segment_learned needs a model (a boundary U-Net or its checkpoint path)")
    prob = runner("segment")(image, calibration, model, **params)
    return labels_from_boundaries(prob, threshold=threshold, min_area=min_area_px)
