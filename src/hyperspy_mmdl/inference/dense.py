"""Dense (per-pixel) outputs: tiled, blended with feathered weights, returned at the frames' size.

:func:`predict_dense` runs any ``tile_fn`` (a model's own output map, Grad-CAM,
attention maps) over the tiles of every frame and blends the tile maps with
:class:`~hyperspy_mmdl.inference.tiling.Canvas`. Maps smaller than the tile
(attention at the feature resolution) are upsampled to the tile first, and the
blended map is resampled back from the model's pixel size to the frame's own.
With ``scale`` (super-resolution) the maps are ``scale`` times larger than the
frames.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from ..preprocess.resample import resize
from .predictor import Predictor, default_batch, get_predictor, main_output, run_steps
from .prepare import prepare_frames
from .tiling import Canvas, plan_tiles, tile_batches

__all__ = ["predict_dense", "iter_predict_dense", "model_output_fn", "sigmoid_output_fn", "tile_shape_for"]


def tile_shape_for(pred: Predictor, tile) -> tuple[int, int] | None:
    """The tile shape to use: the card's input size (``tile=True``), none (``False``), or given.

    Examples
    --------
    >>> import torch
    >>> from hyperspy_mmdl.checkpoint import ModelCard
    >>> p = Predictor(torch.nn.Identity(), ModelCard("unet_boundary", task="segment", input_size=[1, 64, 64]),
    ...               device="cpu")
    >>> tile_shape_for(p, True), tile_shape_for(p, False), tile_shape_for(p, 512), tile_shape_for(p, (32, 48))
    ((64, 64), None, (512, 512), (32, 48))
    """
    if tile is True:
        return pred.tile_shape
    if tile is False or tile is None:
        return None
    if isinstance(tile, (int, np.integer)):
        return int(tile), int(tile)
    th, tw = tile
    return int(th), int(tw)


def iter_predict_dense(images, calibration, model, tile_fn: Callable, *, device="auto", batch_size=None,
                       overlap=0.25, tile=True, channel_axis=None, resample=True, amp=None, scale: int = 1,
                       frames=None):
    """Generator form of :func:`predict_dense` (yields ``(done, total)`` tiles)."""
    pred = get_predictor(model, device=device, amp=amp)
    if frames is None:
        frames, (lead, frame_shape) = prepare_frames(images, calibration, pred, channel_axis=channel_axis,
                                                     resample=resample)
    else:  # already prepared by the caller: (frames, (lead, frame_shape))
        frames, (lead, frame_shape) = frames
    scale = int(scale)
    tshape = tile_shape_for(pred, tile)
    if tshape is not None:  # a tile larger than every frame: no padding needed, run the frames whole
        hmax = max(f.shape[-2] for f in frames)
        wmax = max(f.shape[-1] for f in frames)
        if tile is not True and hmax <= tshape[0] and wmax <= tshape[1]:
            tshape = None
    padded, tiles = plan_tiles(frames, tshape, overlap)
    bs = default_batch(pred, batch_size)
    canvases = [Canvas(p.shape[-2:], tshape, overlap, scale) for p in padded]
    done = 0
    yield done, len(tiles)
    for chunk, batch in tile_batches(padded, tiles, tshape, bs):
        out = np.asarray(tile_fn(pred, batch), dtype=np.float32)
        if out.ndim != 4 or out.shape[0] != len(chunk):
            raise ValueError(f"tile_fn must return (B, K, h, w) maps, got shape {out.shape}")
        th, tw = batch.shape[-2] * scale, batch.shape[-1] * scale
        if out.shape[-2:] != (th, tw):
            out = resize(out, (th, tw), order=1, mode="edge")
        for t, o in zip(chunk, out):
            canvases[t.frame].add(o, t)
        done += len(chunk)
        yield done, len(tiles)
    target = (int(frame_shape[0]) * scale, int(frame_shape[1]) * scale)
    maps = []
    for f, c in zip(frames, canvases):
        m = c.result(f.shape[-2:])
        if m.shape[-2:] != target:
            m = resize(m, target, order=1, mode="edge")
        maps.append(m.astype(np.float32, copy=False))
    out = np.stack(maps)
    return out.reshape(tuple(lead) + out.shape[1:])


def predict_dense(images, calibration, model, tile_fn: Callable, *, device="auto", batch_size=None,
                  overlap=0.25, tile=True, channel_axis=None, resample=True, amp=None, scale: int = 1,
                  show_progressbar=False) -> np.ndarray:
    """Dense (per-pixel) outputs of a model, tiled, blended and returned at the frames' size.

    Parameters
    ----------
    images, calibration, model, device, batch_size, overlap, tile, channel_axis, resample, amp
        As in :func:`classify`.
    tile_fn : callable
        ``tile_fn(predictor, batch) -> (B, K, h, w)`` array for a ``(B, C, H, W)``
        float32 numpy batch of preprocessed tiles. Maps smaller than the tile
        (attention at the feature resolution) are upsampled linearly to the
        tile size before blending.
    tile : bool, int or (int, int)
        ``True``: tiles of the card's input size; ``False``: whole frames; a
        size: tiles of that size (frames no larger than it run whole, unpadded).
    scale : int
        Output pixels per input pixel (super-resolution).
    show_progressbar : bool
        Show a tqdm bar over tiles.

    Returns
    -------
    ndarray of float32
        ``(..., K, H·scale, W·scale)`` maps at the input frames' size and calibration.

    Examples
    --------
    >>> import torch
    >>> from hyperspy_mmdl.checkpoint import ModelCard
    >>> card = ModelCard("unet_boundary", task="segment", input_size=[1, 32, 32], normalization="none")
    >>> img = np.random.default_rng(0).random((70, 90)).astype(np.float32)
    >>> out = predict_dense(img, None, (torch.nn.Identity(), card), model_output_fn, device="cpu")
    >>> out.shape, bool(np.allclose(out[0], img, atol=1e-6))
    ((1, 70, 90), True)
    """
    return run_steps(iter_predict_dense(images, calibration, model, tile_fn, device=device,
                                        batch_size=batch_size, overlap=overlap, tile=tile,
                                        channel_axis=channel_axis, resample=resample, amp=amp,
                                        scale=scale),
                     show_progressbar, desc="maps")


def model_output_fn(pred: Predictor, batch: np.ndarray) -> np.ndarray:
    """``tile_fn`` for a model whose output is already a dense map ``(B, K, h, w)``."""
    import torch

    with torch.inference_mode(), pred.autocast():
        out = main_output(pred.model(pred.to_tensor(batch)))
    return out.float().cpu().numpy()


def sigmoid_output_fn(pred: Predictor, batch: np.ndarray) -> np.ndarray:
    """``tile_fn`` for a model whose output map holds logits: ``sigmoid(output)`` (boundary U-Net)."""
    import torch

    with torch.inference_mode(), pred.autocast():
        out = main_output(pred.model(pred.to_tensor(batch)))
    return torch.sigmoid(out.float()).cpu().numpy()

