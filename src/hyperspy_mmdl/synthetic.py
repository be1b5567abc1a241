"""Synthetic polycrystal micrographs with exact ground-truth grain labels.

The microstructure is a Laguerre (power-weighted Voronoi) tessellation whose cell
areas are driven to areas drawn from a log-normal grain-size distribution, the
"prescribed-volume" construction used to model grain-growth structures. It is
rendered like a secondary-electron SEM image: grains with their own brightness
and a smooth texture, dark (grooved) or bright (edge-effect) boundaries of a
given width, the instrument's blur and noise, and optionally an FEI-like data
bar at the bottom.

It is the built-in default of ``mmdl demo`` and the ground truth of the grain
tests: real micrographs do not come with exact grain sizes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

from .calibration import Calibration

__all__ = ["STYLES", "SyntheticSample", "polycrystal", "training_micrograph"]

# Coarse-grid resolution of the cell-area fitting, in grid pixels per mean cell.
_FIT_PIXELS_PER_CELL = 16
_FIT_ITERATIONS = 6


@dataclass
class SyntheticSample:
    """A synthetic micrograph with its ground truth.

    Attributes
    ----------
    image : ndarray of float32, shape (H, W) or (n_frames, H, W)
        The rendered micrograph, values in [0, 1].
    labels : ndarray of int32, same shape as ``image``
        Ground-truth grains numbered 1..n in each frame; 0 on grain boundaries
        and on the data bar.
    calibration : Calibration
        Pixel size and unit of the image axes (and a ``frame`` axis for stacks).
    mean_ecd : float
        The requested mean equivalent circular diameter, in the calibration unit.
    cv : float
        The requested coefficient of variation of the ECD.
    boundary : str
        ``"dark"`` or ``"bright"``.
    data_bar_top : int or None
        First row of the data bar, None without one.
    mean_grain_area : float
        Mean area of the tessellation's cells (grain plus its share of the
        boundaries), in unit²: the image area over it is the number of grains
        per field that planimetric (Jeffries) counting estimates.
    params : dict
        All generation parameters (for the record).
    """

    image: np.ndarray
    labels: np.ndarray
    calibration: Calibration
    mean_ecd: float
    cv: float
    boundary: str
    data_bar_top: int | None = None
    mean_grain_area: float = float("nan")
    params: dict = field(default_factory=dict)

    @property
    def expected_n_grains(self) -> float:
        """Image area (above the data bar) over :attr:`mean_grain_area`: the Jeffries grain count per frame."""
        h, w = self.image.shape[-2:]
        if self.data_bar_top is not None:
            h = self.data_bar_top
        sy, sx = self.calibration.pixel_size
        return h * w * sy * sx / self.mean_grain_area

    @property
    def n_grains(self) -> int | list[int]:
        """Number of labelled grains (a list, one per frame, for stacks)."""
        if self.labels.ndim == 3:
            return [int(len(np.unique(f)) - (f == 0).any()) for f in self.labels]
        return int(len(np.unique(self.labels)) - (self.labels == 0).any())


def _lognormal(rng, mean, cv, n):
    sigma2 = np.log1p(cv**2)
    mu = np.log(mean) - sigma2 / 2
    return rng.lognormal(mu, np.sqrt(sigma2), n)


def _power_query(tree_points, weights, query, workers=-1):
    """Index of the Laguerre cell of each query point (lifting trick: one 3-D nearest-neighbour query).

    Power distance ``|x - s|² - w`` equals the 3-D distance² between ``(x, 0)`` and
    ``(s, sqrt(W - w))`` minus the constant ``W = max(w)``.
    """
    lift = np.sqrt(np.maximum(weights.max() - weights, 0.0))
    tree = cKDTree(np.column_stack([tree_points, lift]))
    q = np.column_stack([query, np.zeros(len(query))])
    return tree.query(q, k=1, workers=workers)[1]


def _fit_laguerre(points, target_area, extent, step, iterations=_FIT_ITERATIONS):
    """Move seeds to their cell centroids and adapt weights so the cells get their target areas.

    Works on a coarse grid of spacing ``step`` over ``extent = (height, width)``.
    Returns ``(points, weights)``.
    """
    h, w = extent
    ys = (np.arange(int(np.ceil(h / step))) + 0.5) * step
    xs = (np.arange(int(np.ceil(w / step))) + 0.5) * step
    gy, gx = np.meshgrid(ys, xs, indexing="ij")
    grid = np.column_stack([gy.ravel(), gx.ravel()])
    n = len(points)
    weights = target_area / np.pi  # radius² of the disk of the target area
    pix = step * step
    for _ in range(iterations):
        owner = _power_query(points, weights, grid)
        count = np.bincount(owner, minlength=n)
        area = count * pix
        has = count > 0
        cy = np.bincount(owner, grid[:, 0], minlength=n)
        cx = np.bincount(owner, grid[:, 1], minlength=n)
        points = points.copy()
        points[has, 0] = cy[has] / count[has]
        points[has, 1] = cx[has] / count[has]
        # a cell of radius r grows its area by about pi * dw when its weight grows by dw
        weights = weights + 0.7 * (target_area - area) / np.pi
    return points, weights


def _grain_map(shape, pixel, mean_cell, cv, rng, margin_cells=1.0):
    """Laguerre cell index of every pixel of an image of ``shape`` (pixel units)."""
    h, w = shape
    margin = margin_cells * mean_cell / pixel
    ext = (h + 2 * margin, w + 2 * margin)
    mean_area = np.pi / 4 * mean_cell**2 * (1 + cv**2) / pixel**2  # E[pi d²/4], in px²
    n = max(2, int(round(ext[0] * ext[1] / mean_area)))
    d = _lognormal(rng, mean_cell / pixel, cv, n)
    target = np.pi / 4 * d**2
    target *= ext[0] * ext[1] / target.sum()  # the cells tile the domain exactly
    points = rng.uniform((0, 0), ext, size=(n, 2))
    step = max(np.sqrt(mean_area / _FIT_PIXELS_PER_CELL), 0.5)
    points, weights = _fit_laguerre(points, target, ext, step)
    points = points - margin  # into image pixel coordinates (pixel centres at i + 0.5)
    owner = _assign(points, weights, shape, step=max(1, int(np.sqrt(mean_area) / 8)))
    return owner, ext[0] * ext[1] / n * pixel**2


def _assign(points, weights, shape, step):
    """Laguerre cell of every pixel: exact on a grid of spacing ``step``, then each pixel
    picks the best of the cells owning the four surrounding grid points.

    A pixel whose true cell owns none of those four points (a sliver thinner than
    ``step``) goes to its next-best neighbour; the map stays a consistent tessellation.
    """
    h, w = shape
    gh, gw = h // step + 2, w // step + 2
    gy, gx = np.meshgrid(np.arange(gh) * step + 0.5, np.arange(gw) * step + 0.5, indexing="ij")
    coarse = _power_query(points, weights, np.column_stack([gy.ravel(), gx.ravel()])).reshape(gh, gw)
    if step == 1:
        return coarse[:h, :w]
    corners = [coarse[dy:gh - 1 + dy, dx:gw - 1 + dx] for dy in (0, 1) for dx in (0, 1)]
    mixed = (corners[0] != corners[1]) | (corners[0] != corners[2]) | (corners[0] != corners[3])
    iy = np.arange(h) // step
    ix = np.arange(w) // step
    owner = corners[0][np.ix_(iy, ix)]
    ys, xs = np.nonzero(mixed[np.ix_(iy, ix)])
    by, bx = iy[ys], ix[xs]
    fy = ys.astype(np.float32) + 0.5
    fx = xs.astype(np.float32) + 0.5
    py = points[:, 0].astype(np.float32)
    px = points[:, 1].astype(np.float32)
    pw = weights.astype(np.float32)
    best_c = best_d = None
    for c in corners:
        cand = c[by, bx]
        d = (fy - py[cand]) ** 2 + (fx - px[cand]) ** 2 - pw[cand]
        if best_c is None:
            best_c, best_d = cand, d
        else:
            better = d < best_d
            best_c = np.where(better, cand, best_c)
            best_d = np.where(better, d, best_d)
    owner[ys, xs] = best_c
    return owner


def _boundaries(owner, width):
    """Boundary mask ``width`` pixels wide between different cells."""
    edge = np.zeros(owner.shape, dtype=bool)
    edge[:, :-1] |= owner[:, :-1] != owner[:, 1:]
    edge[:-1, :] |= owner[:-1, :] != owner[1:, :]
    if width > 1:
        edge = ndimage.maximum_filter(edge.view(np.uint8), size=width).view(bool)
    return edge


def _relabel(owner, boundary):
    """Number the cells present outside ``boundary`` 1..n in order of their index; 0 on the boundary."""
    n = int(owner.max()) + 1
    present = np.zeros(n, dtype=bool)
    present[owner[~boundary]] = True
    lut = np.cumsum(present, dtype=np.int32) * present
    labels = lut[owner]
    labels[boundary] = 0
    return _largest_pieces(labels)


def _largest_pieces(labels):
    """Keep the largest 8-connected piece of each label (slivers cut off by a boundary become 0)."""
    from skimage.measure import label as connected

    pieces = connected(labels, background=0, connectivity=2)
    if pieces.max() == labels.max():
        return labels
    size = np.bincount(pieces.ravel())
    size[0] = 0
    owner_of_piece = np.zeros(len(size), dtype=np.int64)
    owner_of_piece[pieces.ravel()] = labels.ravel()
    best = np.zeros(int(labels.max()) + 1, dtype=np.int64)
    order = np.argsort(size)  # larger pieces written last win
    best[owner_of_piece[order]] = order
    keep = np.zeros(len(size), dtype=bool)
    keep[best[1:]] = True
    keep[0] = False
    out = np.where(keep[pieces], labels, 0).astype(np.int32)
    present = np.zeros(int(labels.max()) + 1, dtype=bool)
    present[out.ravel()] = True
    present[0] = False
    lut = (np.cumsum(present) * present).astype(np.int32)
    return lut[out]


def _smooth_noise(rng, shape, sigma):
    """Unit-variance Gaussian random field of correlation length ~``sigma`` pixels.

    Drawn on a grid ``sigma / 2`` times coarser and interpolated up (cheap for large images).
    """
    f = max(1, int(sigma // 2))
    small = (-(-shape[0] // f) + 1, -(-shape[1] // f) + 1)
    field_ = ndimage.gaussian_filter(rng.standard_normal(small).astype(np.float32), sigma / f)
    if f > 1:
        field_ = ndimage.zoom(field_, f, order=1, grid_mode=False)
    field_ = field_[: shape[0], : shape[1]]
    return field_ / max(float(field_.std()), 1e-12)


def _draw_data_bar(image, labels, rng):
    """An FEI-like strip: black band, a thin separator line, white text-like blocks and a scale bar."""
    h, w = image.shape
    bar_h = max(12, int(round(0.075 * h)))
    top = h - bar_h
    image[top:] = 0.0
    image[top:top + max(1, bar_h // 20)] = 0.85  # separator line, as on FEI and Zeiss strips
    glyph_h = max(3, bar_h // 3)
    y0 = top + (bar_h - glyph_h) // 2
    x = max(4, w // 50)
    while x < int(0.7 * w):
        cell = int(rng.integers(3, 9)) * max(1, glyph_h // 4)
        n_glyphs = int(rng.integers(3, 8))
        for _ in range(n_glyphs):
            gw = max(2, cell // 2)
            glyph = rng.random((glyph_h, gw)) < 0.55
            image[y0:y0 + glyph_h, x:x + gw][glyph] = 1.0
            x += gw + max(1, gw // 3)
        x += 3 * cell
    sb0, sb1 = int(0.78 * w), int(0.95 * w)
    image[y0 + glyph_h // 2 - 1:y0 + glyph_h // 2 + 1, sb0:sb1] = 1.0
    labels[top:] = 0
    return top


def _render(owner, labels, boundary_mask, rng, boundary, contrast, texture, noise, width, pixel_blur):
    n_cells = int(owner.max()) + 1
    shape = owner.shape
    level = np.clip(rng.normal(0.5, contrast, n_cells), 0.15, 0.85).astype(np.float32)
    image = level[owner]
    if texture > 0:
        scale = max(2.0, 0.02 * np.sqrt(shape[0] * shape[1]) / 10)
        image += texture * _smooth_noise(rng, shape, scale)
    line = 0.08 if boundary == "dark" else 0.95
    # boundary profile: soften the mask a little so the lines look like grooves / edge bright-up
    prof = ndimage.gaussian_filter(boundary_mask.astype(np.float32), max(0.6, 0.35 * width))
    prof = np.clip(prof / max(float(prof.max()), 1e-6) * 1.6, 0, 1)
    image = image * (1 - prof) + line * prof
    if pixel_blur > 0:
        image = ndimage.gaussian_filter(image, pixel_blur)
    if noise > 0:
        image += rng.normal(0, noise, shape).astype(np.float32)
    return np.clip(image, 0.0, 1.0).astype(np.float32)


def _one_frame(shape, pixel, mean_ecd, cv, boundary, boundary_width, contrast, texture, noise,
               data_bar, rng):
    # Removing a boundary of width b from a cell shrinks its ECD by about b pixels
    # (times a shape factor for polygons); grow the cells accordingly.
    mean_cell = mean_ecd + 1.25 * boundary_width * pixel
    owner, cell_area = _grain_map(shape, pixel, mean_cell, cv * mean_ecd / mean_cell, rng)
    bmask = _boundaries(owner, boundary_width)
    labels = _relabel(owner, bmask)
    image = _render(owner, labels, bmask, rng, boundary, contrast, texture, noise, boundary_width,
                    pixel_blur=0.7)
    top = None
    if data_bar:
        top = _draw_data_bar(image, labels, rng)
        labels = _relabel(labels, labels == 0)
    return image, labels, top, cell_area


def polycrystal(shape=(512, 512), pixel_size=10.0, unit="nm", mean_ecd=250.0, cv=0.35,
                boundary="dark", boundary_width=2, contrast=0.12, texture=0.04, noise=0.05,
                data_bar=False, n_frames=None, seed=0) -> SyntheticSample:
    """A synthetic SEM-like micrograph of a polycrystal, with its ground-truth grain labels.

    Parameters
    ----------
    shape : (int, int)
        Image height and width in pixels.
    pixel_size : float
        Size of one (square) pixel in ``unit``.
    unit : str
        Length unit of the pixel size and of ``mean_ecd`` (``"nm"``, ``"µm"`` ...).
    mean_ecd : float
        Mean equivalent circular diameter of the grains, in ``unit``. It is the
        mean over the labelled grains (boundary pixels excluded) of a large
        image; a finite image's grains scatter around it by sampling error, and
        grains cut by the image border are smaller.
    cv : float
        Coefficient of variation of the grain ECD (log-normal distribution).
    boundary : {"dark", "bright"}
        Boundary lines darker (grooved boundaries) or brighter (edge effect) than the grains.
    boundary_width : int
        Width of the boundary lines in pixels (>= 1).
    contrast : float
        Standard deviation of the grain-to-grain mean intensity (orientation contrast).
    texture : float
        Amplitude of the smooth intra-grain texture.
    noise : float
        Standard deviation of the additive Gaussian noise.
    data_bar : bool
        Draw an FEI-like information strip over the bottom ~7.5 % of the image
        (labels are 0 there).
    n_frames : int, optional
        Return a stack of ``n_frames`` independent microstructures, shape
        ``(n_frames, H, W)``, with a ``frame`` navigation axis in the calibration.
    seed : int
        Seed of the random generator; the same seed gives the same sample.

    Returns
    -------
    SyntheticSample

    Examples
    --------
    >>> s = polycrystal((256, 256), pixel_size=10, mean_ecd=200, seed=1)
    >>> s.image.shape, s.image.dtype, s.labels.dtype
    ((256, 256), dtype('float32'), dtype('int32'))
    """
    shape = tuple(int(v) for v in shape)
    if len(shape) != 2 or min(shape) < 8:
        raise ValueError(f"shape must be two sizes >= 8, got {shape}")
    if boundary not in ("dark", "bright"):
        raise ValueError(f"boundary must be 'dark' or 'bright', got {boundary!r}")
    if not pixel_size > 0 or not mean_ecd > 0:
        raise ValueError(f"pixel_size and mean_ecd must be positive, got {pixel_size}, {mean_ecd}")
    if not 0 <= cv < 2:
        raise ValueError(f"cv must be in [0, 2), got {cv}")
    boundary_width = int(boundary_width)
    if boundary_width < 1:
        raise ValueError(f"boundary_width must be at least 1 pixel, got {boundary_width}")
    if mean_ecd / pixel_size < 3 * boundary_width:
        raise ValueError(f"mean_ecd={mean_ecd} {unit} is only {mean_ecd / pixel_size:.1f} pixels; "
                         f"grains need at least 3 boundary widths ({3 * boundary_width} px)")
    params = dict(shape=shape, pixel_size=pixel_size, unit=unit, mean_ecd=mean_ecd, cv=cv,
                  boundary=boundary, boundary_width=boundary_width, contrast=contrast,
                  texture=texture, noise=noise, data_bar=data_bar, n_frames=n_frames, seed=seed)
    cal = Calibration.from_pixel_size(pixel_size, unit)
    args = (shape, float(pixel_size), float(mean_ecd), float(cv), boundary, boundary_width,
            float(contrast), float(texture), float(noise), bool(data_bar))
    if n_frames is None:
        image, labels, top, cell_area = _one_frame(*args, np.random.default_rng(seed))
    else:
        if int(n_frames) < 1:
            raise ValueError(f"n_frames must be at least 1, got {n_frames}")
        seeds = np.random.SeedSequence(seed).spawn(int(n_frames))
        frames = [_one_frame(*args, np.random.default_rng(s)) for s in seeds]
        image = np.stack([f[0] for f in frames])
        labels = np.stack([f[1] for f in frames])
        top = frames[0][2]
        cell_area = frames[0][3]
        cal = cal.with_frames()
    return SyntheticSample(image=image, labels=labels, calibration=cal, mean_ecd=float(mean_ecd),
                           cv=float(cv), boundary=boundary, data_bar_top=top,
                           mean_grain_area=float(cell_area), params=params)


# ---------------------------------------------------------------------------- training micrographs
#: Rendering styles of :func:`training_micrograph`.
STYLES = ("optical", "sem", "channelling")


def _grain_field(rng, owner, n, sigma, amp):
    """Per-grain smooth texture: a random field whose phase changes from grain to grain."""
    f = _smooth_noise(rng, owner.shape, sigma)
    g = _smooth_noise(rng, owner.shape, sigma)
    mix = rng.uniform(0, 2 * np.pi, n).astype(np.float32)[owner]
    return amp * (np.cos(mix) * f + np.sin(mix) * g)


def _striations(rng, owner, n, amp):
    """Etching striations: parallel sinusoidal bands of a random direction and period in each grain."""
    h, w = owner.shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    theta = rng.uniform(0, np.pi, n).astype(np.float32)[owner]
    period = rng.uniform(3, 12, n).astype(np.float32)[owner]
    a = (rng.uniform(0, 1, n) < 0.5).astype(np.float32)[owner]
    return amp * a * np.sin(2 * np.pi * (xx * np.cos(theta) + yy * np.sin(theta)) / period)


def training_micrograph(shape=(256, 256), *, style: str | None = None, rng=None, seed: int | None = None):
    """A random micrograph rendered like a real one, with its grain-boundary mask (for training).

    The grain map is a Laguerre tessellation (:func:`polycrystal`'s) with a mean
    grain diameter drawn from 8 to 70 px. ``style`` decides the contrast:

    * ``"optical"``: etched optical metallography: grains told apart by their
      tone and texture (mottle, etching striations), boundaries faint or absent,
      pits, uneven illumination;
    * ``"sem"``: secondary-electron films: grains bright with domed shading,
      dark grooves of 1–6 px along the boundaries (sometimes bright edges),
      charging streaks, strong shot noise;
    * ``"channelling"``: orientation (channelling) contrast: strong flat tone per
      grain, thin or no boundary lines.

    Every style adds blur and noise of random strength; a random style when ``None``.

    Parameters
    ----------
    shape : (int, int)
    style : str, optional
        One of :data:`STYLES`.
    rng : numpy.random.Generator, optional
    seed : int, optional
        Used when ``rng`` is not given.

    Returns
    -------
    image : ndarray of float32 in [0, 1], shape ``shape``
    boundary : ndarray of bool
        The true grain boundaries, 3 px wide.
    labels : ndarray of int32
        The grains (0 on ``boundary``).

    Examples
    --------
    >>> img, bnd, lab = training_micrograph((128, 128), style="sem", seed=1)
    >>> img.shape, bnd.dtype, int(lab.max()) > 3
    ((128, 128), dtype('bool'), True)
    """
    rng = np.random.default_rng(seed) if rng is None else rng
    style = STYLES[int(rng.integers(len(STYLES)))] if style is None else style
    if style not in STYLES:
        raise ValueError(f"style must be one of {STYLES}, got {style!r}")
    h, w = shape
    mean_d = float(np.exp(rng.uniform(np.log(8), np.log(70))))
    owner, _ = _grain_map(shape, 1.0, mean_d, float(rng.uniform(0.2, 0.6)), rng)
    n = int(owner.max()) + 1
    truth = _boundaries(owner, 3)
    labels = _relabel(owner, truth)
    thin = _boundaries(owner, 1)
    level = rng.normal(0.5, rng.uniform(0.06, 0.2) if style != "channelling" else rng.uniform(0.15, 0.3), n)
    image = np.clip(level, 0.05, 0.95).astype(np.float32)[owner]
    if style == "optical":
        image += _grain_field(rng, owner, n, rng.uniform(1.5, 6), rng.uniform(0.02, 0.08))
        image += _striations(rng, owner, n, rng.uniform(0.0, 0.05))
        depth = rng.uniform(0.0, 0.15)  # faint etched boundary, often none
        wline = float(rng.uniform(0.6, 2.0))
        image -= depth * np.clip(ndimage.gaussian_filter(thin.astype(np.float32), wline) * 2.5 * wline, 0, 1)
        pits = rng.uniform(size=shape) < rng.uniform(0, 0.002)
        image -= 0.4 * ndimage.gaussian_filter(pits.astype(np.float32), 1.0) * 6
    elif style == "sem":
        image = 0.55 + 0.35 * (image - 0.5)
        dist = ndimage.distance_transform_edt(~thin).astype(np.float32)
        dome = np.clip(dist / max(mean_d / 2, 1), 0, 1) ** 0.5
        image += rng.uniform(0.05, 0.3) * (dome - 0.5)
        wline = float(min(rng.uniform(0.5, 3.0), mean_d / 10))
        prof = np.clip(ndimage.gaussian_filter(thin.astype(np.float32), wline) * 2.5 * wline, 0, 1)
        line = 0.05 if rng.uniform() < 0.8 else 0.95
        image = image * (1 - prof) + line * prof
        image += _grain_field(rng, owner, n, rng.uniform(1, 3), rng.uniform(0.0, 0.04))
        if rng.uniform() < 0.3:  # charging: bright streaks along the scan lines
            rows = _smooth_noise(rng, (h, 1), rng.uniform(2, 10))
            image += np.clip(rows, 0, None) * rng.uniform(0.02, 0.1)
    else:
        if rng.uniform() < 0.5:
            prof = ndimage.gaussian_filter(thin.astype(np.float32), 0.7)
            image = image * (1 - prof) + rng.uniform(0.0, 1.0) * prof
        image += _grain_field(rng, owner, n, rng.uniform(2, 8), rng.uniform(0.0, 0.03))
    # illumination, blur, noise
    image += rng.uniform(0, 0.15) * _smooth_noise(rng, shape, max(h, w) / 4)
    image = ndimage.gaussian_filter(image, rng.uniform(0.3, 1.8))
    sd = rng.uniform(0.01, 0.12 if style != "sem" else 0.2)
    image += sd * rng.standard_normal(shape).astype(np.float32)
    image = np.clip(image, 0, 1)
    if rng.uniform() < 0.5:
        image = 1.0 - image if style == "optical" else image
    return image.astype(np.float32), truth, labels
