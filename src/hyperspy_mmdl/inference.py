"""Apply trained models to micrographs: device choice, preprocessing, tiling, batching.

Every function takes plain arrays (frames first, ``(H, W)`` or ``(N, H, W)``)
plus the :class:`~hyperspy_mmdl.calibration.Calibration` of the image axes and a
model given as a checkpoint path, a :class:`Predictor` or a ``(module, card)``
pair. Before the model sees a frame, the frame is

1. converted to the model's number of channels (grey to RGB by repetition, RGB
   to grey by the mean),
2. resampled to the pixel size recorded in the model card, using the image's
   calibration, so that a 10 nm/px and a 33 nm/px image of the same film reach
   the model at the same physical scale,
3. normalised with the card's ``normalization`` (the function used in training,
   :func:`normalize`),
4. cut into tiles of the model's input size with overlap. Classifiers average
   their class probabilities over the tiles; dense outputs (attention maps,
   Grad-CAM, probability maps) are blended with feathered weights
   (:func:`feather_window`) and resampled back to the frame's own size and
   calibration.

Tiles of all frames are pooled and run through the model in batches of
``batch_size``; on CUDA the forward pass runs under automatic mixed precision
(float16), elsewhere in float32. Models loaded from a file are kept in a small
cache keyed by path, modification time and device, so repeated calls (a stack
frame by frame, a napari widget, a lazy signal's dask blocks) load the weights
only once.

The long-running functions exist in two forms: ``classify(...)`` returns the
result, ``iter_classify(...)`` is a generator that yields ``(done, total)``
progress pairs and returns the result (``result = yield from
iter_classify(...)``), which is what the napari widgets run in a worker thread
so that they can show progress and be cancelled between batches.
"""

from __future__ import annotations

import math
import os
import threading
import warnings
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Mapping, Sequence

import numpy as np

from .calibration import PIXEL, Calibration, normalize_unit

__all__ = [
    "select_device",
    "Predictor",
    "get_predictor",
    "clear_cache",
    "normalize",
    "resample_to_pixel_size",
    "prepare_frames",
    "tile_starts",
    "feather_window",
    "classify",
    "iter_classify",
    "predict_dense",
    "iter_predict_dense",
    "predict_pce",
    "iter_predict_pce",
    "encode_tabular",
    "tabular_fields",
    "fusion_weights",
    "grain_feature_factors",
    "MODALITIES",
    "run_steps",
]

# --------------------------------------------------------------------------- device
def select_device(device="auto"):
    """Pick the torch device to run on.

    Parameters
    ----------
    device : str or torch.device
        ``"auto"`` (CUDA if available, then Apple MPS, then CPU), or an explicit
        ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``.

    Returns
    -------
    torch.device

    Raises
    ------
    ValueError
        The requested device is not available on this machine.
    """
    import torch

    if isinstance(device, torch.device):
        dev = device
    else:
        name = "auto" if device is None else str(device).strip().lower()
        if name == "auto":
            if torch.cuda.is_available():
                return torch.device("cuda")
            mps = getattr(torch.backends, "mps", None)
            if mps is not None and mps.is_available():
                return torch.device("mps")
            return torch.device("cpu")
        try:
            dev = torch.device(name)
        except RuntimeError as err:
            raise ValueError(f"device={device!r} is not a torch device ({err}); "
                             "use 'auto', 'cpu', 'cuda' or 'mps'") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} requested but CUDA is not available here "
                         "(torch.cuda.is_available() is False); use device='auto' or 'cpu'")
    if dev.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise ValueError(f"device={device!r} requested but Apple MPS is not available here; "
                             "use device='auto' or 'cpu'")
    return dev


