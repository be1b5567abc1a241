"""A port of ImageJ 1.53t's particle measurements, compiled with numba.

Every routine follows the ImageJ source at tag ``v1.53t`` (commit 35c12e32):

* :func:`_trace` — ``ij/gui/Wand.java`` ``autoOutline`` / ``traceEdge`` in
  ``LEGACY_MODE`` on a thresholded image (8-connected outline along pixel
  edges, corner vertices only). The particle analyzer
  (``ij/plugin/filter/ParticleAnalyzer.java`` L868-935) starts the Wand at the
  first pixel of the particle in raster order; the Wand walks right to the end
  of that run and starts tracing at the lower right corner of the run's last
  pixel, heading down (``startY++``, "continue after the boundary that has
  direction 'down'"). Directions are ``UP=0, LEFT=1, DOWN=2, RIGHT=3``; the
  interior stays on the right-hand side.
* :func:`_traced_perimeter` — ``ij/gui/PolygonRoi.java`` ``getTracedPerimeter``
  (L1341): ``Σ|dx|·pw + Σ|dy|·ph − nCorners·((pw+ph) − √(pw²+ph²))`` where in
  runs of unit-length sides only every other vertex counts as a corner. The
  result depends on the first vertex of the polygon, which is why the Wand start
  is reproduced exactly.
* :func:`_convex_hull` — ``Roi.getFloatConvexHull`` →
  ``ij/process/FloatPolygon.java`` ``getConvexHull`` (gift wrapping from the
  top-most, then left-most vertex, collinear points dropped); only the vertex
  order matters here, it decides ties of the Feret angle.
* :func:`_feret` — ``ij/gui/Roi.java`` ``getFeretValues`` (L370): the largest
  hull-vertex distance (first pair in hull order on ties), the Feret angle
  ``atan2((y1−y2)·ph, (x2−x1)·pw)`` with point 1 the left end, folded into
  [0, 180), and MinFeret by rotating calipers (minimum over hull edges of the
  largest perpendicular distance).
* :func:`ellipse_fitter` — ``ij/process/EllipseFitter.java`` statement for
  statement: ``computeSums`` (integer sums of the mask pixels relative to the
  bounding rectangle, from :func:`raster_sums` via :func:`bbox_sums`),
  ``getMoments`` (``+ 0.08333333·bitCount`` for the pixel extent) and
  ``getEllipseParam`` with its quirks (``atan``, not ``atan2``; ``HALFPI =
  1.5707963267949``; the ``a12 == 0`` branch; area-equalised axes), and the
  rectangle's ellipse of particles without a mask (one pixel wide or high).
  The floating-point operations run in ImageJ's order: on mirror-symmetric
  particles the cross moment cancels to 0 or ±1 ulp, and which of the two
  decides the branch (and, through ``HALFPI``, the axes and a ~1e-14 angle).
  ``ij/process/ImageStatistics.java`` ``fitEllipse`` (L244) scales by the
  pixel width.
"""

from __future__ import annotations

import math

import numba
import numpy as np

__all__ = ["outline_measures", "ellipse_fitter", "ellipse_of_moments", "bbox_sums", "raster_sums", "component_starts"]

_UP, _LEFT, _DOWN, _RIGHT = 0, 1, 2, 3


@numba.njit(cache=True, nogil=True)
def _inside(lab, w, h, value, x, y):
    if x < 0 or y < 0 or x >= w or y >= h:
        return False
    return lab[y, x] == value


@numba.njit(cache=True, nogil=True)
def _inside_dir(lab, w, h, value, x, y, direction):
    d = direction & 3
    if d == 0:  # UP
        return _inside(lab, w, h, value, x, y - 1)
    if d == 2:  # DOWN
        return _inside(lab, w, h, value, x - 1, y)
    if d == 1:  # LEFT
        return _inside(lab, w, h, value, x - 1, y - 1)
    return _inside(lab, w, h, value, x, y)  # RIGHT


