"""HyperSpy signal classes: ``"microstructure"`` micrographs and ``"grain_labels"`` label images.

Every method here is a thin wrapper: it takes the frames and the calibration from
the signal, calls one compute function of the core (``grains``, ``inference``,
``preprocess`` ...) and puts the result back into a signal with the axes carried
over. Stacks are processed frame by frame with :meth:`~hyperspy.signal.BaseSignal.map`,
lazily for lazy signals.
"""

from __future__ import annotations

from hyperspy._signals.lazy import LazySignal
from hyperspy.signals import Signal2D

from .calibration import Calibration

__all__ = ["Microstructure", "LazyMicrostructure", "GrainLabels", "LazyGrainLabels"]


class Microstructure(Signal2D):
    """A micrograph of a material's microstructure (SEM, TEM, optical), one image or a stack.

    Load one with ``hs.load("film.dm4", signal_type="microstructure")`` or turn any
    ``Signal2D`` into one with ``s.set_signal_type("microstructure")``.
    """

    _signal_type = "microstructure"
    _alias_signal_types = ["micrograph", "SEM_micrograph"]
    _lazy = False

    @property
    def calibration(self) -> Calibration:
        """The :class:`~hyperspy_mmdl.calibration.Calibration` of the data array (array order)."""
        return Calibration.from_signal(self)


class LazyMicrostructure(LazySignal, Microstructure):
    """Lazy twin of :class:`Microstructure` (data in dask, computed frame by frame)."""

    _lazy = True


class GrainLabels(Signal2D):
    """Integer grain label images (0 = background or boundary), one per frame."""

    _signal_type = "grain_labels"
    _alias_signal_types = []
    _lazy = False

    @property
    def calibration(self) -> Calibration:
        return Calibration.from_signal(self)


class LazyGrainLabels(LazySignal, GrainLabels):
    """Lazy twin of :class:`GrainLabels`."""

    _lazy = True
