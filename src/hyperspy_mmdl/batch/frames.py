"""Reading frames lazily: a once-per-process cache of opened inputs, one frame at a time.

Every process (the in-process loop, each dask.distributed worker) keeps the last
few inputs it opened (:func:`hyperspy_mmdl.io.load` with ``lazy=True``), so reading
a frame reads only that frame's bytes.
"""

from __future__ import annotations

import os
import threading
import warnings
from typing import Any

import numpy as np

from ..calibration import Calibration

_OPEN: dict[tuple, Any] = {}
_OPEN_LOCK = threading.Lock()
_OPEN_MAX = 4


def _open(path: str, checksum: str):
    """The lazily opened input (``io.load(..., lazy=True)``), cached per process."""
    key = (path, checksum)
    with _OPEN_LOCK:
        img = _OPEN.get(key)
        if img is None:
            from ..io import load

            with warnings.catch_warnings():  # the plan read this file already and kept its warnings
                warnings.simplefilter("ignore", UserWarning)
                img = load(path, lazy=True)
            while len(_OPEN) >= _OPEN_MAX:
                _OPEN.pop(next(iter(_OPEN)))
            _OPEN[key] = img
        return img


def _frames_view(data, rgb: bool = False):
    """``data`` as ``(n_frames, y, x[, 3])`` (navigation axes flattened), still lazy."""
    nd = 3 if rgb else 2
    if data.ndim == nd:
        return data[None]
    if data.ndim < nd:
        raise ValueError(f"not an image: the data has shape {tuple(data.shape)}")
    return data.reshape((-1,) + tuple(data.shape[-nd:]))


def read_frame(path: str | os.PathLike, frame: int, checksum: str = "") -> tuple[np.ndarray, Calibration]:
    """Read one frame of an input lazily (only that frame's bytes are read).

    Returns the frame (numpy) and the calibration of the whole input.
    """
    img = _open(os.fspath(path), checksum)
    frames = _frames_view(img.data, img.rgb)
    if not 0 <= frame < frames.shape[0]:
        raise IndexError(f"{path}: frame {frame} out of range (the input has {frames.shape[0]})")
    block = frames[frame]
    if hasattr(block, "compute"):
        block = block.compute(scheduler="synchronous")
    return np.asarray(block), img.calibration
