"""One way to apply a model: learned segmentation, Noise2Void and super-resolution go through the predictor.

Checks that the file is read once for many frames, that routing denoising and
super-resolution through the predictor gives what the former per-module code
gave (the reference implementations below are that code), that a model of the
wrong task raises WrongTaskError naming the file and both tasks, that what
inference needs from a card is typed on ModelCard, and that normalisation and
tiling are one implementation each.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hyperspy_mmdl import checkpoint, inference
from hyperspy_mmdl.calibration import Calibration
from hyperspy_mmdl.checkpoint import ModelCard, save_checkpoint
from hyperspy_mmdl.errors import WrongTaskError
from hyperspy_mmdl.preprocess import denoise as dn
from hyperspy_mmdl.preprocess import superres as sr


@pytest.fixture
def count_reads(monkeypatch):
    """Count every time a checkpoint file is read (load_checkpoint and read_card both read the payload)."""
    calls = []
    real = checkpoint._read_payload

    def counted(path, *args, **kwargs):
        calls.append(str(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(checkpoint, "_read_payload", counted)
    inference.clear_cache()
    yield calls
    inference.clear_cache()


def _unet_checkpoint(path, pixel_size=None):
    from hyperspy_mmdl.models.unet import unet_boundary

    torch.manual_seed(0)
    net = unet_boundary(in_chans=1, base_channels=4, depth=2)
    card = ModelCard("unet_boundary", config=dict(net.default_cfg["config"]), task="segment",
                     input_size=[1, 64, 64], normalization="minmax", pixel_size=pixel_size,
                     pixel_unit="nm" if pixel_size else "px")
    return save_checkpoint(path, net, card), net


# --------------------------------------------------------------------------- learned segmentation
def test_learned_segmentation_reads_the_checkpoint_once_for_many_frames(tmp_path, count_reads):
    from hyperspy_mmdl.grains import segment

    path, _ = _unet_checkpoint(tmp_path / "unet.pt", pixel_size=20.0)
    frames = np.random.default_rng(1).random((5, 60, 70)).astype(np.float32)
    cal = Calibration.from_pixel_size(25.0, "nm")
    labels = [segment(f, cal, method="learned", model=path, min_area_px=1) for f in frames]
    # before: two reads per frame (read_card for the pixel size, load_checkpoint for the net) = 10
    assert len(count_reads) == 1
    assert all(lab.shape == (60, 70) and lab.dtype == np.int32 for lab in labels)


def test_learned_segmentation_resamples_to_the_card_pixel_size(tmp_path):
    """A 10 nm/px image reaches a 20 nm/px model at half size, and the labels come back full size."""
    from hyperspy_mmdl.inference.segment import predict_boundaries

    seen = []

    class Probe(torch.nn.Module):
        def forward(self, x):
            seen.append(tuple(x.shape[-2:]))
            return x

    card = ModelCard("unet_boundary", task="segment", input_size=[1, 256, 256], pixel_size=20.0,
                     pixel_unit="nm")
    prob = predict_boundaries(np.random.default_rng(0).random((80, 120)), Calibration.from_pixel_size(10.0, "nm"),
                              (Probe(), card), device="cpu")
    assert seen == [(40, 60)] and prob.shape == (80, 120)


# --------------------------------------------------------------------------- denoising
def _old_denoiser_call(model, mean, std, image):
    """The former ``Denoiser.__call__`` on images no larger than its 1024-px tile."""
    x = (np.asarray(image, np.float32) - mean) / std
    with torch.no_grad():
        out = model(torch.from_numpy(np.ascontiguousarray(x))[None, None])[0, 0].numpy()
    return out * std + mean


@pytest.fixture(scope="module")
def n2v():
    rng = np.random.default_rng(3)
    clean = np.kron(rng.random((6, 6)), np.ones((8, 8))).astype(np.float32) * 100 + 50
    noisy = (clean + rng.normal(0, 10, clean.shape)).astype(np.float32)
    torch.manual_seed(0)
    return dn.train_noise2void(noisy, steps=5, patch_size=16, batch_size=4, base_channels=4, depth=2), noisy


def test_noise2void_through_the_predictor_equals_the_former_code(n2v, tmp_path, count_reads):
    den, noisy = n2v
    stack = np.stack([noisy, noisy[::-1].copy()])
    expected = np.stack([_old_denoiser_call(den.model, den.mean, den.std, f) for f in stack])
    np.testing.assert_allclose(den(stack, device="cpu"), expected, rtol=1e-5, atol=1e-4)
    path = den.save(tmp_path / "n2v.pt")
    for _ in range(3):  # a checkpoint path is loaded once, then served from the predictor cache
        out = dn.denoise(stack, "noise2void", model=path, device="cpu")
        np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-4)
    assert len(count_reads) == 1
    assert dn.load_denoiser(path).card.input_mean == pytest.approx(den.mean)


def test_restoration_tiles_blend_without_seams():
    """Tiled and whole-frame results agree for a pointwise model, at ×1 (denoise) and ×2 (SR)."""
    from hyperspy_mmdl.inference.restore import denoise, super_resolve

    img = np.random.default_rng(0).random((70, 90)).astype(np.float32) * 5 + 2
    card = ModelCard("n2v_unet", task="denoise", normalization="zscore", input_mean=3.0, input_std=2.0)
    pointwise = torch.nn.Conv2d(1, 1, 1)
    whole = denoise(img, (pointwise, card), device="cpu")
    tiled = denoise(img, (pointwise, card), device="cpu", tile=32, overlap=12)
    np.testing.assert_allclose(tiled, whole, atol=1e-5)

    up = torch.nn.Upsample(scale_factor=2, mode="nearest")
    up.upsamples = True
    card = ModelCard("rcan_lite", task="super-resolve", normalization="minmax", scale_factor=2)
    whole = super_resolve(img, (up, card), device="cpu")
    tiled = super_resolve(img, (up, card), device="cpu", tile=32, overlap=12)
    assert whole.shape == (140, 180)
    np.testing.assert_allclose(whole, np.kron(img, np.ones((2, 2))), atol=1e-5)
    np.testing.assert_allclose(tiled, whole, atol=1e-5)


# --------------------------------------------------------------------------- super-resolution
def _old_superres_call(resolver, image):
    """The former ``SuperResolver.__call__`` (per-frame [0, 1] scaling, bicubic input for SRCNN)."""
    outs = []
    for f in np.asarray(image, np.float32).reshape((-1,) + image.shape[-2:]):
        lo, hi = float(f.min()), float(f.max())
        scale = hi - lo if hi > lo else 1.0
        u = (f - lo) / scale
        x = u if getattr(resolver.model, "upsamples", False) else sr.bicubic(u, resolver.factor)
        with torch.no_grad():
            y = resolver.model(torch.from_numpy(np.ascontiguousarray(x, np.float32))[None, None])[0, 0].numpy()
        outs.append(y * scale + lo)
    return np.stack(outs).reshape(image.shape[:-2] + outs[0].shape)


@pytest.mark.parametrize("arch", ["srcnn", "rcan_lite"])
def test_super_resolution_through_the_predictor_equals_the_former_code(arch, tmp_path, count_reads):
    rng = np.random.default_rng(5)
    hr = [np.kron(rng.random((8, 8)), np.ones((6, 6))).astype(np.float32) for _ in range(2)]
    extra = {"n_groups": 1, "n_blocks": 1, "channels": 8} if arch == "rcan_lite" else {}
    resolver = sr.train_superres(hr, arch, 2, steps=3, patch_size=16, batch_size=2, **extra)
    img = (rng.random((2, 24, 20)) * 200 + 10).astype(np.float32)
    expected = _old_superres_call(resolver, img)
    np.testing.assert_allclose(resolver(img, device="cpu"), expected, rtol=1e-5, atol=1e-3)
    path = resolver.save(tmp_path / f"{arch}.pt")
    for _ in range(2):
        out, cal = sr.super_resolve(img, 2, path, Calibration.from_pixel_size(10.0, "nm"), device="cpu")
        np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-3)
    assert len(count_reads) == 1 and cal.pixel_size_in("nm") == (5.0, 5.0)
    with pytest.raises(ValueError, match="trained for ×2, not ×3"):
        sr.super_resolve(img, 3, path)


# --------------------------------------------------------------------------- wrong task
def test_a_classifier_given_to_denoise_sr_and_learned_segmentation_raises_wrong_task(tmp_path):
    from hyperspy_mmdl import models
    from hyperspy_mmdl.grains import segment

    net = models.create("n2v_unet", base_channels=4, depth=1)
    path = save_checkpoint(tmp_path / "grain_classifier.pt", net,
                           ModelCard("n2v_unet", config=dict(net.default_cfg["config"]), task="classify",
                                     class_names=["a"]))
    img = np.random.default_rng(0).random((32, 32)).astype(np.float32)
    calls = [
        (lambda: dn.denoise(img, "noise2void", model=path), "denoise"),
        (lambda: dn.load_denoiser(path), "denoise"),
        (lambda: sr.super_resolve(img, 2, path), "super-resolve"),
        (lambda: sr.load_superres(path), "super-resolve"),
        (lambda: segment(img, None, method="learned", model=path), "segment"),
    ]
    for call, task in calls:
        with pytest.raises(WrongTaskError) as err:
            call()
        msg = str(err.value)
        assert "grain_classifier.pt" in msg and "'classify'" in msg and f"'{task}'" in msg, msg
        assert isinstance(err.value, ValueError)  # callers that caught ValueError still do


# --------------------------------------------------------------------------- model card
def test_model_card_types_what_inference_needs_and_adopts_old_files():
    old_pce = ModelCard.from_dict({"architecture": "psc_fusion", "task": "regress-pce",
                                   "extra": {"target_mean": 15.0, "target_std": 2.0,
                                             "masked_modalities": ["image"], "note": "kept"}})
    assert (old_pce.target_mean, old_pce.target_std, old_pce.masked_modalities) == (15.0, 2.0, ["image"])
    assert old_pce.extra == {"note": "kept"}
    old_n2v = ModelCard.from_dict({"architecture": "n2v_unet", "task": "denoise", "normalization": "zscore",
                                   "extra": {"mean": 4.0, "std": 0.5}})
    assert (old_n2v.input_mean, old_n2v.input_std, old_n2v.extra) == (4.0, 0.5, {})
    old_sr = ModelCard.from_dict({"architecture": "srcnn", "task": "super-resolve", "extra": {"factor": 3}})
    assert old_sr.scale_factor == 3
    # a classifier's "mean" in extra is not a dataset statistic
    assert ModelCard("vgg_grain", extra={"mean": 1.0}).input_mean is None
    new = ModelCard.from_dict(old_pce.to_dict())
    assert new == old_pce
    with pytest.raises(ValueError, match="target_std"):
        ModelCard("psc_fusion", task="regress-pce", target_std=0)
    with pytest.raises(ValueError, match="together"):
        ModelCard("n2v_unet", task="denoise", input_mean=1.0)


# --------------------------------------------------------------------------- one implementation each
def test_normalisation_has_one_owner():
    from hyperspy_mmdl.inference.prepare import normalize as inf_normalize
    from hyperspy_mmdl.preprocess.normalize import normalize
    from hyperspy_mmdl.train import transforms as T

    x = np.random.default_rng(0).random((3, 16, 20)).astype(np.float32) * [[[1.0]], [[5.0]], [[9.0]]]
    x[1, 2, 3] = np.nan
    for method in ("minmax", "zscore", "clahe", "none"):
        whole = normalize(x, method, frame_ndim=3)
        np.testing.assert_array_equal(T.normalize(x, method), whole)
        np.testing.assert_array_equal(inf_normalize(x, method), whole)
    # statistics over the whole (C, H, W) input: the channels keep their relative scale
    m = normalize(x, "minmax", frame_ndim=3)
    assert m.max() == 1 and m[0].max() < 0.2 and np.isfinite(m).all()
    # per frame (the default) each (H, W) frame is scaled on its own
    assert np.allclose(normalize(x, "minmax").max(axis=(1, 2)), 1)



@pytest.mark.parametrize("module", [
    "hyperspy_mmdl.inference.device", "hyperspy_mmdl.inference.predictor", "hyperspy_mmdl.inference.prepare",
    "hyperspy_mmdl.inference.tiling", "hyperspy_mmdl.inference.classify", "hyperspy_mmdl.inference.dense",
    "hyperspy_mmdl.inference.pce", "hyperspy_mmdl.inference.segment", "hyperspy_mmdl.inference.restore",
    "hyperspy_mmdl.grains.learned", "hyperspy_mmdl.checkpoint", "hyperspy_mmdl.tabular",
    "hyperspy_mmdl.preprocess.normalize", "hyperspy_mmdl.preprocess.resample", "hyperspy_mmdl.train.transforms",
])
def test_docstring_examples_run(module):
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted > 0
