"""Restoration models through the predictor: Noise2Void denoising and super-resolution.

Both are dense models whose output is an image in normalised intensities:
the frames are prepared from the card (channels, normalisation: the card's
dataset statistics ``input_mean``/``input_std`` for Noise2Void, per-frame
min-max for SRCNN / RCAN-lite), run in large tiles with feathered overlap
(frames no larger than a tile run whole), and the output is scaled back to the
input's intensities. These are the runners that
:func:`hyperspy_mmdl.preprocess.denoise.denoise` and
:func:`hyperspy_mmdl.preprocess.superres.super_resolve` use for their
learned methods (registered with :func:`hyperspy_mmdl.checkpoint.register_runner`).
"""

from __future__ import annotations

import numpy as np

from ..preprocess.superres import bicubic
from .dense import iter_predict_dense, model_output_fn
from .predictor import get_predictor, run_steps
from .prepare import prepare_frames

__all__ = ["denoise", "super_resolve"]


def _restore(pred, images, *, scale, upsample_first, tile, overlap, batch_size, device, amp):
    a = np.asarray(images)
    if a.ndim < 2:
        raise ValueError(f"expected an image (H, W) or a stack (..., H, W), got shape {a.shape}")
    frames, (lead, shape), scales = prepare_frames(a, None, pred, resample=False, return_scale=True)
    if upsample_first:  # SRCNN refines the bicubic upsampling of the low-resolution frame
        frames = [bicubic(f, scale) for f in frames]
        shape, scale = (shape[0] * scale, shape[1] * scale), 1
    maps = run_steps(iter_predict_dense(None, None, pred, model_output_fn, device=device, batch_size=batch_size,
                                        overlap=overlap, tile=tile, amp=amp, scale=scale,
                                        frames=(frames, (lead, shape))))
    maps = maps.reshape((-1,) + maps.shape[-3:])[:, 0]
    out = np.stack([m * s + o for m, (o, s) in zip(maps, scales)]).astype(np.float32)
    return out.reshape(tuple(lead) + out.shape[-2:])


def denoise(images, model, *, device="auto", tile=1024, overlap=64, batch_size=None, amp=None) -> np.ndarray:
    """Denoise an image or stack with a ``"denoise"`` model (Noise2Void).

    Parameters
    ----------
    images : array_like
        ``(H, W)`` or ``(..., H, W)``.
    model : str, Path, Predictor or (module, card)
        A checkpoint written by :meth:`hyperspy_mmdl.preprocess.denoise.Denoiser.save`
        (loaded once per process), or the model with its card.
    device : str
    tile : int
        Tile side in pixels; frames no larger run whole. Tiles overlap by
        ``overlap`` pixels and are blended with feathered weights.
    overlap : int
    batch_size : int, optional
    amp : bool, optional

    Returns
    -------
    ndarray of float32
        Same shape and intensity scale as ``images``.

    Raises
    ------
    WrongTaskError
        The model is not a ``"denoise"`` model (the message names the file and both tasks).

    Examples
    --------
    >>> import torch
    >>> from hyperspy_mmdl.checkpoint import ModelCard
    >>> card = ModelCard("n2v_unet", task="denoise", normalization="zscore", input_mean=5.0, input_std=2.0)
    >>> img = np.random.default_rng(0).normal(5, 2, (30, 40)).astype(np.float32)
    >>> out = denoise(img, (torch.nn.Identity(), card), device="cpu")
    >>> out.shape, bool(np.allclose(out, img, atol=1e-5))
    ((30, 40), True)
    """
    pred = get_predictor(model, device=device, amp=amp).require_task("denoise", "denoise")
    return _restore(pred, images, scale=1, upsample_first=False, tile=tile, overlap=overlap,
                    batch_size=batch_size, device=device, amp=amp)


def super_resolve(images, model, *, device="auto", tile=1024, overlap=32, batch_size=None,
                  amp=None, factor: int | None = None) -> np.ndarray:
    """Upscale an image or stack by the model's factor with a ``"super-resolve"`` model.

    Parameters
    ----------
    images : array_like
        ``(H, W)`` or ``(..., H, W)``.
    model : str, Path, Predictor or (module, card)
        A checkpoint written by :meth:`hyperspy_mmdl.preprocess.superres.SuperResolver.save`
        (loaded once per process), or the model with its card; the card's
        ``scale_factor`` is the factor. A model without ``upsamples = True``
        (SRCNN) gets the bicubic upsampling of each frame.
    device, tile, overlap, batch_size, amp
        As in :func:`denoise` (tile and overlap in input pixels).
    factor : int, optional
        The factor the caller expects; a model trained for another raises ``ValueError``.

    Returns
    -------
    ndarray of float32
        ``(..., H·f, W·f)``, in the intensities of ``images``.

    Raises
    ------
    WrongTaskError
        The model is not a ``"super-resolve"`` model.

    Examples
    --------
    >>> import torch
    >>> from hyperspy_mmdl.checkpoint import ModelCard
    >>> card = ModelCard("srcnn", task="super-resolve", normalization="minmax", scale_factor=2)
    >>> super_resolve(np.ones((10, 12)), (torch.nn.Identity(), card), device="cpu").shape
    (20, 24)
    """
    pred = get_predictor(model, device=device, amp=amp).require_task("super-resolve", "super-resolution")
    f = int(pred.card.scale_factor)
    if factor is not None and int(factor) != f:
        raise ValueError(f"{pred.name} was trained for ×{f}, not ×{int(factor)}")
    return _restore(pred, images, scale=f, upsample_first=not getattr(pred.model, "upsamples", False),
                    tile=tile, overlap=overlap, batch_size=batch_size, device=device, amp=amp)
