"""Frames as a model expects them: channels, pixel size and normalisation from its card.

Before a model sees a frame, the frame is

1. converted to the model's number of channels (grey to RGB by repetition, RGB
   to grey by the mean),
2. resampled to the pixel size recorded in the model card, using the image's
   calibration (:func:`hyperspy_mmdl.preprocess.resample.resample_to_pixel_size`),
3. normalised with the card's ``normalization`` over the whole ``(C, H, W)``
   input, exactly as the training data loaders do
   (:func:`hyperspy_mmdl.preprocess.normalize.normalize` with ``frame_ndim=3``;
   with the card's dataset statistics ``input_mean``/``input_std`` for ``"zscore"``
   when it has them).

Resampling and normalisation are written once, in :mod:`hyperspy_mmdl.preprocess`;
this module only reads the card.
"""

from __future__ import annotations

import os

import numpy as np

from ..calibration import Calibration
from ..preprocess.normalize import normalize as _normalize
from ..preprocess.normalize import normalize_whole as normalize  # as in training (re-exported)
from ..preprocess.resample import resample_to_pixel_size
from .predictor import Predictor

__all__ = ["normalize", "normalize_input", "intensity_scale", "resample_to_pixel_size", "prepare_frames",
           "check_resampling", "MAX_RESAMPLED_PIXELS", "scale_warning", "MAX_UPSAMPLING"]

#: A frame resampled to a model's pixel size may have at most this many pixels per channel
#: (256 MiB in float32), or four times its own number of pixels when that is more.
MAX_RESAMPLED_PIXELS = 1 << 26


def normalize_input(x: np.ndarray, card) -> np.ndarray:
    """One ``(C, H, W)`` input normalised as the card says (dataset statistics when it has them).

    Examples
    --------
    >>> from hyperspy_mmdl.checkpoint import ModelCard
    >>> card = ModelCard("n2v_unet", task="denoise", normalization="zscore", input_mean=10.0, input_std=2.0)
    >>> normalize_input(np.array([[[10.0, 14.0]]]), card).tolist()
    [[[0.0, 2.0]]]
    """
    if card.normalization == "zscore" and card.input_mean is not None:
        return _normalize(x, "zscore", frame_ndim=3, mean=card.input_mean, std=card.input_std)
    return normalize(x, card.normalization)


def intensity_scale(x: np.ndarray, card) -> tuple[float, float]:
    """``(offset, scale)`` with ``normalize_input(x, card) == (x − offset) / scale``.

    Restoration models (denoising, super-resolution) return normalised
    intensities; ``output · scale + offset`` brings them back to the input's.

    Raises
    ------
    ValueError
        ``clahe`` is not an affine map and cannot be undone.

    Examples
    --------
    >>> from hyperspy_mmdl.checkpoint import ModelCard
    >>> intensity_scale(np.array([[[2.0, 6.0]]]), ModelCard("srcnn", task="super-resolve"))
    (2.0, 4.0)
    """
    from ..preprocess.normalize import clean_nonfinite

    method = card.normalization
    if method == "none":
        return 0.0, 1.0
    if method == "zscore" and card.input_mean is not None:
        return float(card.input_mean), float(card.input_std)
    c = clean_nonfinite(x, frame_ndim=3)
    if method == "minmax":
        lo, hi = float(c.min()), float(c.max())
        return lo, (hi - lo if hi > lo else 1.0)
    if method == "zscore":
        sd = float(c.astype(np.float64).std())
        return float(c.astype(np.float64).mean()), (sd if sd > 0 else 1.0)
    raise ValueError(f"a {method!r} normalisation cannot be undone; a restoration model needs "
                     "'minmax', 'zscore' or 'none'")


#: an image whose pixels are this many times larger than the model's is upsampled past what it resolves
MAX_UPSAMPLING = 4.0


