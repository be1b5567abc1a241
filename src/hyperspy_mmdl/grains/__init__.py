"""Grain analysis: segmentation, ImageJ-exact measurement, summary statistics, ASTM E112.

>>> from hyperspy_mmdl.grains import segment, measure, summarize
>>> labels = segment(image, calibration, method="auto")          # doctest: +SKIP
>>> table = measure(labels, calibration)                          # doctest: +SKIP
>>> stats = summarize(table, calibration, labels=labels)          # doctest: +SKIP
"""

from __future__ import annotations

from .segment import segment
from .summarize import summarize

__all__ = ["segment", "measure", "summarize"]


def __getattr__(name):
    # measure lives in its own module (ImageJ-exact measurement); imported on first use
    if name == "measure":
        from .measure import measure

        return measure
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