# --------------------------------------------------------------------------- predictor
class Predictor:
    """A model on a device with its model card, ready to run on micrographs.

    Parameters
    ----------
    model : torch.nn.Module
        The network (put in eval mode and moved to ``device``).
    card : ModelCard or dict
        Its model card (:class:`hyperspy_mmdl.checkpoint.ModelCard`).
    device : str or torch.device
        See :func:`select_device`.
    amp : bool or None
        Automatic mixed precision. ``None`` (default) enables it on CUDA only;
        it is never used on CPU or MPS.
    path : Path, optional
        The file the model came from (for display).
    """

    def __init__(self, model, card, device="auto", amp=None, path=None):
        from .checkpoint import ModelCard

        self.card = card if isinstance(card, ModelCard) else ModelCard.from_dict(dict(card))
        self.device = select_device(device)
        self.model = model.to(self.device).eval()
        self.amp = (self.device.type == "cuda") if amp is None else (bool(amp) and self.device.type == "cuda")
        self.path = Path(path) if path is not None else None
        self.lock = threading.RLock()  # serialises switches of the model's state (modality masks)

    def __repr__(self):
        src = f" from {self.path.name}" if self.path else ""
        return f"<Predictor {self.card.architecture}{src} on {self.device}>"

    # ------------------------------------------------------------------ card views
    @classmethod
    def from_checkpoint(cls, path, device="auto", amp=None) -> "Predictor":
        """Load a checkpoint (cached; see :func:`get_predictor`)."""
        return get_predictor(path, device=device, amp=amp)

    @property
    def in_chans(self) -> int:
        return int(self.card.in_chans or 1)

    @property
    def tile_shape(self) -> tuple[int, int] | None:
        """``(H, W)`` of the model input from the card, or ``None`` if not recorded."""
        size = self.card.input_size
        return (int(size[-2]), int(size[-1])) if len(size) >= 2 else None

    @property
    def class_names(self) -> list[str]:
        if self.card.class_names:
            return [str(c) for c in self.card.class_names]
        n = self.card.num_classes
        return [f"class {i}" for i in range(n)] if n else []

    @property
    def is_fusion(self) -> bool:
        """True for PSC-Fusion style models (image + composition + process)."""
        return self.card.task == "regress-pce" or bool(self.card.vocabularies)

    def summary(self) -> str:
        """A short human description of the model card (one line per item)."""
        c = self.card
        lines = [f"{c.architecture} ({c.task})"]
        if c.input_size:
            lines.append("input " + "×".join(str(v) for v in c.input_size))
        if c.pixel_size:
            lines.append(f"pixel size {c.pixel_size:g} {c.pixel_unit}")
        lines.append(f"normalisation {c.normalization}")
        if c.class_names:
            lines.append("classes: " + ", ".join(map(str, c.class_names)))
        if c.target_name:
            lines.append(f"target {c.target_name} ({c.target_unit or ''})")
        if c.metrics:
            shown = [f"{k} {v:.3g}" for k, v in c.metrics.items() if isinstance(v, (int, float))][:4]
            if shown:
                lines.append("metrics: " + ", ".join(shown))
        return "\n".join(lines)

    # ------------------------------------------------------------------ forward
    def autocast(self):
        """Context manager for the forward pass (float16 autocast on CUDA when ``amp``)."""
        import contextlib

        import torch

        if self.amp:
            return torch.autocast(device_type="cuda", dtype=torch.float16)
        return contextlib.nullcontext()

    def to_tensor(self, batch: np.ndarray):
        import torch

        return torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)).to(self.device)


_CACHE: "OrderedDict[tuple, Predictor]" = OrderedDict()
_CACHE_SIZE = 4
_CACHE_LOCK = threading.Lock()


def clear_cache() -> None:
    """Forget every model loaded by :func:`get_predictor`."""
    with _CACHE_LOCK:
        _CACHE.clear()


def get_predictor(model, device="auto", amp=None) -> Predictor:
    """Turn a model argument into a :class:`Predictor`, loading files once.

    Parameters
    ----------
    model : str, Path, Predictor or (torch.nn.Module, card)
        A checkpoint written by :func:`hyperspy_mmdl.checkpoint.save_checkpoint`,
        a ready predictor, or a module with its model card.
    device : str or torch.device
        See :func:`select_device`. A predictor on another device is not moved.
    amp : bool or None
        See :class:`Predictor`.

    Returns
    -------
    Predictor
        For files, the same object is returned as long as the file's path,
        modification time and the device are unchanged (a cache of the last
        four models).
    """
    if isinstance(model, Predictor):
        return model
    if isinstance(model, (tuple, list)) and len(model) == 2:
        return Predictor(model[0], model[1], device=device, amp=amp)
    if isinstance(model, (str, Path)):
        path = Path(model).expanduser().resolve()
        if not path.is_file():
            raise FileNotFoundError(f"model file not found: {path}")
        dev = select_device(device)
        key = (str(path), path.stat().st_mtime_ns, str(dev), amp)
        with _CACHE_LOCK:
            if key in _CACHE:
                _CACHE.move_to_end(key)
                return _CACHE[key]
        from .checkpoint import load_checkpoint

        net, card = load_checkpoint(path, device=dev)
        pred = Predictor(net, card, device=dev, amp=amp, path=path)
        with _CACHE_LOCK:
            _CACHE[key] = pred
            while len(_CACHE) > _CACHE_SIZE:
                _CACHE.popitem(last=False)
        return pred
    raise TypeError("model must be a checkpoint path, a Predictor or a (module, card) pair, "
                    f"got {type(model).__name__}")


