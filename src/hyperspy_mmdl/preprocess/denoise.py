"""Denoising of micrographs: classical filters and self-supervised Noise2Void.

* :func:`gaussian`, :func:`median`, :func:`nl_means` — scikit-image / SciPy
  filters; sizes in pixels, or in physical units with a calibration
  (``sigma="20 nm"``);
* :func:`train_noise2void` — trains a small U-Net (``n2v_unet``) on the user's
  own noisy image or stack with blind-spot masking (Krull et al. 2019): a few
  random pixels of each patch are replaced by a random neighbour and the loss
  is the squared error at those pixels only, so the net cannot learn the
  identity and no clean target is needed; returns a :class:`Denoiser`;
* :func:`denoise` — any of them by name, frame by frame for stacks.

Images are float32 in and out; intensities are kept (Noise2Void standardises
with the training data's mean and standard deviation and scales back).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..checkpoint import runner
from .normalize import clean_nonfinite

__all__ = [
    "METHODS",
    "Denoiser",
    "denoise",
    "estimate_sigma",
    "gaussian",
    "load_denoiser",
    "median",
    "nl_means",
    "train_noise2void",
]

METHODS = ("gaussian", "median", "nl_means", "noise2void")


def _to_px(value, calibration, name):
    if isinstance(value, str):
        import re

        from ..calibration import convert_length

        m = re.fullmatch(r"\s*([0-9.eE+-]+)\s*(\S+)?\s*", value)
        if not m:
            raise ValueError(f"{name}: cannot read a length from {value!r}")
        v, unit = float(m.group(1)), m.group(2)
        if unit in (None, "px", "pixel", "pixels"):
            return v
        if calibration is None or not calibration.is_calibrated:
            raise ValueError(f"{name}={value!r} is a physical length but the image is not calibrated; "
                             "give it in pixels")
        return convert_length(v, unit, calibration.unit) / float(np.mean(calibration.pixel_size))
    v = float(value)
    if not np.isfinite(v) or v < 0:
        raise ValueError(f"{name} must be a non-negative number, got {value!r}")
    return v


def _per_frame(image, fn):
    a = clean_nonfinite(image)
    frames = a.reshape((-1,) + a.shape[-2:])
    return np.stack([np.asarray(fn(f), dtype=np.float32) for f in frames]).reshape(a.shape)


def gaussian(image, sigma=1.0, calibration=None) -> np.ndarray:
    """Gaussian filter of standard deviation ``sigma`` (pixels, or ``"20 nm"`` with a calibration)."""
    from scipy import ndimage as ndi

    s = _to_px(sigma, calibration, "sigma")
    return _per_frame(image, lambda f: ndi.gaussian_filter(f, s, mode="reflect"))


def median(image, size=3, calibration=None) -> np.ndarray:
    """Median filter over a ``size`` × ``size`` window (odd pixels, or a length with a calibration)."""
    from scipy import ndimage as ndi

    n = round(_to_px(size, calibration, "size"))
    if n < 1:
        raise ValueError(f"size must be at least 1 pixel, got {size!r}")
    return _per_frame(image, lambda f: ndi.median_filter(f, size=n, mode="reflect"))


def estimate_sigma(image) -> float:
    """Standard deviation of additive Gaussian noise, Immerkær's (1996) fast estimator.

    ``σ = sqrt(π/2) · Σ|I ∗ N| / (6 (W−2)(H−2))`` with the Laplacian-difference
    kernel ``N = [[1, −2, 1], [−2, 4, −2], [1, −2, 1]]`` (no PyWavelets needed).
    """
    from scipy.signal import convolve2d

    f = np.asarray(image, dtype=np.float64)
    if f.ndim != 2 or min(f.shape) < 3:
        raise ValueError(f"estimate_sigma needs a 2-D image of at least 3×3 px, got shape {f.shape}")
    kernel = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], dtype=np.float64)
    r = convolve2d(f, kernel, mode="valid")
    h, w = f.shape
    return float(np.sqrt(np.pi / 2) * np.abs(r).sum() / (6 * (w - 2) * (h - 2)))


def nl_means(image, h: float | None = None, patch_size: int = 5, patch_distance: int = 6,
             sigma: float | None = None) -> np.ndarray:
    """Non-local means (``skimage.restoration.denoise_nl_means``, fast mode).

    Parameters
    ----------
    image : array_like
    h : float, optional
        Cut-off; default ``0.8 σ`` with σ the noise level estimated by
        with :func:`estimate_sigma` (or ``sigma``).
    patch_size, patch_distance : int
        Patch side and search radius in pixels.
    sigma : float, optional
        Known noise standard deviation.
    """
    from skimage.restoration import denoise_nl_means

    def one(f):
        s = estimate_sigma(f) if sigma is None else float(sigma)
        hh = 0.8 * s if h is None else float(h)
        if hh <= 0:
            return f
        return denoise_nl_means(f, h=hh, sigma=s, patch_size=patch_size, patch_distance=patch_distance,
                                fast_mode=True)

    return _per_frame(image, one)


# --------------------------------------------------------------------------- Noise2Void
@dataclass
class Denoiser:
    """A trained Noise2Void network and the statistics it standardises with.

    Call it on an image or stack: ``denoiser(image) -> denoised`` (float32,
    same intensity scale as the input).
    """

    model: object
    mean: float
    std: float
    card: object = None
    history: list = field(default_factory=list)

    def model_card(self):
        """The model card (one is made from ``mean`` and ``std`` when the denoiser has none)."""
        from ..checkpoint import ModelCard

        if self.card is None:
            self.card = ModelCard(architecture="n2v_unet", task="denoise", normalization="zscore",
                                  input_mean=self.mean, input_std=self.std)
        return self.card

    def __call__(self, image, device: str = "auto", tile: int = 1024) -> np.ndarray:
        """Denoise an image or stack through the inference predictor.

        Parameters
        ----------
        image : array_like
            ``(H, W)`` or ``(..., H, W)``.
        device : str
        tile : int
            Tile side; frames no larger run whole, larger ones in tiles blended
            with feathered overlap (:mod:`hyperspy_mmdl.inference.restore`).

        Returns
        -------
        ndarray of float32, same shape and intensity scale.

        Examples
        --------
        >>> den = train_noise2void(np.random.default_rng(0).random((32, 32)), steps=2,
        ...                        base_channels=4, batch_size=2, patch_size=16)
        >>> den(np.zeros((20, 24))).shape
        (20, 24)
        """
        return runner("denoise")(image, (self.model, self.model_card()), device=device, tile=tile)

    def save(self, path) -> Path:
        """Write a safe checkpoint (weights + model card, no pickled code)."""
        from ..checkpoint import save_checkpoint

        return save_checkpoint(path, self.model, self.card)


def load_denoiser(path) -> Denoiser:
    """Load a :class:`Denoiser` saved with :meth:`Denoiser.save`.

    Raises
    ------
    WrongTaskError
        The file holds a model of another task (the message names the file and both tasks).

    Examples
    --------
    >>> den = load_denoiser("n2v.pt")  # doctest: +SKIP
    """
    from ..checkpoint import load_checkpoint

    model, card = load_checkpoint(path, task="denoise")
    return Denoiser(model, card.input_mean, card.input_std, card)


def _blind_spot_batch(frames, rng, patch, batch, fraction, radius):
    """Patches, their blind-spot inputs and masks (numpy)."""
    n, h, w = frames.shape
    idx = rng.integers(0, n, batch)
    ys = rng.integers(0, h - patch + 1, batch)
    xs = rng.integers(0, w - patch + 1, batch)
    target = np.stack([frames[i, y:y + patch, x:x + patch] for i, y, x in zip(idx, ys, xs)])
    k = rng.integers(0, 8, batch)  # random flips / 90° rotations
    target = np.stack([np.rot90(t, r % 4)[:, ::-1] if r >= 4 else np.rot90(t, r) for t, r in zip(target, k)])
    mask = rng.random(target.shape) < fraction
    b, yy, xx = np.nonzero(mask)
    dy = rng.integers(-radius, radius + 1, len(b))
    dx = rng.integers(-radius, radius + 1, len(b))
    same = (dy == 0) & (dx == 0)
    dx[same] = np.where(rng.random(same.sum()) < 0.5, -1, 1)
    ny = np.clip(yy + dy, 0, patch - 1)
    nx = np.clip(xx + dx, 0, patch - 1)
    inp = target.copy()
    inp[b, yy, xx] = target[b, ny, nx]
    return np.ascontiguousarray(target), inp, mask


def train_noise2void(images, *, steps: int = 400, patch_size: int = 64, batch_size: int = 16,
                     mask_fraction: float = 0.02, radius: int = 2, lr: float = 1e-3,
                     base_channels: int = 16, depth: int = 2, seed: int = 0, device: str = "cpu",
                     progress=None, should_stop=None) -> Denoiser:
    """Train a Noise2Void denoiser on the user's own noisy image(s); no clean targets.

    Parameters
    ----------
    images : array_like
        One image ``(H, W)`` or a stack ``(n, H, W)`` (``(..., H, W)`` is flattened).
    steps : int
        Optimiser steps (Adam, cosine-decayed learning rate).
    patch_size, batch_size : int
        Training patches per step and their side (clipped to the image size).
    mask_fraction : float
        Fraction of blind-spot pixels per patch (Krull et al. use ≈ 0.2–2 %).
    radius : int
        Neighbourhood radius the replacement value is drawn from.
    lr : float
    base_channels, depth : int
        U-Net size.
    seed : int
    device : str
    progress : callable, optional
        ``progress(step, steps, loss)`` after every step.
    should_stop : callable, optional
        Returns True to stop early (GUI cancel).

    Returns
    -------
    Denoiser
    """
    import torch

    from .. import models
    from ..checkpoint import ModelCard

    a = clean_nonfinite(images)
    frames = a.reshape((-1,) + a.shape[-2:])
    h, w = frames.shape[-2:]
    patch = int(min(patch_size, h, w))
    if patch < 8:
        raise ValueError(f"images of {h}×{w} px are too small for Noise2Void (need at least 8 px)")
    if not 0 < mask_fraction < 0.5:
        raise ValueError(f"mask_fraction must be in (0, 0.5), got {mask_fraction}")
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    mean, std = float(frames.mean()), float(frames.std())
    std = std if std > 0 else 1.0
    norm = ((frames - mean) / std).astype(np.float32)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = models.create("n2v_unet", in_chans=1, num_classes=1, base_channels=base_channels, depth=depth)
    model.to(device).train()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps, eta_min=lr * 0.05)
    history = []
    t0 = time.perf_counter()
    for step in range(steps):
        target, inp, mask = _blind_spot_batch(norm, rng, patch, batch_size, mask_fraction, radius)
        x = torch.from_numpy(inp)[:, None].to(device)
        y = torch.from_numpy(target)[:, None].to(device)
        m = torch.from_numpy(mask)[:, None].to(device)
        out = model(x)
        loss = ((out - y) ** 2 * m).sum() / m.sum().clamp(min=1)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        history.append(float(loss.detach()))
        if progress is not None:
            progress(step + 1, steps, history[-1])
        if should_stop is not None and should_stop():
            break
    model.eval()
    card = ModelCard(
        architecture="n2v_unet", config=dict(model.default_cfg["config"]), task="denoise",
        input_size=[1, patch, patch], normalization="zscore",
        training_data={"frames": len(frames), "shape": [int(h), int(w)], "seed": int(seed)},
        recipe={"method": "noise2void", "steps": len(history), "patch_size": patch, "batch_size": batch_size,
                "mask_fraction": mask_fraction, "radius": radius, "lr": lr, "optimizer": "Adam",
                "schedule": "cosine", "seconds": round(time.perf_counter() - t0, 2)},
        metrics={"final_loss": float(np.mean(history[-20:]))},
        input_mean=mean, input_std=std,
    )
    return Denoiser(model, mean, std, card, history)


def denoise(image, method: str = "nl_means", calibration=None, **params) -> np.ndarray:
    """Denoise with ``method`` in :data:`METHODS`.

    ``"noise2void"`` trains on ``image`` itself (``steps``, ``patch_size`` ...
    as in :func:`train_noise2void`) unless ``model=`` gives a :class:`Denoiser`
    or a checkpoint path (applied by :func:`hyperspy_mmdl.inference.restore.denoise`,
    which loads a file once per process; ``device``, ``tile`` ... go there).

    Raises
    ------
    WrongTaskError
        ``model`` is a checkpoint of another task.

    Examples
    --------
    >>> img = np.random.default_rng(0).normal(0, 1, (32, 32))
    >>> float(denoise(img, "gaussian", sigma=2).std()) < float(img.std())
    True
    """
    if method not in METHODS:
        raise ValueError(f"unknown denoising method {method!r}; choose one of {', '.join(METHODS)}")
    if method == "gaussian":
        return gaussian(image, calibration=calibration, **params)
    if method == "median":
        return median(image, calibration=calibration, **params)
    if method == "nl_means":
        return nl_means(image, **params)
    model = params.pop("model", None)
    if model is None:
        model = train_noise2void(image, **params)
    if isinstance(model, Denoiser):
        return model(image)
    # a checkpoint path (loaded once per process), a Predictor or (module, card): the inference predictor
    return runner("denoise")(image, model, **params)
