"""Learned grain segmentation: boundary probability from a U-Net, then watershed labels.

:func:`segment_learned` is what ``hyperspy_mmdl.grains.segment(image,
calibration, method="learned", model=...)`` calls. ``model`` is a
``unet_boundary`` module or the path of a checkpoint holding one.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["predict_boundaries", "labels_from_boundaries", "segment_learned",
           "load_segmenter"]


def load_segmenter(model, device="cpu"):
    """A module in eval mode and its normalisation, from a module or a checkpoint path."""
    if isinstance(model, (str, Path)):
        from hyperspy_mmdl.checkpoint import load_checkpoint

        net, card = load_checkpoint(model, device=device)
        if card.task != "segment":
            raise ValueError(f"{model}: checkpoint is a {card.task!r} model, not a segmenter")
        return net, card.normalization
    return model.eval(), "minmax"


def predict_boundaries(model, image, *, normalization: str | None = None, tile: int = 512,
                       overlap: int = 32, device="cpu", batch_size: int = 4) -> np.ndarray:
    """Boundary probability map of a 2-D image.

    Parameters
    ----------
    model : torch.nn.Module or str or Path
        A boundary U-Net (one logit per pixel) or a checkpoint path.
    image : array_like, shape (H, W) or (H, W, 3)
        RGB is averaged to grey.
    normalization : str, optional
        Per-image normalisation (default: the checkpoint's, else min-max).
    tile, overlap : int
        Images larger than ``tile`` are processed in overlapping tiles whose
        centres are kept (no seams).
    device : str

    Returns
    -------
    ndarray of float32, shape (H, W), values in [0, 1].
    """
    import torch

    from .transforms import normalize

    net, default_norm = load_segmenter(model, device)
    net.to(device)
    x = np.asarray(image)
    if x.ndim == 3 and x.shape[-1] in (3, 4):
        x = x[..., :3].mean(-1)
    if x.ndim != 2:
        raise ValueError(f"predict_boundaries expects a 2-D image, got shape {x.shape}")
    x = normalize(x, normalization or default_norm)
    h, w = x.shape
    if h <= tile and w <= tile:
        with torch.no_grad():
            logit = net(torch.from_numpy(x)[None, None].to(device))
        return torch.sigmoid(logit)[0, 0].float().cpu().numpy()
    step = tile - 2 * overlap
    out = np.zeros((h, w), np.float32)
    starts_r = list(range(0, max(h - tile, 0) + 1, step)) or [0]
    starts_c = list(range(0, max(w - tile, 0) + 1, step)) or [0]
    if starts_r[-1] + tile < h:
        starts_r.append(h - tile)
    if starts_c[-1] + tile < w:
        starts_c.append(w - tile)
    windows = [(r, c) for r in starts_r for c in starts_c]
    with torch.no_grad():
        for i in range(0, len(windows), batch_size):
            chunk = windows[i:i + batch_size]
            batch = np.stack([x[r:r + tile, c:c + tile] for r, c in chunk])[:, None]
            prob = torch.sigmoid(net(torch.from_numpy(np.ascontiguousarray(batch)).to(device)))
            prob = prob[:, 0].float().cpu().numpy()
            for (r, c), p in zip(chunk, prob):
                th, tw = p.shape
                r0 = 0 if r == 0 else overlap
                c0 = 0 if c == 0 else overlap
                r1 = th if r + th >= h else th - overlap
                c1 = tw if c + tw >= w else tw - overlap
                out[r + r0:r + r1, c + c0:c + c1] = p[r0:r1, c0:c1]
    return out


def labels_from_boundaries(prob, *, threshold: float = 0.5, min_area: int = 16, marker_erosion: int = 1,
                           zero: str = "mask") -> np.ndarray:
    """Grain labels from a boundary probability map by marker-controlled watershed.

    Markers are the connected interiors (``prob < threshold``, eroded by
    ``marker_erosion`` px, regions smaller than ``min_area`` px dropped); the
    watershed floods ``prob`` from them and leaves one-pixel lines (0) between
    grains.

    Parameters
    ----------
    zero : {"mask", "line"}
        ``"mask"``: every pixel with ``prob >= threshold`` is also 0 (grains
        exclude the boundary band, as in hand-drawn masks and the synthetic
        ground truth); ``"line"``: only the watershed lines are 0 (grains tile
        the image).
    """
    if zero not in ("mask", "line"):
        raise ValueError(f"zero must be 'mask' or 'line', got {zero!r}")
    from scipy import ndimage as ndi
    from skimage.morphology import disk, remove_small_objects
    from skimage.segmentation import watershed

    p = np.asarray(prob, dtype=np.float32)
    interior = p < threshold
    if marker_erosion > 0:
        interior = ndi.binary_erosion(interior, structure=disk(marker_erosion))
    markers, _ = ndi.label(interior)
    if min_area > 1:
        markers = remove_small_objects(markers, max_size=min_area - 1)
    markers, _, _ = _relabel(markers)
    labels = watershed(p, markers, watershed_line=True)
    if zero == "mask":
        labels[~interior & (p >= threshold)] = 0
    return labels.astype(np.int32)


def _relabel(labels):
    from skimage.segmentation import relabel_sequential

    return relabel_sequential(labels)


def segment_learned(image, calibration=None, model=None, *, threshold: float = 0.5, min_area_px: int = 16,
                    device="cpu", **params) -> np.ndarray:
    """Label image (int32, 0 on boundaries) of a micrograph with a learned boundary model.

    Parameters
    ----------
    image : array_like, shape (H, W)
    calibration : Calibration, optional
        When the checkpoint records a training pixel size and ``calibration``
        is calibrated, the image is resampled to that pixel size for the
        prediction and the labels are brought back to the input grid.
    model : torch.nn.Module or str or Path
        Boundary U-Net or its checkpoint.
    threshold, min_area_px : see :func:`labels_from_boundaries`.
    """
    if model is None:
        raise ValueError("segment_learned needs a model (a boundary U-Net or its checkpoint path)")
    x = np.asarray(image)
    if x.ndim == 3 and x.shape[-1] in (3, 4):
        x = x[..., :3].mean(-1)
    target = None
    if isinstance(model, (str, Path)) and calibration is not None and calibration.is_calibrated:
        from hyperspy_mmdl.checkpoint import read_card

        card = read_card(model)
        if card.pixel_size and card.pixel_unit not in (None, "px"):
            target = calibration.pixel_size_in(card.pixel_unit)[1] / card.pixel_size
    if target and abs(target - 1) > 0.05:
        from .transforms import resize

        shape = (max(int(round(x.shape[0] * target)), 8), max(int(round(x.shape[1] * target)), 8))
        prob = predict_boundaries(model, resize(x.astype(np.float32), shape), device=device, **params)
        prob = resize(prob, x.shape, order=1)
    else:
        prob = predict_boundaries(model, x, device=device, **params)
    return labels_from_boundaries(prob, threshold=threshold, min_area=min_area_px)
