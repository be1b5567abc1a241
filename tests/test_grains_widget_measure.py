"""Grains widget, real napari viewer (Xvfb): measure any Labels layer, ImageJ ranges, selection both
ways, colours, exports."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from hyperspy_mmdl.calibration import Calibration
from hyperspy_mmdl.grains.select import keep_labels, parse_range, select_grains
from hyperspy_mmdl.pipeline import measure_frame
from hyperspy_mmdl.synthetic import polycrystal


# ----------------------------------------------------------------------------- core: ranges
def test_parse_range_reads_imagej_ranges():
    assert parse_range("0-Infinity") == (0.0, math.inf)
    assert parse_range("0.00-1.00") == (0.0, 1.0)
    assert parse_range(" 12.5 - 300 ") == (12.5, 300.0)
    assert parse_range("50") == (50.0, math.inf) and parse_range("") == (0.0, math.inf)
    assert parse_range("1e-3-2E-2") == (0.001, 0.02) and parse_range((2, 3)) == (2.0, 3.0)
    for bad in ("abc", "5-2", "-1-4", "1-2-3"):
        with pytest.raises(ValueError, match="size"):
            parse_range(bad, "size")


def test_select_grains_as_imagej():
    lab = np.zeros((40, 40), np.int32)
    lab[2:6, 2:6] = 1        # 16 px square
    lab[10:20, 10:20] = 2    # 100 px square
    lab[25:26, 5:35] = 3     # 30 px line: low circularity
    table = measure_frame(lab, Calibration.from_pixel_size(0.5, "µm")).table  # 0.25 µm² per px
    assert table.attrs["units"]["area"] == "µm²"
    assert select_grains(table, "0-Infinity", "0.00-1.00").all()
    # ImageJ's bounds are inclusive: 16 px = 4 µm² and 100 px = 25 µm² are kept by "4-25"
    assert dict(zip(table["label"], select_grains(table, "4-25"))) == {1: True, 2: True, 3: True}
    assert dict(zip(table["label"], select_grains(table, "4.01-24.99"))) == {1: False, 2: False, 3: True}
    assert dict(zip(table["label"], select_grains(table, "5-Infinity"))) == {1: False, 2: True, 3: True}
    assert dict(zip(table["label"], select_grains(table, "0-20", pixel_units=True))) == {1: True, 2: False, 3: False}
    circ = dict(zip(table["label"], select_grains(table, circularity="0.50-1.00")))
    assert circ == {1: True, 2: True, 3: False}
    kept = keep_labels(lab, table["label"][select_grains(table, circularity="0.5-1")])
    assert set(np.unique(kept)) == {0, 1, 2} and (kept[lab == 3] == 0).all()


# ----------------------------------------------------------------------------- widget
def _film(viewer, seed=6, shape=(200, 240)):
    s = polycrystal(shape, pixel_size=10.0, unit="nm", seed=seed)
    image = viewer.add_image(s.image, name="film", scale=(10.0, 10.0), translate=(100.0, 50.0), units=("nm", "nm"))
    return s, image


def _widget(viewer):
    from napari_mmdl.widgets.grains import GrainsWidget

    widget = GrainsWidget(viewer)
    viewer.window.add_dock_widget(widget)
    return widget


def _wait(qtbot, widget):
    qtbot.waitUntil(lambda: widget._worker is None, timeout=120_000)


def test_measure_a_labels_layer_from_elsewhere(make_napari_viewer, qtbot):
    """Labels painted elsewhere (here: the ground truth, in pixels) are measured with the image's
    calibration, through pipeline.measure_frame, and move onto the image."""
    viewer = make_napari_viewer()
    s, image = _film(viewer)
    painted = viewer.add_labels(s.labels, name="from Fiji")  # no scale: pixels
    widget = _widget(viewer)
    widget.reset_choices()
    widget.image.value, widget.labels_picker.value = image, painted
    widget.measure_layer()
    _wait(qtbot, widget)
    assert widget.labels_layer is painted
    expected = measure_frame(s.labels, Calibration.from_pixel_size(10.0, "nm"), image=s.image).table
    table = widget.table
    assert len(table) == len(expected) == len(np.unique(s.labels)) - 1
    np.testing.assert_array_equal(table["label"], expected["label"])
    np.testing.assert_allclose(table["area"], expected["area"])
    np.testing.assert_allclose(table["perimeter"], expected["perimeter"])
    assert table.attrs["units"]["area"] == "nm²" and np.array_equal(painted.features["index"], table["label"])
    assert tuple(painted.scale) == (10.0, 10.0) and tuple(painted.translate) == (100.0, 50.0)
    assert painted.metadata["source"] == "film" and "from Fiji" in widget.status.value

    # one frame of labels over a stack: measured against the frame shown
    stack = viewer.add_image(np.stack([s.image * 0, s.image]), name="stack", scale=(1, 10, 10),
                             units=("pixel", "nm", "nm"))
    viewer.dims.set_current_step(0, 1)
    widget.reset_choices()
    widget.image.value, widget.labels_picker.value = stack, painted
    widget.measure_layer()
    _wait(qtbot, widget)
    np.testing.assert_allclose(widget.table["area"], expected["area"])
    # shapes that do not fit: said, nothing measured
    odd = viewer.add_labels(np.zeros((50, 50), np.int32), name="odd")
    widget.reset_choices()
    widget.image.value, widget.labels_picker.value = image, odd
    assert widget.measure_layer() is None and "differ in shape" in widget.status.value


def test_size_and_circularity_ranges(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    s, image = _film(viewer)
    widget = _widget(viewer)
    widget.image.value = image
    widget.method.value = "boundary"
    assert widget.size.label == "size (nm²)"
    widget.run()
    _wait(qtbot, widget)
    full = widget.table.copy()
    labels_before = np.asarray(widget.labels_layer.data).copy()
    lo = float(np.quantile(full["area"], 0.3))
    widget.size.value = f"{lo}-Infinity"
    widget.circularity.value = "0.60-1.00"
    widget.run()
    _wait(qtbot, widget)
    assert full.attrs["pixel_size"] == pytest.approx((10.0, 10.0))
    expected = select_grains(full, f"{lo}-Infinity", "0.60-1.00")
    assert 0 < expected.sum() < len(full)
    assert list(widget.table["label"]) == list(full["label"][expected])
    assert widget.summary["n_grains"] == expected.sum()
    assert f"{(~expected).sum()} outside the ranges" in widget.status.value
    # the grains left out are gone from the new labels, the others unchanged
    kept = np.asarray(widget.labels_layer.data)
    np.testing.assert_array_equal(kept, keep_labels(labels_before, full["label"][expected]))
    # the same ranges in pixels
    widget.pixel_units.value = True
    assert widget.size.label == "size (px²)"
    widget.size.value = f"{lo / 100.0}-Infinity"
    widget.remeasure()
    _wait(qtbot, widget)
    assert list(widget.table["label"]) == list(full["label"][expected])
    widget.size.value = "big-small"
    assert widget.run() is None and "cannot read the range" in widget.status.value


def test_selection_both_ways_and_colours(make_napari_viewer, qtbot):
    from napari.utils.colormaps import DirectLabelColormap
    from napari.utils.interactions import mouse_press_callbacks

    from napari_mmdl.widgets.grains import OUTSIDE_COLOUR

    viewer = make_napari_viewer()
    s, image = _film(viewer)
    widget = _widget(viewer)
    widget.image.value = image
    widget.method.value = "boundary"
    widget.run()
    _wait(qtbot, widget)
    layer, table = widget.labels_layer, widget.table

    # a row selects its grain (highlighted alone) and centres the view on it
    widget.grid.cellClicked.emit(7, 0)
    grain = int(table["label"].iloc[7])
    assert layer.selected_label == grain and layer.show_selected_label
    centre = np.asarray(viewer.scene.camera.center)[-2:]
    assert layer.data[tuple(np.round(layer.world_to_data(centre)).astype(int))] == grain

    # a click on a grain in the canvas selects its row
    rec = table.iloc[12]
    inside = np.argwhere(layer.data == int(rec["label"]))
    world = layer.data_to_world(inside[len(inside) // 2])
    viewer.layers.selection.active = image

    def click(pos):
        event = SimpleNamespace(type="mouse_press", position=tuple(pos), view_direction=None,
                                dims_displayed=(0, 1), modifiers=(), button=1, is_dragging=False)
        mouse_press_callbacks(viewer, event)
    click(world)
    assert layer.selected_label == int(rec["label"]) and widget.grid.currentRow() == 12
    # the background shows all grains again; a painting tool is left alone
    background = layer.data_to_world(np.argwhere(layer.data == 0)[0])
    click(background)
    assert not layer.show_selected_label
    viewer.layers.selection.active = layer
    layer.mode = "paint"
    click(world)
    assert not layer.show_selected_label
    layer.mode = "pan_zoom"

    # colour by a column: a colormap over its range
    widget.colour_labels("area", "viridis")
    cmap = layer.colormap
    assert isinstance(cmap, DirectLabelColormap)
    import matplotlib

    big, small = table["label"][table["area"].idxmax()], table["label"][table["area"].idxmin()]
    np.testing.assert_allclose(cmap.map(np.array([big]))[0], matplotlib.colormaps["viridis"](1.0), atol=1e-6)
    np.testing.assert_allclose(cmap.map(np.array([small]))[0], matplotlib.colormaps["viridis"](0.0), atol=1e-6)
    np.testing.assert_allclose(cmap.map(np.array([0]))[0][3], 0.0)
    np.testing.assert_allclose(cmap.map(np.array([10_000]))[0], OUTSIDE_COLOUR)  # not in the table
    assert "area" in widget.status.value and "nm²" in widget.status.value
    widget.colormap.value = "magma"
    np.testing.assert_allclose(layer.colormap.map(np.array([big]))[0], matplotlib.colormaps["magma"](1.0), atol=1e-6)
    widget.colour_labels(None)
    assert not isinstance(layer.colormap, DirectLabelColormap)


def test_exports_for_imagej(make_napari_viewer, qtbot, tmp_path):
    import tifffile
    from skimage.segmentation import expand_labels

    from hyperspy_mmdl import io
    from hyperspy_mmdl.grains.export import count_particles

    viewer = make_napari_viewer()
    s, image = _film(viewer)
    touching = viewer.add_labels(expand_labels(s.labels, 3), name="touching")
    widget = _widget(viewer)
    widget.reset_choices()
    widget.image.value, widget.labels_picker.value = image, touching
    widget.measure_layer()
    _wait(qtbot, widget)
    n = len(widget.table)
    out = widget.export_tiff(tmp_path / "labels.tif")
    back = tifffile.imread(out)
    assert back.dtype == np.uint16 and np.array_equal(back, touching.data)
    cal = io.load(out).calibration
    assert cal.pixel_size == pytest.approx((10.0, 10.0)) and cal.unit == "nm"
    mask = tifffile.imread(widget.export_tiff(tmp_path / "mask.tif", binary=True))
    assert count_particles(touching.data > 0) < n and count_particles(mask) == n
    csv = widget.export_csv(tmp_path / "grains.csv")
    assert len(pd.read_csv(csv)) == n


def test_frame_table_shows_every_row_without_copying_it(qtbot):
    """The grain table: 50 000 rows set at once, cells formatted as shown, QTableWidget's calls kept."""
    from qtpy.QtCore import Qt

    from napari_mmdl.widgets.frame_table import FrameTable

    n = 50_000
    df = pd.DataFrame({"label": np.arange(1, n + 1), "area": np.linspace(0.0, 1.0, n), "name": ["a"] * n})
    table = FrameTable(["label", "area [µm²]"])
    qtbot.addWidget(table)
    table.set_frame(df, ["label", "area"], ["label", "area [µm²]"])
    assert table.rowCount() == n and table.columnCount() == 2
    assert table.model().headerData(1, Qt.Horizontal) == "area [µm²]"
    assert table.cell_text(n - 1, 0) == str(n) and table.cell_text(n - 1, 1) == "1"
    assert table.cell_text(1, 1) == f"{df['area'][1]:.4g}"
    clicked = []
    table.cellClicked.connect(lambda r, c: clicked.append((r, c)))
    table.selectRow(31_000)
    assert table.currentRow() == 31_000
    table.clicked.emit(table.model().index(7, 1))
    assert clicked == [(7, 1)]
