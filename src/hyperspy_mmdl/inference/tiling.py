"""Tiling with feathered overlap: cut frames into model-sized tiles and blend dense outputs back.

A frame larger than the model input is cut into tiles of the input size whose
overlaps are spread evenly (:func:`tile_starts`); frames smaller than a tile are
reflect-padded at the bottom and right. Classifiers average per-tile outputs;
dense outputs are blended with :func:`feather_window` weights, which ignore a
thin margin at every inner tile border (where a CNN's receptive field reaches
into padding) and ramp up linearly over the rest of the overlap. This is the
only tiling in the package: classification, dense maps (attention, Grad-CAM),
learned segmentation, denoising and super-resolution all use it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

__all__ = ["tile_starts", "feather_window", "Tile", "overlap_px", "plan_tiles", "tile_batches", "Canvas"]


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of tiles of size ``tile`` covering ``length`` with at least ``overlap``.

    The last tile ends at ``length``; when ``length <= tile`` there is one tile at 0.

    Examples
    --------
    >>> tile_starts(100, 40, 10)
    [0, 30, 60]
    >>> tile_starts(30, 40, 10)
    [0]
    """
    if tile <= 0:
        raise ValueError(f"tile size must be positive, got {tile}")
    if not 0 <= overlap < tile:
        raise ValueError(f"overlap must be in [0, tile={tile}), got {overlap}")
    if length <= tile:
        return [0]
    stride = tile - overlap
    n = math.ceil((length - tile) / stride) + 1
    # spread the tiles evenly so that every overlap is at least `overlap`
    return [int(round(i * (length - tile) / (n - 1))) for i in range(n)]


def feather_window(shape: tuple[int, int], overlap: int | tuple[int, int],
                   edges: tuple[bool, bool, bool, bool] = (False, False, False, False),
                   margin: int | tuple[int, int] | None = None) -> np.ndarray:
    """Blending weights of a tile: zero on a thin inner border, then a linear ramp.

    CNN outputs are least reliable next to a tile border (the receptive field
    reaches into the padding), so the outermost ``margin`` pixels of every
    border shared with another tile get weight 0 and the weights then rise
    linearly to 1 over the rest of the overlap.

    Parameters
    ----------
    shape : (int, int)
        Tile shape.
    overlap : int or (int, int)
        Overlap between neighbouring tiles in pixels along y and x.
    edges : (top, bottom, left, right) of bool
        True where the tile border is also the image border; no ramp there, so
        the image edges keep full weight.
    margin : int or (int, int), optional
        Pixels discarded at shared borders; ``overlap // 4`` by default. It
        must leave the neighbouring tile's weight positive, i.e.
        ``2 * margin < overlap``.

    Returns
    -------
    ndarray of float32
        Weights in [0, 1]; along an inner border the weight of the pixel at
        distance ``i`` from the border is ``clip((i + 1 - margin) / (overlap - margin + 1), 0, 1)``.

    Examples
    --------
    >>> feather_window((1, 6), (0, 4), edges=(True, True, True, False), margin=1)[0].tolist()
    [1.0, 1.0, 0.75, 0.5, 0.25, 0.0]
    """
    oy, ox = (overlap, overlap) if isinstance(overlap, (int, np.integer)) else overlap
    if margin is None:
        my, mx = oy // 4, ox // 4
    else:
        my, mx = (margin, margin) if isinstance(margin, (int, np.integer)) else margin
    for o, m in ((oy, my), (ox, mx)):
        if o > 0 and not 0 <= 2 * m < o:
            raise ValueError(f"margin {m} is too large for overlap {o} (need 2 * margin < overlap)")

    def ramp(n, o, m, first_edge, last_edge):
        r = np.ones(n, np.float32)
        if o > 0:
            up = np.clip((np.arange(n, dtype=np.float32) + 1 - m) / (o - m + 1), 0, 1)
            if not first_edge:
                r = np.minimum(r, up)
            if not last_edge:
                r = np.minimum(r, up[::-1])
        return r

    top, bottom, left, right = edges
    return np.outer(ramp(shape[0], oy, my, top, bottom), ramp(shape[1], ox, mx, left, right))


def _pad_to(x: np.ndarray, th: int, tw: int) -> np.ndarray:
    """Reflect-pad ``(C, H, W)`` at the bottom/right to at least ``(th, tw)``."""
    h, w = x.shape[-2:]
    ph, pw = max(0, th - h), max(0, tw - w)
    if ph == 0 and pw == 0:
        return x
    mode = "reflect" if ph < h and pw < w else "symmetric"
    if ph >= 2 * h or pw >= 2 * w:
        mode = "edge"
    return np.pad(x, ((0, 0), (0, ph), (0, pw)), mode=mode)


@dataclass
class Tile:
    """One tile: its frame index, top-left corner and which of its borders are image borders."""

    frame: int
    y: int
    x: int
    edges: tuple[bool, bool, bool, bool]


def overlap_px(tile: tuple[int, int], overlap: float | int) -> tuple[int, int]:
    """Tile overlap in pixels along y and x, from a fraction of the tile or a number of pixels.

    Examples
    --------
    >>> overlap_px((64, 32), 0.25), overlap_px((64, 32), 8)
    ((16, 8), (8, 8))
    """
    if isinstance(overlap, float) and 0 <= overlap < 1:
        return int(round(tile[0] * overlap)), int(round(tile[1] * overlap))
    if isinstance(overlap, (int, np.integer)) and overlap >= 0:
        return int(overlap), int(overlap)
    raise ValueError(f"overlap must be a fraction in [0, 1) or a number of pixels, got {overlap!r}")