# --------------------------------------------------------------------------- preprocessing
def normalize(image: np.ndarray, method: str = "minmax") -> np.ndarray:
    """Per-image intensity normalisation (SPEC §3.2), exactly as in training.

    This is :func:`hyperspy_mmdl.train.transforms.normalize` (NaN/inf replaced
    by the median, then ``minmax``, ``zscore``, ``clahe`` or ``none`` over the
    whole ``(H, W)`` or ``(C, H, W)`` array), so inference applies the same
    arithmetic as the training data loader.
    """
    from .train.transforms import NORMALIZATIONS
    from .train.transforms import normalize as _normalize

    method = str(method).lower()
    if method not in NORMALIZATIONS:
        raise ValueError(f"unknown normalization {method!r} in the model card; expected one of "
                         f"{NORMALIZATIONS}")
    return _normalize(image, method)


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


def resample_to_pixel_size(image: np.ndarray, calibration: Calibration | None, pixel_size: float | None,
                           unit: str = "nm") -> tuple[np.ndarray, Calibration | None]:
    """Resample an image so that its pixels have the model's physical size.

    Parameters
    ----------
    image : ndarray
        ``(H, W)`` or ``(C, H, W)``.
    calibration : Calibration or None
        Calibration of the image axes.
    pixel_size : float or None
        Target pixel size in ``unit`` (the model card's ``pixel_size``). ``None``
        leaves the image unchanged.
    unit : str
        Unit of ``pixel_size``.

    Returns
    -------
    image : ndarray of float32
        Resampled with linear interpolation and Gaussian anti-aliasing when
        shrinking, with the function the training data loader uses
        (:func:`hyperspy_mmdl.train.transforms.resize`).
    calibration : Calibration or None
        The calibration of the resampled image (same physical extent).

    Warns
    -----
    UserWarning
        The model has a pixel size but the image is not calibrated: the image
        is used at its own pixel size.
    """
    from .train.transforms import resize

    x = np.asarray(image, dtype=np.float32)
    if pixel_size is None or normalize_unit(unit) == PIXEL:
        return x, calibration
    if calibration is None or not calibration.is_calibrated:
        warnings.warn(f"the model expects {pixel_size:g} {unit}/px but the image is not calibrated; "
                      "using it at its own pixel size (set the calibration to fix this)", UserWarning,
                      stacklevel=3)
        return x, calibration
    sy, sx = calibration.pixel_size_in(normalize_unit(unit))
    h, w = x.shape[-2:]
    nh = max(1, int(round(h * sy / float(pixel_size))))
    nw = max(1, int(round(w * sx / float(pixel_size))))
    if (nh, nw) == (h, w):
        return x, calibration
    out = resize(x, (nh, nw), order=1).astype(np.float32, copy=False)
    return out, calibration.to_unit(normalize_unit(unit)).resampled((nh / h, nw / w))


def prepare_frames(images, calibration: Calibration | None, predictor: Predictor, *,
                   channel_axis: int | None = None, resample: bool = True) -> tuple[list[np.ndarray], tuple]:
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

    Returns
    -------
    frames : list of ndarray
        One ``(C, H', W')`` float32 array per frame.
    frame_shape : tuple
        ``(H, W)`` of the input frames.
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

    def one(frame):
        x = _to_channels(frame, predictor.in_chans, -1 if channel_axis is not None else None)
        if resample:
            x, _ = resample_to_pixel_size(x, calibration, card.pixel_size, card.pixel_unit)
        return normalize(x, card.normalization)

    if len(flat) > 1 and (os.cpu_count() or 1) > 1:
        # resampling and normalisation release the GIL for most of their time: use the cores
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(min(len(flat), os.cpu_count() or 1)) as pool:
            out = list(pool.map(one, flat))
    else:
        out = [one(f) for f in flat]
    return out, (lead, frame_shape)


# --------------------------------------------------------------------------- tiling
def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of tiles of size ``tile`` covering ``length`` with at least ``overlap``.

    The last tile ends at ``length``; when ``length <= tile`` there is one tile at 0.
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
class _Tile:
    frame: int
    y: int
    x: int
    edges: tuple[bool, bool, bool, bool]


