"""Learned segmentation through the predictor: boundary probability of a boundary U-Net.

:func:`predict_boundaries` runs a ``"segment"`` model (``unet_boundary``, one
logit per pixel) like every other model: loaded once per process by
:func:`~hyperspy_mmdl.inference.get_predictor`, the image resampled to the
card's pixel size, normalised as in training, cut into tiles with feathered
overlap, and the probability map brought back to the image's grid. Grain labels
are made from it by :func:`hyperspy_mmdl.grains.learned.labels_from_boundaries`
(``grains.segment(image, calibration, method="learned", model=...)`` does both).
"""

from __future__ import annotations

import numpy as np

from ..checkpoint import ModelCard
from .dense import predict_dense, sigmoid_output_fn
from .predictor import Predictor, get_predictor

__all__ = ["predict_boundaries", "boundary_predictor"]


def boundary_predictor(model, device="auto", amp=None) -> Predictor:
    """The predictor of a boundary model: a checkpoint path, a Predictor, ``(module, card)`` or a module.

    A bare module (a network just trained, a test double) gets the card a
    boundary U-Net is trained with by default: one grey channel, ``minmax``
    normalisation, no pixel size.

    Raises
    ------
    WrongTaskError
        The model is not a ``"segment"`` model (the message names the file and both tasks).

    Examples
    --------
    >>> import torch
    >>> boundary_predictor(torch.nn.Identity(), device="cpu").card.normalization
    'minmax'
    """
    import torch

    if isinstance(model, torch.nn.Module):
        model = (model, ModelCard("unet_boundary", task="segment", input_size=[1, 256, 256],
                                  normalization="minmax"))
    return get_predictor(model, device=device, amp=amp).require_task("segment", "learned segmentation")


def predict_boundaries(image, calibration=None, model=None, *, device="auto", tile=512, overlap=64,
                       batch_size=None, resample=True, amp=None) -> np.ndarray:
    """Boundary probability map of a 2-D micrograph.

    Parameters
    ----------
    image : array_like, shape (H, W) or (H, W, 3)
        RGB(A) is reduced to its BT.601 luminance (:mod:`hyperspy_mmdl.preprocess.color`).
    calibration : Calibration, optional
        Calibration of the image; with a model card that records a pixel size
        the image is resampled to it for the prediction and the map brought back.
    model : str, Path, Predictor, (module, card) or torch.nn.Module
        A ``"segment"`` model (see :func:`boundary_predictor`).
    device : str
        ``"auto"``, ``"cpu"``, ``"cuda"``, ``"mps"``.
    tile : int or (int, int)
        Tile size in model pixels; images no larger run whole.
    overlap : int or float
        Tile overlap in pixels (or a fraction of the tile); tiles are blended
        with feathered weights, so there are no seams.
    batch_size : int, optional
    resample : bool
        Resample to the card's pixel size (default True).
    amp : bool, optional

    Returns
    -------
    ndarray of float32, shape (H, W), values in [0, 1].

    Examples
    --------
    >>> import torch
    >>> img = np.random.default_rng(0).random((50, 70))
    >>> prob = predict_boundaries(img, None, torch.nn.Identity(), device="cpu", tile=32, overlap=8)
    >>> prob.shape, bool(prob.min() >= 0.5 and prob.max() <= 1)
    ((50, 70), True)
    """
    if model is None:
        raise ValueError("predict_boundaries needs a model (a boundary U-Net or its checkpoint path)")
    pred = boundary_predictor(model, device=device, amp=amp)
    x = np.asarray(image)
    if x.ndim == 3 and x.shape[-1] in (3, 4):  # the colour policy: models see the BT.601 luminance
        from ..preprocess.color import luminance

        x = luminance(x[..., :3])
    if x.ndim != 2:
        raise ValueError(f"predict_boundaries expects a 2-D image, got shape {x.shape}")
    prob = predict_dense(x, calibration, pred, sigmoid_output_fn, device=device, tile=tile, overlap=overlap,
                         batch_size=batch_size, resample=resample, amp=amp)
    return np.clip(prob[0], 0, 1)
