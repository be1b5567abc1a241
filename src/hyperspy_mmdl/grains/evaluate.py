"""Compare a grain segmentation with a reference: boundary F1, grain count and mean-ECD errors.

Used by the validation tests of the classical segmenters and by the training
code for the learned one. Label images follow the package's convention
(int32, grains 1..n, 0 on boundaries / background).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

__all__ = ["boundaries", "boundary_f1", "labels_from_boundary_mask", "grain_ecd", "compare"]


def boundaries(labels) -> np.ndarray:
    """Boundary mask of a label image: label-0 pixels and pixels next to another label (4-neighbours)."""
    lab = np.asarray(labels)
    b = lab == 0
    diff_x = lab[:, 1:] != lab[:, :-1]
    diff_y = lab[1:, :] != lab[:-1, :]
    b[:, 1:] |= diff_x
    b[:, :-1] |= diff_x
    b[1:, :] |= diff_y
    b[:-1, :] |= diff_y
    return b


def boundary_f1(pred_labels, true_labels, tolerance: float = 2, *, thin: bool = True, valid=None) -> dict:
    """Boundary precision, recall and F1 with a distance tolerance.

    Parameters
    ----------
    pred_labels, true_labels : ndarray
        Label images (0 = boundary) of the same shape, or boolean boundary masks.
    tolerance : float
        A predicted boundary pixel counts as correct when a reference boundary
        pixel lies within this many pixels, and the other way round for recall.
    thin : bool
        Reduce both boundary maps to one-pixel centre lines first (skeletons), so
        that thick hand-drawn lines and thin predicted ones compare line to line.
    valid : ndarray of bool, optional
        Pixels to score (e.g. above a data bar); the image edge is never a boundary.

    Returns
    -------
    dict with ``precision``, ``recall``, ``f1``.
    """
    pred = np.asarray(pred_labels)
    true = np.asarray(true_labels)
    if pred.shape != true.shape:
        raise ValueError(f"label images differ in shape: {pred.shape} vs {true.shape}")
    pb = pred if pred.dtype == bool else boundaries(pred)
    tb = true if true.dtype == bool else boundaries(true)
    if thin:
        from skimage.morphology import skeletonize

        pb, tb = skeletonize(pb), skeletonize(tb)
    if valid is not None:
        pb, tb = pb & valid, tb & valid
    if not pb.any() or not tb.any():
        return {"precision": 0.0, "recall": 0.0, "f1": 0.0}
    d_to_true = ndi.distance_transform_edt(~tb)
    d_to_pred = ndi.distance_transform_edt(~pb)
    precision = float(np.mean(d_to_true[pb] <= tolerance))
    recall = float(np.mean(d_to_pred[tb] <= tolerance))
    f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return {"precision": precision, "recall": recall, "f1": f1}


def labels_from_boundary_mask(mask, *, min_area: int = 1) -> np.ndarray:
    """Grains of a hand-drawn boundary mask (True on boundaries): 4-connected regions between the lines."""
    from skimage.segmentation import relabel_sequential

    lab, _ = ndi.label(~np.asarray(mask, bool))
    if min_area > 1:
        sizes = np.bincount(lab.ravel())
        small = sizes < min_area
        small[0] = False
        lab[small[lab]] = 0
    return relabel_sequential(lab)[0].astype(np.int32)


def grain_ecd(labels, *, fill_boundaries: bool = False, exclude_border: bool = False) -> np.ndarray:
    """Equivalent circular diameters (px) of the grains of a label image.

    With ``fill_boundaries`` every boundary pixel is first given to its nearest
    grain, so that the result does not depend on how thick the lines were drawn
    (the grain's share of the boundary is counted, as in a tessellation).
    With ``exclude_border`` grains touching the image edge are left out.
    """
    lab = np.asarray(labels)
    if fill_boundaries and (lab == 0).any() and lab.max() > 0:
        _, (iy, ix) = ndi.distance_transform_edt(lab == 0, return_indices=True)
        lab = lab[iy, ix]
    areas = np.bincount(lab.ravel()).astype(float)
    areas[0] = 0
    keep = areas > 0
    if exclude_border:
        edge = np.unique(np.concatenate([lab[0], lab[-1], lab[:, 0], lab[:, -1]]))
        keep[edge] = False
    return np.sqrt(4 * areas[keep] / np.pi)


def compare(pred_labels, true_labels, *, tolerance: float = 2, fill_boundaries: bool = True,
            exclude_border: bool = True) -> dict:
    """Boundary F1 and the relative errors of grain count and mean ECD against a reference.

    Returns a dict: ``f1``, ``precision``, ``recall``, ``n_pred``, ``n_true``,
    ``count_error`` ((n_pred - n_true) / n_true), ``ecd_pred``, ``ecd_true`` (px)
    and ``ecd_error`` (relative). Counts and ECDs use the grains not touching the
    image border by default, with boundaries filled (see :func:`grain_ecd`).
    """
    f1 = boundary_f1(pred_labels, true_labels, tolerance)
    ep = grain_ecd(pred_labels, fill_boundaries=fill_boundaries, exclude_border=exclude_border)
    et = grain_ecd(true_labels, fill_boundaries=fill_boundaries, exclude_border=exclude_border)
    out = dict(f1)
    out.update(n_pred=int(len(ep)), n_true=int(len(et)),
               count_error=(len(ep) - len(et)) / max(len(et), 1),
               ecd_pred=float(ep.mean()) if len(ep) else float("nan"),
               ecd_true=float(et.mean()) if len(et) else float("nan"))
    out["ecd_error"] = (out["ecd_pred"] - out["ecd_true"]) / out["ecd_true"] if len(et) else float("nan")
    return out