def scale_warning(card, calibration: Calibration | None, frame_shape=None) -> str:
    """Why a model may not fit an image's scale ('' when it does).

    A model trained at a pixel size sees every image resampled to it
    (:func:`prepare_frames`). That cannot be done for an uncalibrated image,
    and does not give the model what it learned from when the image's pixels
    are more than :data:`MAX_UPSAMPLING` times larger (detail the model relies
    on is not in the image) or when the resampled frame is smaller than the
    model's input.

    Parameters
    ----------
    card : ModelCard
    calibration : Calibration or None
        Of the image axes.
    frame_shape : (int, int), optional
        ``(H, W)`` of a frame, to check the resampled size.

    Returns
    -------
    str
        One sentence, or ''.

    Examples
    --------
    >>> from hyperspy_mmdl.checkpoint import ModelCard
    >>> card = ModelCard("micronet", input_size=[1, 112, 112], pixel_size=0.05, pixel_unit="µm")
    >>> scale_warning(card, Calibration.from_pixel_size(40, "nm"))
    ''
    >>> scale_warning(card, None)[:40]
    'the model was trained at 0.05 µm/px but '
    >>> scale_warning(card, Calibration.from_pixel_size(0.5, "µm"))[:44]
    'the image has 0.5 µm/px, 10× coarser than th'
    """
    from ..calibration import PIXEL, normalize_unit

    if card is None or not card.pixel_size or normalize_unit(card.pixel_unit) == PIXEL:
        return ""
    want = f"{card.pixel_size:g} {card.pixel_unit}/px"
    if calibration is None or not calibration.is_calibrated:
        return (f"the model was trained at {want} but this image is uncalibrated: it cannot be resampled to "
                "that scale and is used at its own pixel size, so the answer may be meaningless (set the "
                "pixel size, e.g. open the file with its calibration)")
    have = min(calibration.pixel_size_in(normalize_unit(card.pixel_unit)))
    ratio = have / float(card.pixel_size)
    if ratio > MAX_UPSAMPLING:
        return (f"the image has {have:.3g} {card.pixel_unit}/px, {ratio:.3g}× coarser than the model's {want}: "
                "resampling cannot add the detail the model learned from")
    if frame_shape is not None and card.input_size:
        side = min(frame_shape[-2:]) * ratio
        if side < 0.5 * min(card.input_size[-2:]):
            return (f"at the model's {want} this image is only {side:.0f} px across, less than half the model's "
                    f"{min(card.input_size[-2:])} px input")
    return ""


def _to_channels(frame: np.ndarray, in_chans: int, channel_axis: int | None) -> np.ndarray:
    """One frame as ``(C, H, W)`` float32 with the model's channel count."""
    x = np.asarray(frame, dtype=np.float32)
    if channel_axis is not None:
        x = np.moveaxis(x, channel_axis, 0)
        if x.shape[0] == 4:  # RGBA: drop alpha
            x = x[:3]
    else:
        x = x[None]
    if x.shape[0] == in_chans:
        return x
    if in_chans == 1:
        return x.mean(axis=0, keepdims=True)
    if x.shape[0] == 1:
        return np.repeat(x, in_chans, axis=0)
    raise ValueError(f"the image has {x.shape[0]} channels but the model expects {in_chans}")



def check_resampling(frame_shape, calibration: Calibration | None, model, name: str | None = None) -> None:
    """Refuse to resample frames to a model's pixel size when the result would not fit in memory.

    A frame becomes ``image pixel size / model pixel size`` times larger along each
    axis. A model trained at a much finer pixel than the image's (a TEM model on an
    SEM image, or a calibration or model card off by orders of magnitude) would make
    a 1024² frame gigapixels large: refused, with both pixel sizes, when the
    resampled frame would have more than :data:`MAX_RESAMPLED_PIXELS` pixels (or
    four times the frame's own, for frames already that large), and when it would
    shrink to fewer than 8 pixels on a side.

    Parameters
    ----------
    frame_shape : tuple of int
        ``(..., H, W)`` of the frames.
    calibration : Calibration or None
        Of the image axes.
    model : Predictor or ModelCard
        The model (its card's pixel size).
    name : str, optional
        The model's name in the message (default: the predictor's file name).

    Raises
    ------
    CalibrationError
        The message names the model file, both pixel sizes and the resulting size.

    Examples
    --------
    >>> import torch
    >>> from hyperspy_mmdl.checkpoint import ModelCard
    >>> card = ModelCard("vgg_grain", input_size=[1, 224, 224], pixel_size=0.05, pixel_unit="nm")
    >>> p = Predictor(torch.nn.Identity(), card, device="cpu")
    >>> check_resampling((512, 512), Calibration.from_pixel_size(5.0, "nm"), p)
    Traceback (most recent call last):
    ...
    hyperspy_mmdl.errors.CalibrationError: <vgg_grain in memory>: resampling the 512×512 px frame from 5 nm/px to the model's 0.05 nm/px (×100 per axis) would make it 51200×51200 px (9.8 GiB per channel); check the image's calibration and the model card's pixel size
    """
    from ..calibration import PIXEL, convert_length, normalize_unit, readable_unit
    from ..errors import CalibrationError

    card = getattr(model, "card", model)
    if name is None:
        name = getattr(model, "name", f"<{card.architecture} model>")
    if card.pixel_size is None or normalize_unit(card.pixel_unit) == PIXEL:
        return
    if calibration is None or not calibration.is_calibrated:
        return
    unit = normalize_unit(card.pixel_unit)
    sy, sx = calibration.pixel_size_in(unit)
    h, w = (int(n) for n in frame_shape[-2:])
    nh, nw = max(1, round(h * sy / card.pixel_size)), max(1, round(w * sx / card.pixel_size))
    limit = max(MAX_RESAMPLED_PIXELS, 4 * h * w)
    small = min(nh, nw) < 8 <= min(h, w)
    if nh * nw <= limit and not small:
        return
    factor = sy / card.pixel_size
    what = (f"would make it {nh}×{nw} px ({nh * nw * 4 / 2 ** 30:.2g} GiB per channel)" if not small
            else f"would leave {nh}×{nw} px")
    shown = readable_unit(min(sy, card.pixel_size), unit)  # both sizes in one readable unit
    mine, theirs = convert_length(sy, unit, shown), convert_length(card.pixel_size, unit, shown)
    raise CalibrationError(
        f"{name}: resampling the {h}×{w} px frame from {mine:.4g} {shown}/px to the model's "
        f"{theirs:.4g} {shown}/px (×{factor:.3g} per axis) {what}; check the image's calibration "
        "and the model card's pixel size")


