"""HyperSpy grain methods on Microstructure: segment_grains, grain_features, grain_statistics."""

from __future__ import annotations

import numpy as np
import pytest

from hyperspy_mmdl.grains import segment
from hyperspy_mmdl.synthetic import polycrystal


def _signal(sample):
    import hyperspy.api as hs

    s = hs.signals.Signal2D(sample.image, axes=sample.calibration.to_axes(sample.image.shape))
    s.set_signal_type("microstructure")
    return s


@pytest.fixture(scope="module")
def stack():
    return polycrystal((192, 224), n_frames=3, seed=4)


def test_segment_grains_stack_and_lazy(stack):
    from hyperspy_mmdl.signals import GrainLabels, LazyGrainLabels

    s = _signal(stack)
    labels = s.segment_grains(method="boundary", show_progressbar=False)
    assert isinstance(labels, GrainLabels) and labels.data.dtype == np.int32
    assert labels.data.shape == stack.image.shape
    assert labels.axes_manager.signal_axes[0].scale == 10.0 and labels.axes_manager.signal_axes[0].units == "nm"
    assert labels.axes_manager.navigation_dimension == 1
    cal = stack.calibration.image
    for i in range(3):  # frame by frame, the same as the array function
        assert np.array_equal(labels.data[i], segment(stack.image[i], cal, method="boundary"))
    lazy = s.as_lazy().segment_grains(method="boundary")
    assert isinstance(lazy, LazyGrainLabels)
    lazy.compute()
    assert np.array_equal(lazy.data, labels.data)


def test_single_image_records_method(stack):
    one = _signal(polycrystal((160, 160), seed=2))
    labels = one.segment_grains()
    assert labels.metadata.Grains.method == "boundary"  # what "auto" picked
    assert labels.axes_manager.navigation_dimension == 0


def test_features_and_statistics(stack):
    s = _signal(stack)
    labels = s.segment_grains(method="boundary", show_progressbar=False)
    table = s.grain_features(labels)
    assert list(table.columns[:2]) == ["frame", "label"]
    assert sorted(table["frame"].unique()) == [0, 1, 2]
    assert [int((table["frame"] == i).sum()) for i in range(3)] == [int(labels.data[i].max()) for i in range(3)]
    stats = s.grain_statistics(labels)
    assert len(stats) == 3 and {"frame", "mean_ecd", "gbld", "astm_g_intercept"} <= set(stats.columns)
    assert np.allclose(stats["mean_ecd"], table.groupby("frame")["ecd"].mean())
    single = _signal(polycrystal((160, 160), seed=2)).grain_statistics()
    assert isinstance(single, dict) and single["grain_size_class"] == "small"
    with pytest.raises(ValueError, match="do not match"):
        s.grain_features(np.zeros((3, 10, 10), np.int32))


def test_segment_grains_keeps_the_notes_and_warns_of_doubtful_results(stack):
    import hyperspy.api as hs

    s = _signal(stack)
    labels = s.segment_grains(show_progressbar=False)
    notes = labels.metadata.Grains.notes
    assert any(n.startswith("all 3 frames: method 'auto' chose") for n in notes), notes
    noise = hs.signals.Signal2D(np.random.default_rng(3).random((96, 96)).astype(np.float32))
    noise.set_signal_type("microstructure")
    noise.metadata.General.title = ""
    with pytest.warns(UserWarning, match="grains average .* px² in area: noise may have been segmented"):
        lab = noise.segment_grains(method="boundary")
    assert any("noise may have been segmented" in n for n in lab.metadata.Grains.notes)
    assert lab.metadata.General.title == "Grains of the signal"
    # a stack's doubts name the frames they concern
    noisy = hs.signals.Signal2D(np.random.default_rng(4).random((2, 96, 96)).astype(np.float32))
    noisy.set_signal_type("microstructure")
    with pytest.warns(UserWarning, match=r"^the signal: all 2 frames: .*noise may have been segmented"):
        noisy.segment_grains(method="boundary", show_progressbar=False)


def test_grain_counts_read_as_a_person_writes_them():
    from hyperspy_mmdl.pipeline import grains_text

    assert [grains_text(n) for n in (0, 1, 2)] == ["0 grains", "1 grain", "2 grains"]


def test_frame_notes_say_which_frames():
    from hyperspy_mmdl.signals import frame_notes

    pairs = [(0, "x"), (1, "x"), (2, "x"), (1, "y"), (2, "y")]
    assert frame_notes(pairs, 3, stack=True) == ["all 3 frames: x", "2 frames (1, 2): y"]
    assert frame_notes(pairs, 3, stack=False) == ["x", "y"]