@numba.njit(cache=True, nogil=True)
def _trace(lab, value, x0, y0, xs, ys, start):
    """Wand.traceEdge of the 8-connected particle whose first pixel is (x0, y0).

    Writes the corner vertices into ``xs[start:]``, ``ys[start:]`` and returns
    their number.
    """
    h, w = lab.shape
    x = x0
    while _inside(lab, w, h, value, x, y0):  # Wand.autoOutline: go right to the end of the run
        x += 1
    start_x, start_y = x, y0 + 1  # traceEdge: inside left of the border, start direction DOWN, startY++
    start_dir = _DOWN
    y = start_y
    direction = start_dir
    n = 0
    while True:
        new_dir = direction + 1  # 8-connected: try the left turn first, then straight, else turn right
        while True:
            if _inside_dir(lab, w, h, value, x, y, new_dir):
                break
            new_dir -= 1
            if new_dir < direction:
                break
        if new_dir != direction:
            xs[start + n] = x
            ys[start + n] = y
            n += 1
        d = new_dir & 3
        if d == 0:
            y -= 1
        elif d == 2:
            y += 1
        elif d == 1:
            x -= 1
        else:
            x += 1
        direction = new_dir
        if x == start_x and y == start_y and (direction & 3) == start_dir:
            break
    if n > 0 and xs[start] != x:  # "if the start point = end point is a corner: add to list"
        xs[start + n] = x
        ys[start + n] = y
        n += 1
    return n


@numba.njit(cache=True, nogil=True)
def _traced_perimeter(xs, ys, start, n, pw, ph):
    """PolygonRoi.getTracedPerimeter of the polygon ``xs[start:start+n]``."""
    sumdx = 0
    sumdy = 0
    ncorners = 0
    dx1 = xs[start] - xs[start + n - 1]
    dy1 = ys[start] - ys[start + n - 1]
    side1 = abs(dx1) + abs(dy1)
    corner = False
    for i in range(n):
        nxt = i + 1
        if nxt == n:
            nxt = 0
        dx2 = xs[start + nxt] - xs[start + i]
        dy2 = ys[start + nxt] - ys[start + i]
        sumdx += abs(dx1)
        sumdy += abs(dy1)
        side2 = abs(dx2) + abs(dy2)
        if side1 > 1 or not corner:
            corner = True
            ncorners += 1
        else:
            corner = False
        dx1 = dx2
        dy1 = dy2
        side1 = side2
    return sumdx * pw + sumdy * ph - ncorners * ((pw + ph) - math.sqrt(pw * pw + ph * ph))


@numba.njit(cache=True, nogil=True)
def _cross(ox, oy, ax, ay, bx, by):
    return (ax - ox) * (by - oy) - (ay - oy) * (bx - ox)


@numba.njit(cache=True, nogil=True)
def _convex_hull(xs, ys, start, n, hx, hy):
    """Strict convex hull of the points ``xs[start:start+n]`` in ImageJ's order.

    Andrew's monotone chain, then reversed and rotated so that it runs like
    PolygonRoi.getConvexHull's gift wrapping: from the top-most, then left-most
    vertex, down the left side first (negative orientation in (x, y-down)
    coordinates). Returns the number of hull vertices written to ``hx``, ``hy``.
    """
    px = xs[start:start + n].copy()
    py = ys[start:start + n].copy()
    order = np.argsort(px * (2 ** 31) + py)  # sort by x, then y (coordinates are small integers)
    px = px[order]
    py = py[order]
    tx = np.empty(2 * n + 1, dtype=np.int64)
    ty = np.empty(2 * n + 1, dtype=np.int64)
    k = 0
    for i in range(n):  # lower hull
        while k >= 2 and _cross(tx[k - 2], ty[k - 2], tx[k - 1], ty[k - 1], px[i], py[i]) <= 0:
            k -= 1
        tx[k] = px[i]
        ty[k] = py[i]
        k += 1
    lower = k + 1
    for i in range(n - 2, -1, -1):  # upper hull
        while k >= lower and _cross(tx[k - 2], ty[k - 2], tx[k - 1], ty[k - 1], px[i], py[i]) <= 0:
            k -= 1
        tx[k] = px[i]
        ty[k] = py[i]
        k += 1
    m = k - 1 if n > 1 else 1  # counter-clockwise (positive orientation), last point repeats the first
    # ImageJ's start: smallest y, then smallest x
    s = 0
    for i in range(m):
        if ty[i] < ty[s] or (ty[i] == ty[s] and tx[i] < tx[s]):
            s = i
    for i in range(m):  # reversed order, starting at s
        j = (s - i) % m
        hx[i] = tx[j]
        hy[i] = ty[j]
    return m


