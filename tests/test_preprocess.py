"""Normalisation, denoising and the data bar's calibration offer (issue 8)."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from tests.conftest import shared_data

from hyperspy_mmdl.calibration import Calibration
from hyperspy_mmdl.preprocess import denoise as dn
from hyperspy_mmdl.preprocess import normalize as nz
from hyperspy_mmdl.preprocess.databar import find_data_bar, find_scale_bar, offer_calibration
from hyperspy_mmdl.synthetic import polycrystal


@pytest.fixture(autouse=True)
def _one_thread():
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)  # small nets: one thread is faster than two busy ones
    yield
    torch.set_num_threads(n)


def _psnr(ref, x):
    return 10 * np.log10((ref.max() - ref.min()) ** 2 / np.mean((ref - x) ** 2))


@pytest.fixture(scope="module")
def noisy():
    clean = polycrystal((128, 128), noise=0.0, seed=1).image.astype(np.float32)
    rng = np.random.default_rng(0)
    return clean, (clean + rng.normal(0, 0.1, clean.shape)).astype(np.float32)


# --------------------------------------------------------------------------- normalisation
def test_clean_nonfinite():
    a = np.array([[1.0, np.nan], [np.inf, -np.inf], [3.0, 5.0]])
    out = nz.clean_nonfinite(a)
    assert out.dtype == np.float32 and np.isfinite(out).all()
    assert out[0, 1] == out[1, 0] == out[1, 1] == 3.0  # median of 1, 3, 5
    assert (nz.clean_nonfinite(a, "zero")[1] == 0).all()
    assert nz.clean_nonfinite(a, -1.0)[0, 1] == -1.0
    assert (nz.clean_nonfinite(np.full((2, 2), np.nan)) == 0).all()
    with pytest.raises(ValueError, match="fill"):
        nz.clean_nonfinite(a, "mean")
    with pytest.raises(ValueError, match="2-D"):
        nz.clean_nonfinite(np.zeros(3))


def test_minmax_zscore_clahe():
    rng = np.random.default_rng(1)
    img = rng.normal(100, 20, (64, 80)).astype(np.float32)
    img[3, 4] = np.nan
    m = nz.minmax(img)
    assert m.min() == 0.0 and m.max() == 1.0 and m.dtype == np.float32
    z = nz.zscore(img)
    assert abs(float(z.mean())) < 1e-5 and abs(float(z.std()) - 1) < 1e-5
    assert np.allclose(nz.zscore(img, mean=100, std=20), (nz.clean_nonfinite(img) - 100) / 20)
    c = nz.clahe(img)
    assert 0 <= c.min() and c.max() <= 1 and c.shape == img.shape
    # stacks: frame by frame
    stack = np.stack([img, img * 3 + 7])
    ms = nz.minmax(stack)
    assert np.allclose(ms[0], ms[1], atol=1e-6)
    zs = nz.zscore(stack)
    assert np.allclose(zs.mean(axis=(1, 2)), 0, atol=1e-5)
    # constant image: no division by zero
    assert (nz.minmax(np.ones((8, 8))) == 0).all() and (nz.zscore(np.ones((8, 8))) == 0).all()
    assert np.array_equal(nz.normalize(img, "minmax"), m)
    with pytest.raises(ValueError, match="unknown normalisation"):
        nz.normalize(img, "l2")
    with pytest.raises(ValueError, match="both"):
        nz.zscore(img, mean=1.0)


def test_histogram_figure():
    img = np.arange(100.0).reshape(10, 10)
    fig = nz.histogram_figure(img, nz.minmax(img), bins=10)
    axes = fig.axes
    assert len(axes) == 2 and axes[0].get_title() == "before"
    counts = axes[1].patches[0].get_data().values  # one filled step artist per panel
    assert counts.sum() == 100 and len(counts) == 10
    assert list(counts) == [10] * 10  # 0..99 in ten equal bins


# --------------------------------------------------------------------------- denoising
def test_estimate_sigma(noisy):
    _, x = noisy
    assert 0.085 < dn.estimate_sigma(x) < 0.115


def test_classical_filters_raise_psnr(noisy):
    clean, x = noisy
    base = _psnr(clean, x)
    assert _psnr(clean, dn.gaussian(x, 1.0)) > base + 4
    assert _psnr(clean, dn.median(x, 3)) > base + 4
    assert _psnr(clean, dn.nl_means(x)) > base + 6
    # physical sizes with a calibration (10 nm pixels: 10 nm = 1 px)
    cal = Calibration.from_pixel_size(10.0, "nm")
    assert np.allclose(dn.gaussian(x, "10 nm", calibration=cal), dn.gaussian(x, 1.0))
    with pytest.raises(ValueError, match="not calibrated"):
        dn.gaussian(x, "10 nm")
    with pytest.raises(ValueError, match="unknown denoising"):
        dn.denoise(x, "bm3d")


def test_noise2void_raises_psnr_without_clean_targets(noisy, tmp_path):
    clean, x = noisy
    d = dn.train_noise2void(x, steps=120, batch_size=8, patch_size=48, base_channels=8, seed=0)
    out = d(x)
    assert out.shape == x.shape and out.dtype == np.float32
    assert _psnr(clean, out) > _psnr(clean, x) + 5
    assert d.card.task == "denoise" and d.card.recipe["steps"] == 120
    # safe checkpoint round trip
    path = d.save(tmp_path / "n2v.pt")
    d2 = dn.load_denoiser(path)
    assert np.allclose(d2(x), out, atol=1e-5)
    # stacks are denoised frame by frame with the same net
    assert np.allclose(d(np.stack([x, x]))[1], out, atol=1e-5)


# --------------------------------------------------------------------------- data-bar calibration
def _rows():
    path = shared_data("perovskite_sem_fapbi3_databar", "calibration.csv")
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.mark.parametrize("name", ["57.jpg", "198.jpg", "199.jpg", "200.jpg", "201.jpg", "13.jpg"])
def test_scale_bar_length_and_offered_calibration(name):
    from PIL import Image

    row = next(r for r in _rows() if r["file"] == name)
    image = np.asarray(Image.open(shared_data("perovskite_sem_fapbi3_databar", name)))
    sb = find_scale_bar(image)
    assert sb is not None and abs(sb.length_px - float(row["scale_bar_px"])) <= 2, sb
    assert sb.rows.start >= find_data_bar(image).top
    # unconfirmed: the offer says how long the bar is
    bare = offer_calibration(image)
    assert not bare.calibration.is_calibrated and "px" in bare.explanation
    # the user confirms the printed length; pixel size within 5 % of the file's
    offer = offer_calibration(image, row["scale_bar_um"] + " µm")
    assert offer.unit == "µm" and offer.source == "scale bar"
    assert offer.calibration.pixel_size_in("nm")[0] == pytest.approx(float(row["pixel_size_nm"]), rel=0.05)
    # the printed field of view spans the full width: exact
    fov = offer_calibration(image, field_of_view=float(row["fov_width_um"]), unit="µm")
    assert fov.calibration.pixel_size_in("nm")[0] == pytest.approx(float(row["pixel_size_nm"]), rel=0.002)


def test_scale_bar_on_zeiss_tiffs_matches_file_calibration():
    import tifffile

    path = shared_data("rosettasciio_dm_tiff", "tiff", "sem_Zeiss", "test_tiff_Zeiss_SEM_1k.tif")
    sb = find_scale_bar(tifffile.imread(path))
    assert sb is not None and sb.style == "ticks" and sb.length_px > 20


def test_offer_errors_and_no_bar():
    img = polycrystal((128, 128), seed=0).image
    assert find_scale_bar(img) is None and offer_calibration(img, "1 µm") is None
    bar_img = polycrystal((300, 400), data_bar=True, seed=4).image
    with pytest.raises(ValueError, match="length"):
        offer_calibration(bar_img, "one micron")
    with pytest.raises(ValueError, match="unit"):
        offer_calibration(bar_img, field_of_view=10.0)
