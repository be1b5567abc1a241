"""ASTM E112 grain-size numbers: planimetric (Jeffries) and lineal-intercept (Heyn) methods.

``G = 3.321928·log10(N_A) − 2.954`` with ``N_A`` the grains per mm² at 1×
(grains cut by the field's edge count ½), and ``G = −6.643856·log10(ℓ̄) − 3.288``
with ``ℓ̄`` the mean lineal intercept in mm (ASTM E112-13, Eqs. (1) and (9)
with the constants of Table 6).
"""

from __future__ import annotations

import numpy as np

from ..calibration import Calibration, convert_length

__all__ = ["g_planimetric", "g_intercept", "planimetric", "heyn_intercept"]


def g_planimetric(n_per_mm2: float) -> float:
    """ASTM E112 G from the number of grains per mm² (Jeffries)."""
    if not n_per_mm2 > 0:
        return float("nan")
    return 3.321928 * np.log10(n_per_mm2) - 2.954


def g_intercept(mean_intercept_mm: float) -> float:
    """ASTM E112 G from the mean lineal intercept in mm (Heyn / Abrams)."""
    if not mean_intercept_mm > 0:
        return float("nan")
    return -6.643856 * np.log10(mean_intercept_mm) - 3.288


def planimetric(n_inside: int, n_intercepted: int, area: float, unit: str) -> dict:
    """Jeffries planimetric count: ``N_A = (n_inside + n_intercepted / 2) / area``.

    ``area`` is the analysed field area in ``unit``². Returns ``n_per_mm2`` and ``G``.
    """
    mm2 = area * convert_length(1.0, unit, "mm") ** 2
    n_a = (n_inside + 0.5 * n_intercepted) / mm2
    return {"n_per_mm2": float(n_a), "G": float(g_planimetric(n_a))}


def _line_samples(shape, angle_deg, spacing):
    """Pixels crossed by parallel test lines at ``angle_deg``, ``spacing`` px apart.

    The lines are sampled every 0.2 px and consecutive repeats removed, so every
    pixel a line passes through is visited (a thin 8-connected boundary cannot be
    stepped over diagonally). Returns a list of ``(rows, cols, s)`` with ``s``
    the position along the line in px.
    """
    h, w = shape
    t = np.deg2rad(angle_deg)
    d = np.array([np.sin(t), np.cos(t)])  # direction in (row, col)
    n = np.array([d[1], -d[0]])  # normal
    cy, cx = (h - 1) / 2, (w - 1) / 2
    half = np.hypot(h, w) / 2
    offsets = np.arange(-half + spacing / 2, half, spacing)
    s = np.arange(-half, half, 0.2)
    lines = []
    for o in offsets:
        y = cy + o * n[0] + s * d[0]
        x = cx + o * n[1] + s * d[1]
        inside = (y > -0.5) & (y < h - 0.5) & (x > -0.5) & (x < w - 0.5)
        if inside.sum() < 10:
            continue
        r = np.rint(y[inside]).astype(int)
        c = np.rint(x[inside]).astype(int)
        si = s[inside]
        new = np.ones(len(r), bool)
        new[1:] = (r[1:] != r[:-1]) | (c[1:] != c[:-1])
        lines.append((r[new], c[new], si[new]))
    return lines


