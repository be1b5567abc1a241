"""Grain segmentation of micrographs into label images (int32, 0 = boundary or background).

Three classical methods and one learned:

``"boundary"``
    Grains separated by dark or bright boundary lines (perovskite films,
    etched metals), or by a change of colour / texture (``lines="edge"``).
    A ridge filter (Sato, at the boundary width) or a colour-gradient map gives
    a boundary-strength image; its Otsu threshold splits lines from grain
    interiors; interiors far from any line seed a watershed on the boundary
    map, and the thresholded lines stay 0 in the labels.
``"threshold"``
    Particles or phases brighter (or darker) than their surroundings: a global
    Otsu, IsoData (ImageJ's "Default") or manual level, then a
    distance-transform watershed that splits touching particles.
``"auto"``
    Picks ``"boundary"`` when the ridge map forms a connected network that
    encloses many regions, ``"boundary"`` with ``lines="edge"`` for a colour
    image without such a network (tint-etched metallography), ``"threshold"``
    for a binary image, and ``"learned"`` otherwise (grains told apart by tone
    and texture), and says which and why (``info["auto"]["reason"]``, a log message).
``"learned"``
    Delegates to :func:`hyperspy_mmdl.grains.learned.segment_learned`: a
    boundary U-Net, by default the shipped ``grain-boundary-unet``
    (``model=`` another checkpoint, pretrained name or module).

Every method ends with the same checks: grains on overlay text printed on the
image are dropped, and :func:`hyperspy_mmdl.grains.quality.assess` lists what
makes the result doubtful (``info["quality"]``, logged as warnings).

Lengths and areas are physical: ``smoothing`` and ``boundary_width`` are
lengths and ``min_area`` an area, given as numbers in nm and µm² (pixels and
px² on an uncalibrated image) or as strings with a unit (``"30 nm"``,
``"0.002 um^2"``). The SEM data bar is found and excluded automatically.
"""

from __future__ import annotations

import logging
import re

import numpy as np
from scipy import ndimage as ndi

from ..calibration import Calibration, convert_length, normalize_unit

__all__ = ["segment", "estimate_line_width", "METHODS"]

log = logging.getLogger(__name__)

METHODS = ("auto", "boundary", "threshold", "learned")
_DEFAULT_UNITS = {"length": "nm", "area": "µm"}
K_FLANK = 0.65
#: ``method="auto"`` keeps the classical boundary method when the largest connected piece of the
#: line network holds at least this fraction of all line pixels (clean SEM grooves); the learned
#: model takes broken or faint networks.
STRONG_NETWORK = 0.8
#: ... and the threshold method when Otsu's two classes explain this fraction of the grey-level
#: variance (particles or a phase on a flat background).
TWO_PHASE = 0.85


# ---------------------------------------------------------------------------- parameters
def _to_pixels(value, calibration: Calibration, kind: str) -> float | None:
    """A length (kind="length") or area (kind="area") in pixels (px²).

    Numbers are in nm / µm² on a calibrated image, px / px² otherwise; strings carry
    their unit ("30 nm", "0.01 µm²", "5 px").
    """
    if value is None:
        return None
    unit = None
    if isinstance(value, str):
        m = re.fullmatch(r"\s*([-+0-9.eE]+)\s*([^\s\d]*?)\s*(\^?2|²)?\s*", value)
        if not m:
            raise ValueError(f"cannot read {kind} {value!r}: expected a number and a unit, e.g. '30 nm'")
        number, unit = float(m.group(1)), m.group(2) or None
        if kind == "area" and unit and not m.group(3):
            raise ValueError(f"{value!r} is not an area; write e.g. '0.01 µm²' or '0.01 um^2'")
    else:
        number = float(value)
    if number < 0:
        raise ValueError(f"{kind} must be non-negative, got {value!r}")
    if unit in ("px", "pixel", "pixels"):
        return number
    if not calibration.is_calibrated:
        if unit is not None:
            raise ValueError(f"{kind} {value!r} has a unit but the image is not calibrated; give pixels")
        return number
    unit = normalize_unit(unit or _DEFAULT_UNITS[kind])
    sy, sx = calibration.pixel_size
    if kind == "length":
        return convert_length(number, unit, calibration.unit) / np.sqrt(sy * sx)
    return number * convert_length(1.0, unit, calibration.unit) ** 2 / (sy * sx)


