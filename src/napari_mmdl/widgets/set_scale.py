"""Set Scale dock widget: calibrate an image as in ImageJ (*Analyze > Set Scale*).

Draw a line along the scale bar (a Shapes layer line; **Draw a line** adds the
layer and the line tool), or let **Find the scale bar** find the bar in the
SEM data bar (:func:`hyperspy_mmdl.preprocess.databar.find_scale_bar`) and draw
the line over it; type the length the bar prints and its unit; **Apply**
(:meth:`Calibration.from_scale_bar
<hyperspy_mmdl.calibration.Calibration.from_scale_bar>`). Or type a pixel
size. The image layer gets the pixel size as its ``scale`` and unit
(``units``, ``metadata``), and so does everything derived from it: Labels,
Shapes and Points layers measured against it or made over it (the ``source``
in their metadata, or the image's former spatial transform); Labels layers
that carry a grain table are measured again in the new unit
(:func:`.grain_layers.remeasure`), which the Grains widget shows.
"""

from __future__ import annotations

import numpy as np
from magicgui.widgets import ComboBox, Container, FloatSpinBox, Label, PushButton
from qtpy.QtCore import Signal
from qtpy.QtWidgets import QVBoxLayout, QWidget

from . import grain_layers as gl
from ._model_picker import image_layer_picker, overlay_kwargs

FROM_LINE = "a line on the scale bar"
FROM_PIXEL = "a pixel size"
UNITS = ("µm", "nm", "mm", "Å", "m")


def _napari_unit(unit: str) -> str:
    return unit.replace("µ", "u").replace("Å", "angstrom")


def _shapes_choices(viewer):
    def choices(_w=None):
        import napari

        return [(layer.name, layer) for layer in (viewer.layers if viewer is not None else [])
                if isinstance(layer, napari.layers.Shapes)]
    return choices


