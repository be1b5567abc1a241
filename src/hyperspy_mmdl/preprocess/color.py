"""The colour policy: how RGB(A) micrographs are analysed, on every route.

Micrographs arrive in colour as ``(H, W, 3|4)`` arrays (napari, PIL-style
readers), as HyperSpy's structured ``rgb8`` / ``rgba8`` / ``rgb16`` / ``rgba16``
dtypes (``hs.load`` of a PNG, JPEG or colour TIFF), or as grey images stored in
three equal channels (many SEM exports). One policy applies everywhere:

* **Grey** is the ITU-R BT.601 luminance ``0.299 R + 0.587 G + 0.114 B``
  (float32, the channels' own scale); alpha is dropped. The data bar, the
  normalisation, denoising, the deep models and everything shown as an image
  use it.
* **Colour** is kept for segmentation, which tells tint-etched grains apart by
  colour (:func:`hyperspy_mmdl.grains.segment`, ``lines="edge"``), unless the
  channels are equal (a grey image stored as RGB: then it is grey), or the
  grey image was denoised or normalised first (those work on the luminance).

:func:`split_colour` is the one place that applies it.
"""

from __future__ import annotations

import numpy as np

__all__ = ["LUMA", "is_colour", "as_channels", "luminance", "split_colour"]

#: ITU-R BT.601 luma weights of R, G and B.
LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)
_FIELDS = ("R", "G", "B")


def _structured_rgb(a: np.ndarray) -> bool:
    return a.dtype.names is not None and all(c in a.dtype.names for c in _FIELDS)


def is_colour(image, rgb_axis: bool | None = None) -> bool:
    """True for an RGB(A) image: a structured RGB dtype, or a last axis of 3 or 4 channels.

    ``rgb_axis=False`` says the array has no channel axis (a stack of 3 or 4
    frames is not colour); ``None`` guesses from the shape (``ndim == 3`` and a
    last axis of 3 or 4).
    """
    dt = getattr(image, "dtype", None)
    if dt is not None and dt.names is not None:
        return all(c in dt.names for c in _FIELDS)
    if rgb_axis is not None:
        return bool(rgb_axis)
    shape = np.shape(image)
    return len(shape) == 3 and shape[-1] in (3, 4)


def as_channels(image) -> np.ndarray:
    """A colour image as a plain ``(..., 3)`` array of its R, G, B channels (alpha dropped).

    Structured RGB dtypes become their fields stacked on a new last axis; a
    ``(..., 4)`` array loses its alpha channel.

    Example
    -------
    >>> rgb = np.zeros((2, 2), dtype=[("R", "u1"), ("G", "u1"), ("B", "u1")])
    >>> as_channels(rgb).shape
    (2, 2, 3)
    """
    a = np.asarray(image)
    if a.dtype.names is not None:
        if not _structured_rgb(a):
            raise ValueError(f"unsupported structured dtype {a.dtype}: expected R, G, B fields")
        return np.stack([a[c] for c in _FIELDS], axis=-1)
    if a.shape[-1] not in (3, 4):
        raise ValueError(f"expected a colour image with 3 or 4 channels last, got shape {a.shape}")
    return a[..., :3]


def luminance(rgb) -> np.ndarray:
    """BT.601 luminance (float32) of a ``(..., 3)`` array or a structured RGB array."""
    return as_channels(rgb).astype(np.float32) @ LUMA


def split_colour(image, rgb_axis: bool | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """Grey and colour versions of one image, by the colour policy of this module.

    Parameters
    ----------
    image : array_like
        ``(H, W)`` grey, ``(H, W, 3|4)`` colour, or ``(H, W)`` of a structured
        RGB(A) dtype; any real dtype.
    rgb_axis : bool, optional
        Whether the last axis is a channel axis (``None``: guess from the shape).

    Returns
    -------
    grey : numpy.ndarray
        ``(H, W)``: the luminance (float32) of a colour image, else the image
        itself (its dtype kept; bool becomes uint8).
    rgb : numpy.ndarray or None
        ``(H, W, 3)`` float32 channels of a colour image whose channels differ;
        None for grey images and grey stored as RGB.

    Example
    -------
    >>> grey, rgb = split_colour(np.dstack([np.eye(4) * 255] * 3).astype(np.uint8))
    >>> grey.dtype, rgb is None
    (dtype('float32'), True)
    """
    a = np.asarray(image)
    if not is_colour(a, rgb_axis):
        if a.dtype == bool:
            a = a.astype(np.uint8)
        return a, None
    ch = as_channels(a).astype(np.float32)
    grey = ch @ LUMA
    if np.array_equal(ch[..., 0], ch[..., 1]) and np.array_equal(ch[..., 0], ch[..., 2]):
        return grey, None
    return grey, ch
