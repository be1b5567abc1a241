"""The synthetic polycrystal delivers the grain size and count it was asked for."""

from __future__ import annotations

import numpy as np
import pytest

from hyperspy_mmdl.synthetic import SyntheticSample, polycrystal


def _grain_stats(labels):
    """Jeffries count (whole grains + half the border grains), and ECD (px) of the whole grains."""
    areas = np.bincount(labels.ravel())
    areas[0] = 0
    border = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    border = border[border > 0]
    present = areas > 0
    inner = present.copy()
    inner[border] = False
    ecd = np.sqrt(4 * areas[inner] / np.pi)
    return inner.sum() + 0.5 * len(border), ecd


@pytest.mark.parametrize("boundary", ["dark", "bright"])
@pytest.mark.parametrize("mean_ecd, cv, pixel_size, width", [(250.0, 0.35, 10.0, 2), (0.5, 0.2, 0.02, 3)])
def test_grain_size_and_count_as_asked(boundary, mean_ecd, cv, pixel_size, width):
    s = polycrystal((1024, 1024), pixel_size=pixel_size, unit="nm" if pixel_size > 1 else "µm",
                    mean_ecd=mean_ecd, cv=cv, boundary=boundary, boundary_width=width, seed=3)
    count, ecd = _grain_stats(s.labels)
    ecd = ecd * pixel_size
    # sampling error of the mean of ~1500 grains is ~1 %
    assert ecd.mean() == pytest.approx(mean_ecd, rel=0.03)
    assert ecd.std() / ecd.mean() == pytest.approx(cv, abs=0.06)
    assert count == pytest.approx(s.expected_n_grains, rel=0.05)
    assert s.expected_n_grains == pytest.approx(1024**2 * pixel_size**2 / s.mean_grain_area)


def test_default_sample_types_and_ground_truth_consistency():
    s = polycrystal()
    assert isinstance(s, SyntheticSample)
    assert s.image.shape == s.labels.shape == (512, 512)
    assert s.image.dtype == np.float32 and s.labels.dtype == np.int32
    assert 0.0 <= s.image.min() and s.image.max() <= 1.0
    assert s.calibration.pixel_size == (10.0, 10.0) and s.calibration.unit == "nm"
    # labels are consecutive 1..n and boundaries (label 0) are dark in a "dark" sample
    ids = np.unique(s.labels)
    assert ids[0] == 0 and np.array_equal(ids[1:], np.arange(1, len(ids)))
    assert s.n_grains == len(ids) - 1 > 300
    assert s.image[s.labels == 0].mean() < s.image[s.labels > 0].mean() - 0.15
    bright = polycrystal(boundary="bright")
    assert bright.image[bright.labels == 0].mean() > bright.image[bright.labels > 0].mean() + 0.15
    # same seed, same sample; another seed, another one
    assert np.array_equal(polycrystal().labels, s.labels)
    assert not np.array_equal(polycrystal(seed=1).labels, s.labels)


def test_every_grain_is_one_connected_region():
    from scipy import ndimage

    s = polycrystal((256, 256), seed=5)
    relabelled, n = ndimage.label(s.labels > 0, structure=np.ones((3, 3)))
    # grains are separated by boundaries, so connected components of the grain mask
    # are the grains themselves (8-connectivity, as ImageJ traces particles)
    assert n == s.n_grains


def test_data_bar_and_stack():
    s = polycrystal((400, 300), data_bar=True, seed=2)
    top = s.data_bar_top
    assert 0.9 * 400 < top < 0.95 * 400
    assert (s.labels[top:] == 0).all()
    assert s.image[top + 5:, : 300 // 2].mean() < 0.3  # mostly black strip with some text
    assert s.expected_n_grains == pytest.approx(top * 300 * 100 / s.mean_grain_area)

    st = polycrystal((128, 160), n_frames=3, seed=1)
    assert st.image.shape == st.labels.shape == (3, 128, 160)
    assert st.calibration.ndim == 3 and st.calibration.navigate == (True, False, False)
    assert len(st.n_grains) == 3
    assert not np.array_equal(st.labels[0], st.labels[1])


@pytest.mark.parametrize("kwargs, match", [
    (dict(boundary="grey"), "boundary"),
    (dict(shape=(4, 4)), "shape"),
    (dict(mean_ecd=30.0), "boundary widths"),
    (dict(boundary_width=0), "boundary_width"),
    (dict(n_frames=0), "n_frames"),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        polycrystal(**kwargs)