class SetScaleWidget(QWidget):
    """Calibrate an image layer from a line on its scale bar or a typed pixel size."""

    #: emitted with the image layer after a calibration was applied
    applied = Signal(object)

    def __init__(self, napari_viewer=None):
        super().__init__()
        self.viewer = napari_viewer
        self.image = image_layer_picker(napari_viewer)
        self.source = ComboBox(label="scale from", choices=(FROM_LINE, FROM_PIXEL), value=FROM_LINE)
        self.line_layer = image_layer_picker(napari_viewer, label="line layer",
                                             choices=_shapes_choices(napari_viewer))
        self.draw_button = PushButton(text="Draw a line")
        self.find_button = PushButton(text="Find the scale bar")
        self.line_length = Label(label="line length", value="no line")
        self.distance = FloatSpinBox(label="known distance", value=1.0, min=0.0, max=1e9, step=0.1)
        self.pixel_size = FloatSpinBox(label="pixel size", value=1.0, min=0.0, max=1e9, step=0.001)
        for box in (self.distance, self.pixel_size):  # 0.11165 µm/px must not become 0.112
            box.native.setDecimals(6)
        self.unit = ComboBox(label="unit", choices=UNITS, value="µm")
        self.apply_button = PushButton(text="Apply")
        self.status = Label(label="", value="")
        self.controls = Container(widgets=[
            self.image, self.source, self.line_layer, self.draw_button, self.find_button, self.line_length,
            self.distance, self.pixel_size, self.unit, self.apply_button, self.status], labels=True)
        layout = QVBoxLayout()
        layout.addWidget(self.controls.native)
        layout.addStretch(1)
        self.setLayout(layout)
        self._watched = None

        self.source.changed.connect(self._source_changed)
        self.draw_button.changed.connect(self.draw_line)
        self.find_button.changed.connect(self.find_scale_bar)
        self.apply_button.changed.connect(self.apply)
        self.line_layer.changed.connect(self._watch_line)
        self.image.changed.connect(self._image_changed)
        self._source_changed()
        self._watch_line()
        self._image_changed()

    def reset_choices(self, *_):
        self.image.reset_choices()
        self.line_layer.reset_choices()

    # ------------------------------------------------------------------ state
    def _source_changed(self, *_):
        line = self.source.value == FROM_LINE
        for w in (self.line_layer, self.draw_button, self.find_button, self.line_length, self.distance):
            w.visible = line
        self.pixel_size.visible = not line

    def _image_changed(self, *_):
        from .grains import layer_calibration

        layer = self.image.value
        if layer is None:
            self.status.value = "choose an image layer"
            return
        cal = layer_calibration(layer)
        if cal.is_calibrated:
            self.status.value = f"{layer.name}: {cal.describe()}"
            return
        held = gl.file_calibration(layer)
        if held is not None and held.unit in UNITS and np.isclose(*held.pixel_size, rtol=1e-6):
            # napari's own reader drops a TIFF's pixel size: offer the file's own
            self.source.value = FROM_PIXEL
            self.pixel_size.value = float(held.pixel_size[1])
            self.unit.value = held.unit
            self.status.value = (f"{layer.name}: no calibration on the layer, but its file holds "
                                 f"{held.describe()} (napari's own reader leaves it out): Apply to use it")
            return
        offer = self.offer()
        self.status.value = (f"{layer.name}: no calibration (pixels); "
                             + (f"{offer.explanation}: 'Find the scale bar' draws it" if offer is not None else
                                "draw a line on the scale bar, type its length, Apply"))

    def offer(self):
        """What the data bar offers for the chosen image
        (:func:`~hyperspy_mmdl.preprocess.databar.offer_calibration`: the scale bar's length in
        pixels, for the user to give the length it prints), or None."""
        from hyperspy_mmdl.preprocess.databar import offer_calibration

        image = self.image.value
        if image is None:
            return None
        data = gl.image_data(image)
        frame = np.asarray(data[(0,) * (image.ndim - 2)] if image.ndim > 2 else data)
        try:
            return offer_calibration(frame)
        except ValueError:
            return None

    def _watch_line(self, *_):
        if self._watched is not None:
            self._watched.events.data.disconnect(self._update_length)
        self._watched = self.line_layer.value
        if self._watched is not None:
            self._watched.events.data.connect(self._update_length)
        self._update_length()

    def _update_length(self, *_):
        n = self.line_length_px()
        self.line_length.value = "no line" if n is None else f"{n:.2f} px"

    def line_length_px(self) -> float | None:
        """Length in image pixels of the line (the selected one, else the last) of the line layer."""
        shapes, image = self.line_layer.value, self.image.value
        if shapes is None or image is None:
            return None
        lines = [i for i, t in enumerate(shapes.shape_type) if t in ("line", "path")]
        if not lines:
            return None
        chosen = [i for i in shapes.selected_data if i in lines]
        v = np.asarray(shapes.data[(chosen or lines)[-1]], dtype=float)
        # shape vertices -> world -> image pixels (the line layer may have any transform)
        px = np.array([gl.world_to_data(self.viewer, image, gl.data_to_world(self.viewer, shapes, p))[-2:]
                       for p in (v[0], v[-1])])
        return float(np.hypot(*(px[1] - px[0])))

    # ------------------------------------------------------------------ line
    def _line_layer(self):
        """The line layer, made over the image (same transform) when there is none."""
        shapes = self.line_layer.value
        if shapes is None:
            image = self.image.value
            kw = overlay_kwargs(image)
            shapes = self.viewer.add_shapes(name=f"{image.name} scale line", ndim=image.ndim, edge_color="yellow",
                                            edge_width=3, **kw)
            shapes.metadata["source"] = image.name
            self.line_layer.reset_choices()
            self.line_layer.value = shapes
        return shapes

    def draw_line(self, *_):
        """Add (or choose) the line layer and switch to its line tool."""
        if self.image.value is None:
            self.status.value = "choose an image layer"
            return None
        shapes = self._line_layer()
        self.viewer.layers.selection.active = shapes
        shapes.mode = "add_line"
        self.status.value = "draw a line along the scale bar, then type its length and Apply"
        return shapes

    def find_scale_bar(self, *_):
        """Find the scale bar of the SEM data bar and draw the line over it (its pixel length);
        returns the :class:`~hyperspy_mmdl.preprocess.databar.ScaleBar` or None."""
        from hyperspy_mmdl.preprocess.databar import find_scale_bar

        image = self.image.value
        if image is None:
            self.status.value = "choose an image layer"
            return None
        data = gl.image_data(image)
        frame = np.asarray(data[(0,) * (image.ndim - 2)] if image.ndim > 2 else data)
        bar = find_scale_bar(frame)
        if bar is None:
            self.status.value = "no scale bar found in a data bar: draw a line on it"
            return None
        y = (bar.rows.start + bar.rows.stop - 1) / 2
        start = bar.cols.start - 0.5 if bar.style == "solid" else float(bar.cols.start)
        if bar.style != "solid":  # a ticked bar: from the first tick's centre
            start = bar.cols.start + (bar.cols.stop - bar.cols.start - 1 - bar.length_px) / 2
        lead = list(gl.world_to_data(self.viewer, image, self.viewer.dims.point)[: image.ndim - 2])
        line = np.array([lead + [y, start], lead + [y, start + bar.length_px]])
        shapes = self._line_layer()
        if tuple(shapes.scale) != tuple(image.scale) or tuple(shapes.translate) != tuple(image.translate):
            line = np.array([gl.world_to_data(self.viewer, shapes, gl.data_to_world(self.viewer, image, p))
                             for p in line])
        shapes.add_lines(line, edge_color="yellow")
        self._update_length()
        self.status.value = (f"scale bar of {bar.length_px:g} px found ({bar.style}); "
                             f"type the length it prints and Apply")
        return bar

    # ------------------------------------------------------------------ apply
    def calibration(self):
        """The :class:`~hyperspy_mmdl.calibration.Calibration` the current entries give."""
        from hyperspy_mmdl.calibration import Calibration

        if self.source.value == FROM_PIXEL:
            return Calibration.from_pixel_size(float(self.pixel_size.value), self.unit.value)
        n = self.line_length_px()
        if n is None:
            from hyperspy_mmdl.errors import CalibrationError

            raise CalibrationError("draw a line on the scale bar first (or find it)")
        return Calibration.from_scale_bar(n, float(self.distance.value), self.unit.value)

    def apply(self, *_):
        """Calibrate the image layer and everything derived from it; returns the calibration."""
        from hyperspy_mmdl.errors import MMDLError

        image = self.image.value
        if image is None:
            self.status.value = "choose an image layer"
            return None
        try:
            cal = self.calibration()
        except MMDLError as err:
            self.status.value = str(err)
            return None
        derived = self._derived(image)
        old = (tuple(image.scale[-2:]), tuple(image.translate[-2:]))
        sy, sx = cal.pixel_size
        unit = cal.unit
        for layer in [image] + derived:
            _set_spatial(layer, (sy, sx), unit, old)
        how = (f"{self.line_length_px():.2f} px = {self.distance.value:g} {unit}"
               if self.source.value == FROM_LINE else "typed pixel size")
        image.metadata.update(pixel_size=(sy, sx), unit=unit, calibration=f"Set Scale: {how}")
        remeasured = []
        from .grains import layer_calibration

        for layer in derived:
            if gl.has_grains(layer) and layer.ndim >= 2:
                gl.remeasure(layer, layer_calibration(image), rgb=bool(image.rgb))
                remeasured.append(repr(layer.name))
        if self.viewer is not None:
            self.viewer.reset_view()
        self.status.value = (f"{image.name}: {cal.describe()} ({how})"
                             + (f"; re-measured {', '.join(remeasured)}" if remeasured else ""))
        self.applied.emit(image)
        return cal

    def _derived(self, image) -> list:
        """Layers made from or over ``image``: ``metadata["source"]`` names it, or a Labels,
        Shapes or Points layer with the image's spatial transform (and size, for labels)."""
        import napari

        if self.viewer is None:
            return []
        kinds = (napari.layers.Labels, napari.layers.Shapes, napari.layers.Points)
        old = (tuple(image.scale[-2:]), tuple(image.translate[-2:]))
        shape = gl.data_shape(gl.image_data(image), bool(image.rgb))[-2:]
        out = []
        for layer in self.viewer.layers:
            if layer is image or not isinstance(layer, kinds):
                continue
            same = (tuple(layer.scale[-2:]), tuple(layer.translate[-2:])) == old
            if isinstance(layer, napari.layers.Labels):
                same = same and tuple(np.shape(layer.data)[-2:]) == tuple(shape)
            if layer.metadata.get("source") == image.name or same:
                out.append(layer)
        return out


def _set_spatial(layer, pixel_size, unit: str, old) -> None:
    """Give the last two axes of ``layer`` the pixel size and unit; its offset keeps its pixels."""
    old_scale = np.asarray(old[0], dtype=float)
    n = layer.ndim
    scale = np.asarray(layer.scale, dtype=float)
    translate = np.asarray(layer.translate, dtype=float)
    new = np.asarray(pixel_size, dtype=float)
    # a layer over the image keeps its place in image pixels
    translate[-2:] = translate[-2:] / old_scale * new
    scale[-2:] = scale[-2:] / old_scale * new
    layer.scale = tuple(scale)
    layer.translate = tuple(translate)
    units = [str(u) for u in layer.units] if getattr(layer, "units", None) is not None else ["pixel"] * n
    units[-2:] = [_napari_unit(unit)] * 2
    layer.units = tuple(units)