@numba.njit(cache=True, nogil=True)
def _feret(hx, hy, m, pw, ph):
    """Roi.getFeretValues on a hull: (Feret, FeretAngle, MinFeret, FeretX, FeretY)."""
    best = 0.0
    p1 = 0
    p2 = 0
    for i in range(m):
        for j in range(i + 1, m):
            dx = (hx[i] - hx[j]) * pw
            dy = (hy[i] - hy[j]) * ph
            d = dx * dx + dy * dy
            if d > best:
                best = d
                p1 = i
                p2 = j
    diameter = math.sqrt(best)
    x1, y1, x2, y2 = hx[p1], hy[p1], hx[p2], hy[p2]
    if x1 > x2:
        x1, y1, x2, y2 = x2, y2, x1, y1
    angle = math.atan2((y1 - y2) * ph, (x2 - x1) * pw) * 180.0 / math.pi
    if angle < 0:
        angle = 180.0 + angle
    # rotating calipers: for every hull edge the largest distance of a vertex from its line
    min_feret = diameter if m > 1 else 0.0
    if m >= 3:
        for i in range(m):
            j = (i + 1) % m
            ex = (hx[j] - hx[i]) * pw
            ey = (hy[j] - hy[i]) * ph
            length = math.sqrt(ex * ex + ey * ey)
            if length == 0:
                continue
            widest = 0.0
            for k in range(m):
                c = abs(ex * (hy[k] - hy[i]) * ph - ey * (hx[k] - hx[i]) * pw) / length
                if c > widest:
                    widest = c
            if widest < min_feret:
                min_feret = widest
    return diameter, angle, min_feret, float(x1), float(y1)


@numba.njit(cache=True, nogil=True)
def _polygon_area(hx, hy, m):
    a = 0
    for i in range(m):
        j = (i + 1) % m
        a += hx[i] * hy[j] - hx[j] * hy[i]
    return abs(a) / 2.0


@numba.njit(cache=True, nogil=True)
def outline_measures(lab, starts, values, groups, pw, ph, max_vertices):
    """Trace every particle and return its outline measurements.

    Parameters
    ----------
    lab : (H, W) int array
        Label image.
    starts : (K,) int64
        Flat index of the first pixel (raster order) of every 8-connected
        component, grouped by label.
    values : (L,) int64
        Label value of each output row.
    groups : (L + 1,) int64
        Components ``groups[r]:groups[r+1]`` belong to row ``r``.
    pw, ph : float
        Pixel width and height.
    max_vertices : int
        Upper bound of the vertex count of one label's outlines.

    Returns
    -------
    out : (L, 9) float64
        Columns perimeter, feret, feret_angle, min_feret, feret_x, feret_y,
        hull_area (pixels²), bbox width, bbox height (pixels).
    """
    h, w = lab.shape
    nrows = values.shape[0]
    out = np.empty((nrows, 9), dtype=np.float64)
    xs = np.empty(max_vertices, dtype=np.int64)
    ys = np.empty(max_vertices, dtype=np.int64)
    hx = np.empty(max_vertices + 1, dtype=np.int64)
    hy = np.empty(max_vertices + 1, dtype=np.int64)
    for r in range(nrows):
        total = 0
        perimeter = 0.0
        for c in range(groups[r], groups[r + 1]):
            y0 = starts[c] // w
            x0 = starts[c] - y0 * w
            n = _trace(lab, values[r], x0, y0, xs, ys, total)
            perimeter += _traced_perimeter(xs, ys, total, n, pw, ph)
            total += n
        m = _convex_hull(xs, ys, 0, total, hx, hy)
        feret, angle, min_feret, fx, fy = _feret(hx, hy, m, pw, ph)
        out[r, 0] = perimeter
        out[r, 1] = feret
        out[r, 2] = angle
        out[r, 3] = min_feret
        out[r, 4] = fx
        out[r, 5] = fy
        out[r, 6] = _polygon_area(hx, hy, m)
        out[r, 7] = xs[:total].max() - xs[:total].min()
        out[r, 8] = ys[:total].max() - ys[:total].min()
    return out


