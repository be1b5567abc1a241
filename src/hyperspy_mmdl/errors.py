"""One error hierarchy for napari-mmdl.

Every error the package raises on purpose derives from :class:`MMDLError`, so a
caller (a batch run, a napari notification, the command line) can tell *our*
well-worded errors from bugs, and tell the kinds apart:

``MMDLError``
    ``ReadError`` (a file cannot be read as a micrograph; also a ``ValueError``)
    ``CalibrationError`` (units or pixel sizes that cannot be used; also a ``ValueError``)
    ``CheckpointError`` (a file is not a usable napari-mmdl model; also a ``ValueError``)
    ``WrongTaskError`` (a model of another task than the call needs; also a ``ValueError``)
    ``ImageError`` (an image that cannot be analysed: empty, too small, no finite pixel; also a ``ValueError``)

Each message names the file (or the model) and the problem.

Example
-------
>>> from hyperspy_mmdl.errors import MMDLError, ReadError
>>> try:
...     raise ReadError("film.dm4: the file is empty (0 bytes)")
... except MMDLError as err:
...     print(type(err).__name__, err)
ReadError film.dm4: the file is empty (0 bytes)
"""

from __future__ import annotations

__all__ = ["MMDLError", "ReadError", "CalibrationError", "CheckpointError", "WrongTaskError", "ImageError"]


class MMDLError(Exception):
    """Base class of every error napari-mmdl raises on purpose."""


class ReadError(MMDLError, ValueError):
    """A file cannot be read as a micrograph; the message names the file and the problem."""


class CalibrationError(MMDLError, ValueError):
    """A calibration (pixel size, unit) that cannot be used, e.g. a length unit pint does not know."""


class CheckpointError(MMDLError, ValueError):
    """A file is not a readable napari-mmdl checkpoint; the message names the file."""


class WrongTaskError(MMDLError, ValueError):
    """A model of another task than the call needs (a segmenter given to ``classify`` ...)."""


class ImageError(MMDLError, ValueError):
    """An image that cannot be analysed: empty, too small to hold a grain, or without a finite pixel."""
