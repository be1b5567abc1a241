"""The Grains widget on stacks, in a real napari viewer (Xvfb): every frame through the pipeline."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from hyperspy_mmdl.pipeline import AnalysisParameters, analyze_frame


def _wait_done(qtbot, widget, timeout=300_000):
    qtbot.waitUntil(lambda: widget._worker is None, timeout=timeout)


def test_real_dm4_stack_gives_3d_labels_and_a_table_per_frame(make_napari_viewer, qtbot, shared):
    from napari_mmdl.widgets.grains import GrainsWidget, layer_calibration

    path = shared("ncempy_dm", "dmTest_3D_int16_64,65,66.dm4")
    viewer = make_napari_viewer()
    [image] = viewer.open(str(path), plugin="napari-mmdl")
    assert image.data.shape == (66, 65, 64)
    widget = GrainsWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget.image.value = image
    widget.run()
    _wait_done(qtbot, widget)
    layer = widget.labels_layer
    assert layer is not None and layer.data.shape == (66, 65, 64)
    assert tuple(layer.scale) == tuple(image.scale) and [str(u) for u in layer.units] == [str(u) for u in image.units]
    table, frames = widget.table, widget.frame_summary
    assert table.columns[1] == "frame" and sorted(table["frame"].unique()) == list(range(66))
    assert len(frames) == 66 and list(frames["frame"]) == list(range(66))
    assert widget.summary_grid.rowCount() == 66 and "66 frames" in widget.status.value
    np.testing.assert_array_equal(frames["n_grains"], table.groupby("frame").size().reindex(range(66), fill_value=0))
    # labels are unique over the stack: napari's "index" finds the right row from any frame
    per_frame = [set(np.unique(layer.data[k])) - {0} for k in range(66)]
    assert sum(len(s) for s in per_frame) == len(set().union(*per_frame)) == len(table)
    assert np.array_equal(table["index"], table["label"])
    # each frame is what the pipeline gives for that frame alone
    cal = layer_calibration(image)
    params = AnalysisParameters.from_segment_kwargs(widget.parameters())
    for k in (0, 33, 65):
        fa = analyze_frame(np.asarray(image.data[k]), cal, params)
        rows = table[table["frame"] == k]
        np.testing.assert_allclose(rows["area"], fa.table["area"])
        np.testing.assert_allclose(rows["ecd"], fa.table["ecd"])
        np.testing.assert_array_equal(layer.data[k] > 0, fa.labels > 0)
        assert frames.loc[k, "mean_ecd"] == pytest.approx(fa.summary["mean_ecd"])


def test_synthetic_stack_frames_summary_and_navigation(make_napari_viewer, qtbot, tmp_path):
    from napari_mmdl._sample_data import sample_polycrystal_stack
    from napari_mmdl.widgets.grains import GrainsWidget

    viewer = make_napari_viewer()
    (data, kw, _), _ = sample_polycrystal_stack()
    image = viewer.add_image(data, **kw)
    widget = GrainsWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget.image.value = image
    widget.method.value = "boundary"
    widget.run()
    _wait_done(qtbot, widget)
    table, frames = widget.table, widget.frame_summary
    assert len(frames) == 5 and widget.labels_layer.data.shape == data.shape
    for k in range(5):
        rows = table[table["frame"] == k]
        assert frames.loc[k, "n_grains"] == len(rows) > 10
        assert frames.loc[k, "mean_ecd"] == pytest.approx(rows["ecd"].mean())
    # a row of the frames table shows that frame; the histogram follows it
    widget.summary_grid.cellClicked.emit(3, 0)
    assert viewer.dims.current_step[0] == 3 and widget.current_frame() == 3
    assert widget.summary["n_grains"] == frames.loc[3, "n_grains"]
    # a grain of frame 4: its row moves the viewer to frame 4 and selects it
    r = int(np.flatnonzero(table["frame"].to_numpy() == 4)[2])
    widget.grid.cellClicked.emit(r, 0)
    assert viewer.dims.current_step[0] == 4
    assert widget.labels_layer.selected_label == int(table["label"].iloc[r])
    # the stack's labels measured again against the stack (Measure labels): the same table
    widget.measure_layer(labels=widget.labels_layer, image=image)
    _wait_done(qtbot, widget)
    np.testing.assert_array_equal(widget.table["label"], table["label"])
    np.testing.assert_array_equal(widget.table["frame"], table["frame"])
    np.testing.assert_allclose(widget.table["perimeter"], table["perimeter"])
    table = widget.table
    # exports: the per-frame summary beside the grain table
    out = widget.export_csv(tmp_path / "grains.csv")
    from hyperspy_mmdl.tables import read_table

    assert len(read_table(out)) == len(table) and "frame" in read_table(out).columns
    back = read_table(tmp_path / "grains_frames.csv")
    assert list(back["n_grains"]) == list(frames["n_grains"]) and back.attrs["units"]["mean_ecd"] == "nm"


def test_cancel_stops_a_stack_and_changes_nothing(make_napari_viewer, qtbot):
    from napari_mmdl._sample_data import sample_polycrystal_stack
    from napari_mmdl.widgets.grains import GrainsWidget

    viewer = make_napari_viewer()
    (data, kw, _), _ = sample_polycrystal_stack()
    image = viewer.add_image(np.concatenate([data, data]), **kw)  # 10 frames
    widget = GrainsWidget(viewer)
    widget.image.value = image
    seen = []
    worker = widget.run()
    assert widget.cancel_button.enabled and not widget.run_button.enabled

    def first_frame(step):
        seen.append(step)
        widget.cancel()
    worker.yielded.connect(first_frame)
    aborted = []
    worker.aborted.connect(lambda: aborted.append(True))
    _wait_done(qtbot, widget)
    assert aborted and seen and seen[-1][0] < 10
    assert widget.labels_layer is None and len(viewer.layers) == 1
    assert "cancelled" in widget.status.value
    assert widget.run_button.enabled and not widget.cancel_button.enabled


def test_frames_follow_the_viewer_in_mixed_units(make_napari_viewer, qtbot):
    """A stack whose frame axis is in µm and image axes in nm (napari's world is then in nm
    throughout): the frame shown, a row's frame and a click in the canvas still agree."""
    from napari.utils.interactions import mouse_press_callbacks

    from hyperspy_mmdl.synthetic import polycrystal
    from napari_mmdl.widgets.grains import GrainsWidget

    s = polycrystal((96, 96), pixel_size=10.0, unit="nm", n_frames=3, seed=3)
    viewer = make_napari_viewer()
    image = viewer.add_image(s.image, scale=(4.0, 10.0, 10.0), units=("um", "nm", "nm"), name="mixed")
    widget = GrainsWidget(viewer)
    widget.image.value = image
    widget.method.value = "boundary"
    widget.run()
    _wait_done(qtbot, widget)
    table, layer = widget.table, widget.labels_layer
    viewer.dims.set_current_step(0, 2)
    assert widget.current_frame() == 2 and widget.summary is layer.metadata["grain_frame_summaries"][2]
    r = int(np.flatnonzero(table["frame"].to_numpy() == 1)[0])
    widget.grid.cellClicked.emit(r, 0)
    assert viewer.dims.current_step[0] == 1 and widget.current_frame() == 1
    # a click on another grain of frame 1, at its world position (nm on every axis)
    other = table[table["frame"] == 1].iloc[3]
    yx = np.argwhere(layer.data[1] == int(other["label"]))[0]
    world = np.asarray(layer.data_to_world((1, *yx)), float) * np.array([1000.0, 1.0, 1.0])
    viewer.layers.selection.active = image
    event = SimpleNamespace(type="mouse_press", position=tuple(world), view_direction=None,
                            dims_displayed=(1, 2), modifiers=(), button=1, is_dragging=False)
    mouse_press_callbacks(viewer, event)
    assert layer.selected_label == int(other["label"])
    assert int(table.iloc[widget.grid.currentRow()]["label"]) == int(other["label"])