@numba.njit(cache=True, nogil=True)
def raster_sums(lab, index, nrows):
    """Per-label pixel sums and bounding boxes in one raster scan.

    ``index[value]`` is the output row of a label value (−1: skip). Returns
    ``(sums, first)``: ``sums`` (int64, exact) has the columns n, Σx, Σy, Σx²,
    Σy², Σxy (pixel indices relative to the first pixel), the first pixel's x
    and y, a border flag, and the bounding box's min x, max x and max y (its
    min y is the first pixel's y); ``first`` = flat index of the first pixel of
    every row.
    """
    h, w = lab.shape
    sums = np.zeros((nrows, 12), dtype=np.int64)
    first = np.full(nrows, -1, dtype=np.int64)
    for y in range(h):
        for x in range(w):
            v = lab[y, x]
            if v <= 0:
                continue
            r = index[v]
            if r < 0:
                continue
            if first[r] < 0:
                first[r] = y * w + x
                sums[r, 6] = x
                sums[r, 7] = y
                sums[r, 9] = x
                sums[r, 10] = x
            dx = x - sums[r, 6]
            dy = y - sums[r, 7]
            sums[r, 0] += 1
            sums[r, 1] += dx
            sums[r, 2] += dy
            sums[r, 3] += dx * dx
            sums[r, 4] += dy * dy
            sums[r, 5] += dx * dy
            if x == 0 or y == 0 or x == w - 1 or y == h - 1:
                sums[r, 8] = 1
            if x < sums[r, 9]:
                sums[r, 9] = x
            if x > sums[r, 10]:
                sums[r, 10] = x
            sums[r, 11] = y
    return sums, first


def bbox_sums(sums):
    """EllipseFitter.computeSums from :func:`raster_sums`' rows, exactly.

    ImageJ sums the mask pixels' indices relative to the particle's bounding
    rectangle (``ip.getRoi()``). The sums of :func:`raster_sums` are relative
    to the first pixel, whose row is the rectangle's top; shifting them by
    ``c = first x − left`` is exact in integers: Σx' = Σdx + n·c,
    Σx'² = Σdx² + 2c·Σdx + n·c², Σx'y' = Σdxdy + c·Σdy.

    Returns
    -------
    (L, 10) int64
        n, Σx, Σy, Σx², Σy², Σxy (relative to the rectangle), left, top,
        width, height.
    """
    s = np.asarray(sums, dtype=np.int64)
    n, sdx, sdy, sdx2, sdy2, sdxy = (s[:, i] for i in range(6))
    left, top = s[:, 9], s[:, 7]
    c = s[:, 6] - left
    out = np.empty((len(s), 10), dtype=np.int64)
    out[:, 0] = n
    out[:, 1] = sdx + n * c
    out[:, 2] = sdy
    out[:, 3] = sdx2 + 2 * c * sdx + n * c * c
    out[:, 4] = sdy2
    out[:, 5] = sdxy + c * sdy
    out[:, 6] = left
    out[:, 7] = top
    out[:, 8] = s[:, 10] - left + 1
    out[:, 9] = s[:, 11] - top + 1
    return out


# EllipseFitter's constants, as written there (neither is the double nearest to π/2 or √π)
_HALFPI = 1.5707963267949
_SQRT_PI = 1.772453851


