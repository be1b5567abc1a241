"""Per-image normalisation (SPEC §3.2) and augmentations for training.

Arrays are ``(H, W)`` or ``(C, H, W)`` float32. Augmentations take a
:class:`numpy.random.Generator` so a seeded run is reproducible; the
segmentation variants apply the same geometric change to an image and its mask.
"""

from __future__ import annotations

import numpy as np

from ..preprocess.normalize import METHODS
from ..preprocess.normalize import normalize as _normalize
from ..preprocess.resample import resize  # the one resampler (re-exported for the data loaders)

__all__ = [
    "NORMALIZATIONS",
    "normalize",
    "dihedral",
    "random_dihedral",
    "random_crop",
    "center_crop",
    "pad_to",
    "random_contrast",
    "resize",
    "Augment",
]

NORMALIZATIONS = METHODS  # the names accepted by a model card's ``normalization``


def normalize(image, method: str = "minmax") -> np.ndarray:
    """Replace NaN/inf by the median, cast to float32 and normalise one model input as a whole.

    This is :func:`hyperspy_mmdl.preprocess.normalize.normalize` with the
    statistics taken over the whole ``(H, W)`` or ``(C, H, W)`` array (the
    training data loaders' convention, also applied at inference).

    Parameters
    ----------
    image : array_like
        ``(H, W)`` or ``(C, H, W)``.
    method : {"minmax", "zscore", "clahe", "none"}
        ``minmax`` → [0, 1] (a constant image → 0); ``zscore`` → zero mean, unit
        SD; ``clahe`` → :func:`skimage.exposure.equalize_adapthist` with
        ``clip_limit=0.01`` on the min-max-scaled image (per channel).

    Examples
    --------
    >>> normalize(np.array([[[0.0, 2.0]], [[4.0, 8.0]]]), "minmax").ravel().tolist()
    [0.0, 0.25, 0.5, 1.0]
    """
    x = np.asarray(image)
    return _normalize(x, method, frame_ndim=max(x.ndim, 2))


def dihedral(image: np.ndarray, k: int) -> np.ndarray:
    """One of the 8 symmetries of the square: ``k % 4`` quarter turns, flipped when ``k >= 4``."""
    out = np.rot90(image, k % 4, axes=(-2, -1))
    if k % 8 >= 4:
        out = out[..., ::-1]
    return np.ascontiguousarray(out)


def random_dihedral(rng: np.random.Generator, *arrays):
    """The same random dihedral transform applied to every array."""
    k = int(rng.integers(8))
    out = tuple(dihedral(a, k) for a in arrays)
    return out if len(out) > 1 else out[0]


def pad_to(image: np.ndarray, size: int, mode: str = "reflect") -> np.ndarray:
    """Pad the last two axes up to at least ``size`` (reflect, as microstructures continue)."""
    h, w = image.shape[-2:]
    ph, pw = max(size - h, 0), max(size - w, 0)
    if not ph and not pw:
        return image
    pad = [(0, 0)] * (image.ndim - 2) + [(ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2)]
    if mode == "reflect" and (ph >= h or pw >= w):
        mode = "symmetric" if (ph < 2 * h and pw < 2 * w) else "wrap"
    return np.pad(image, pad, mode=mode)


def random_crop(rng: np.random.Generator, size: int, *arrays):
    """The same random ``size × size`` window of every array (padded first if smaller)."""
    arrays = [pad_to(a, size) for a in arrays]
    h, w = arrays[0].shape[-2:]
    r = int(rng.integers(h - size + 1))
    c = int(rng.integers(w - size + 1))
    out = tuple(np.ascontiguousarray(a[..., r:r + size, c:c + size]) for a in arrays)
    return out if len(out) > 1 else out[0]


def center_crop(image: np.ndarray, size: int) -> np.ndarray:
    image = pad_to(image, size)
    h, w = image.shape[-2:]
    r, c = (h - size) // 2, (w - size) // 2
    return np.ascontiguousarray(image[..., r:r + size, c:c + size])


def random_contrast(rng: np.random.Generator, image: np.ndarray, amount: float) -> np.ndarray:
    """Scale deviations from the mean by a factor in ``[1 − amount, 1 + amount]``."""
    if amount <= 0:
        return image
    f = float(rng.uniform(1 - amount, 1 + amount))
    m = image.mean()
    return ((image - m) * f + m).astype(np.float32)


class Augment:
    """Training augmentation from a recipe's ``[augment]`` section.

    Parameters
    ----------
    size : int
        Output side; with ``random_crop`` a random window (after an optional
        random zoom), otherwise a centre crop.
    dihedral : bool
        Random element of the dihedral group (flips and 90° turns, ×8).
    hflip : bool
        Random horizontal flip (p = 0.5) when ``dihedral`` is off.
    random_crop : bool
        Random window instead of the centre.
    contrast : float
        Random contrast ±``contrast`` (image only).
    zoom : float
        Random zoom ±``zoom`` before cropping (bilinear; masks nearest).
    """

    def __init__(self, size: int, dihedral: bool = False, hflip: bool = False, random_crop: bool = False,
                 contrast: float = 0.0, zoom: float = 0.0, **unused):
        self.size = int(size)
        self.dihedral = bool(dihedral)
        self.hflip = bool(hflip)
        self.random_crop = bool(random_crop)
        self.contrast = float(contrast)
        self.zoom = float(zoom)

    def __call__(self, rng: np.random.Generator, image: np.ndarray, mask: np.ndarray | None = None):
        arrays = [image] if mask is None else [image, mask]
        if self.zoom > 0:
            f = float(rng.uniform(1 - self.zoom, 1 + self.zoom))
            h, w = image.shape[-2:]
            shape = (max(int(round(h * f)), 1), max(int(round(w * f)), 1))
            arrays = [resize(arrays[0], shape, 1)] + [resize(m, shape, 0) for m in arrays[1:]]
        if self.random_crop:
            arrays = list(random_crop(rng, self.size, *arrays)) if len(arrays) > 1 else [
                random_crop(rng, self.size, arrays[0])]
        else:
            arrays = [center_crop(a, self.size) for a in arrays]
        if self.dihedral:
            k = int(rng.integers(8))
            arrays = [dihedral(a, k) for a in arrays]
        elif self.hflip and rng.random() < 0.5:
            arrays = [np.ascontiguousarray(a[..., ::-1]) for a in arrays]
        arrays[0] = random_contrast(rng, arrays[0], self.contrast)
        return arrays[0] if mask is None else (arrays[0], arrays[1])
