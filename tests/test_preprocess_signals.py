"""HyperSpy front end of preprocessing: s.normalize, s.denoise, s.remove_data_bar, s.super_resolve."""

from __future__ import annotations

import numpy as np
import pytest

import hyperspy.api as hs

from tests.conftest import shared_data

from hyperspy_mmdl.synthetic import polycrystal


@pytest.fixture(autouse=True)
def _one_thread():
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _signal(data, scale=10.0, unit="nm"):
    s = hs.signals.Signal2D(data)
    s.set_signal_type("microstructure")
    for ax in s.axes_manager.signal_axes:
        ax.scale, ax.units = scale, unit
    return s


@pytest.fixture
def stack():
    img = polycrystal((64, 80), seed=1).image
    return _signal(np.stack([img, img * 2 + 1, img[::-1]]))


def test_normalize_eager_and_lazy(stack):
    n = stack.normalize("minmax")
    assert type(n).__name__ == "Microstructure" and n.data.shape == stack.data.shape
    assert np.allclose(n.data.min(axis=(1, 2)), 0) and np.allclose(n.data.max(axis=(1, 2)), 1)
    assert n.axes_manager.signal_axes[0].scale == 10.0 and n.metadata.Preprocess.normalization["method"] == "minmax"
    lazy = stack.as_lazy().normalize("zscore")
    assert type(lazy).__name__ == "LazyMicrostructure"
    assert np.allclose(np.asarray(lazy.data), stack.normalize("zscore").data, atol=1e-6)
    with pytest.raises(ValueError, match="unknown normalisation"):
        stack.normalize("l1")


def test_denoise_lazy_equals_eager(stack):
    eager = stack.denoise("gaussian", sigma="10 nm")
    lazy = stack.as_lazy().denoise("gaussian", sigma="10 nm")
    assert np.allclose(np.asarray(lazy.data), eager.data)
    n2v = stack.denoise("noise2void", steps=5, batch_size=2, patch_size=32, base_channels=4)
    assert n2v.data.shape == stack.data.shape and np.isfinite(n2v.data).all()


def test_super_resolve_divides_the_scale(stack):
    up = stack.super_resolve(2)
    assert up.data.shape == (3, 128, 160)
    ax = up.axes_manager.signal_axes
    assert ax[0].scale == 5.0 and ax[1].scale == 5.0 and ax[0].units == "nm"
    assert ax[0].offset == pytest.approx(-2.5)  # image edge stays at -5 nm
    assert up.axes_manager.navigation_size == 3
    lazy = stack.as_lazy().super_resolve(3)
    assert type(lazy).__name__ == "LazyMicrostructure" and lazy.data.shape == (3, 192, 240)
    assert np.allclose(np.asarray(lazy.data), stack.super_resolve(3).data, atol=1e-6)
    assert lazy.axes_manager.signal_axes[0].scale == pytest.approx(10 / 3)
    with pytest.raises(ValueError, match="factor"):
        stack.super_resolve(8)


def test_remove_data_bar_synthetic():
    b = polycrystal((300, 400), data_bar=True, seed=4)
    s = _signal(b.image)
    c = s.remove_data_bar()
    assert c.data.shape == (b.data_bar_top, 400) and c.metadata.Preprocess.data_bar["top"] == b.data_bar_top
    m = s.remove_data_bar(mode="mask")
    assert m.data.shape == (300, 400) and np.isnan(m.data[b.data_bar_top:]).all()
    assert not np.isnan(m.data[: b.data_bar_top]).any()
    plain = _signal(polycrystal((100, 100), seed=0).image)
    assert plain.remove_data_bar().data.shape == (100, 100)


def test_remove_data_bar_offers_and_applies_calibration():
    from PIL import Image

    a = np.asarray(Image.open(shared_data("perovskite_sem_fapbi3_databar", "199.jpg")))[..., 0]
    s = hs.signals.Signal2D(a)
    s.set_signal_type("microstructure")
    c = s.remove_data_bar()
    assert c.data.shape == (960, 1280)
    assert "50 px" in c.metadata.Preprocess.calibration_offer
    assert c.axes_manager.signal_axes[0].units in ("", "<undefined>", None) or not c.calibration.is_calibrated
    cal = s.remove_data_bar(scale_bar_length="1 µm")
    assert cal.calibration.image.pixel_size_in("nm")[0] == pytest.approx(20.0, rel=0.03)


def test_lazy_data_bar_crop_and_trained_model(stack):
    from hyperspy_mmdl.preprocess.superres import train_superres

    b = polycrystal((200, 240), data_bar=True, seed=5).image
    st = _signal(np.stack([b, b * 0.5]))
    eager = st.remove_data_bar()
    lazy = st.as_lazy().remove_data_bar()
    assert lazy._lazy and lazy.data.shape == eager.data.shape == (2, eager.metadata.Preprocess.data_bar["top"], 240)
    assert np.array_equal(np.asarray(lazy.data), eager.data)
    resolver = train_superres([stack.data[0]], "srcnn", 2, steps=3, batch_size=2, patch_size=16)
    up = stack.super_resolve(2, model=resolver)
    assert np.allclose(up.data, resolver(stack.data), atol=1e-5)
    assert up.metadata.Preprocess.super_resolution["model"] == "srcnn"
    with pytest.raises(ValueError, match="×2"):
        stack.super_resolve(3, model=resolver)
