"""Grain analysis: segmentation, ImageJ-exact measurement, summary statistics, ASTM E112.

>>> from hyperspy_mmdl.grains import segment, measure, summarize
>>> labels = segment(image, calibration, method="auto")          # doctest: +SKIP
>>> table = measure(labels, calibration)                          # doctest: +SKIP
>>> stats = summarize(table, calibration, labels=labels)          # doctest: +SKIP
"""

from __future__ import annotations

from .measure import measure  # light: numba is imported on first call
from .segment import segment
from .summarize import summarize

__all__ = ["segment", "measure", "summarize"]