@numba.njit(cache=True, nogil=True)
def _ellipse_param(bit_count, u20, u02, u11):
    """EllipseFitter.getEllipseParam from the central moments on: (major, minor, angle).

    Statement for statement, including its quirks: ``atan`` (not ``atan2``)
    of ``2·a12 / (a11 − a22)``, the constant ``HALFPI = 1.5707963267949``, the
    ``a12 == 0`` branch that swaps ``a11`` and ``a22``, the ``0.000001``
    guards, and the final scaling of both axes to the area ``bit_count``.
    """
    m4 = 4.0 * abs(u02 * u20 - u11 * u11)
    if m4 < 0.000001:
        m4 = 0.000001
    a11 = u02 / m4
    a12 = u11 / m4
    a22 = u20 / m4
    tmp = a11 - a22
    if tmp == 0.0:
        tmp = 0.000001
    theta = 0.5 * math.atan(2.0 * a12 / tmp)
    if theta < 0.0:
        theta += _HALFPI
    if a12 > 0.0:
        theta += _HALFPI
    elif a12 == 0.0:
        if a22 > a11:
            theta = 0.0
            tmp = a22
            a22 = a11
            a11 = tmp
        elif a11 != a22:
            theta = _HALFPI
    tmp = math.sin(theta)
    if tmp == 0.0:
        tmp = 0.000001
    z = a12 * math.cos(theta) / tmp
    major = math.sqrt(1.0 / abs(a22 + z))
    minor = math.sqrt(1.0 / abs(a11 - z))
    scale = math.sqrt(bit_count / (math.pi * major * minor))  # equalize areas
    major = major * scale * 2.0
    minor = minor * scale * 2.0
    angle = 180.0 * theta / math.pi
    if angle == 180.0:
        angle = 0.0
    if major < minor:
        tmp = major
        major = minor
        minor = tmp
    return major, minor, angle


@numba.njit(cache=True, nogil=True)
def ellipse_fitter(bsums, masked):
    """ImageJ 1.53t's EllipseFitter on every particle: major, minor, angle and centre.

    A port of ``ij/process/EllipseFitter.java`` (``getEllipseParam``,
    ``computeSums``, ``getMoments``) with ImageJ's floating-point operations in
    ImageJ's order, so that cancellations come out the same: the moments of a
    mirror-symmetric particle are zero in exact arithmetic, and what ImageJ's
    ``xy − x1·y1`` leaves of them (0 or ±1 ulp) picks the branch and, through
    ``HALFPI``, the axes.

    Parameters
    ----------
    bsums : (L, 10) int64
        :func:`bbox_sums` rows: n, Σx, Σy, Σx², Σy², Σxy relative to the
        bounding rectangle, left, top, width, height. Integer sums are what
        ``computeSums`` accumulates (exactly, in doubles) row by row from the
        bit count and x-sum of each mask line.
    masked : (L,) bool
        Whether ImageJ has a mask for the particle: the particle analyzer sets
        one only when the rectangle is wider and higher than one pixel
        (``ParticleAnalyzer.analyzeParticle``); without it the ellipse is the
        rectangle's (``2·width/√π``, ``2·height/√π``, angle 0 or 90).

    Returns
    -------
    (L, 5) float64
        Major, minor (pixels), angle (degrees, [0, 180)), and the centre x, y
        (pixels from the image corner: ImageJ's X, Y before calibration).

    Examples
    --------
    >>> import numpy as np
    >>> b = np.zeros((4, 4), np.int32); b[0:2, 0:4] = 1; b[2, 1:3] = 1
    >>> sums, _ = raster_sums(b, np.arange(2), 2)
    >>> ellipse_fitter(bbox_sums(sums[1:]), np.array([True]))[0, :2].round(6)
    array([4.110886, 3.097239])
    """
    nrows = bsums.shape[0]
    out = np.empty((nrows, 5), dtype=np.float64)
    for r in range(nrows):
        left = bsums[r, 6]
        top = bsums[r, 7]
        width = bsums[r, 8]
        height = bsums[r, 9]
        if not masked[r]:
            major = (width * 2) / _SQRT_PI
            minor = (height * 2) / _SQRT_PI
            angle = 0.0
            if major < minor:
                tmp = major
                major = minor
                minor = tmp
                angle = 90.0
            out[r, 0] = major
            out[r, 1] = minor
            out[r, 2] = angle
            out[r, 3] = left + width / 2.0
            out[r, 4] = top + height / 2.0
            continue
        bit_count = bsums[r, 0]
        xsum = float(bsums[r, 1])
        ysum = float(bsums[r, 2])
        x2sum = float(bsums[r, 3])
        y2sum = float(bsums[r, 4])
        xysum = float(bsums[r, 5])
        # getMoments
        x2sum += 0.08333333 * bit_count
        y2sum += 0.08333333 * bit_count
        n = float(bit_count)
        x1 = xsum / n
        y1 = ysum / n
        x2 = x2sum / n
        y2 = y2sum / n
        xy = xysum / n
        u20 = x2 - (x1 * x1)
        u02 = y2 - (y1 * y1)
        u11 = xy - x1 * y1
        major, minor, angle = _ellipse_param(bit_count, u20, u02, u11)
        out[r, 0] = major
        out[r, 1] = minor
        out[r, 2] = angle
        out[r, 3] = left + x1 + 0.5
        out[r, 4] = top + y1 + 0.5
    return out


