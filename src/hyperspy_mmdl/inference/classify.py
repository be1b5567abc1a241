"""Classification: class probabilities of every frame, averaged over its tiles."""

from __future__ import annotations

import numpy as np

from ..errors import CheckpointError, MMDLError
from .predictor import default_batch, get_predictor, main_output, run_steps
from .prepare import prepare_frames
from .tiling import plan_tiles, tile_batches

__all__ = ["classify", "iter_classify"]


def iter_classify(images, calibration, model, *, device="auto", batch_size=None, overlap=0.25,
                  tile=True, channel_axis=None, resample=True, amp=None):
    """Generator form of :func:`classify`: yields ``(done, total)`` tiles, returns the probabilities.

    Examples
    --------
    >>> import torch
    >>> from hyperspy_mmdl.checkpoint import ModelCard
    >>> net = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(1, 2))
    >>> card = ModelCard("vgg_grain", task="classify", input_size=[1, 16, 16], class_names=["a", "b"])
    >>> steps = iter_classify(np.zeros((2, 16, 16)), None, (net, card), device="cpu")
    >>> next(steps), run_steps(steps).shape
    ((0, 2), (2, 2))
    """
    import torch

    pred = get_predictor(model, device=device, amp=amp).require_task("classify", "classify (a classifier)")
    frames, (lead, _) = prepare_frames(images, calibration, pred, channel_axis=channel_axis,
                                       resample=resample)
    tshape = pred.tile_shape if tile else None
    padded, tiles = plan_tiles(frames, tshape, overlap)
    bs = default_batch(pred, batch_size)
    sums, counts = None, np.zeros(len(frames), np.int64)
    done = 0
    yield done, len(tiles)
    for chunk, batch in tile_batches(padded, tiles, tshape, bs):
        with torch.inference_mode(), pred.autocast():
            logits = main_output(pred.model(pred.to_tensor(batch)))
        prob = torch.softmax(logits.float(), dim=1).cpu().numpy()
        if sums is None:
            sums = np.zeros((len(frames), prob.shape[1]), np.float64)
        for t, p in zip(chunk, prob):
            sums[t.frame] += p
            counts[t.frame] += 1
        done += len(chunk)
        yield done, len(tiles)
    probs = (sums / counts[:, None]).astype(np.float32)
    names = pred.card.class_names
    if names and probs.shape[1] != len(names):
        raise CheckpointError(f"{pred.name}: the model has {probs.shape[1]} outputs but its card names "
                              f"{len(names)} classes ({names})")
    bad = ~np.isfinite(probs).all(axis=1)
    if bad.any():
        raise MMDLError(f"{pred.name}: the model returned NaN or infinite outputs for {int(bad.sum())} of "
                        f"{len(probs)} frame(s); its weights are damaged (a diverged training?)")
    return probs.reshape(lead + (probs.shape[1],))


def classify(images, calibration, model, *, device="auto", batch_size=None, overlap=0.25, tile=True,
             channel_axis=None, resample=True, amp=None, show_progressbar=False) -> np.ndarray:
    """Class probabilities of every frame.

    Parameters
    ----------
    images : array_like
        ``(H, W)`` or ``(N, H, W)`` (any number of leading frame axes).
    calibration : Calibration or None
        Calibration of the image axes, used to resample to the model's pixel size.
    model : str, Path, Predictor or (module, card)
        See :func:`get_predictor`.
    device : str
        ``"auto"``, ``"cpu"``, ``"cuda"``, ``"mps"``.
    batch_size : int, optional
        Tiles per forward pass (8 on CPU, 32 on CUDA by default).
    overlap : float or int
        Tile overlap as a fraction of the tile size or in pixels.
    tile : bool
        Cut frames larger than the model input into tiles and average the tile
        probabilities (default). ``False`` runs each frame whole (only for
        models that accept any input size).
    channel_axis : int, optional
        Colour channel axis of ``images``.
    resample : bool
        Resample to the model's pixel size (default True).
    amp : bool, optional
        Mixed precision on CUDA (default: on for CUDA).
    show_progressbar : bool
        Show a tqdm progress bar over tiles.

    Returns
    -------
    ndarray of float32
        ``(..., n_classes)`` probabilities (each row sums to 1), in the order of
        the card's ``class_names``.

    Raises
    ------
    WrongTaskError
        The model is not a classifier (the message names the file and both tasks).

    Examples
    --------
    >>> import torch
    >>> from hyperspy_mmdl.checkpoint import ModelCard
    >>> net = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(1, 2))
    >>> card = ModelCard("vgg_grain", task="classify", input_size=[1, 16, 16], class_names=["a", "b"])
    >>> classify(np.random.default_rng(0).random((3, 40, 40)), None, (net, card), device="cpu").shape
    (3, 2)
    """
    return run_steps(iter_classify(images, calibration, model, device=device, batch_size=batch_size,
                                   overlap=overlap, tile=tile, channel_axis=channel_axis,
                                   resample=resample, amp=amp),
                     show_progressbar, desc="classify")