def _as_gray(image) -> tuple[np.ndarray, np.ndarray | None]:
    """Gray float32 image in [0, 1] and, for colour input, the RGB array in [0, 1].

    Colour follows :mod:`hyperspy_mmdl.preprocess.color` (BT.601 luminance; grey
    stored as RGB is grey).
    """
    from ..preprocess.color import split_colour

    a, rgb = split_colour(image)
    if a.ndim != 2:
        raise ValueError(f"segment expects a 2-D image or an (H, W, 3|4) RGB image, got shape {np.shape(image)}")
    if a.dtype.kind not in "fiub":
        raise ValueError(f"segment cannot use an image of dtype {a.dtype}")
    a = a.astype(np.float32)
    lo, hi = np.nanpercentile(a, [0.1, 99.9])
    if not hi > lo:
        lo, hi = float(np.nanmin(a)), float(np.nanmax(a))
    scale = (hi - lo) if hi > lo else 1.0
    g = np.clip((np.nan_to_num(a, nan=lo) - lo) / scale, 0, 1)
    if rgb is not None:
        rgb = np.clip((rgb - lo) / scale, 0, 1)
    return g, rgb


# ---------------------------------------------------------------------------- building blocks
def _hessian_eigen(g, sigma):
    """Eigenvalues ``(l1 >= l2)`` of the scale-normalised Hessian of ``g`` at ``sigma`` (float32)."""
    g = g.astype(np.float32, copy=False)
    hyy = ndi.gaussian_filter(g, sigma, order=(2, 0))
    hxx = ndi.gaussian_filter(g, sigma, order=(0, 2))
    hxy = ndi.gaussian_filter(g, sigma, order=(1, 1))
    tr = (hxx + hyy) / 2
    root = np.sqrt(((hxx - hyy) / 2) ** 2 + hxy**2)
    s2 = np.float32(sigma * sigma)
    return (tr + root) * s2, (tr - root) * s2