def _overlap_px(tile: tuple[int, int], overlap: float | int) -> tuple[int, int]:
    if isinstance(overlap, float) and 0 <= overlap < 1:
        return int(round(tile[0] * overlap)), int(round(tile[1] * overlap))
    if isinstance(overlap, (int, np.integer)) and overlap >= 0:
        return int(overlap), int(overlap)
    raise ValueError(f"overlap must be a fraction in [0, 1) or a number of pixels, got {overlap!r}")


def _plan(frames: Sequence[np.ndarray], tile: tuple[int, int] | None, overlap) -> tuple[list, list[_Tile]]:
    """Pad frames to the tile size and list the tiles of every frame."""
    padded, tiles = [], []
    for i, f in enumerate(frames):
        if tile is None:
            padded.append(f)
            tiles.append(_Tile(i, 0, 0, (True, True, True, True)))
            continue
        th, tw = tile
        oy, ox = _overlap_px(tile, overlap)
        p = _pad_to(f, th, tw)
        padded.append(p)
        ys, xs = tile_starts(p.shape[-2], th, oy), tile_starts(p.shape[-1], tw, ox)
        for y in ys:
            for x in xs:
                tiles.append(_Tile(i, y, x, (y == 0, y == ys[-1], x == 0, x == xs[-1])))
    return padded, tiles


def _batches(padded, tiles, tile, batch_size):
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


def run_steps(steps: Iterator, show_progressbar: bool | None = None, desc: str = "") -> object:
    """Drain a ``iter_*`` generator (progress pairs) and return its result.

    Parameters
    ----------
    steps : generator
        Yields ``(done, total)``; its return value is the result.
    show_progressbar : bool or None
        Show a tqdm bar; ``None`` follows HyperSpy's preference when HyperSpy is
        imported, else no bar.
    """
    if show_progressbar is None:
        import sys

        hs_prefs = sys.modules.get("hyperspy.defaults_parser")
        show_progressbar = bool(hs_prefs.preferences.General.show_progressbar) if hs_prefs else False
    bar = None
    try:
        while True:
            done, total = next(steps)
            if show_progressbar:
                if bar is None:
                    from tqdm.auto import tqdm

                    bar = tqdm(total=total, desc=desc, unit="tile")
                bar.n = done
                bar.refresh()
    except StopIteration as stop:
        return stop.value
    finally:
        if bar is not None:
            bar.close()


# --------------------------------------------------------------------------- classification
def _default_batch(predictor: Predictor, batch_size: int | None) -> int:
    if batch_size is not None:
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        return int(batch_size)
    return 32 if predictor.device.type == "cuda" else 8


def _logits(out):
    """The main output of a model that may return ``(output, attention)``."""
    if isinstance(out, (tuple, list)):
        out = out[0]
    if isinstance(out, dict):
        out = out.get("logits", next(iter(out.values())))
    return out


