"""Set Scale in a real napari viewer (Xvfb): real uncalibrated SEM JPEGs with their data bars."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from hyperspy_mmdl.calibration import Calibration
from hyperspy_mmdl.errors import CalibrationError

FOLDER = "perovskite_sem_fapbi3_databar"


def test_from_scale_bar():
    cal = Calibration.from_scale_bar(100, 1, "µm")
    assert cal.pixel_size == pytest.approx((0.01, 0.01)) and cal.unit == "µm"
    assert Calibration.from_scale_bar(45, 500, "nm").pixel_size[0] == pytest.approx(500 / 45)
    for bad in ((0, 1, "µm"), (100, 0, "µm"), (100, float("nan"), "µm"), (100, 1, "s"), (100, 1, "px")):
        with pytest.raises(CalibrationError):
            Calibration.from_scale_bar(*bad)


def _open(viewer, path):
    [layer] = viewer.open(str(path))  # napari's builtin reader: an RGB layer in pixels
    assert tuple(layer.scale) == (1.0, 1.0)
    return layer


def test_scale_bar_found_on_every_real_jpeg(make_napari_viewer, shared):
    """The data bar's scale bar gives each file's pixel size (calibration.csv: printed field of view)."""
    from napari_mmdl.widgets.set_scale import SetScaleWidget

    folder = shared(FOLDER)
    truth = pd.read_csv(folder / "calibration.csv")
    viewer = make_napari_viewer()
    widget = SetScaleWidget(viewer)
    for row in truth.itertuples():
        viewer.layers.clear()
        image = _open(viewer, folder / row.file)
        widget.reset_choices()
        widget.image.value = image
        assert widget.line_layer.value is None
        assert f"scale bar of {row.scale_bar_px:g} px found" in widget.status.value  # offered at once
        bar = widget.find_scale_bar()
        assert bar is not None and abs(widget.line_length_px() - row.scale_bar_px) <= 1, row.file
        widget.distance.value, widget.unit.value = float(row.scale_bar_um), "µm"
        cal = widget.apply()
        nm = row.pixel_size_nm
        assert cal.pixel_size_in("nm")[0] == pytest.approx(nm, rel=0.01), row.file
        assert image.scale[-1] == pytest.approx(nm / 1000, rel=0.01) and str(image.units[-1]) == "micrometer"
        assert image.metadata["unit"] == "µm" and "Set Scale" in image.metadata["calibration"]


def test_set_scale_makes_the_grain_table_physical(make_napari_viewer, qtbot, shared):
    from napari_mmdl.widgets.grains import GrainsWidget

    path = shared(FOLDER, "198.jpg")
    viewer = make_napari_viewer()
    image = _open(viewer, path)
    grains = GrainsWidget(viewer)
    viewer.window.add_dock_widget(grains)
    grains.image.value = image
    assert grains.size.label == "size (px²)"
    grains.run()
    qtbot.waitUntil(lambda: grains._worker is None, timeout=300_000)
    labels = grains.labels_layer
    assert grains.table.attrs["units"]["area"] == "px²"
    px_area = grains.table["area"].to_numpy().copy()
    n = len(px_area)

    ss = grains.open_set_scale()
    assert ss.image.value is image
    ss.find_scale_bar()
    line = ss.line_layer.value
    assert ss.line_length_px() == pytest.approx(100.0)  # the JEOL bar: 1 µm = 100 px
    ss.distance.value, ss.unit.value = 1.0, "µm"
    ss.apply()
    # the image, its labels and the line are calibrated; the table is measured again in nm
    for layer in (image, labels, line):
        assert tuple(layer.scale[-2:]) == pytest.approx((0.01, 0.01)), layer.name
        assert [str(u) for u in layer.units[-2:]] == ["micrometer"] * 2
    assert grains.table.attrs["units"]["area"] == "nm²" and grains.table.attrs["units"]["ecd"] == "nm"
    assert len(grains.table) == n
    np.testing.assert_allclose(grains.table["area"], px_area * 100.0)  # (10 nm)² per pixel
    assert grains.summary["units"]["mean_ecd"] == "nm"
    assert grains.size.label == "size (nm²)" and "nm²" in grains.status.value
    assert ss.line_length_px() == pytest.approx(100.0)  # the line moved with the image

    # a typed pixel size: calibrated again, measured again
    ss.source.value = "a pixel size"
    ss.pixel_size.value, ss.unit.value = 20.0, "nm"
    ss.apply()
    assert tuple(image.scale) == pytest.approx((0.02, 0.02)) or tuple(image.scale) == pytest.approx((20.0, 20.0))
    np.testing.assert_allclose(grains.table["area"], px_area * 400.0)


def test_a_drawn_line_in_any_layer_transform(make_napari_viewer):
    from napari_mmdl.widgets.set_scale import SetScaleWidget

    viewer = make_napari_viewer()
    image = viewer.add_image(np.zeros((200, 300), np.uint8), name="plain")
    widget = SetScaleWidget(viewer)
    viewer.window.add_dock_widget(widget)
    shapes = widget.draw_line()
    assert shapes.mode == "add_line" and widget.line_layer.value is shapes
    shapes.add_lines(np.array([[10.0, 10.0], [70.0, 90.0]]))  # a slanted line: 100 px
    assert widget.line_length.value == "100.00 px"
    # a line drawn in a layer of its own transform is measured in the image's pixels
    other = viewer.add_shapes(name="elsewhere", scale=(2.0, 2.0), translate=(5.0, 5.0))
    other.add_lines(np.array([[0.0, 0.0], [0.0, 25.0]]))  # 50 world units = 50 image px
    widget.reset_choices()
    widget.line_layer.value = other
    assert widget.line_length_px() == pytest.approx(50.0)
    widget.distance.value, widget.unit.value = 250.0, "nm"
    cal = widget.apply()
    assert cal.pixel_size == pytest.approx((5.0, 5.0)) and cal.unit == "nm"
    assert tuple(image.scale) == pytest.approx((5.0, 5.0))
    # without a line: a message, nothing changes
    viewer.layers.remove(other)
    viewer.layers.remove(shapes)
    assert widget.line_layer.value is None
    assert widget.line_length_px() is None and widget.apply() is None and "line" in widget.status.value


def test_the_files_own_calibration_is_offered_when_napari_reader_dropped_it(make_napari_viewer, qtbot, shared):
    """napari's builtin reader opens a calibrated Zeiss TIFF in pixels: the Grains widget says the
    file holds a pixel size, and Set Scale fills it in (as rosettasciio reads it) for Apply."""
    from napari_mmdl.widgets.grains import GrainsWidget

    from hyperspy_mmdl import io

    path = shared("rosettasciio_dm_tiff", "tiff", "sem_Zeiss", "test_tiff_Zeiss_SEM_512pix.tif")
    held = io.load(path, lazy=True).calibration.image
    viewer = make_napari_viewer()
    [image] = viewer.open(str(path), plugin="napari")
    assert tuple(image.scale) == (1.0, 1.0)
    grains = GrainsWidget(viewer)
    grains.image.value = image
    grains.run()
    qtbot.waitUntil(lambda: grains._worker is None, timeout=300_000)
    assert f"its file holds {held.describe()}" in grains.status.value

    ss = grains.open_set_scale()
    assert ss.source.value == "a pixel size" and "its file holds" in ss.status.value
    ss.apply()
    assert tuple(image.scale) == pytest.approx(held.pixel_size, rel=1e-6)  # all its digits, not 3 decimals
    assert grains.table.attrs["units"]["area"] == "nm²"
    # a calibrated layer is left alone
    [plugin_read] = viewer.open(str(path), plugin="napari-mmdl")
    grains.image.value = plugin_read
    grains.run()
    qtbot.waitUntil(lambda: grains._worker is None, timeout=300_000)
    assert "its file holds" not in grains.status.value
