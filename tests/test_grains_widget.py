"""The Grains dock widget in a real napari viewer (run under Xvfb)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from hyperspy_mmdl.synthetic import polycrystal
from hyperspy_mmdl.tables import read_table


def test_grains_widget_end_to_end(make_napari_viewer, qtbot, tmp_path):
    from napari_mmdl.widgets.grains import GrainsWidget

    viewer = make_napari_viewer()
    s = polycrystal((200, 240), pixel_size=10.0, unit="nm", seed=6)
    image = viewer.add_image(s.image, name="film", scale=(10.0, 10.0), translate=(100.0, 50.0),
                             units=("nm", "nm"))
    widget = GrainsWidget(viewer)
    viewer.window.add_dock_widget(widget)
    assert widget.image.value is image
    widget.method.value = "boundary"
    widget.min_area.value = 0.002  # µm² = 20 px at 10 nm
    assert widget.parameters()["min_area"] == "0.002 µm²"

    widget.run()
    qtbot.waitUntil(lambda: widget.labels_layer is not None, timeout=60_000)
    qtbot.waitUntil(lambda: widget.run_button.enabled, timeout=10_000)
    layer = widget.labels_layer
    assert layer.name == "film grains"
    assert tuple(layer.scale) == (10.0, 10.0) and tuple(layer.translate) == (100.0, 50.0)
    assert [str(u) for u in layer.units] == [str(u) for u in image.units]
    n = int(layer.data.max())
    assert n == pytest.approx(s.n_grains, rel=0.1)
    feats = layer.features
    assert list(feats.columns[:2]) == ["index", "label"] and len(feats) == n
    assert np.array_equal(feats["index"], feats["label"])  # napari maps label values to rows by "index"
    assert np.bincount(layer.data.ravel())[1:].min() >= 20  # the min area was applied
    assert widget.grid.rowCount() == n
    assert "boundary" in widget.status.value and str(n) in widget.status.value

    # clicking a row selects that grain
    widget.grid.cellClicked.emit(5, 0)
    assert layer.selected_label == int(feats["label"][5])

    # erase one grain by painting 0, then re-measure
    gone = int(feats["label"][0])
    data = layer.data.copy()
    data[data == gone] = 0
    layer.data = data
    widget.remeasure()
    qtbot.waitUntil(lambda: len(widget.table) == n - 1, timeout=30_000)
    assert len(widget.table) == n - 1 and gone not in set(widget.table["label"])
    assert len(layer.features) == n - 1 and widget.grid.rowCount() == n - 1

    out = widget.export_csv(tmp_path / "grains.csv")
    assert "ecd [nm]" in pd.read_csv(out).columns  # units in the headers
    back = read_table(out)
    assert len(back) == n - 1 and "index" not in back.columns and back.attrs["units"]["ecd"] == "nm"
    assert back["ecd"].mean() == pytest.approx(widget.summary["mean_ecd"])


def test_grains_widget_uncalibrated_image_uses_pixels(make_napari_viewer, qtbot):
    from napari_mmdl.widgets.grains import GrainsWidget

    viewer = make_napari_viewer()
    viewer.add_image(polycrystal((128, 160), seed=2).image, name="plain")
    widget = GrainsWidget(viewer)
    widget.min_area.value = 30.0
    assert widget.parameters(calibrated=False)["min_area"] == 30.0
    widget.run()
    qtbot.waitUntil(lambda: widget.labels_layer is not None, timeout=60_000)
    assert np.bincount(widget.labels_layer.data.ravel())[1:].min() >= 30
    assert widget.summary["grain_size_class"] is None  # no physical size without a calibration


def test_grains_widget_runs_the_shipped_learned_model(make_napari_viewer, qtbot):
    from napari_mmdl.widgets.grains import GrainsWidget

    viewer = make_napari_viewer()
    s = polycrystal((160, 160), pixel_size=20.0, unit="nm", seed=4)
    viewer.add_image(s.image, name="film", scale=(20.0, 20.0), units=("nm", "nm"))
    widget = GrainsWidget(viewer)
    widget.method.value = "learned"
    widget.smoothing.value = 50.0                      # not a setting of the learned model: not passed on
    assert not widget.threshold.visible and not widget.smoothing.visible
    assert widget.parameters() == dict(method="learned", exclude_border=False, data_bar="auto")
    widget.run()
    qtbot.waitUntil(lambda: widget.labels_layer is not None, timeout=120_000)
    qtbot.waitUntil(lambda: widget.run_button.enabled, timeout=10_000)
    n = int(widget.labels_layer.data.max())
    assert n == pytest.approx(s.n_grains, rel=0.35)
    assert "learned" in widget.status.value


def test_grains_widget_says_when_a_result_is_doubtful(make_napari_viewer, qtbot):
    from napari_mmdl.widgets.grains import GrainsWidget

    viewer = make_napari_viewer()
    viewer.add_image(np.random.default_rng(3).random((96, 96)).astype(np.float32), name="noise")
    widget = GrainsWidget(viewer)
    widget.method.value = "boundary"
    widget.run()
    qtbot.waitUntil(lambda: widget.labels_layer is not None, timeout=60_000)
    qtbot.waitUntil(lambda: widget.run_button.enabled, timeout=10_000)
    assert "check: grains average" in widget.status.value and "noise may have been segmented" in widget.status.value
    assert "no calibration: lengths in pixels" in widget.status.tooltip