def iter_classify(images, calibration, model, *, device="auto", batch_size=None, overlap=0.25,
                  tile=True, channel_axis=None, resample=True, amp=None):
    """Generator form of :func:`classify`: yields ``(done, total)`` tiles, returns the probabilities."""
    import torch

    pred = get_predictor(model, device=device, amp=amp)
    if pred.card.task != "classify":
        raise ValueError(f"{pred!r} is a {pred.card.task!r} model, not a classifier")
    frames, (lead, _) = prepare_frames(images, calibration, pred, channel_axis=channel_axis,
                                       resample=resample)
    tshape = pred.tile_shape if tile else None
    padded, tiles = _plan(frames, tshape, overlap)
    bs = _default_batch(pred, batch_size)
    sums, counts = None, np.zeros(len(frames), np.int64)
    done = 0
    yield done, len(tiles)
    for chunk, batch in _batches(padded, tiles, tshape, bs):
        with torch.inference_mode(), pred.autocast():
            logits = _logits(pred.model(pred.to_tensor(batch)))
        prob = torch.softmax(logits.float(), dim=1).cpu().numpy()
        if sums is None:
            sums = np.zeros((len(frames), prob.shape[1]), np.float64)
        for t, p in zip(chunk, prob):
            sums[t.frame] += p
            counts[t.frame] += 1
        done += len(chunk)
        yield done, len(tiles)
    probs = (sums / counts[:, None]).astype(np.float32)
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
    """
    return run_steps(iter_classify(images, calibration, model, device=device, batch_size=batch_size,
                                   overlap=overlap, tile=tile, channel_axis=channel_axis,
                                   resample=resample, amp=amp),
                     show_progressbar, desc="classify")


# --------------------------------------------------------------------------- dense outputs
def iter_predict_dense(images, calibration, model, tile_fn: Callable, *, device="auto", batch_size=None,
                       overlap=0.25, tile=True, channel_axis=None, resample=True, amp=None):
    """Generator form of :func:`predict_dense`."""
    from skimage.transform import resize

    pred = get_predictor(model, device=device, amp=amp)
    frames, (lead, frame_shape) = prepare_frames(images, calibration, pred, channel_axis=channel_axis,
                                                 resample=resample)
    tshape = pred.tile_shape if tile else None
    padded, tiles = _plan(frames, tshape, overlap)
    bs = _default_batch(pred, batch_size)
    acc = [None] * len(frames)
    wsum = [np.zeros(p.shape[-2:], np.float32) for p in padded]
    done = 0
    yield done, len(tiles)
    for chunk, batch in _batches(padded, tiles, tshape, bs):
        out = np.asarray(tile_fn(pred, batch), dtype=np.float32)
        if out.ndim != 4 or out.shape[0] != len(chunk):
            raise ValueError(f"tile_fn must return (B, K, h, w) maps, got shape {out.shape}")
        th, tw = batch.shape[-2:]
        if out.shape[-2:] != (th, tw):
            out = resize(out, out.shape[:2] + (th, tw), order=1, mode="edge", anti_aliasing=False,
                         preserve_range=True).astype(np.float32)
        for t, o in zip(chunk, out):
            if acc[t.frame] is None:
                acc[t.frame] = np.zeros((o.shape[0],) + padded[t.frame].shape[-2:], np.float32)
            if tshape is None:
                w = np.ones((th, tw), np.float32)
            else:
                w = feather_window((th, tw), _overlap_px(tshape, overlap), t.edges)
            acc[t.frame][:, t.y:t.y + th, t.x:t.x + tw] += o * w
            wsum[t.frame][t.y:t.y + th, t.x:t.x + tw] += w
        done += len(chunk)
        yield done, len(tiles)
    maps = []
    for f, a, w in zip(frames, acc, wsum):
        m = (a / np.maximum(w, 1e-12))[:, :f.shape[-2], :f.shape[-1]]
        if m.shape[-2:] != tuple(frame_shape):
            m = resize(m, m.shape[:1] + tuple(frame_shape), order=1, mode="edge",
                       anti_aliasing=m.shape[-1] > frame_shape[-1], preserve_range=True)
        maps.append(m.astype(np.float32))
    out = np.stack(maps)
    return out.reshape(lead + out.shape[1:])


def predict_dense(images, calibration, model, tile_fn: Callable, *, device="auto", batch_size=None,
                  overlap=0.25, tile=True, channel_axis=None, resample=True, amp=None,
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
    show_progressbar : bool
        Show a tqdm bar over tiles.

    Returns
    -------
    ndarray of float32
        ``(..., K, H, W)`` maps at the input frames' size and calibration.
    """
    return run_steps(iter_predict_dense(images, calibration, model, tile_fn, device=device,
                                        batch_size=batch_size, overlap=overlap, tile=tile,
                                        channel_axis=channel_axis, resample=resample, amp=amp),
                     show_progressbar, desc="maps")


def model_output_fn(pred: Predictor, batch: np.ndarray) -> np.ndarray:
    """``tile_fn`` for a model whose output is already a dense map ``(B, K, h, w)``."""
    import torch

    with torch.inference_mode(), pred.autocast():
        out = _logits(pred.model(pred.to_tensor(batch)))
    return out.float().cpu().numpy()


# --------------------------------------------------------------------------- PSC-Fusion (PCE)
MODALITIES = ("image", "composition", "process")


def _as_dict(values, name) -> dict:
    if values is None:
        return {}
    if hasattr(values, "to_dict") and not isinstance(values, Mapping):  # pandas Series (a table row)
        values = values.to_dict()
    if not isinstance(values, Mapping):
        raise TypeError(f"{name} must be a dict or a pandas row (Series), got {type(values).__name__}")
    return {str(k): v for k, v in values.items()}


def _vocabularies(card) -> dict:
    vocab = card.vocabularies if hasattr(card, "vocabularies") else dict(card).get("vocabularies")
    if not vocab or "composition" not in vocab or "process" not in vocab:
        raise ValueError("the model card has no composition/process vocabularies (not a PSC-Fusion model?)")
    return vocab


def tabular_fields(card) -> dict:
    """``{"composition": {field: [tokens]}, "process": {field: [tokens]}}`` of a PSC-Fusion card."""
    vocab = _vocabularies(card)
    return {kind: {str(f): [str(t) for t in toks] for f, toks in vocab[kind].items()}
            for kind in ("composition", "process")}


