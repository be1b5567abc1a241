"""Super-resolution: degradation, metrics, SRCNN / RCAN-lite training and the Tables S2–S3 report."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hyperspy_mmdl import models
from hyperspy_mmdl.calibration import Calibration
from hyperspy_mmdl.preprocess import superres as sr
from hyperspy_mmdl.synthetic import polycrystal


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def images():
    train = [polycrystal((128, 128), pixel_size=5.0, noise=0.01, seed=i).image for i in range(3)]
    test = [polycrystal((128, 128), pixel_size=5.0, noise=0.01, seed=10 + i).image for i in range(2)]
    return train, test


def test_downsample_bicubic_shapes_and_constant():
    img = np.random.default_rng(0).random((50, 61)).astype(np.float32)
    assert sr.modcrop(img, 4).shape == (48, 60)
    assert sr.downsample(img, 3).shape == (16, 20)
    assert sr.bicubic(img, 2).shape == (100, 122)
    assert sr.bicubic(np.stack([img, img]), 3).shape == (2, 150, 183)
    flat = np.full((24, 24), 0.3, np.float32)
    assert np.allclose(sr.downsample(flat, 2), 0.3, atol=1e-6) and np.allclose(sr.bicubic(flat, 4), 0.3, atol=1e-6)
    with pytest.raises(ValueError, match="factor"):
        sr.bicubic(img, 5)


def test_psnr_ssim_values():
    rng = np.random.default_rng(0)
    a = rng.random((40, 40))
    assert sr.psnr(a, a) == float("inf") and sr.ssim(a, a) == pytest.approx(1.0)
    b = a + 0.1  # MSE 0.01 -> 20 dB
    assert sr.psnr(a, b) == pytest.approx(20.0)
    # shaving: an error confined to the border does not count
    c = a.copy()
    c[:2] += 0.5
    assert sr.psnr(a, c, shave=2) == float("inf")
    # SSIM of Wang et al. equals scikit-image's reference settings
    from skimage.metrics import structural_similarity

    d = np.clip(a + rng.normal(0, 0.05, a.shape), 0, 1)
    ref = structural_similarity(a, d, data_range=1.0, gaussian_weights=True, sigma=1.5,
                                use_sample_covariance=False)
    assert sr.ssim(a, d) == pytest.approx(ref) and 0 < ref < 1
    # RGB -> Y
    rgb = np.stack([a, a, a], -1)
    assert np.allclose(sr.to_y(rgb), a)
    with pytest.raises(ValueError, match="shape"):
        sr.psnr(a, a[:10])


def test_models_registered_and_shapes():
    assert {"srcnn", "rcan_lite", "n2v_unet"} <= set(models.list_models())
    x = torch.rand(2, 1, 12, 12)
    assert models.create("srcnn")(x).shape == (2, 1, 12, 12)
    for f in (2, 3, 4):
        assert models.create("rcan_lite", scale=f, channels=8, n_blocks=1, n_groups=1)(x).shape == \
            (2, 1, 12 * f, 12 * f)
    # residual SRCNN starts at its input (bicubic quality before training)
    assert torch.allclose(models.create("srcnn")(x), x, atol=0.05)
    assert not models.create("srcnn", residual=False).residual
    with pytest.raises(ValueError, match="scale"):
        models.create("rcan_lite", scale=5)


@pytest.fixture(scope="module")
def trained(images):
    torch.set_num_threads(1)
    train, _ = images
    return {
        "srcnn": sr.train_superres(train, "srcnn", 2, steps=200, batch_size=8, patch_size=32, seed=0),
        "rcan_lite": sr.train_superres(train, "rcan_lite", 2, steps=120, batch_size=8, patch_size=32, seed=0,
                                       channels=16, n_blocks=3),
    }


def test_trained_models_beat_bicubic_on_held_out_images(images, trained):
    _, test = images
    res = sr.evaluate(test, {"SRCNN": {2: trained["srcnn"]}, "RCAN-lite": {2: trained["rcan_lite"]}},
                      factors=(2,))
    psnr = dict(zip(res["method"], res["PSNR"]))
    ssim = dict(zip(res["method"], res["SSIM"]))
    assert list(res["method"]) == ["bicubic", "SRCNN", "RCAN-lite"]
    assert psnr["SRCNN"] > psnr["bicubic"] + 1.0, psnr
    assert psnr["RCAN-lite"] > psnr["bicubic"] + 1.0, psnr
    assert ssim["SRCNN"] > ssim["bicubic"] and ssim["RCAN-lite"] > ssim["bicubic"]
    assert len(res.attrs["per_image"]) == 3 * len(test)
    table = sr.format_tables(res)
    assert "Table S2 layout: PSNR (dB)" in table and "Table S3 layout: SSIM" in table
    assert "| ×2 | " + f"{psnr['bicubic']:.2f}" in table


def test_super_resolve_calibration_and_checkpoint(images, trained, tmp_path):
    _, test = images
    img = test[0] * 200 + 10  # any intensity range: scaled to [0, 1] for the net and back
    cal = Calibration.from_pixel_size(5.0, "nm")
    up, cal2 = sr.super_resolve(img, 2, "bicubic", cal)
    assert up.shape == (256, 256) and cal2.pixel_size == (2.5, 2.5) and cal2.unit == "nm"
    out, cal3 = sr.super_resolve(img, 2, trained["srcnn"], cal)
    assert out.shape == (256, 256) and cal3.pixel_size == (2.5, 2.5)
    assert abs(float(out.mean()) - float(img.mean())) < 2
    path = trained["rcan_lite"].save(tmp_path / "rcan.pt")
    loaded = sr.load_superres(path)
    assert loaded.factor == 2 and loaded.card.task == "super-resolve"
    assert np.allclose(sr.super_resolve(img, 2, path)[0], trained["rcan_lite"](img), atol=1e-4)
    with pytest.raises(ValueError, match="×2"):
        sr.super_resolve(img, 3, trained["srcnn"])
    with pytest.raises(ValueError, match="model"):
        sr.super_resolve(img, 2, 42)