def prepare_frames(images, calibration: Calibration | None, predictor: Predictor, *,
                   channel_axis: int | None = None, resample: bool = True, return_scale: bool = False):
    """Frames as the model expects them: channels, pixel size and normalisation from the card.

    Parameters
    ----------
    images : array_like
        ``(H, W)``, ``(N, H, W)`` or more leading frame axes; with
        ``channel_axis`` the channel axis is counted as an image axis.
    calibration : Calibration or None
        Calibration of the images (only the image axes are used).
    predictor : Predictor
    channel_axis : int, optional
        Axis of colour channels (e.g. ``-1`` for ``(H, W, 3)``), or ``None`` for grey.
    resample : bool
        Resample to the card's pixel size (default True).
    return_scale : bool
        Also return every frame's :func:`intensity_scale` (restoration models).

    Returns
    -------
    frames : list of ndarray
        One ``(C, H', W')`` float32 array per frame.
    (lead, frame_shape) : (tuple, tuple)
        The leading (frame) axes of ``images`` and ``(H, W)`` of the input frames.
    scales : list of (float, float)
        Only with ``return_scale``.

    Examples
    --------
    >>> import torch
    >>> from hyperspy_mmdl.checkpoint import ModelCard
    >>> p = Predictor(torch.nn.Identity(), ModelCard("vgg_grain", input_size=[3, 8, 8]), device="cpu")
    >>> frames, (lead, shape) = prepare_frames(np.arange(32.0).reshape(2, 4, 4), None, p)
    >>> len(frames), frames[0].shape, lead, shape, float(frames[1].max())
    (2, (3, 4, 4), (2,), (4, 4), 1.0)
    """
    arr = np.asarray(images)
    img_ndim = 3 if channel_axis is not None else 2
    if arr.ndim < img_ndim:
        raise ValueError(f"images must have at least {img_ndim} dimensions, got shape {arr.shape}")
    if channel_axis is not None:
        channel_axis = channel_axis % arr.ndim
        if channel_axis < arr.ndim - 3:
            raise ValueError("channel_axis must be one of the last three axes")
        arr = np.moveaxis(arr, channel_axis, -1)
    lead = arr.shape[:arr.ndim - img_ndim]
    flat = arr.reshape((-1,) + arr.shape[arr.ndim - img_ndim:])
    frame_shape = flat.shape[1:3]
    card = predictor.card
    if resample:
        check_resampling(frame_shape, calibration, predictor)

    def one(frame):
        x = _to_channels(frame, predictor.in_chans, -1 if channel_axis is not None else None)
        if resample:
            x, _ = resample_to_pixel_size(x, calibration, card.pixel_size, card.pixel_unit)
        return normalize_input(x, card), (intensity_scale(x, card) if return_scale else None)

    if len(flat) > 1 and (os.cpu_count() or 1) > 1:
        # resampling and normalisation release the GIL for most of their time: use the cores
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(min(len(flat), os.cpu_count() or 1)) as pool:
            done = list(pool.map(one, flat))
    else:
        done = [one(f) for f in flat]
    out = [x for x, _ in done]
    if return_scale:
        return out, (lead, frame_shape), [s for _, s in done]
    return out, (lead, frame_shape)
