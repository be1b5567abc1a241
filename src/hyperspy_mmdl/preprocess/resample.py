"""Resampling of micrographs: to a shape, and to a physical pixel size.

* :func:`resize` — the last two axes to a given shape (linear by default,
  Gaussian anti-aliasing when shrinking); the one resampler used by the
  training data loaders (:mod:`hyperspy_mmdl.train.transforms`), the inference
  predictor and learned segmentation;
* :func:`resample_to_pixel_size` — to the pixel size a model was trained at,
  using the image's :class:`~hyperspy_mmdl.calibration.Calibration`, so that a
  10 nm/px and a 33 nm/px image of the same film reach a model at the same
  physical scale.

(The bicubic degradation of the super-resolution protocol,
:func:`hyperspy_mmdl.preprocess.superres.downsample`, is a different, fixed
operation and stays there.)
"""

from __future__ import annotations

import warnings

import numpy as np

from ..calibration import PIXEL, Calibration, normalize_unit

__all__ = ["resize", "resample_to_pixel_size"]


def resize(image: np.ndarray, shape, order: int = 1, mode: str = "reflect") -> np.ndarray:
    """Resize the last two axes with :func:`skimage.transform.resize`.

    Parameters
    ----------
    image : ndarray
        ``(..., H, W)``.
    shape : (int, int)
        New ``(H, W)``.
    order : int
        Spline order: 0 nearest (label masks), 1 linear (default), 3 cubic.
        Anti-aliased with a Gaussian when shrinking and ``order > 0``.
    mode : str
        How values beyond the border are filled (:func:`numpy.pad` names);
        ``"edge"`` for model output maps.

    Returns
    -------
    ndarray
        ``(..., *shape)`` in the input dtype; the input itself when the shape
        is already right.

    Examples
    --------
    >>> resize(np.arange(16, dtype=np.float32).reshape(4, 4), (2, 2)).shape
    (2, 2)
    >>> resize(np.array([[1, 2], [3, 4]], np.int32), (4, 4), order=0)[0].tolist()
    [1, 1, 2, 2]
    """
    from skimage.transform import resize as _resize

    image = np.asarray(image)
    shape = tuple(int(s) for s in shape)
    if image.shape[-2:] == shape:
        return image
    full = image.shape[:-2] + shape
    aa = order > 0 and (image.shape[-2] > shape[0] or image.shape[-1] > shape[1])
    return _resize(image, full, order=order, mode=mode, preserve_range=True,
                   anti_aliasing=aa).astype(image.dtype)


def resample_to_pixel_size(image: np.ndarray, calibration: Calibration | None, pixel_size: float | None,
                           unit: str = "nm") -> tuple[np.ndarray, Calibration | None]:
    """Resample an image so that its pixels have a given physical size.

    Parameters
    ----------
    image : ndarray
        ``(H, W)`` or ``(C, H, W)``.
    calibration : Calibration or None
        Calibration of the image axes.
    pixel_size : float or None
        Target pixel size in ``unit`` (a model card's ``pixel_size``). ``None``
        leaves the image unchanged.
    unit : str
        Unit of ``pixel_size``.

    Returns
    -------
    image : ndarray of float32
        Resampled with :func:`resize` (linear, anti-aliased when shrinking).
    calibration : Calibration or None
        The calibration of the resampled image (same physical extent), in ``unit``.

    Warns
    -----
    UserWarning
        A pixel size is asked for but the image is not calibrated: the image
        is used at its own pixel size.

    Examples
    --------
    >>> cal = Calibration.from_pixel_size(20.0, "nm")
    >>> out, cal2 = resample_to_pixel_size(np.zeros((100, 60)), cal, 40.0, "nm")
    >>> out.shape, cal2.pixel_size_in("nm")
    ((50, 30), (40.0, 40.0))
    """
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
    cal = calibration.to_unit(normalize_unit(unit))
    if (nh, nw) == (h, w):
        return x, cal
    out = resize(x, (nh, nw), order=1).astype(np.float32, copy=False)
    return out, cal.resampled((nh / h, nw / w))
