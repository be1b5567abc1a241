"""Is a segmentation to be trusted? Warnings a user should read before using the numbers.

:func:`assess` looks at a finished segmentation and returns plain-language
warnings (an empty list when nothing looks wrong):

* little of the analysed area is covered by grains;
* the boundaries the segmenter drew are barely visible in the image (weak
  boundary contrast), or the learned model was unsure of them;
* overlay text (labels burnt into the image, e.g. a prediction or annotation
  printed on the micrograph) was found and grains overlap it
  (:func:`find_overlay_text`); those grains are removed by
  :func:`hyperspy_mmdl.grains.segment.segment`;
* very few grains, or grains of a few pixels (noise segmented).

``segment(..., return_info=True)`` puts them in ``info["quality"]`` and the
analysis pipeline adds them to the frame's notes, so every front end shows them.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

__all__ = ["assess", "find_overlay_text", "MIN_COVERAGE", "MIN_CONTRAST"]

#: Below this fraction of the analysed area in grains the result is flagged.
MIN_COVERAGE = 0.45
#: Below this boundary contrast-to-noise ratio the boundaries are called weak.
MIN_CONTRAST = 0.35


def _norm(g):
    g = np.asarray(g, dtype=np.float64)
    finite = np.isfinite(g)
    if not finite.any():
        return np.zeros(g.shape)
    lo, hi = np.percentile(g[finite], (0.1, 99.9))
    return np.clip((g - lo) / max(hi - lo, 1e-12), 0, 1)


def find_overlay_text(image, *, level: float = 0.97) -> np.ndarray:
    """Mask of overlay text burnt into a micrograph (saturated strokes in lines of glyphs).

    Text printed on an image is drawn in a saturated colour (white or black) as
    thin strokes; the glyphs of a word sit side by side on one baseline. Pixels
    beyond ``level`` of the range (either end) are grouped into glyph-sized
    components; rows of at least eight such glyphs of similar height, close
    together, are text. The mask covers their bounding boxes, widened by 2 px.

    Parameters
    ----------
    image : array_like, (H, W)
        Grey micrograph.
    level : float
        Saturation level in [0, 1] of the robust intensity range.

    Returns
    -------
    ndarray of bool

    Examples
    --------
    >>> img = np.random.default_rng(0).normal(0.5, 0.05, (80, 200))
    >>> for x in range(10, 150, 12):            # a row of "glyphs"
    ...     img[10:20, x:x + 2] = 1.0; img[10:12, x:x + 7] = 1.0
    >>> bool(find_overlay_text(img)[15, 40]), bool(find_overlay_text(img)[60, 40])
    (True, False)
    """
    g = _norm(image)
    h, w = g.shape
    out = np.zeros((h, w), bool)
    for sat in (g >= level, g <= 1 - level):
        if sat.mean() > 0.15:  # a binary or saturated image, not text on a micrograph
            continue
        lab, n = ndi.label(sat, structure=np.ones((3, 3)))
        if n < 5:
            continue
        objs = ndi.find_objects(lab)
        boxes = []
        for i, sl in enumerate(objs, start=1):
            if sl is None:
                continue
            bh, bw = sl[0].stop - sl[0].start, sl[1].stop - sl[1].start
            area = int((lab[sl] == i).sum())
            fill = area / float(bh * bw)
            if 5 <= bh <= max(0.08 * h, 12) and 2 <= bw <= 3 * bh and fill < 0.7:
                boxes.append((sl[0].start, sl[0].stop, sl[1].start, sl[1].stop))
        if len(boxes) < 5:
            continue
        boxes = np.array(boxes)
        bottoms, heights = boxes[:, 1], boxes[:, 1] - boxes[:, 0]
        used = np.zeros(len(boxes), bool)
        for k in np.argsort(bottoms):
            if used[k]:
                continue
            same = (np.abs(bottoms - bottoms[k]) <= max(2, heights[k] // 4)) & \
                   (np.abs(heights - heights[k]) <= max(3, heights[k] // 2)) & ~used
            idx = np.nonzero(same)[0]
            idx = idx[np.argsort(boxes[idx, 2])]
            # glyphs of one line are at most ~1.5 glyph heights apart
            run = [idx[0]] if len(idx) else []
            for a, b in zip(idx[:-1], idx[1:]):
                if boxes[b, 2] - boxes[a, 3] <= 1.5 * heights[k]:
                    run.append(b)
                else:
                    if len(run) >= 8:
                        break
                    run = [b]
            if len(run) >= 8:
                used[run] = True
                r = boxes[run]
                out[max(r[:, 0].min() - 2, 0):r[:, 1].max() + 2, max(r[:, 2].min() - 2, 0):r[:, 3].max() + 2] = True
    return out


def _label_medians(g, labels):
    """``ndi.median(g, labels, index=1..labels.max())``, the same values, several times faster.

    ndimage lexsorts every pixel by label and value; grouping the pixels by label
    (one integer sort) and sorting each group gives the same numbers: the middle
    value, or the mean of the two middle ones. A label without pixels gets what
    ndimage gives it: the smallest value of the lowest label present.
    """
    v, lab = np.ravel(g), np.ravel(labels)
    n = int(lab.max())
    counts = np.bincount(lab, minlength=n + 1)
    ends = np.cumsum(counts)
    v = v[np.argsort(lab, kind="stable")]
    out = np.empty(n, np.float64)
    for k in range(1, n + 1):
        group = np.sort(v[ends[k - 1]:ends[k]])
        m = len(group)
        out[k - 1] = (group[(m - 1) // 2] + group[m // 2]) / 2.0 if m else np.nan
    if (counts[1:] == 0).any():
        low = int(np.flatnonzero(counts)[0])
        out[counts[1:] == 0] = np.sort(v[ends[low] - counts[low]:ends[low]])[0]
    return out


def _boundary_contrast(g, labels):
    """Contrast-to-noise of the drawn boundaries: |median(line) − median(grain)| / MAD(grain)."""
    from .evaluate import boundaries

    line = boundaries(labels) & (labels == 0)
    inner = ndi.binary_erosion(labels > 0, iterations=2)
    if line.sum() < 20 or inner.sum() < 20:
        return float("nan")
    gi = g[inner]
    mad = float(np.median(np.abs(gi - np.median(gi)))) * 1.4826
    # texture-contrast grains: the step across a boundary, from the grains on either side
    med = _label_medians(g, labels) if labels.max() else np.zeros(0)
    step = float(np.std(med)) if len(med) > 1 else 0.0
    line_step = abs(float(np.median(g[line])) - float(np.median(gi)))
    return max(line_step, step) / max(mad, 1e-6)


def assess(image, labels, *, method: str, valid=None, boundary_probability=None, text=None) -> list[str]:
    """Warnings about a segmentation (empty when it looks sound).

    Parameters
    ----------
    image : array_like, (H, W)
        The grey image that was segmented.
    labels : ndarray of int
        Its segmentation (0 on boundaries and background).
    method : str
        The method that ran (``"boundary"``, ``"threshold"``, ``"learned"`` ...).
    valid : ndarray of bool, optional
        The analysed area (rows above a data bar).
    boundary_probability : ndarray, optional
        A learned model's boundary map: its confidence on the drawn lines is checked.
    text : ndarray of bool, optional
        Overlay text (:func:`find_overlay_text`) found in the image.

    Returns
    -------
    list of str

    Examples
    --------
    >>> lab = np.zeros((100, 100), np.int32); lab[10:20, 10:20] = 1
    >>> assess(np.random.default_rng(0).random((100, 100)), lab, method="threshold")[0]
    'grains cover only 1% of the analysed area: check the method and its parameters'
    """
    lab = np.asarray(labels)
    g = _norm(image)
    area = lab.size if valid is None else int(np.count_nonzero(valid))
    warnings = []
    n = int(len(np.unique(lab[lab > 0])))
    grain_area = int(np.count_nonzero(lab))
    cover = grain_area / max(area, 1)
    if n == 0:
        return ["no grains found: check the method and its parameters"]
    if method != "threshold" and cover < MIN_COVERAGE or method == "threshold" and cover < 0.05:
        warnings.append(f"grains cover only {cover:.0%} of the analysed area: check the method and its parameters")
    if n < 5:
        warnings.append(f"only {n} grain{'s' if n != 1 else ''} found: statistics are not meaningful")
    elif grain_area / n < 20:
        warnings.append(f"grains average {grain_area / n:.0f} px² in area: noise may have been segmented as grains")
    if boundary_probability is not None:
        from .evaluate import boundaries

        line = boundaries(lab) & (lab == 0)
        if line.any():
            conf = float(np.median(np.asarray(boundary_probability)[line]))
            if conf < 0.5:
                warnings.append(f"the learned model is unsure of the boundaries it drew (median probability "
                                f"{conf:.2f}): the image may be unlike its training data")
    elif method in ("boundary", "threshold") and n >= 5:
        cnr = _boundary_contrast(g, lab)
        if np.isfinite(cnr) and cnr < MIN_CONTRAST:
            warnings.append(f"weak boundary contrast (contrast-to-noise {cnr:.2f}): the boundaries drawn "
                            "may not be real; try method='learned'")
    if text is not None and text.any():
        rows = np.nonzero(text.any(1))[0]
        warnings.append(f"overlay text found in rows {rows.min()}–{rows.max()}: the grains under it are left out "
                        "of the analysis")
    return warnings