def encode_tabular(card, composition=None, process=None):
    """Encode composition and process values exactly as the training table was encoded.

    Parameters
    ----------
    card : ModelCard
        A PSC-Fusion card whose ``vocabularies`` come from
        :func:`hyperspy_mmdl.train.tabular.read_pce_table`.
    composition, process : dict or pandas.Series, optional
        Values by field name (``"etl"``) or by the training table's column name
        (``"ETL_stack_sequence"``). A table row holding both kinds can be
        passed as either argument. A composition cell may list several tokens
        (``"TiO2 | SnO2"``). Missing fields are encoded as unknown.

    Returns
    -------
    composition : ndarray of float32, shape (d_c,)
        Multi-hot vector (:func:`hyperspy_mmdl.train.tabular.encode_composition`).
    process : ndarray of int64, shape (n_process_fields,)
        Category indices, 0 = unknown (:func:`~hyperspy_mmdl.train.tabular.encode_process`).
    numeric : ndarray of float32, shape (n_numeric,)
        The card's numeric columns (NaN where not given).

    Raises
    ------
    ValueError
        A value is not in its field's vocabulary (the message lists the valid
        categories), or a key is neither a field nor a column of the model.
    """
    import pandas as pd

    from .train import tabular as tab

    vocab = _vocabularies(card)
    columns = vocab.get("columns") or {}
    numeric = [str(c) for c in vocab.get("numeric") or []]
    by_key = {}  # field name or column name -> (kind, field, column)
    for kind in ("composition", "process"):
        for field in vocab[kind]:
            col = (columns.get(kind) or {}).get(field, field)
            by_key[str(field)] = by_key[str(col)] = (kind, str(field), str(col))
    values, strict = {}, set()
    for given, name in ((process, "process"), (composition, "composition")):
        d = _as_dict(given, name)
        values.update(d)
        if isinstance(given, Mapping):  # a dict names fields on purpose; a table row has other columns
            strict |= set(d)
    row, num = {}, {}
    for key, value in values.items():
        if key in numeric:
            num[key] = value
            continue
        if key not in by_key:
            if key not in strict:
                continue
            raise ValueError(f"unknown field {key!r}; this model knows composition fields "
                             f"{list(vocab['composition'])}, process fields {list(vocab['process'])}"
                             + (f" and numeric columns {numeric}" if numeric else ""))
        kind, field, col = by_key[key]
        tokens = [str(t) for t in vocab[kind][field]]
        if kind == "composition":
            given = tab._tokens(value)
            bad = [t for t in given if t not in tokens]
        else:
            tok = tab._process_token(value)
            bad = [] if tok is None or tok in tokens else [tok]
        if bad:
            raise ValueError(f"{kind} field {field!r}: unknown categor{'y' if len(bad) == 1 else 'ies'} "
                             f"{bad if len(bad) > 1 else bad[0]!r}; valid categories: {tokens}")
        row[col] = value
    frame = pd.DataFrame([row]) if row else pd.DataFrame(index=[0])
    comp = tab.encode_composition(frame, vocab)[0]
    proc = tab.encode_process(frame, vocab)[0]
    nums = np.array([pd.to_numeric(pd.Series([num.get(c)]), errors="coerce").iloc[0] for c in numeric],
                    dtype=np.float32)
    return comp.astype(np.float32), proc.astype(np.int64), nums


def _masked(card) -> set:
    return {str(m) for m in (card.extra or {}).get("masked_modalities", [])}


class _ModalityMask:
    """Switch PSC-Fusion branches off for a forward pass and restore the card's mask afterwards."""

    def __init__(self, pred: Predictor, masked: set):
        self.pred, self.masked = pred, set(masked)

    def _set(self, masked):
        model = self.pred.model
        if hasattr(model, "set_modality_mask"):
            model.set_modality_mask(sorted(masked))
        elif hasattr(model, "mask"):
            model.mask = set(masked)
        elif masked:
            raise ValueError(f"{type(model).__name__} cannot switch modalities off "
                             "(no set_modality_mask / mask)")

    def __enter__(self):
        self.pred.lock.acquire()
        self._set(self.masked)
        return self

    def __exit__(self, *exc):
        try:
            self._set(_masked(self.pred.card))
        finally:
            self.pred.lock.release()


