"""Grains dock widget: segment an image or a stack, measure any Labels layer, browse and export grains.

* **Segment and measure** runs :func:`hyperspy_mmdl.pipeline.analyze_frame` on
  every frame of the chosen image (a stack frame by frame, in a worker thread
  with progress and Cancel) into one Labels layer shaped like the image, with
  the image's scale, translate and units; grain labels are unique over the
  stack.
* **Measure labels** measures any Labels layer (edited here, painted by hand,
  made in Fiji or micro-sam) against any image layer, with the image's
  calibration and data bar (:func:`hyperspy_mmdl.pipeline.measure_frame`);
  **Re-measure** does it again for the current layer after editing.
* ImageJ's *Analyze Particles* ranges: ``size`` (``0-Infinity``, in the table's
  area unit or pixels) and ``circularity`` (``0.00-1.00``)
  (:func:`hyperspy_mmdl.grains.select.select_grains`); grains outside them are
  left out of the table and the summary.
* The Labels layer's ``features`` hold the table (``index`` = the label, as
  napari expects, ``frame`` for stacks); its ``metadata`` the per-frame
  summary. The widget shows them: a grain table, a per-frame table and an ECD
  histogram with the frame's summary. Clicking a table row selects and
  centres its grain; clicking a grain in the canvas selects its row, clicking
  the background shows all grains again.
* Labels can be coloured by any numeric column (a colormap over its range).
* Exports: the table (CSV, units in the headers; a stack's per-frame summary
  beside it), the labels as a calibrated 16-bit TIFF and as a binary TIFF in
  which ImageJ finds one particle per grain
  (:mod:`hyperspy_mmdl.grains.export`).
* **Set Scale...** opens the Set Scale widget (:mod:`.set_scale`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FloatSpinBox,
    Label,
    LineEdit,
    ProgressBar,
    PushButton,
)
from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QSplitter,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from hyperspy_mmdl.pipeline import grains_text

from . import grain_layers as gl
from ._model_picker import image_layer_picker, overlay_kwargs
from .frame_table import FrameTable

METHODS = ("auto", "boundary", "threshold", "learned")
LINES = ("auto", "dark", "bright", "edge")
THRESHOLDS = ("otsu", "isodata")
TABLE_COLUMNS = ("frame", "label", "area", "ecd", "perimeter", "major_axis", "minor_axis", "aspect_ratio",
                 "circularity", "solidity", "touches_border")
NO_COLOUR = "(label colours)"
COLORMAPS = ("viridis", "magma", "plasma", "cividis", "turbo", "coolwarm")
OUTSIDE_COLOUR = (0.5, 0.5, 0.5, 0.35)  # labels without a table row (outside the ranges)


def layer_calibration(layer):
    """The calibration of the image axes of a napari layer (one readable unit):
    :meth:`Calibration.from_napari <hyperspy_mmdl.calibration.Calibration.from_napari>`."""
    from hyperspy_mmdl.calibration import Calibration

    return Calibration.from_napari(layer).image


def _labels_choices(viewer):
    def choices(_w=None):
        import napari

        return [(layer.name, layer) for layer in (viewer.layers if viewer is not None else [])
                if isinstance(layer, napari.layers.Labels)]
    return choices


class GrainsWidget(QWidget):
    """Segment, measure and summarise the grains of an image, a stack or a Labels layer."""

    def __init__(self, napari_viewer=None):
        super().__init__()
        self.viewer = napari_viewer
        self.labels_layer = None
        self.table = None  # pandas DataFrame shown (napari features: index, [frame], label, ...)
        self.summary = None  # summary dict of the frame shown
        self.frame_summary = None  # pandas DataFrame: one row per frame
        self._worker = None
        self._source = None
        self._held = None  # the calibration the image's file holds when the layer lost it
        self._params = None
        self._sel = None
        self._default_colormap = None
        self._watched_image = None
        self._set_scale = None

        self.image = image_layer_picker(napari_viewer)
        self.method = ComboBox(label="method", choices=METHODS, value="auto")
        self.lines = ComboBox(label="boundary lines", choices=LINES, value="auto")
        self.threshold = ComboBox(label="threshold", choices=THRESHOLDS, value="otsu")
        self.smoothing = FloatSpinBox(label="smoothing (nm)", value=0.0, min=0.0, max=1e6, step=1.0,
                                      tooltip="Gaussian scale; 0 = one pixel")
        self.width = FloatSpinBox(label="boundary width (nm)", value=0.0, min=0.0, max=1e6, step=1.0,
                                  tooltip="width of the boundary lines; 0 = two pixels")
        self.min_area = FloatSpinBox(label="min area (µm²)", value=0.0, min=0.0, max=1e6, step=0.001,
                                     tooltip="segmentation: smaller regions are dropped; 0 = 12 px²")
        self.exclude_border = CheckBox(label="exclude border grains", value=False)
        self.data_bar = CheckBox(label="mask SEM data bar", value=True)
        self.size = LineEdit(label="size (µm²)", value="0-Infinity",
                             tooltip="ImageJ's size range: grains outside it are left out of table and summary")
        self.circularity = LineEdit(label="circularity", value="0.00-1.00",
                                    tooltip="ImageJ's circularity range (4π·area/perimeter²)")
        self.pixel_units = CheckBox(label="size in pixels", value=False)
        self.run_button = PushButton(text="Segment and measure")
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        self.progress = ProgressBar(label="", value=0, min=0, max=1, visible=False)
        self.status = Label(label="", value="")
        self.status.native.setWordWrap(True)  # a long note wraps; it does not widen the dock over the canvas
        self.labels_picker = image_layer_picker(napari_viewer, label="labels", choices=_labels_choices(napari_viewer))
        self.measure_button = PushButton(text="Measure labels (against the image)")
        self.remeasure_button = PushButton(text="Re-measure", enabled=False)
        self.colour_by = ComboBox(label="colour by", choices=[NO_COLOUR], value=NO_COLOUR)
        self.colormap = ComboBox(label="colormap", choices=COLORMAPS, value="viridis")
        self.export_button = PushButton(text="Export CSV", enabled=False)
        self.export_labels_button = PushButton(text="Export labels TIFF (16-bit)", enabled=False)
        self.export_binary_button = PushButton(text="Export binary TIFF (ImageJ)", enabled=False)
        self.set_scale_button = PushButton(text="Set Scale...")
        self.controls = Container(widgets=[
            self.image, self.set_scale_button, self.run_button, self.cancel_button, self.progress, self.status],
            labels=True)
        self.settings = Container(widgets=[
            self.method, self.lines, self.threshold, self.smoothing, self.width, self.min_area,
            self.exclude_border, self.data_bar, self.size, self.circularity, self.pixel_units], labels=True)
        self.layer_tools = Container(widgets=[
            self.labels_picker, self.measure_button, self.remeasure_button, self.colour_by, self.colormap,
            self.export_button, self.export_labels_button, self.export_binary_button], labels=True)

        self.grid = self._table_widget(TABLE_COLUMNS)
        self.grid.cellClicked.connect(self._row_clicked)
        self.summary_grid = self._table_widget(gl.SUMMARY_COLUMNS)
        self.summary_grid.cellClicked.connect(self._summary_row_clicked)
        self.tabs = QTabWidget()
        self.tabs.addTab(self.settings.native, "settings")
        self.tabs.addTab(self.layer_tools.native, "labels, colour, export")
        self.tabs.addTab(self.grid, "grains")
        self.tabs.addTab(self.summary_grid, "frames")

        from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
        from matplotlib.figure import Figure

        self.figure = Figure(figsize=(3.5, 2.6), tight_layout=True)
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.canvas.setMinimumHeight(180)

        splitter = QSplitter(Qt.Vertical)
        splitter.addWidget(self.tabs)
        splitter.addWidget(self.canvas)
        splitter.setStretchFactor(0, 3)
        splitter.setStretchFactor(1, 2)
        layout = QVBoxLayout()
        layout.addWidget(self.controls.native)
        layout.addWidget(splitter, 1)
        self.setLayout(layout)

        self.run_button.changed.connect(self.run)
        self.cancel_button.changed.connect(self.cancel)
        self.measure_button.changed.connect(self.measure_layer)
        self.remeasure_button.changed.connect(self.remeasure)
        self.export_button.changed.connect(self._export_dialog)
        self.export_labels_button.changed.connect(lambda *_: self._export_tiff_dialog(binary=False))
        self.export_binary_button.changed.connect(lambda *_: self._export_tiff_dialog(binary=True))
        self.set_scale_button.changed.connect(self.open_set_scale)
        self.colour_by.changed.connect(self._recolour)
        self.colormap.changed.connect(self._recolour)
        self.method.changed.connect(self._method_changed)
        self._method_changed()
        self.image.changed.connect(self._image_changed)
        self.pixel_units.changed.connect(self._units_changed)
        self._image_changed()
        if napari_viewer is not None:
            napari_viewer.mouse_drag_callbacks.append(self._canvas_clicked)
            napari_viewer.dims.events.current_step.connect(self._step_changed)

    @staticmethod
    def _table_widget(columns) -> FrameTable:
        return FrameTable(list(columns))

    def reset_choices(self, *_):
        """napari calls this when layers change: refresh the layer pickers."""
        self.image.reset_choices()
        self.labels_picker.reset_choices()

    def show_tab(self, name: str) -> None:
        """Bring a tab forward: ``"settings"``, ``"labels, colour, export"``, ``"grains"``, ``"frames"``."""
        for i in range(self.tabs.count()):
            if self.tabs.tabText(i) == name:
                self.tabs.setCurrentIndex(i)

    # ------------------------------------------------------------------ choices
    def _image_changed(self, *_):
        layer = self.image.value
        if self._watched_image is not None:
            for ev in (self._watched_image.events.scale, self._watched_image.events.units):
                ev.disconnect(self._units_changed)
        self._watched_image = layer
        if layer is not None:
            layer.events.scale.connect(self._units_changed)
            layer.events.units.connect(self._units_changed)
        self._units_changed()

    def _units_changed(self, *_):
        """Label the length and area fields in the chosen image's units (pixels without calibration)."""
        from hyperspy_mmdl.pipeline import frame_calibration

        layer = self.image.value
        cal = layer_calibration(layer) if layer is not None else None
        calibrated = cal is None or cal.is_calibrated
        length, area = ("nm", "µm²") if calibrated else ("px", "px²")
        self.smoothing.label = f"smoothing ({length})"
        self.width.label = f"boundary width ({length})"
        self.min_area.label = f"min area ({area})"
        table_area = "px²" if self.pixel_units.value or cal is None else frame_calibration(cal).area_unit
        self.size.label = f"size ({table_area})"

    def _method_changed(self, *_):
        m = self.method.value
        self.lines.visible = m in ("auto", "boundary")
        self.threshold.visible = m in ("auto", "threshold")
        self.smoothing.visible = self.width.visible = m != "learned"  # the model sets its own scale

    def parameters(self, calibrated: bool = True) -> dict:
        """The segmentation keyword arguments of the current settings.

        Physical units (nm, µm²) for a calibrated image; for an image without
        calibration the same numbers are taken as pixels (px, px²).
        """
        p = dict(method=self.method.value, exclude_border=bool(self.exclude_border.value),
                 data_bar="auto" if self.data_bar.value else False)
        if self.method.value in ("auto", "boundary"):
            p["lines"] = self.lines.value
        if self.method.value in ("auto", "threshold"):
            p["threshold"] = self.threshold.value
        for key, field, unit in (("smoothing", self.smoothing, "nm"), ("boundary_width", self.width, "nm"),
                                 ("min_area", self.min_area, "µm²")):
            if field.value > 0 and (key == "min_area" or self.method.value != "learned"):
                p[key] = f"{field.value} {unit}" if calibrated else float(field.value)
        return p

    def analysis_parameters(self, calibrated: bool = True):
        """The pipeline's :class:`~hyperspy_mmdl.pipeline.AnalysisParameters` of the current settings."""
        from hyperspy_mmdl.pipeline import AnalysisParameters

        return AnalysisParameters.from_segment_kwargs(self.parameters(calibrated))

    def selection(self, calibration=None) -> dict:
        """The size and circularity ranges (size in pixels when a calibration is given)."""
        sel = gl.selection(self.size.value, self.circularity.value, self.pixel_units.value)
        if calibration is not None:
            from hyperspy_mmdl.pipeline import frame_calibration

            sel = gl.in_pixels(sel, frame_calibration(calibration))
        return sel

    # ------------------------------------------------------------------ worker
    def _start(self, job, on_result, what: str):
        """Run the generator function ``job`` (yields ``(done, total)``) in a worker thread."""
        from napari.qt.threading import create_worker

        worker = create_worker(job, _start_thread=False, _progress={"desc": what})
        self._worker = worker

        def progress(step):
            done, total = step
            self.progress.max = max(int(total), 1)
            self.progress.value = int(done)
            self.status.value = f"{what}: frame {done} of {total}"

        def aborted():
            self.status.value = f"{what}: cancelled; nothing changed"

        worker.yielded.connect(progress)
        worker.returned.connect(on_result)
        worker.errored.connect(self._failed)
        worker.aborted.connect(aborted)
        worker.finished.connect(self._done)
        for b in (self.run_button, self.measure_button, self.remeasure_button):
            b.enabled = False
        self.cancel_button.enabled = True
        self.progress.visible = True
        self.progress.value = 0
        self.progress.max = 0  # busy until the first frame is done
        self.status.value = f"{what}..."
        worker.start()
        return worker

    def cancel(self, *_):
        """Stop the running job after the current frame."""
        if self._worker is not None:
            self._worker.quit()

    def _done(self):
        self._worker = None
        self.run_button.enabled = self.measure_button.enabled = True
        self.remeasure_button.enabled = self.labels_layer is not None
        self.cancel_button.enabled = False
        self.progress.max = 1
        self.progress.visible = False

    def _failed(self, err):
        self.status.value = f"failed: {err}"

    # ------------------------------------------------------------------ segment
    def run(self, *_):
        """Segment and measure every frame of the chosen image in a worker thread
        (:func:`hyperspy_mmdl.pipeline.analyze_frame`); returns the worker."""
        layer = self.image.value
        if layer is None:
            self.status.value = "choose an image layer"
            return None
        cal = layer_calibration(layer)
        try:
            sel = self.selection()
        except ValueError as err:
            self.status.value = str(err)
            return None
        params = self.analysis_parameters(calibrated=cal.is_calibrated)
        data = gl.image_data(layer)
        self._source, self._params, self._sel = layer, params, gl.in_pixels(sel, _frame_cal(cal))
        source = None if cal.is_calibrated else gl.file_source(layer)
        self._held = None

        def job():
            if source is not None:  # off the GUI thread: the first read imports the readers
                self._held = gl.file_calibration(source=source)
            return (yield from gl.segment_frames(data, cal, params, rgb=bool(layer.rgb), sel=sel))

        return self._start(job, self._segmented, "segmenting")

    def _segmented(self, result):
        layer = self._source
        kw = overlay_kwargs(layer)
        target = self.labels_layer
        if (target is None or target not in self.viewer.layers or target.metadata.get("source") != layer.name
                or target.data.shape != result.labels.shape):
            target = self.viewer.add_labels(result.labels, name=f"{layer.name} grains", **kw)
        else:
            target.data = result.labels
        self._attach(target)
        gl.publish(target, result, source=layer.name, params=self._params, sel=self._sel)
        self.show_tab("frames" if result.stack else "grains")
        first = result.frames[0]
        info = first.segment_info
        frames = f" in {len(result.frames)} frames" if result.stack else ""
        self.status.value = (f"{first.method}" + (f" ({info['lines']} lines)" if info.get("lines") else "")
                             + f": {grains_text(result.n_grains)}{frames}"
                             + (f", {result.left_out} outside the ranges" if result.left_out else "")
                             + ("" if first.calibration.is_calibrated else " (no calibration: pixels)")
                             + (f"; its file holds {self._held.describe()}, which napari's own reader left out: "
                                "Set Scale offers it" if self._held is not None else ""))
        self.status.tooltip = "\n".join(result.notes) or None
        doubts = list(dict.fromkeys(d for fa in result.frames for d in fa.segment_info.get("quality", ())))
        if doubts:  # doubtful results are said where the user looks, not only in the layer's metadata
            from napari.utils.notifications import show_warning

            self.status.value += f"; check: {doubts[0]}" + (f" (+{len(doubts) - 1} more)" if len(doubts) > 1 else "")
            for d in doubts:
                show_warning(f"{layer.name}: {d}")

    # ------------------------------------------------------------------ measure existing labels
    def measure_layer(self, *_, labels=None, image=None):
        """Measure a Labels layer (the picker's, or ``labels``) against an image layer (the
        picker's, or ``image``): the image's calibration and data bar; in a worker thread."""
        labels = labels if labels is not None else self.labels_picker.value
        image = image if image is not None else self.image.value
        if labels is None or image is None:
            self.status.value = "choose a labels layer and an image layer"
            return None
        lab = np.asarray(labels.data[0] if getattr(labels, "multiscale", False) else labels.data)
        data = gl.image_data(image)
        shape = gl.data_shape(data, bool(image.rgb))
        if lab.shape[-2:] != shape[-2:] or (lab.ndim > 2 and len(shape) > 2 and lab.shape != shape):
            self.status.value = (f"labels {labels.name!r} {lab.shape} and image {image.name!r} {shape} "
                                 f"differ in shape")
            return None
        if len(shape) > 2 and lab.ndim == 2:  # one frame of labels over a stack: the frame shown
            data = np.asarray(data[self._current_index(image)])
        cal = layer_calibration(image)
        try:
            sel = self.selection()
        except ValueError as err:
            self.status.value = str(err)
            return None
        params = self.analysis_parameters(calibrated=cal.is_calibrated)
        self._params, self._sel = params, gl.in_pixels(sel, _frame_cal(cal))

        def job():
            return (yield from gl.measure_frames(lab, cal, params, image=data, rgb=bool(image.rgb), sel=sel))

        def measured(result):
            spatial = overlay_kwargs(image)
            n = lab.ndim
            if tuple(labels.scale[-2:]) != tuple(spatial["scale"][-2:]) or \
                    tuple(labels.translate[-2:]) != tuple(spatial["translate"][-2:]):
                labels.scale = tuple(labels.scale[:n - 2]) + tuple(spatial["scale"][-2:])
                labels.translate = tuple(labels.translate[:n - 2]) + tuple(spatial["translate"][-2:])
                if "units" in spatial:
                    labels.units = tuple(labels.units[:n - 2]) + tuple(spatial["units"][-2:])
            self._attach(labels)
            gl.publish(labels, result, source=image.name, params=params, sel=self._sel)
            self.show_tab("grains")
            self.status.value = (f"measured {labels.name!r} against {image.name!r}: {grains_text(result.n_grains)}"
                                 + (f", {result.left_out} outside the ranges" if result.left_out else ""))

        return self._start(job, measured, "measuring")

    def remeasure(self, *_):
        """Measure the current Labels layer again (after editing or a change of ranges):
        :func:`hyperspy_mmdl.pipeline.measure_frame` on the same analysed rows, the source
        image's calibration. A single image is measured at once (returns None), a stack in a
        worker thread (returns the worker)."""
        layer = self.labels_layer
        if layer is None:
            return None
        if self.viewer is not None and layer not in self.viewer.layers:
            self.status.value = f"the labels layer {layer.name!r} was removed"
            return None
        image = gl.source_image(self.viewer, layer)
        cal = layer_calibration(image if image is not None else layer)
        try:
            sel = self.selection()
        except ValueError as err:
            self.status.value = str(err)
            return None
        params = layer.metadata.get("analysis_parameters") or self.analysis_parameters(cal.is_calibrated)
        rows = layer.metadata.get("analysed_rows")
        lab = np.asarray(layer.data)
        stored = gl.in_pixels(sel, _frame_cal(cal))

        def job():
            return (yield from gl.measure_frames(lab, cal, params, analysed_rows=rows, sel=sel))

        def measured(result):
            gl.publish(layer, result, params=params, sel=stored)
            self.status.value = (f"re-measured: {grains_text(result.n_grains)}"
                                 + (f", {result.left_out} outside the ranges" if result.left_out else ""))

        if lab.ndim == 2:  # one frame: milliseconds, and the table is there when this returns
            measured(gl.run_to_end(job()))
            return None
        return self._start(job, measured, "re-measuring")

    # ------------------------------------------------------------------ the layer shown
    def _attach(self, layer):
        """Show the grains of ``layer`` and follow its changes."""
        old = self.labels_layer
        if old is not None and old is not layer:
            old.events.features.disconnect(self._features_changed)
            old.events.selected_label.disconnect(self._label_selected)
            if self._default_colormap is not None:
                old.colormap = self._default_colormap
        if old is not layer:
            self._default_colormap = None
            layer.events.features.connect(self._features_changed)
            layer.events.selected_label.connect(self._label_selected)
        self.labels_layer = layer

    def _features_changed(self, *_):
        self._show_layer()
        layer, table = self.labels_layer, self.table
        if layer is not None and table is not None:
            unit = (table.attrs.get("units") or {}).get("area", "")
            self.status.value = f"{layer.name!r}: {grains_text(len(table))}, areas in {unit}"

    def _show_layer(self):
        """Fill tables, histogram and colours from the Labels layer's features and metadata."""
        from hyperspy_mmdl.tables import header

        layer = self.labels_layer
        if layer is None:
            return
        md = layer.metadata
        units = dict(md.get("grain_units") or {})
        table = layer.features.copy()
        table.attrs["units"] = units
        table.attrs["pixel_size"] = md.get("grain_pixel_size")
        self.table = table
        self.frame_summary = md.get("grain_summary")
        cols = [c for c in TABLE_COLUMNS if c in table.columns]
        self._fill(self.grid, table, cols, [header(c, units.get(c)) for c in cols])
        s = self.frame_summary
        if s is not None:
            su = dict(s.attrs.get("units") or {})
            scols = list(s.columns)
            self._fill(self.summary_grid, s, scols, [header(c, su.get(c)) for c in scols])
        numeric = [c for c in table.columns if c != "index" and np.issubdtype(table[c].dtype, np.number)]
        keep = self.colour_by.value if self.colour_by.value in numeric else NO_COLOUR
        self.colour_by.changed.disconnect(self._recolour)
        self.colour_by.choices = [NO_COLOUR] + numeric
        self.colour_by.value = keep
        self.colour_by.changed.connect(self._recolour)
        self._show_frame_summary()
        self._recolour()
        for b in (self.remeasure_button, self.export_button, self.export_labels_button, self.export_binary_button):
            b.enabled = True

    @staticmethod
    def _fill(grid, df, cols, headers):
        grid.set_frame(df, cols, headers)  # cells formatted when painted: any length in milliseconds

    def _stack(self) -> bool:
        layer = self.labels_layer
        if layer is None or (self.viewer is not None and layer not in self.viewer.layers):
            return False
        return bool(layer.metadata.get("grain_stack"))

    def _leading(self, layer) -> tuple:
        return tuple(layer.data.shape[:-2]) if layer.ndim > 2 else ()

    def _current_index(self, layer) -> int:
        """The flat frame index of ``layer`` shown by the viewer."""
        lead = tuple(np.shape(gl.image_data(layer)))[: layer.ndim - 2]
        if not lead or self.viewer is None:
            return 0
        data = gl.world_to_data(self.viewer, layer, self.viewer.dims.point)
        idx = tuple(int(min(max(round(float(v)), 0), n - 1)) for v, n in zip(data[: len(lead)], lead))
        return int(np.ravel_multi_index(idx, lead))

    def current_frame(self) -> int:
        """The frame (flat index) of the Labels layer the viewer shows."""
        if not self._stack() or self.viewer is None:
            return 0
        return self._current_index(self.labels_layer)

    def _show_frame_summary(self):
        summaries = (self.labels_layer.metadata.get("grain_frame_summaries") or [None]) \
            if self.labels_layer is not None else [None]
        k = min(self.current_frame(), len(summaries) - 1)
        self.summary = summaries[k]
        self._plot(k)

    def _step_changed(self, *_):
        if self._stack() and self.table is not None:
            self._show_frame_summary()

    def _plot(self, frame: int = 0):
        self.figure.clear()
        ax = self.figure.add_subplot(111)
        s = self.summary or {}
        table = self.table
        unit = (table.attrs.get("units") or {}).get("ecd", "") if table is not None else ""
        if table is not None and "frame" in table.columns:
            table = table[table["frame"] == frame]
        if table is not None and len(table):
            from hyperspy_mmdl.preprocess.normalize import intensity_histogram

            counts, edges = intensity_histogram(table["ecd"], bins=min(40, max(5, len(table) // 5)))
            ax.stairs(counts, edges, fill=True, color="0.4")  # one artist: drawn in milliseconds
        ax.set_xlabel(f"ECD ({unit})")
        ax.set_ylabel("grains")
        if s:
            lines = ([f"frame {frame}"] if self._stack() else []) + [
                f"n = {s['n_grains']}",
                f"mean ECD = {s['mean_ecd']:.4g} ± {s['sd_ecd']:.2g} {unit}",
                f"mean AR = {s['mean_aspect_ratio']:.3g}",
                f"GBLD = {s['gbld']:.4g} {s['units'].get('gbld', '')}"]
            if np.isfinite(s.get("astm_g_planimetric", np.nan)):
                lines.append(f"G = {s['astm_g_planimetric']:.2f} (Jeffries), {s['astm_g_intercept']:.2f} (Heyn)")
            if s.get("grain_size_class"):
                lines.append(f"class: {s['grain_size_class']}")
            ax.text(0.98, 0.97, "\n".join(lines), transform=ax.transAxes, ha="right", va="top", fontsize=7)
        self.canvas.draw_idle()

    # ------------------------------------------------------------------ selection both ways
    def _row_clicked(self, row, _col=None):
        """Select the grain of table row ``row``: its frame, its label highlighted, the view centred on it."""
        if self.table is None or self.labels_layer is None:
            return
        layer = self.labels_layer
        rec = self.table.iloc[int(row)]
        px = np.asarray(self.table.attrs.get("pixel_size") or _table_pixel_size(layer), dtype=float)
        lead = ()
        if "frame" in rec and layer.ndim > 2:
            lead = tuple(int(i) for i in np.unravel_index(int(rec["frame"]), self._leading(layer)))
            self._show_frame(layer, lead)
        layer.selected_label = int(rec["label"])
        layer.show_selected_label = True
        if self.viewer is not None and "centroid_x" in rec:
            # centroids are in the table's unit from the image corner: back to pixel centres, then world
            yx = (float(rec["centroid_y"]) / px[0] - 0.5, float(rec["centroid_x"]) / px[1] - 0.5)
            world = gl.data_to_world(self.viewer, layer, (lead or (0,) * (layer.ndim - 2)) + yx)
            scene = getattr(self.viewer, "scene", None)  # napari >= 0.9: viewer.scene.camera
            camera = scene.camera if scene is not None else self.viewer.camera
            camera.center = tuple(np.asarray(world)[-2:])

    def _summary_row_clicked(self, row, _col=None):
        """Show frame ``row`` of the stack."""
        layer = self.labels_layer
        if layer is None or layer.ndim < 3 or self.viewer is None:
            return
        self._show_frame(layer, tuple(int(i) for i in np.unravel_index(int(row), self._leading(layer))))

    def _show_frame(self, layer, lead: tuple) -> None:
        """Move the viewer to the frame ``lead`` (data indices of the leading axes) of ``layer``."""
        if self.viewer is None or not lead:
            return
        world = gl.data_to_world(self.viewer, layer, lead + (0, 0))
        offset = self.viewer.dims.ndim - layer.ndim
        self.viewer.dims.set_point(list(range(offset, offset + len(lead))), list(world[: len(lead)]))

    def _label_selected(self, *_):
        """Select the table row of the layer's selected label (in the frame shown)."""
        if self.table is None or self.labels_layer is None or not len(self.table):
            return
        match = self.table["label"].to_numpy() == int(self.labels_layer.selected_label)
        if "frame" in self.table.columns and match.sum() > 1:
            match &= self.table["frame"].to_numpy() == self.current_frame()
        rows = np.flatnonzero(match)
        if len(rows):
            r = int(rows[0])
            if self.grid.currentRow() != r:
                self.grid.selectRow(r)  # and scrolls to it

    def _canvas_clicked(self, viewer, event):
        """A click on a grain (no drawing tool active) selects it and its row; on the background
        all grains are shown again."""
        layer = self.labels_layer
        if layer is None or layer not in viewer.layers or event.type != "mouse_press" or not layer.visible:
            return
        active = viewer.layers.selection.active
        if active is not None and getattr(active, "mode", "pan_zoom") not in ("pan_zoom", "pick"):
            return
        if viewer.dims.ndisplay == 2:  # the click in the layer's own units (napari's world may differ)
            value = layer.get_value(gl.world_to_data(viewer, layer, event.position), world=False)
        else:
            value = layer.get_value(event.position, view_direction=event.view_direction,
                                    dims_displayed=list(event.dims_displayed), world=True)
        if isinstance(value, tuple):  # multiscale: (level, value)
            value = value[-1]
        if value is None:
            return
        value = int(value)
        if value == 0:
            layer.show_selected_label = False
            self.grid.clearSelection()
            return
        layer.selected_label = value
        layer.show_selected_label = True
        self._label_selected()

    # ------------------------------------------------------------------ colours
    def colour_labels(self, column: str | None, colormap: str = "viridis") -> None:
        """Colour the grains by a numeric table column (``None`` / :data:`NO_COLOUR`: label colours)."""
        self.colormap.value = colormap
        self.colour_by.value = column or NO_COLOUR

    def _recolour(self, *_):
        layer, table = self.labels_layer, self.table
        if layer is None:
            return
        column = self.colour_by.value
        if column in (None, NO_COLOUR) or table is None or column not in table.columns:
            if self._default_colormap is not None:
                layer.colormap = self._default_colormap
                self._default_colormap = None
            return
        import matplotlib
        from napari.utils.colormaps import DirectLabelColormap

        values = table[column].to_numpy(dtype=float)
        ok = np.isfinite(values)
        lo, hi = (float(values[ok].min()), float(values[ok].max())) if ok.any() else (0.0, 1.0)
        norm = np.where(ok, (values - lo) / (hi - lo) if hi > lo else 0.5, 0.0)
        rgba = matplotlib.colormaps[self.colormap.value](norm)
        rgba[~ok] = OUTSIDE_COLOUR
        colours = {None: OUTSIDE_COLOUR, 0: (0.0, 0.0, 0.0, 0.0)}
        colours.update({int(lab): tuple(float(v) for v in c) for lab, c in zip(table["label"], rgba)})
        if self._default_colormap is None:
            self._default_colormap = layer.colormap
        layer.colormap = DirectLabelColormap(color_dict=colours)
        unit = (table.attrs.get("units") or {}).get(column, "")
        self.status.value = f"colour: {column} {lo:.4g} to {hi:.4g} {unit} ({self.colormap.value})"

    # ------------------------------------------------------------------ Set Scale
    def open_set_scale(self, *_):
        """Dock the Set Scale widget for the chosen image."""
        from .set_scale import SetScaleWidget

        if self._set_scale is None:
            self._set_scale = SetScaleWidget(self.viewer)
            if self.viewer is not None:
                self.viewer.window.add_dock_widget(self._set_scale, name="Set Scale", area="right")
        if self.image.value is not None:
            self._set_scale.image.value = self.image.value
        return self._set_scale

    # ------------------------------------------------------------------ exports
    def export_csv(self, path) -> Path:
        """Write the grain table (without the napari ``index`` column) to ``path``, units in the
        headers; for a stack also the per-frame summary, as ``<name>_frames.csv``."""
        if self.table is None:
            raise ValueError("nothing to export: segment or measure first")
        from hyperspy_mmdl.tables import write_table

        path = Path(path)
        write_table(self.table.drop(columns=["index"]), path, self.table.attrs.get("units"))
        if self._stack() and self.frame_summary is not None:
            write_table(self.frame_summary, path.with_name(path.stem + "_frames.csv"),
                        self.frame_summary.attrs.get("units"))
        self.status.value = f"wrote {path.name}"
        return path

    def export_tiff(self, path, binary: bool = False) -> Path:
        """Write the Labels layer as a calibrated 16-bit label TIFF, or (``binary``) as a binary
        TIFF in which ImageJ's *Analyze Particles* finds one particle per grain."""
        from hyperspy_mmdl.calibration import Calibration
        from hyperspy_mmdl.grains.export import write_binary_tiff, write_label_tiff

        layer = self.labels_layer
        if layer is None:
            raise ValueError("nothing to export: segment or measure first")
        import warnings

        write = write_binary_tiff if binary else write_label_tiff
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            path = write(path, np.asarray(layer.data), Calibration.from_napari(layer), title=layer.name)
        self.status.value = f"wrote {Path(path).name}" + "".join(f"; {w.message}" for w in caught
                                                                  if issubclass(w.category, UserWarning))
        return Path(path)

    def _export_dialog(self, *_):
        from qtpy.QtWidgets import QFileDialog

        path, _ = QFileDialog.getSaveFileName(self, "Export grain table", "grains.csv", "CSV (*.csv)")
        if path:
            self.export_csv(path)

    def _export_tiff_dialog(self, binary: bool):
        from qtpy.QtWidgets import QFileDialog

        title = "Export binary mask (grains kept apart)" if binary else "Export labels (16-bit TIFF)"
        name = "grains_mask.tif" if binary else "grains_labels.tif"
        path, _ = QFileDialog.getSaveFileName(self, title, name, "TIFF (*.tif *.tiff)")
        if path:
            self.export_tiff(path, binary=binary)


def _frame_cal(cal):
    from hyperspy_mmdl.pipeline import frame_calibration

    return frame_calibration(cal)


def _table_pixel_size(layer):
    return _frame_cal(layer_calibration(layer)).pixel_size