@numba.njit(cache=True, nogil=True)
def ellipse_of_moments(n, u20, u02, u11):
    """:func:`_ellipse_param` over arrays of central moments (no ImageJ counterpart).

    For the non-square-pixel convention of :mod:`~hyperspy_mmdl.grains.measure`
    (ImageJ reports Major = Minor = 0 there): moments in units of
    ``√(sx·sy)``, pixel extent included, axes scaled to the area ``n``.
    Returns (L, 3): major, minor, angle.
    """
    out = np.empty((n.shape[0], 3), dtype=np.float64)
    for r in range(n.shape[0]):
        out[r, 0], out[r, 1], out[r, 2] = _ellipse_param(n[r], u20[r], u02[r], u11[r])
    return out


@numba.njit(cache=True, nogil=True)
def _find(parent, i):
    """Root of run ``i`` (union-find with path halving)."""
    while parent[i] != i:
        parent[i] = parent[parent[i]]
        i = parent[i]
    return i


@numba.njit(cache=True, nogil=True)
def component_starts(lab):
    """First pixel (flat index, raster order) of every 8-connected piece of equal label.

    The same pieces and order as the particle analyzer's scan-and-fill
    (``FloodFiller.particleAnalyzerFill``), found without a flood fill: the
    image is cut into runs of equal label per row, runs touching a run of the
    same label in the row above (8-neighbours: overlapping or diagonal) are
    joined by union-find, and each set's root is kept at its first run, whose
    first pixel is the piece's first pixel in raster order. About 10x faster
    than the fill on a 4096² image. ``lab.ravel()[starts]`` gives the labels.
    """
    h, w = lab.shape
    n = 0
    for y in range(h):
        for x in range(w):
            v = lab[y, x]
            if v > 0 and (x == 0 or lab[y, x - 1] != v):
                n += 1
    x0 = np.empty(n, dtype=np.int64)
    x1 = np.empty(n, dtype=np.int64)
    row = np.empty(h + 1, dtype=np.int64)
    k = 0
    for y in range(h):
        row[y] = k
        x = 0
        while x < w:
            v = lab[y, x]
            if v <= 0:
                x += 1
                continue
            x0[k] = x
            while x < w and lab[y, x] == v:
                x += 1
            x1[k] = x - 1
            k += 1
    row[h] = k
    parent = np.arange(n)
    for y in range(1, h):
        j, jend = row[y - 1], row[y]
        for i in range(row[y], row[y + 1]):
            while j < jend and x1[j] < x0[i] - 1:
                j += 1
            v = lab[y, x0[i]]
            m = j
            while m < jend and x0[m] <= x1[i] + 1:
                if lab[y - 1, x0[m]] == v:
                    a, b = _find(parent, i), _find(parent, m)
                    if a < b:
                        parent[b] = a
                    elif b < a:
                        parent[a] = b
                m += 1
    starts = np.empty(n, dtype=np.int64)
    ns = 0
    for y in range(h):
        for i in range(row[y], row[y + 1]):
            if _find(parent, i) == i:
                starts[ns] = y * w + x0[i]
                ns += 1
    return starts[:ns]