def plan_tiles(frames: Sequence[np.ndarray], tile: tuple[int, int] | None, overlap) -> tuple[list, list[Tile]]:
    """Pad frames to the tile size and list the tiles of every frame.

    Parameters
    ----------
    frames : sequence of ndarray
        ``(C, H, W)`` arrays.
    tile : (int, int) or None
        Tile shape; ``None``: each frame is one tile, unpadded.
    overlap : float or int
        See :func:`overlap_px`.

    Returns
    -------
    padded : list of ndarray
        The frames, reflect-padded at the bottom/right to at least the tile shape.
    tiles : list of Tile

    Examples
    --------
    >>> padded, tiles = plan_tiles([np.zeros((1, 100, 50))], (40, 40), 10)
    >>> padded[0].shape, [(t.y, t.x) for t in tiles][:3], len(tiles)
    ((1, 100, 50), [(0, 0), (0, 10), (30, 0)], 6)
    """
    padded, tiles = [], []
    for i, f in enumerate(frames):
        if tile is None:
            padded.append(f)
            tiles.append(Tile(i, 0, 0, (True, True, True, True)))
            continue
        th, tw = tile
        oy, ox = overlap_px(tile, overlap)
        p = _pad_to(f, th, tw)
        padded.append(p)
        ys, xs = tile_starts(p.shape[-2], th, oy), tile_starts(p.shape[-1], tw, ox)
        for y in ys:
            for x in xs:
                tiles.append(Tile(i, y, x, (y == 0, y == ys[-1], x == 0, x == xs[-1])))
    return padded, tiles


def tile_batches(padded, tiles, tile, batch_size):
    """Yield ``(tiles, batch)`` with at most ``batch_size`` tiles stacked as ``(B, C, th, tw)``.

    With ``tile=None`` whole frames are stacked (frames of different shapes go one by one).

    Examples
    --------
    >>> padded, tiles = plan_tiles([np.zeros((1, 100, 50))], (40, 40), 10)
    >>> [b.shape for _, b in tile_batches(padded, tiles, (40, 40), 4)]
    [(4, 1, 40, 40), (2, 1, 40, 40)]
    """
    for start in range(0, len(tiles), batch_size):
        chunk = tiles[start:start + batch_size]
        if tile is None:
            if len({padded[t.frame].shape for t in chunk}) != 1:  # cannot stack different sizes
                for t in chunk:
                    yield [t], padded[t.frame][None]
                continue
            yield chunk, np.stack([padded[t.frame] for t in chunk])
        else:
            th, tw = tile
            yield chunk, np.stack([padded[t.frame][:, t.y:t.y + th, t.x:t.x + tw] for t in chunk])



class Canvas:
    """Blends dense tile outputs of one (padded) frame with feathered weights.

    Parameters
    ----------
    shape : (int, int)
        ``(H, W)`` of the padded frame (input pixels).
    tile : (int, int) or None
        Tile shape in input pixels (``None``: the frame is one tile, weight 1).
    overlap : float or int
        As given to :func:`plan_tiles`.
    scale : int
        Output pixels per input pixel (super-resolution); 1 otherwise.

    Examples
    --------
    >>> c = Canvas((4, 6), (4, 4), 2)
    >>> c.add(np.ones((1, 4, 4)), Tile(0, 0, 0, (True, True, True, False)))
    >>> c.add(np.full((1, 4, 4), 3.0), Tile(0, 0, 2, (True, True, False, True)))
    >>> c.result((4, 6))[0, 0].tolist()
    [1.0, 1.0, 1.6666667461395264, 2.3333334922790527, 3.0, 3.0]
    """

    def __init__(self, shape, tile, overlap, scale: int = 1):
        self.scale = int(scale)
        self.tile, self.overlap = tile, overlap
        self.shape = (int(shape[0]) * self.scale, int(shape[1]) * self.scale)
        self.acc = None
        self.weight = np.zeros(self.shape, np.float32)

    def add(self, out: np.ndarray, tile: Tile) -> None:
        """Add one tile's output ``(K, th·scale, tw·scale)`` at its place."""
        s = self.scale
        th, tw = out.shape[-2:]
        if self.acc is None:
            self.acc = np.zeros((out.shape[0],) + self.shape, np.float32)
        if self.tile is None:
            w = np.ones((th, tw), np.float32)
        else:
            oy, ox = overlap_px(self.tile, self.overlap)
            w = feather_window((th, tw), (oy * s, ox * s), tile.edges)
        y, x = tile.y * s, tile.x * s
        self.acc[:, y:y + th, x:x + tw] += out * w
        self.weight[y:y + th, x:x + tw] += w

    def result(self, shape) -> np.ndarray:
        """The blended ``(K, H·scale, W·scale)`` map of the unpadded frame of ``shape`` ``(H, W)``."""
        m = self.acc / np.maximum(self.weight, 1e-12)
        return m[:, :int(shape[0]) * self.scale, :int(shape[1]) * self.scale]
