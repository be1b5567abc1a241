"""The predictor: a model on a device with its model card, loaded once per process.

:func:`get_predictor` turns whatever the caller has (a checkpoint path, a
ready :class:`Predictor`, a ``(module, card)`` pair) into a :class:`Predictor`.
Files are loaded once and kept in a small cache keyed by path, modification time
and device, so repeated calls (a stack frame by frame, a napari widget, a lazy
signal's dask blocks, learned segmentation of many frames) load the weights
only once. :meth:`Predictor.require_task` raises
:class:`~hyperspy_mmdl.errors.WrongTaskError` naming the model file and both
tasks when a model is used for a task it was not trained for.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path
from typing import Iterator

import numpy as np

from ..checkpoint import check_task
from .device import select_device

__all__ = ["Predictor", "get_predictor", "clear_cache", "run_steps", "default_batch", "main_output"]


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

    Examples
    --------
    >>> import torch
    >>> from hyperspy_mmdl.checkpoint import ModelCard
    >>> p = Predictor(torch.nn.Identity(), ModelCard("vgg_grain", input_size=[1, 224, 224],
    ...                                              class_names=["small", "large"]), device="cpu")
    >>> p.tile_shape, p.class_names, p.device.type
    ((224, 224), ['small', 'large'], 'cpu')
    """

    def __init__(self, model, card, device="auto", amp=None, path=None):
        from ..checkpoint import ModelCard

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

    @property
    def name(self) -> str:
        """The model file's name, or the architecture for a model given in memory."""
        return self.path.name if self.path is not None else f"<{self.card.architecture} in memory>"

    def require_task(self, task, use: str) -> "Predictor":
        """Raise :class:`~hyperspy_mmdl.errors.WrongTaskError` unless the card's task is ``task``.

        Parameters
        ----------
        task : str or tuple of str
            The task the caller needs (a :data:`hyperspy_mmdl.checkpoint.TASKS` name), or the
            tasks it accepts.
        use : str
            What the caller does, for the message (``"classify"``, ``"denoise"`` ...).

        Returns
        -------
        Predictor
            ``self``, for chaining.

        Examples
        --------
        >>> import torch
        >>> from hyperspy_mmdl.checkpoint import ModelCard
        >>> p = Predictor(torch.nn.Identity(), ModelCard("vgg_grain", task="classify"), device="cpu")
        >>> p.require_task("denoise", "denoise")
        Traceback (most recent call last):
        ...
        hyperspy_mmdl.errors.WrongTaskError: <vgg_grain in memory> is a 'classify' model; denoise needs a 'denoise' model
        """
        check_task(self.card, task, use, self.name)
        return self

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
    """Forget every model loaded by :func:`get_predictor` (the next call reads the file again).

    Examples
    --------
    >>> clear_cache()
    """
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

    Examples
    --------
    >>> import tempfile, torch
    >>> from hyperspy_mmdl import models
    >>> from hyperspy_mmdl.checkpoint import ModelCard, save_checkpoint
    >>> net = models.create("n2v_unet", base_channels=4, depth=1)
    >>> path = save_checkpoint(Path(tempfile.mkdtemp()) / "n2v.pt", net,
    ...                        ModelCard("n2v_unet", config=net.default_cfg["config"], task="denoise"))
    >>> get_predictor(path, device="cpu") is get_predictor(str(path), device="cpu")
    True
    """
    if isinstance(model, Predictor):
        return model
    if isinstance(model, (tuple, list)) and len(model) == 2:
        return Predictor(model[0], model[1], device=device, amp=amp)
    if isinstance(model, (str, Path)):
        from ..models.pretrained import resolve

        path = resolve(Path(model).expanduser()).resolve()
        dev = select_device(device)
        key = (str(path), path.stat().st_mtime_ns, str(dev), amp)
        with _CACHE_LOCK:
            if key in _CACHE:
                _CACHE.move_to_end(key)
                return _CACHE[key]
        from ..checkpoint import load_checkpoint

        net, card = load_checkpoint(path, device=dev)
        pred = Predictor(net, card, device=dev, amp=amp, path=path)
        with _CACHE_LOCK:
            _CACHE[key] = pred
            while len(_CACHE) > _CACHE_SIZE:
                _CACHE.popitem(last=False)
        return pred
    raise TypeError("model must be a checkpoint path, a Predictor or a (module, card) pair, "
                    f"got {type(model).__name__}")



def run_steps(steps: Iterator, show_progressbar: bool | None = None, desc: str = "") -> object:
    """Drain a ``iter_*`` generator (progress pairs) and return its result.

    Parameters
    ----------
    steps : generator
        Yields ``(done, total)``; its return value is the result.
    show_progressbar : bool or None
        Show a tqdm bar; ``None`` follows HyperSpy's preference when HyperSpy is
        imported, else no bar.

    Examples
    --------
    >>> def steps():
    ...     yield 0, 2
    ...     yield 2, 2
    ...     return "done"
    >>> run_steps(steps())
    'done'
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


def default_batch(predictor: Predictor, batch_size: int | None) -> int:
    """Tiles per forward pass: ``batch_size``, or 32 on CUDA and 8 elsewhere.

    Examples
    --------
    >>> import torch
    >>> from hyperspy_mmdl.checkpoint import ModelCard
    >>> p = Predictor(torch.nn.Identity(), ModelCard("vgg_grain"), device="cpu")
    >>> default_batch(p, None), default_batch(p, 3)
    (8, 3)
    """
    if batch_size is not None:
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        return int(batch_size)
    return 32 if predictor.device.type == "cuda" else 8


def main_output(out):
    """The main output of a model that may return ``(output, attention)`` or a dict with ``"logits"``.

    Examples
    --------
    >>> main_output(("y", {"attention": 1})), main_output({"logits": "y"})
    ('y', 'y')
    """
    if isinstance(out, (tuple, list)):
        out = out[0]
    if isinstance(out, dict):
        out = out.get("logits", next(iter(out.values())))
    return out
