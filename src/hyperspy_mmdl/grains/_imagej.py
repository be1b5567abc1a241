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
* :func:`_convex_hull` — ``PolygonRoi.getConvexHull`` (gift wrapping from the
  top-most, then left-most vertex); only the vertex order matters here, it
  decides ties of the Feret angle.
* :func:`_feret` — ``ij/gui/Roi.java`` ``getFeretValues`` (L370): the largest
  hull-vertex distance (first pair in hull order on ties), the Feret angle
  ``atan2((y1−y2)·ph, (x2−x1)·pw)`` with point 1 the left end, folded into
  [0, 180), and MinFeret by rotating calipers (minimum over hull edges of the
  largest perpendicular distance).
* :func:`ellipse` — ``ij/process/EllipseFitter.java`` (moments of pixel
  centres plus ``0.08333333·n`` for the pixel extent, area-equalised axes) and
  ``ij/process/ImageStatistics.java`` ``fitEllipse`` (L243).
"""

from __future__ import annotations

import math

import numba
import numpy as np

__all__ = ["outline_measures", "ellipse", "raster_sums"]

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
    """Per-label pixel sums in one raster scan.

    ``index[value]`` is the output row of a label value (−1: skip). Returns
    ``(sums, first)``: ``sums[:, :]`` = n, Σx, Σy, Σx², Σy², Σxy (pixel indices,
    relative to the first pixel for accuracy) plus the first pixel's x, y and a
    border flag; ``first`` = flat index of the first pixel of every row.
    """
    h, w = lab.shape
    sums = np.zeros((nrows, 9), dtype=np.float64)
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
    return sums, first


def ellipse(n, mx2, my2, mxy, bw, bh):
    """ImageJ's EllipseFitter on central moments, vectorised over particles.

    Parameters
    ----------
    n : ndarray
        Pixel counts.
    mx2, my2, mxy : ndarray
        Central second moments (pixel units, y down) including the pixel
        extent: EllipseFitter.getMoments adds ``0.08333333`` to the variances
        of the pixel centres.
    bw, bh : ndarray
        Bounding-box width and height in pixels. Particles one pixel wide or
        high have no mask in ImageJ (``ParticleAnalyzer`` only sets a mask when
        ``width>1 && height>1``); their axes are ``2w/√π`` and ``2h/√π``.

    Returns
    -------
    major, minor, angle : ndarray
        Axes in pixels (area-equalised: π/4·major·minor = n) and the angle in
        degrees, counter-clockwise from +x with y up, in [0, 180).
    """
    n = np.asarray(n, dtype=np.float64)
    x2, y2, xy = mx2, my2, mxy
    m4 = 4.0 * np.abs(y2 * x2 - xy * xy)
    m4 = np.where(m4 < 0.000001, 0.000001, m4)
    a11 = y2 / m4
    a12 = xy / m4
    a22 = x2 / m4
    tmp = a11 - a22
    tmp = np.where(tmp == 0.0, 0.000001, tmp)
    half_pi = math.pi / 2
    theta = np.arctan2(2.0 * a12, tmp) / 2.0
    theta = np.where(theta < 0.0, theta + half_pi, theta)
    pos = a12 > 0.0
    zero = a12 == 0.0
    theta = np.where(pos, theta + half_pi, theta)
    swap = zero & (a22 > a11)
    theta = np.where(swap, 0.0, theta)
    theta = np.where(zero & ~swap & (a11 != a22), half_pi, theta)
    a11, a22 = np.where(swap, a22, a11), np.where(swap, a11, a22)
    s = np.sin(theta)
    s = np.where(s == 0.0, 0.000001, s)
    z = a12 * np.cos(theta) / s
    major = np.sqrt(1.0 / np.abs(a22 + z))
    minor = np.sqrt(1.0 / np.abs(a11 - z))
    scale = np.sqrt(n / (math.pi * major * minor))  # equalise areas
    major = major * scale * 2.0
    minor = minor * scale * 2.0
    angle = 180.0 * theta / math.pi
    angle = np.where(angle == 180.0, 0.0, angle)
    major, minor = np.maximum(major, minor), np.minimum(major, minor)
    # particles one pixel wide or high: no mask, the ellipse of the bounding rectangle
    thin = ((bw <= 1) | (bh <= 1)) & (n == bw * bh)
    if np.any(thin):
        rw = 2.0 * bw / math.sqrt(math.pi)
        rh = 2.0 * bh / math.sqrt(math.pi)
        major = np.where(thin, np.maximum(rw, rh), major)
        minor = np.where(thin, np.minimum(rw, rh), minor)
        angle = np.where(thin, np.where(rw < rh, 90.0, 0.0), angle)
    return major, minor, angle


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