def heyn_intercept(labels, calibration: Calibration | None = None, *, angles=(0, 45, 90, 135),
                   spacing: float | None = None, valid=None) -> dict:
    """Heyn lineal-intercept grain size of a label image.

    Test lines at each of ``angles`` (degrees), ``spacing`` px apart, cross the
    image. Along each line the grain label is read pixel by pixel; boundary
    pixels (0) are skipped and each change from one grain to another is one
    boundary intersection ``P``. The mean lineal intercept is ``ℓ̄ = L / P``
    with ``L`` the total length of line within the analysed area (ASTM E112 §14):
    for labels, each line from its first to its last grain pixel, so that a
    data bar or an empty margin (label 0) does not count.
    Lines visit every pixel they pass through.
    The mean length of the complete segments between two intersections (what
    NIST's GSAT reports) is returned as ``mean_segment``.

    Parameters
    ----------
    labels : ndarray
        Grain labels, 0 on boundaries; or a boolean boundary mask (True on the
        boundaries, as drawn or as NIST GSAT writes them), where every run of
        boundary pixels a line crosses is one intersection, closed or not.
    calibration : Calibration, optional
        Pixel size; pixels when omitted (then no G).
    angles : sequence of float
    spacing : float, optional
        Distance between parallel lines in px (default: 1/12 of the image diagonal).
    valid : ndarray of bool, optional
        Analysed area (e.g. above a data bar); lines are cut to it.

    Returns
    -------
    dict
        ``mean_intercept`` and ``mean_segment`` (calibration unit), ``n_intersections``,
        ``line_length`` (unit), ``n_segments``, ``unit``, and ``G`` (ASTM E112; NaN
        when uncalibrated or without intersections).
    """
    lab = np.asarray(labels)
    mask_mode = lab.dtype == bool
    if lab.ndim != 2:
        raise ValueError(f"heyn_intercept expects a 2-D label image, got shape {lab.shape}")
    calibration = calibration or Calibration.uncalibrated()
    sy, sx = calibration.image.pixel_size
    if spacing is None:
        spacing = max(4.0, np.hypot(*lab.shape) / 12)
    total_len = 0.0
    crossings = 0
    segments = []
    for angle in angles:
        t = np.deg2rad(angle)
        step = np.hypot(np.sin(t) * sy, np.cos(t) * sx)  # physical length of one sample step
        for rows, cols, pos_all in _line_samples(lab.shape, angle, spacing):
            if valid is not None:
                keep = valid[rows, cols]
                rows, cols, pos_all = rows[keep], cols[keep], pos_all[keep]
                if len(rows) < 2:
                    continue
            v = lab[rows, cols]
            if not mask_mode:
                # only the part of the line over the grains: not a data bar or an empty margin
                nz = np.nonzero(v)[0]
                if len(nz) < 2:
                    continue
                v, pos_all = v[nz[0]:nz[-1] + 1], pos_all[nz[0]:nz[-1] + 1]
            total_len += (pos_all[-1] - pos_all[0] + 1.0) * step
            if mask_mode:
                # every run of boundary pixels strictly inside the line is one intersection
                b = v.astype(np.int8)
                starts = np.nonzero(np.diff(b) == 1)[0] + 1
                ends = np.nonzero(np.diff(b) == -1)[0] + 1
                if b[0]:
                    ends = ends[1:]
                starts = starts[: len(ends)]
                crossings += len(starts)
                pos = (pos_all[starts] + pos_all[ends - 1]) / 2.0
                if len(pos) >= 2:
                    segments.extend(np.diff(pos) * step)
                continue
            idx = np.nonzero(v)[0]
            if len(idx) < 2:
                continue
            g = v[idx]
            change = np.nonzero(g[1:] != g[:-1])[0]
            crossings += len(change)
            if len(change) >= 2:
                # crossing position: midway between the last pixel of one grain and the first of the next
                pos = (pos_all[idx[change]] + pos_all[idx[change + 1]]) / 2.0
                segments.extend(np.diff(pos) * step)
    unit = calibration.image.unit
    mean_int = total_len / crossings if crossings else float("nan")
    out = dict(mean_intercept=float(mean_int), mean_segment=float(np.mean(segments)) if segments else float("nan"),
               n_intersections=int(crossings), n_segments=len(segments), line_length=float(total_len), unit=unit)
    if calibration.is_calibrated and crossings:
        out["G"] = float(g_intercept(convert_length(mean_int, unit, "mm")))
    else:
        out["G"] = float("nan")
    return out