def _normalise(r):
    """Divide by the 99.5th percentile (of a subsample) and clip to [0, 1]."""
    top = float(np.percentile(r.ravel()[:: max(1, r.size // 200_000)], 99.5))
    return np.clip(r / top, 0, 1).astype(np.float32) if top > 0 else r.astype(np.float32)


def _ridges(g, sigma, polarity, eig=None):
    """Line (ridge/valley) strength of dark (``polarity="dark"``) or bright lines, in [0, 1].

    The Hessian's curvature across a line: the larger eigenvalue, positive in a dark
    valley, or minus the smaller one on a bright ridge (Sato's measure for one scale).
    """
    l1, l2 = _hessian_eigen(g, sigma) if eig is None else eig
    r = np.maximum(l1, 0) if polarity == "dark" else np.maximum(-l2, 0)
    return _normalise(r)


def _edges(g, rgb, sigma):
    """Colour-gradient magnitude (max over Lab channels) normalised to [0, 1]."""
    if rgb is not None:
        from skimage.color import rgb2lab

        lab = rgb2lab(rgb)
        chans = [lab[..., 0] / 100, lab[..., 1] / 60, lab[..., 2] / 60]
    else:
        chans = [g]
    mag = np.zeros(g.shape, np.float32)
    for c in chans:
        mag = np.maximum(mag, ndi.gaussian_gradient_magnitude(c.astype(np.float32), sigma))
    return _normalise(mag)


_WIDTH_SCALES = (1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0)


def estimate_line_width(g, lines="auto") -> float:
    """Width (px) of the boundary lines of a gray image: the Hessian scale of strongest response.

    The 95th percentile of the scale-normalised line strength (dark, bright or
    the stronger of the two) is computed at scales of 1–8 px on a central crop
    of at most 512 × 512 pixels; the scale where it peaks is about the width of
    the lines (a line of width w responds most at sigma ≈ w / 2 after the
    microscope's blur has widened it to about 2 sigma).
    """
    h, w = g.shape
    c = 256
    crop = g[max(0, h // 2 - c):h // 2 + c, max(0, w // 2 - c):w // 2 + c]
    best, best_scale = -1.0, 2.0
    for scale in _WIDTH_SCALES:
        if 4 * scale > min(crop.shape):
            break
        l1, l2 = _hessian_eigen(crop, scale)
        dark = float(np.percentile(np.maximum(l1, 0), 95))
        bright = float(np.percentile(np.maximum(-l2, 0), 95))
        r = dark if lines == "dark" else bright if lines == "bright" else max(dark, bright)
        if r > best:
            best, best_scale = r, scale
    return best_scale


def _pick_polarity(g, sigma):
    eig = _hessian_eigen(g, sigma)
    dark = _ridges(g, sigma, "dark", eig)
    bright = _ridges(g, sigma, "bright", eig)
    # the boundaries' polarity: grain interiors of that polarity's complement have a
    # clearly different level from the lines
    def contrast(r, sign):
        lines = r > 0.5
        if lines.sum() < 10 or (~lines).sum() < 10:
            return 0.0
        return sign * (float(np.median(g[~lines])) - float(np.median(g[lines])))

    cd, cb = contrast(dark, 1), contrast(bright, -1)
    return ("dark", dark) if cd >= cb else ("bright", bright)


def _pack(shapes, gap=2):
    """Places rectangles of ``shapes`` on shelves of one mosaic, ``gap`` zero pixels apart.

    Returns the mosaic's shape and each rectangle's top-left corner. The rows of each rectangle keep
    their raster order in the mosaic, which is what makes per-piece results of labelling, reconstruction
    and flooding on the mosaic equal to those on each piece alone.
    """
    hs = np.array([s[0] for s in shapes]) + gap
    ws = np.array([s[1] for s in shapes]) + gap
    width = int(max(ws.max(), np.sqrt(float((hs * ws).sum())) * 1.2))
    order = np.argsort(-hs, kind="stable")
    corners = np.zeros((len(shapes), 2), np.int64)
    y = x = shelf = 0
    for j in order:
        if x + ws[j] > width:
            y, x, shelf = y + shelf, 0, 0
        corners[j] = y, x
        x += ws[j]
        shelf = max(shelf, hs[j])
    return (int(y + shelf), width), corners


def _label_split(mask, min_diameter_px, landscape=None, h=None):
    """Label the 4-connected components of ``mask``, splitting those made of several touching grains.

    A component is suspected of holding several grains when its area exceeds 1.6
    times the disk of its largest inscribed radius (a convex grain stays below
    that). Only those are examined: the maxima of their distance transform that
    stand ``h`` px above the neck joining them (default: a quarter of
    ``min_diameter_px``, at least 1 px) seed a watershed of ``landscape`` (the
    boundary strength; default the inverted distance) inside the component,
    leaving one-pixel lines (0) between the parts. Working per component keeps
    this linear in the image size; the small components are packed into one
    mosaic, two pixels apart, to find their maxima in one call (the same maxima:
    nothing crosses the gaps).
    """
    from skimage.morphology import h_maxima
    from skimage.segmentation import watershed

    labels, n = ndi.label(mask)
    if n == 0:
        return labels.astype(np.int32)
    h = max(1.0, min_diameter_px / 4) if h is None else h
    dist = ndi.distance_transform_edt(mask).astype(np.float32)
    area = np.bincount(labels.ravel(), minlength=n + 1)[1:]
    rmax = np.zeros(n + 1, np.float32)
    np.maximum.at(rmax, labels.ravel(), dist.ravel())
    rmax = rmax[1:].astype(np.float64)
    suspects = np.nonzero((area > 1.6 * np.pi * (rmax + 0.5) ** 2) & (rmax >= 2 * h))[0]
    slices = ndi.find_objects(labels)
    pieces = {}  # component index -> (its pixels in its box, its seeds labelled 1..k)
    small = []
    for i in suspects:
        sl = slices[i]
        inside = labels[sl] == i + 1
        d = np.where(inside, dist[sl], 0)
        if d.size > 250_000:
            # large components (a connected background, long lamellae): find the maxima on a
            # 2x max-pooled distance map, 4x cheaper, then bring the seeds back
            f = 2
            hh, ww = -(-d.shape[0] // f) * f, -(-d.shape[1] // f) * f
            pooled = np.pad(d, ((0, hh - d.shape[0]), (0, ww - d.shape[1]))).reshape(
                hh // f, f, ww // f, f).max(axis=(1, 3))
            peaks = h_maxima(pooled, h) & (pooled > 0)
            peaks = np.repeat(np.repeat(peaks, f, 0), f, 1)[: d.shape[0], : d.shape[1]] & inside
            pieces[i] = (inside, ndi.label(peaks))
        elif h > np.ptp(d):  # h_maxima finds nothing (not reached for suspects; kept for equality)
            continue
        else:
            small.append((i, inside, d))
    if small:
        # the maxima of all small components at once
        shape, corners = _pack([d.shape for _, _, d in small])
        mosaic = np.zeros(shape, np.float32)
        within = np.zeros(shape, bool)
        boxes = []
        for (i, inside, d), (y, x) in zip(small, corners):
            box = (slice(y, y + d.shape[0]), slice(x, x + d.shape[1]))
            mosaic[box], within[box] = d, inside
            boxes.append(box)
        seeds, _ = ndi.label(h_maxima(mosaic, h).astype(bool) & within)
        for (i, inside, d), box in zip(small, boxes):
            s = seeds[box]
            ids = np.unique(s[s > 0])  # ndi.label numbers in raster order: the piece's own order
            if len(ids) < 2:
                continue
            local = np.where(s > 0, np.searchsorted(ids, s) + 1, 0).astype(np.int32)
            pieces[i] = (inside, (local, len(ids)))
    next_label = n + 1
    for i in suspects:
        if i not in pieces:
            continue
        sl = slices[i]
        inside, (peaks, k) = pieces[i]
        if k < 2:
            continue
        if landscape is None:
            # every pixel to its nearest seed (no flooding needed inside a blob). With a
            # boundary landscape the large components are flooded too: nearest-seed cells
            # of a non-convex component (a lamellar network) fall apart into fragments,
            # each a separate grain to ImageJ (NIST Ti-6Al-4V: 1152 grains, G +0.7, against
            # 612 grains, G +0.2 with the flood, for 0.3 s more)
            _, (iy, ix) = ndi.distance_transform_edt(peaks == 0, return_indices=True)
            parts = np.where(inside, peaks[iy, ix], 0)
        else:
            parts = watershed(landscape[sl], peaks, mask=inside, watershed_line=True)
        new = np.where(parts > 1, parts - 2 + next_label, np.where(parts == 1, i + 1, 0))
        labels[sl][inside] = new[inside]
        next_label += k - 1
    return labels.astype(np.int32)


def _finish(labels, min_area_px, exclude_border, valid=None):
    """One grain per 8-connected piece; drop small and (optionally) border grains, renumber 1..n, int32.

    A label left in several pieces (a split that cut a region apart) would be one
    "grain" of scattered pixels to us and several particles to ImageJ; each piece
    becomes a grain of its own.
    """
    from skimage.measure import label as connected
    from skimage.segmentation import clear_border, relabel_sequential

    labels = connected(np.asarray(labels, dtype=np.int32), background=0, connectivity=2).astype(np.int32)
    if min_area_px and min_area_px > 1:
        counts = np.bincount(labels.ravel())
        small = counts < min_area_px
        small[0] = False
        labels[small[labels]] = 0
    if exclude_border:
        if valid is not None and not valid.all():
            # the bar's top edge counts as an image border
            buffer = np.zeros(labels.shape, bool)
            buffer[~valid] = True
            touching = np.unique(labels[ndi.binary_dilation(buffer)])
            labels[np.isin(labels, touching[touching > 0])] = 0
        labels = clear_border(labels)
    return relabel_sequential(labels)[0].astype(np.int32)


# ---------------------------------------------------------------------------- methods
def _boundary(g, rgb, *, lines, sigma, width_px, min_area_px, min_diameter_px, valid):
    from skimage.filters import threshold_otsu

    if lines == "edge":
        strength = _edges(g, rgb, sigma)
        polarity = "edge"
    elif lines == "auto":
        polarity, strength = _pick_polarity(g, max(sigma, width_px / 2))
    elif lines in ("dark", "bright"):
        polarity, strength = lines, _ridges(g, max(sigma, width_px / 2), lines)
    else:
        raise ValueError(f"lines must be 'auto', 'dark', 'bright' or 'edge', got {lines!r}")
    if valid is not None:
        strength = np.where(valid, strength, 1.0)
    t = threshold_otsu(strength[valid] if valid is not None else strength)
    boundary = strength > t
    if polarity != "edge":
        # a line's blurred flanks: one pixel more on each side where the ridge strength is
        # still above K_FLANK of the threshold (the line, not texture)
        boundary |= ndi.binary_dilation(boundary) & (strength > K_FLANK * t)
    interior = ~boundary
    if valid is not None:
        interior &= valid
    # grains: the interiors, split where two grains meet through a gap in their boundary
    labels = _label_split(interior, min_diameter_px, landscape=strength)
    info = dict(lines=polarity, threshold=float(t))
    return labels, info


def _threshold(g, *, level, phase, sigma, min_area_px, min_diameter_px, split, valid):
    from skimage.filters import threshold_otsu

    s = ndi.gaussian_filter(g, sigma) if sigma > 0 else g
    values = s[valid] if valid is not None else s
    if isinstance(level, str):
        name = level.lower()
        if name == "otsu":
            t = float(threshold_otsu(values))
        elif name in ("isodata", "default"):
            t = _imagej_default(values)
        else:
            raise ValueError(f"threshold must be 'otsu', 'isodata' (ImageJ 'Default') or a number, got {level!r}")
    else:
        t = float(level)
    if phase == "auto":
        # the minority phase is the particles
        phase = "bright" if (values > t).mean() < 0.5 else "dark"
    if phase not in ("bright", "dark"):
        raise ValueError(f"phase must be 'bright', 'dark' or 'auto', got {phase!r}")
    fg = s > t if phase == "bright" else s <= t
    if valid is not None:
        fg &= valid
    if split:
        labels = _label_split(fg, min_diameter_px)
    else:
        labels, _ = ndi.label(fg, structure=np.ones((3, 3)))
    return labels, dict(threshold=float(t), phase=phase)


def _imagej_default(values) -> float:
    """ImageJ's "Default" threshold (``ImageProcessor.getAutoThreshold`` + ``IJIsoData``), as a level in [0, 1].

    On a 256-bin histogram: a dominant mode is clipped to 1.5 × the second-highest
    count, the two extreme bins are ignored, and the split index moves up from the
    lowest populated bin while it stays below the mean of the two class means;
    pixels in bins above the returned level are the bright class.
    """
    hist, edges = np.histogram(values, bins=256, range=(0.0, 1.0))
    data = hist.astype(np.float64)
    mode = int(data.argmax())
    second = np.max(np.delete(data, mode))
    if data[mode] > second * 2 and second != 0:
        data[mode] = int(second * 1.5)
    data[0] = data[255] = 0  # IJIsoData leaves out the extreme bins
    idx = np.nonzero(data)[0]
    if len(idx) < 2:
        return float(edges[128])
    lo, hi = int(idx[0]), int(idx[-1])
    i = np.arange(256, dtype=np.float64)
    cw, cn = np.cumsum(i * data), np.cumsum(data)
    moving = lo
    while True:
        n1, n2 = cn[moving], cn[hi] - cn[moving]
        m1 = cw[moving] / n1 if n1 else 0.0
        m2 = (cw[hi] - cw[moving]) / n2 if n2 else 0.0
        result = (m1 + m2) / 2.0
        moving += 1
        if not ((moving + 1) <= result and moving < hi - 1):
            break
    level = int(np.floor(result + 0.5))  # Java Math.round
    return float(edges[min(level + 1, 256)])


def _network_score(g, sigma):
    """How much the image looks like grains outlined by a line network: (is_network, details)."""
    from skimage.filters import threshold_otsu

    polarity, r = _pick_polarity(g, sigma)
    lines = r > threshold_otsu(r)
    frac = float(lines.mean())
    lab, n = ndi.label(lines, structure=np.ones((3, 3)))
    largest = float(np.bincount(lab.ravel())[1:].max() / max(lines.sum(), 1)) if n else 0.0
    enclosed, m = ndi.label(~lines)
    sizes = np.bincount(enclosed.ravel())[1:]
    n_regions = int((sizes >= 16).sum())
    network = largest > 0.5 and n_regions >= 10 and 0.03 < frac < 0.5
    return network, dict(line_fraction=frac, largest_line_component=largest, enclosed_regions=n_regions,
                         lines=polarity)


def _two_phase(g, sigma) -> float:
    """Otsu's separability: the fraction of the (smoothed) grey-level variance between its two classes."""
    from skimage.filters import threshold_otsu

    x = ndi.gaussian_filter(np.asarray(g, np.float64), max(sigma, 1.0))
    var = float(x.var())
    if var <= 0:
        return 0.0
    hi = x > threshold_otsu(x)
    w = float(hi.mean())
    if w in (0.0, 1.0):
        return 0.0
    return float((x[hi].mean() - x[~hi].mean()) ** 2 * w * (1 - w) / var)


def _auto(g, rgb, lines, sigma, width_px, model, info):
    """The method ``"auto"`` runs, and why (``info["auto"]``): ``(method, lines)``."""
    from .learned import learned_available

    network, details = _network_score(g, max(sigma, width_px / 2))
    details["colour"] = 0.0 if rgb is None else float(np.abs(rgb - rgb.mean(-1, keepdims=True)).mean())
    binary = np.unique(g[:: max(1, g.shape[0] // 256), :: max(1, g.shape[1] // 256)]).size <= 2
    details["two_phase"] = _two_phase(g, sigma)
    strong = network and details["largest_line_component"] >= STRONG_NETWORK
    if binary:
        method, why = "threshold", "a binary image: its particles are measured as they are"
    elif strong:
        method, why = "boundary", "boundary lines form one connected network"
    elif details["two_phase"] >= TWO_PHASE:
        method, why = "threshold", "two well-separated grey levels: particles or a phase on a background"
    elif learned_available(model):
        method, why = "learned", ("boundary lines broken or faint" if network else
                                  "no boundary-line network: grains told apart by tone and texture")
    elif details["colour"] > 0.03 and lines == "auto":
        method, lines, why = "boundary", "edge", "no line network but colour contrast (tint etching)"
        details["colour_edges"] = True
    elif network:
        method, why = "boundary", "boundary lines form a network"
    else:
        method, why = "threshold", "no boundary-line network and no learned model"
    details["reason"] = why
    info.update(auto=details)
    log.info("segment(method='auto') chose %r: %s", method, why)
    return method, lines


# ---------------------------------------------------------------------------- public
def _probability_cut(threshold) -> float:
    """A learned model's boundary-probability cut, checked: a number in (0, 1)."""
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float, np.number)) \
            or not 0 < float(threshold) < 1:
        raise ValueError(f"threshold for method 'learned' must be a boundary probability in (0, 1), "
                         f"got {threshold!r}")
    return float(threshold)


def segment(image, calibration: Calibration | None = None, method: str = "auto", *,
            lines: str = "auto", threshold="otsu", phase: str = "auto", split: bool = True,
            smoothing=None, boundary_width=None, min_area=None, min_diameter=None,
            exclude_border: bool = False, data_bar="auto", model=None, return_info: bool = False,
            **params):
    """Segment a micrograph into grains.

    Parameters
    ----------
    image : array_like
        2-D gray or ``(H, W, 3|4)`` colour image, any real dtype.
    calibration : Calibration, optional
        Pixel size and unit; pixels when omitted.
    method : {"auto", "boundary", "threshold", "learned"}
    lines : {"auto", "dark", "bright", "edge"}
        ``"boundary"`` method: polarity of the boundary lines, or ``"edge"`` for
        grains told apart by colour or texture contrast instead of lines.
    threshold : {"otsu", "isodata"} or float
        ``"threshold"`` method: Otsu, IsoData (ImageJ "Default") or a level in
        [0, 1] of the normalised image (0.1–99.9 percentile range).
        ``"learned"`` method: a number is the boundary-probability cut (default:
        the one on the model card); the names do not apply.
    phase : {"auto", "bright", "dark"}
        ``"threshold"`` method: which side of the level the particles are on
        (``"auto"``: the minority side).
    split : bool
        ``"threshold"`` method: split touching particles by distance-transform watershed.
    smoothing : float or str, optional
        Gaussian smoothing scale (nm; default one pixel).
    boundary_width : float or str, optional
        Width of the boundary lines (nm): the ridge filter's scale is half of it.
        Default: estimated from the image (:func:`estimate_line_width`; two
        pixels for ``lines="edge"`` and the threshold method).
    min_area : float or str, optional
        Grains smaller than this (µm²) are dropped (become 0); default 12 px².
    min_diameter : float or str, optional
        Smallest grain diameter expected (nm); seeds closer than this merge.
        Default: four boundary widths.
    exclude_border : bool
        Drop grains touching the image border (ImageJ "exclude on edges").
    data_bar : "auto", bool or DataBar
        ``"auto"`` finds the SEM information strip and leaves it 0 in the labels;
        False analyses every row.
    model : torch.nn.Module, path or pretrained name, optional
        ``"learned"`` method: boundary U-Net or checkpoint; the shipped
        ``"grain-boundary-unet"`` by default.
    return_info : bool
        Also return a dict saying which method ran with which parameters (in pixels).
    **params
        Passed on to the learned segmenter
        (:func:`~hyperspy_mmdl.grains.learned.segment_learned`: ``scale``, ``device``,
        ``merge`` ...); with ``method="auto"`` they apply only when it chooses the learned model.

    Returns
    -------
    labels : ndarray of int32
        Grains numbered 1..n; 0 on boundaries, background, the data bar and NaN/Inf
        pixels (:func:`hyperspy_mmdl.validate.check_frame`: images too small to hold a
        grain raise :class:`~hyperspy_mmdl.errors.ImageError`, constant ones give no grain).
    info : dict
        Only with ``return_info=True``: the method that ran and its parameters in
        pixels, ``"auto"`` (what ``method="auto"`` saw and why it chose),
        ``"quality"`` (warnings, :func:`hyperspy_mmdl.grains.quality.assess`), ``"n_grains"``,
        and for the learned method ``"learned"`` (the zoom it ran at and the certainty of each
        candidate zoom).
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    from ..validate import check_frame, exclude_invalid

    checked = check_frame(image, what="segment: the image")  # empty/tiny images, NaN/Inf, extreme, constant
    if checked.changed:
        if checked.constant:
            labels = np.zeros(np.shape(image)[:2], np.int32)
            info = dict(method=method, n_grains=0, notes=list(checked.notes))
            return (labels, info) if return_info else labels
        labels, info = segment(checked.image, calibration, method, lines=lines, threshold=threshold, phase=phase,
                               split=split, smoothing=smoothing, boundary_width=boundary_width, min_area=min_area,
                               min_diameter=min_diameter, exclude_border=exclude_border, data_bar=data_bar,
                               model=model, return_info=True, **params)
        labels = exclude_invalid(labels, checked.invalid)  # no grain on a NaN/Inf pixel
        info.update(n_grains=int(labels.max()), notes=list(checked.notes),
                    invalid_fraction=checked.invalid_fraction)
        return (labels, info) if return_info else labels
    if calibration is None:
        calibration = Calibration.uncalibrated()
    elif calibration.ndim != 2:
        calibration = calibration.image
    g, rgb = _as_gray(image)
    sigma = _to_pixels(smoothing, calibration, "length")
    sigma = 1.0 if sigma is None else sigma
    width_px = _to_pixels(boundary_width, calibration, "length")
    if width_px is None or width_px <= 0:
        width_px = estimate_line_width(g, lines) if method in ("auto", "boundary") and lines != "edge" else 2.0
    min_area_px = _to_pixels(min_area, calibration, "area")
    min_area_px = 12.0 if min_area_px is None else min_area_px
    min_diameter_px = _to_pixels(min_diameter, calibration, "length") or 4 * width_px
    info = dict(method=method, smoothing_px=sigma, boundary_width_px=width_px, min_area_px=min_area_px,
                min_diameter_px=min_diameter_px)

    valid = None
    bar = None
    if data_bar is not False and data_bar is not None:
        from ..preprocess.databar import DataBar, find_data_bar

        bar = data_bar if isinstance(data_bar, DataBar) else (find_data_bar(image) if data_bar in ("auto", True)
                                                               else None)
        if bar is not None:
            valid = np.ones(g.shape, bool)
            valid[bar.top:] = False
    info["data_bar_top"] = None if bar is None else bar.top
    if method not in ("learned", "auto") and params:
        raise TypeError(f"segment() got unexpected parameters {sorted(params)} for method {method!r}")

    full_shape = g.shape
    x = np.asarray(image)
    if bar is not None:  # analyse the rows above the bar only; the bar stays 0
        g, x = g[: bar.top], x[: bar.top]
        rgb = None if rgb is None else rgb[: bar.top]
    from .quality import assess, find_overlay_text

    text = find_overlay_text(g)
    if method == "auto":
        method, lines = _auto(g, rgb, lines, sigma, width_px, model, info)
        if info["auto"].get("colour_edges") and not boundary_width:
            width_px = 2.0  # the line-width estimate does not apply to colour edges
            if not min_diameter:
                min_diameter_px = 4 * width_px
            info.update(boundary_width_px=width_px, min_diameter_px=min_diameter_px)
        if method != "learned" and params:
            log.info("segment(method='auto') chose %r: the learned model's parameters %s were not used",
                     method, sorted(params))
    prob = None
    if method == "learned":
        from .learned import DEFAULT_MODEL, segment_learned  # boundary U-Net through the inference predictor

        model = DEFAULT_MODEL if model is None else model
        if not isinstance(threshold, str) and "threshold" not in params:
            params["threshold"] = _probability_cut(threshold)
        labels, prob, learned = segment_learned(x, calibration, model=model, return_probability=True,
                                                return_info=True, **params)
        labels = np.asarray(labels, dtype=np.int32)
        info["learned"] = learned
        if learned["scale"] != 1.0 and "certainty" in learned:
            log.info("segment(method='learned') ran at zoom %.2f, where the model is most certain of the image "
                     "(its grains are far from the size it was trained on)", learned["scale"])
        from pathlib import PurePath

        info["model"] = (str(model) if isinstance(model, (str, PurePath))
                         else getattr(model, "name", type(model).__name__))
    elif method == "boundary":
        labels, extra = _boundary(g, rgb, lines=lines, sigma=sigma, width_px=width_px, min_area_px=min_area_px,
                                  min_diameter_px=min_diameter_px, valid=None)
        info.update(extra)
    else:
        labels, extra = _threshold(g, level=threshold, phase=phase, sigma=sigma, min_area_px=min_area_px,
                                   min_diameter_px=min_diameter_px, split=split, valid=None)
        info.update(extra)
    if text.any():  # printed text is not microstructure: grains touching it are dropped
        labels = np.where(np.isin(labels, np.unique(labels[text])), 0, labels).astype(np.int32)
    info["method"] = method
    info["quality"] = assess(g, labels, method=method, boundary_probability=prob, text=text)
    for w in info["quality"]:
        log.info("segment: %s", w)
    if bar is not None:
        labels = np.concatenate([labels, np.zeros((full_shape[0] - bar.top, full_shape[1]), labels.dtype)])
    labels = _finish(labels, min_area_px, exclude_border, valid)
    info["n_grains"] = int(labels.max())
    return (labels, info) if return_info else labels