def fusion_weights(attention: Mapping) -> "np.ndarray | None":
    """Per-modality fusion weights ``(B, 3)`` (image, composition, process) from a model's attention dict.

    PSC-Fusion's gates ``w_i = sigmoid(W_i v_i + b_i)`` (SPEC §1.1.5) are
    vectors (``gate="vector"``) or scalars per modality; vectors are averaged.
    """
    for key, value in attention.items():
        k = key.lower()
        if "fusion" in k or k in ("gates", "weights", "modality_weights"):
            v = value.float() if hasattr(value, "float") else value
            v = v.detach().cpu().numpy() if hasattr(v, "detach") else np.asarray(v, np.float32)
            if v.ndim >= 2 and v.shape[1] == len(MODALITIES):
                return v.reshape(v.shape[0], len(MODALITIES), -1).mean(-1)
    return None


def _pce_forward(pred: Predictor, x, comp, proc, numeric=None):
    """``(pce in target units (B,), fusion weights (B, 3))`` for one batch."""
    import torch

    b = x.shape[0]
    c = torch.from_numpy(comp).to(pred.device).reshape(1, -1).expand(b, -1)
    p = torch.from_numpy(proc).to(pred.device).reshape(1, -1).expand(b, -1)
    kwargs = {"return_attention": True}
    if numeric is not None:
        kwargs["numeric"] = torch.from_numpy(np.asarray(numeric, np.float32)).to(pred.device).reshape(b, -1)
    with torch.inference_mode(), pred.autocast():
        out = pred.model(x, c, p, **kwargs)
    att = {}
    if isinstance(out, (tuple, list)):
        out, att = out[0], (out[1] if len(out) > 1 and isinstance(out[1], Mapping) else {})
    extra = pred.card.extra or {}
    mean, std = float(extra.get("target_mean", 0.0)), float(extra.get("target_std", 1.0))
    pce = out.float().reshape(b, -1)[:, 0].cpu().numpy() * std + mean
    w = fusion_weights(att)
    if w is None:
        w = np.full((b, len(MODALITIES)), np.nan, np.float32)
    return pce.astype(np.float32), w.astype(np.float32)


def grain_feature_factors(image, calibration, unit: str = "µm") -> np.ndarray:
    """The SPEC §3.1.7 feature factors of one frame (segment, measure, summarize).

    Returns ``[mean ECD, mean major axis, mean aspect ratio, GBLD, σ ECD, σ AR]``
    with lengths in ``unit`` and GBLD in ``1/unit``, in the order of
    :data:`hyperspy_mmdl.grains.summarize.FEATURE_FACTORS`.
    """
    from .grains import measure, segment, summarize
    from .grains.summarize import FEATURE_FACTORS

    cal = calibration.image if calibration is not None else Calibration.uncalibrated()
    if cal.is_calibrated:
        cal = cal.to_unit(unit)
    labels = segment(np.asarray(image), cal)
    stats = summarize(measure(labels, cal), cal, labels=labels)
    return np.array([float(stats[k]) for k in FEATURE_FACTORS], np.float32)


def _grain_feature_columns(numeric_cols) -> bool:
    """True when a model's numeric inputs are the six grain feature factors (either naming)."""
    from .grains.summarize import FEATURE_FACTORS as GRAINS
    from .train.tabular import FEATURE_FACTORS as TABLE

    return len(numeric_cols) == len(GRAINS) and all(
        str(c) in (g, t) for c, g, t in zip(numeric_cols, GRAINS, TABLE))


