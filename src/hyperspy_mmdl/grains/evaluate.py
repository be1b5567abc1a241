"""Score a grain segmentation against a reference: one definition for every benchmark and test.

:func:`evaluate` is the definition: boundary F1 (2 px tolerance, both boundary
maps thinned to centre lines), relative errors of grain count and mean ECD
(grains not touching the image edge, boundaries filled), and the relative
error of the Heyn mean lineal intercept (horizontal test lines over the thinned
boundaries, :func:`heyn_intercept`). :func:`pool` combines the scores of many
crops the way the benchmark tables report them. Label images follow the
package's convention (int32, grains 1..n, 0 on boundaries / background); a
boolean array is a boundary mask.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

__all__ = ["boundaries", "boundary_f1", "labels_from_boundary_mask", "grain_ecd", "heyn_intercept", "evaluate",
           "compare", "pool"]


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


def _thin_boundaries(labels_or_mask) -> np.ndarray:
    from skimage.morphology import skeletonize

    a = np.asarray(labels_or_mask)
    return skeletonize(a if a.dtype == bool else boundaries(a))


def heyn_intercept(labels_or_mask, *, spacing: int = 8, valid=None) -> dict:
    """Heyn mean lineal intercept of a segmentation (ASTM E112 §13), in pixels.

    Horizontal test lines every ``spacing`` rows (the first half a spacing from
    the top) cross the boundaries thinned to one-pixel centre lines; each run of
    boundary pixels along a line is one intersection. The mean lineal intercept
    is the total test-line length over the number of intersections.

    Parameters
    ----------
    labels_or_mask : ndarray
        Label image (0 = boundary) or boolean boundary mask.
    spacing : int
        Rows between test lines.
    valid : ndarray of bool, optional
        Pixels that may be tested (e.g. above a data bar); the line length counts only those.

    Returns
    -------
    dict with ``length`` (px of test line), ``intersections`` and ``intercept``
    (px; ``nan`` without intersections).

    Examples
    --------
    >>> lab = np.ones((64, 64), np.int32)
    >>> lab[:, 16::16] = 0                      # 3 vertical boundaries across 64 px
    >>> round(heyn_intercept(lab)["intercept"], 2)
    21.33
    """
    thin = _thin_boundaries(labels_or_mask)
    rows = np.arange(spacing // 2, thin.shape[0], max(int(spacing), 1))
    line = thin[rows]
    ok = np.ones_like(line) if valid is None else np.asarray(valid, bool)[rows]
    line = line & ok
    starts = line[:, 0].sum() + (line[:, 1:] & ~line[:, :-1]).sum()
    length = float(ok.sum())
    n = int(starts)
    return {"length": length, "intersections": n, "intercept": length / n if n else float("nan")}


def _rel(pred, true):
    return (pred - true) / true if true and np.isfinite(true) and np.isfinite(pred) else float("nan")


def evaluate(pred_labels, true_labels, *, tolerance: float = 2, fill_boundaries: bool = True,
             exclude_border: bool = True, spacing: int = 8, valid=None) -> dict:
    """Score a segmentation against a reference (the definition every benchmark uses).

    Parameters
    ----------
    pred_labels, true_labels : ndarray
        Label images (0 = boundary) of the same shape; the reference may also be a
        boolean boundary mask (its grains are the 4-connected regions between the lines).
    tolerance : float
        Boundary match distance in pixels for F1 (both maps thinned).
    fill_boundaries, exclude_border
        Grain ECDs with boundaries filled, of grains not touching the image edge
        (:func:`grain_ecd`).
    spacing : int
        Rows between Heyn test lines (:func:`heyn_intercept`).
    valid : ndarray of bool, optional
        Pixels to score.

    Returns
    -------
    dict
        ``f1``, ``precision``, ``recall``; ``n_pred``, ``n_true``, ``count_error``
        ((n_pred - n_true) / n_true); ``ecd_pred``, ``ecd_true`` (px), ``ecd_error``
        (relative); ``intercept_pred``, ``intercept_true`` (px), ``intercept_error``
        (relative); and the sums :func:`pool` needs (``ecd_sum_*``, ``*_length``,
        ``*_intersections``).

    Examples
    --------
    >>> truth = np.ones((64, 64), np.int32)
    >>> truth[:, 32] = 0
    >>> truth[:, 33:] = 2
    >>> r = evaluate(truth, truth, exclude_border=False)
    >>> r["f1"], r["ecd_error"], r["intercept_error"]
    (1.0, 0.0, 0.0)
    """
    true = np.asarray(true_labels)
    if true.dtype == bool:
        true = labels_from_boundary_mask(true)
    pred = np.asarray(pred_labels)
    out = dict(boundary_f1(pred, true, tolerance, valid=valid))
    ep = grain_ecd(pred, fill_boundaries=fill_boundaries, exclude_border=exclude_border)
    et = grain_ecd(true, fill_boundaries=fill_boundaries, exclude_border=exclude_border)
    out.update(n_pred=int(len(ep)), n_true=int(len(et)),
               count_error=(len(ep) - len(et)) / max(len(et), 1),
               ecd_pred=float(ep.mean()) if len(ep) else float("nan"),
               ecd_true=float(et.mean()) if len(et) else float("nan"),
               ecd_sum_pred=float(ep.sum()), ecd_sum_true=float(et.sum()))
    out["ecd_error"] = _rel(out["ecd_pred"], out["ecd_true"])
    hp, ht = heyn_intercept(pred, spacing=spacing, valid=valid), heyn_intercept(true, spacing=spacing, valid=valid)
    out.update(intercept_pred=hp["intercept"], intercept_true=ht["intercept"],
               pred_length=hp["length"], pred_intersections=hp["intersections"],
               true_length=ht["length"], true_intersections=ht["intersections"])
    out["intercept_error"] = _rel(out["intercept_pred"], out["intercept_true"])
    return out


def pool(scores) -> dict:
    """Combine :func:`evaluate` results of many crops into one row.

    F1 is the median over crops; grain counts, mean ECDs and Heyn intercepts are
    pooled (all grains, all test lines), and their relative errors computed on
    the pooled values.

    Examples
    --------
    >>> truth = np.ones((64, 64), np.int32); truth[:, 32] = 0; truth[:, 33:] = 2
    >>> pool([evaluate(truth, truth, exclude_border=False)] * 3)["n_true"]
    6
    """
    scores = list(scores)
    if not scores:
        raise ValueError("pool() needs at least one score")
    n_pred = sum(s["n_pred"] for s in scores)
    n_true = sum(s["n_true"] for s in scores)
    ecd_pred = sum(s["ecd_sum_pred"] for s in scores) / n_pred if n_pred else float("nan")
    ecd_true = sum(s["ecd_sum_true"] for s in scores) / n_true if n_true else float("nan")
    ip = sum(s["pred_intersections"] for s in scores)
    it = sum(s["true_intersections"] for s in scores)
    i_pred = sum(s["pred_length"] for s in scores) / ip if ip else float("nan")
    i_true = sum(s["true_length"] for s in scores) / it if it else float("nan")
    return {"crops": len(scores), "f1": float(np.median([s["f1"] for s in scores])),
            "precision": float(np.median([s["precision"] for s in scores])),
            "recall": float(np.median([s["recall"] for s in scores])),
            "n_pred": n_pred, "n_true": n_true, "count_error": (n_pred - n_true) / max(n_true, 1),
            "ecd_pred": ecd_pred, "ecd_true": ecd_true, "ecd_error": _rel(ecd_pred, ecd_true),
            "intercept_pred": i_pred, "intercept_true": i_true, "intercept_error": _rel(i_pred, i_true)}


def compare(pred_labels, true_labels, *, tolerance: float = 2, fill_boundaries: bool = True,
            exclude_border: bool = True) -> dict:
    """:func:`evaluate` under its former name (same definition, same keys and more)."""
    return evaluate(pred_labels, true_labels, tolerance=tolerance, fill_boundaries=fill_boundaries,
                    exclude_border=exclude_border)
