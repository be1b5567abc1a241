"""Apply a batched array function to every frame of a HyperSpy signal, lazily by dask blocks.

HyperSpy's :meth:`~hyperspy.signal.BaseSignal.map` calls its function once per
frame, which wastes a model's batching. :func:`apply_to_frames` instead hands
the function a whole block of frames ``(n, *signal_shape)``: the whole stack
for an in-memory signal, one dask block of frames at a time for a lazy one
(the pattern of kikuchipy's ``fft_filter``), and returns a numpy or dask array
``(*navigation_shape, *out_signal_shape)``. :func:`navigation_axes_dicts` and
:func:`make_signal` rebuild a result signal with the navigation axes carried over.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

__all__ = ["apply_to_frames", "navigation_axes_dicts", "make_signal"]


def _show(show_progressbar):
    if show_progressbar is None:
        from hyperspy.defaults_parser import preferences

        return bool(preferences.General.show_progressbar)
    return bool(show_progressbar)


def apply_to_frames(signal, fn: Callable, out_signal_shape: tuple, *, dtype=np.float32,
                    show_progressbar=None, lazy_output=None, frames_per_block: int = 8,
                    colour: str = "luminance"):
    """Run ``fn`` on blocks of frames of ``signal``.

    Parameters
    ----------
    signal : hyperspy.signal.BaseSignal
    fn : callable
        ``fn(frames, show_progressbar) -> array`` with ``frames`` of shape
        ``(n, *signal_shape)`` (array order) and a result of shape
        ``(n, *out_signal_shape)``.
    out_signal_shape : tuple of int
        Shape of the result of one frame (``()`` for a scalar).
    dtype : numpy dtype
        Result dtype.
    show_progressbar : bool or None
        ``None`` follows HyperSpy's preference. In-memory signals pass it to
        ``fn``; lazy computations show dask's progress bar.
    lazy_output : bool or None
        Return a dask array. ``None``: lazy for lazy signals.
    frames_per_block : int
        Frames per dask block when the signal's navigation chunks are smaller
        (one frame per chunk would run the model on batches of one frame).
    colour : {"luminance", "keep"}
        What ``fn`` gets of a colour signal (HyperSpy's structured ``rgb8`` ...),
        by the colour policy of :mod:`hyperspy_mmdl.preprocess.color`: the
        BT.601 luminance (float32), or ``(n, H, W, 3)`` channels (segmentation).

    Returns
    -------
    numpy.ndarray or dask.array.Array
        ``(*navigation_shape, *out_signal_shape)`` in array order.
    """
    am = signal.axes_manager
    nav_shape = tuple(am._navigation_shape_in_array)
    sig_shape = tuple(am._signal_shape_in_array)
    out_signal_shape = tuple(int(n) for n in out_signal_shape)
    data = signal._data_aligned_with_axes
    lazy = bool(getattr(signal, "_lazy", False))
    if lazy_output is None:
        lazy_output = lazy
    show = _show(show_progressbar)
    nn, ns = len(nav_shape), len(sig_shape)

    def run_block(block, show_bar=False):
        frames = np.asarray(block).reshape((-1,) + sig_shape)
        if frames.dtype.names is not None:  # colour
            from .preprocess.color import as_channels, luminance

            frames = luminance(frames) if colour == "luminance" else as_channels(frames)
        out = np.asarray(fn(frames, show_bar), dtype=dtype)
        return out.reshape(block.shape[:nn] + out_signal_shape)

    if not lazy and not lazy_output:
        return run_block(np.asarray(data), show)

    import dask.array as da

    if lazy:
        darr = data
    else:
        darr = da.from_array(np.asarray(data), chunks=(1,) * nn + sig_shape if nn else sig_shape)
    chunks = {nn + i: -1 for i in range(ns)}  # whole frames in every block
    if nn:
        per_block = int(np.prod([max(c) for c in darr.chunks[:nn]]))
        if per_block < frames_per_block:
            last = nn - 1
            chunks[last] = min(nav_shape[last], max(max(darr.chunks[last]),
                                                    frames_per_block * max(darr.chunks[last]) // per_block))
    darr = darr.rechunk(chunks)
    if out_signal_shape == sig_shape:
        res = darr.map_blocks(run_block, dtype=dtype)
    else:
        res = darr.map_blocks(
            run_block, dtype=dtype, drop_axis=list(range(nn, nn + ns)),
            new_axis=list(range(nn, nn + len(out_signal_shape))) or None,
            chunks=darr.chunks[:nn] + tuple((n,) for n in out_signal_shape),
        )
    if lazy_output:
        return res
    if show:
        from dask.diagnostics import ProgressBar

        with ProgressBar():
            return res.compute()
    return res.compute()


def navigation_axes_dicts(signal) -> list[dict]:
    """Axis dicts of the navigation axes of ``signal``, in array order."""
    am = signal.axes_manager
    return [d for d in am._get_axes_dicts() if d.get("navigate")]


def signal_axes_dicts(signal) -> list[dict]:
    """Axis dicts of the signal axes of ``signal``, in array order."""
    return [d for d in signal.axes_manager._get_axes_dicts() if not d.get("navigate")]


def make_signal(data, axes: list[dict], *, kind: str = "1d", title: str = ""):
    """A HyperSpy signal (lazy when ``data`` is a dask array) with ``axes`` (array order).

    ``kind``: ``"base"`` (every axis navigation, e.g. one value per frame),
    ``"1d"`` (last axis is the signal) or ``"2d"`` (last two axes).
    """
    import hyperspy.api as hs

    lazy = type(data).__module__.startswith("dask")
    n_sig = {"base": 0, "1d": 1, "2d": 2}[kind]
    axes = [dict(a) for a in axes]
    for i, a in enumerate(axes):
        a["navigate"] = i < len(axes) - n_sig
        a.pop("_type", None) if a.get("_type") == "UniformDataAxis" else None
    if kind == "base":
        if data.ndim == 0:
            data = data.reshape(1)
            axes = [dict(name="frame", size=1, navigate=False)]
        cls = hs.signals.BaseSignal
        s = cls(data, axes=axes)
        if axes and axes[0].get("navigate"):
            s = s.T if s.axes_manager.signal_dimension else s
    else:
        cls = {"1d": hs.signals.Signal1D, "2d": hs.signals.Signal2D}[kind]
        s = cls(data, axes=axes)
    if lazy:
        s = s.as_lazy()
    s.metadata.General.title = title
    return s