def iter_predict_pce(images, calibration, model, *, composition=None, process=None, n_frames=None,
                     grain_features=False, mask=(), device="auto", batch_size=None, overlap=0.25, tile=True,
                     channel_axis=None, resample=True, amp=None):
    """Generator form of :func:`predict_pce` (yields ``(done, total)``)."""
    pred = get_predictor(model, device=device, amp=amp)
    if pred.card.task != "regress-pce":
        raise ValueError(f"{pred!r} is a {pred.card.task!r} model, not a PCE regressor (PSC-Fusion)")
    comp, proc, _ = encode_tabular(pred.card, composition, process)
    numeric_cols = list((pred.card.vocabularies or {}).get("numeric") or [])
    bad = [m for m in mask if m not in MODALITIES]
    if bad:
        raise ValueError(f"mask: unknown modality {bad}; one of {MODALITIES}")
    masked = _masked(pred.card) | set(mask)
    if images is None or "image" in set(mask):
        if grain_features:
            raise ValueError("grain_features=True needs images")
        if images is not None:  # image branch masked: the same value for every frame
            arr = np.asarray(images)
            shape = arr.shape[:arr.ndim - (3 if channel_axis is not None else 2)]
        else:
            shape = None if n_frames is None else (int(n_frames),)
        masked.add("image")
        x = pred.to_tensor(np.zeros((1, pred.in_chans, 1, 1), np.float32))
        yield 0, 1
        with _ModalityMask(pred, masked):
            pce, w = _pce_forward(pred, x, comp, proc)
        yield 1, 1
        if not shape:
            return float(pce[0]), w[0]
        return np.full(shape, pce[0], np.float32), np.broadcast_to(w[0], shape + w.shape[1:]).copy()
    if "image" in masked:
        raise ValueError(f"{pred!r} was trained without the image branch; call it with images=None")
    # (an image branch switched off by `mask` was handled above, like images=None)
    frames, (lead, _) = prepare_frames(images, calibration, pred, channel_axis=channel_axis,
                                       resample=resample)
    numeric = None
    if grain_features:
        from .grains.summarize import FEATURE_FACTORS

        if not _grain_feature_columns(numeric_cols):
            raise ValueError(f"this model was not trained with grain features: its numeric inputs are "
                             f"{numeric_cols or 'none'}, not {list(FEATURE_FACTORS)}")
        arr = np.asarray(images)
        flat = arr.reshape((-1,) + arr.shape[len(lead):])
        numeric = np.stack([grain_feature_factors(f if channel_axis is None else f.mean(-1), calibration)
                            for f in flat])
    elif numeric_cols:
        raise ValueError(f"this model needs numeric inputs {numeric_cols}; pass grain_features=True "
                         "when they are the grain feature factors")
    tshape = pred.tile_shape if tile else None
    padded, tiles = _plan(frames, tshape, overlap)
    bs = _default_batch(pred, batch_size)
    sums = np.zeros(len(frames), np.float64)
    wsums = np.zeros((len(frames), len(MODALITIES)), np.float64)
    counts = np.zeros(len(frames), np.int64)
    done = 0
    yield done, len(tiles)
    for chunk, batch in _batches(padded, tiles, tshape, bs):
        num = None if numeric is None else numeric[[t.frame for t in chunk]]
        with _ModalityMask(pred, masked):
            pce, w = _pce_forward(pred, pred.to_tensor(batch), comp, proc, num)
        for t, v, wv in zip(chunk, pce, w):
            sums[t.frame] += v
            wsums[t.frame] += wv
            counts[t.frame] += 1
        done += len(chunk)
        yield done, len(tiles)
    pce = (sums / counts).astype(np.float32).reshape(lead)
    weights = (wsums / counts[:, None]).astype(np.float32).reshape(lead + (len(MODALITIES),))
    return pce, weights


def predict_pce(images, calibration, model, *, composition=None, process=None, n_frames=None,
                grain_features=False, mask=(), device="auto", batch_size=None, overlap=0.25, tile=True,
                channel_axis=None, resample=True, amp=None, show_progressbar=False):
    """Power conversion efficiency predicted by PSC-Fusion from an SEM image, composition and process.

    Parameters
    ----------
    images : array_like or None
        ``(H, W)`` or ``(N, H, W)`` SEM frames; ``None`` runs the model with
        its image branch switched off (composition and process only).
    calibration : Calibration or None
        Calibration of the images (resampling to the model's pixel size).
    model : str, Path, Predictor or (module, card)
        A PSC-Fusion checkpoint (card task ``"regress-pce"``).
    composition, process : dict or pandas.Series, optional
        See :func:`encode_tabular`; unknown categories raise ``ValueError``
        naming the valid ones.
    n_frames : int, optional
        With ``images=None``: return this many (identical) values.
    grain_features : bool
        Segment every frame and pass the SPEC §3.1.7 feature factors as the
        model's numeric inputs (for models trained with them).
    mask : sequence of str
        Modalities to switch off (``"image"``, ``"composition"``,
        ``"process"``), for ablations; the model's own training mask always applies.
    device, batch_size, overlap, tile, channel_axis, resample, amp, show_progressbar
        As in :func:`classify`. Large frames are tiled and the tile
        predictions averaged.

    Returns
    -------
    pce : ndarray of float32 (or float for one image)
        In the card's target unit (%), de-standardised with the training
        target mean and SD from the card.
    fusion_weights : ndarray of float32, shape (..., 3)
        Mean fusion gate of the image, composition and process branches.
    """
    return run_steps(iter_predict_pce(images, calibration, model, composition=composition, process=process,
                                      n_frames=n_frames, grain_features=grain_features, mask=mask,
                                      device=device,
                                      batch_size=batch_size, overlap=overlap, tile=tile,
                                      channel_axis=channel_axis, resample=resample, amp=amp),
                     show_progressbar, desc="PCE")
