"""Attention dock widget: Grad-CAM or a model's own attention as an overlay on the image."""

from __future__ import annotations

import numpy as np
from magicgui.widgets import ComboBox, Container, FloatSlider, Label

from ._model_picker import (
    ModelPicker,
    RunControls,
    image_layer_picker,
    image_layers,
    layer_frames,
    overlay_kwargs,
    scale_note,
)
from .classify import missing_inputs

METHODS = ("gradcam", "cbam", "external", "chunking")
COLORMAPS = ("inferno", "magma", "turbo", "viridis", "red")
PREDICTED = "(predicted class)"


class AttentionWidget(Container):
    """Adds an image layer of attention maps aligned with the source image (scale, translate, units)."""

    def __init__(self, napari_viewer=None):
        self.viewer = napari_viewer
        self.layer = None  # the overlay layer added last
        self.image = image_layer_picker(napari_viewer, choices=self._layer_choices)
        self.model = ModelPicker(tasks=("classify", "regress-pce"))
        self.method = ComboBox(label="method", choices=METHODS, value="gradcam")
        self.target = ComboBox(label="target", choices=self._target_choices)
        self.colormap = ComboBox(label="colormap", choices=COLORMAPS, value="inferno")
        self.opacity = FloatSlider(label="opacity", value=0.5, min=0.0, max=1.0, step=0.05)
        self.controls = RunControls("Show attention")
        self.warning = Label(label="scale", value="")
        super().__init__(widgets=[self.image, self.model, self.warning, self.method, self.target, self.colormap,
                                  self.opacity, self.controls], labels=True)
        self.controls.run_button.changed.connect(self.run)
        self.model.on_change(self._model_changed)
        self.image.changed.connect(self._check_scale)
        self._model_changed(self.model.card)
        self.opacity.changed.connect(self._style)
        self.colormap.changed.connect(self._style)

    def _layer_choices(self, _w=None):
        return [(layer.name, layer) for layer in image_layers(self.viewer) if layer is not self.layer]

    def _target_choices(self, _w=None):
        card = self.model.card if hasattr(self, "model") else None
        return [PREDICTED] + [str(c) for c in ((card.class_names or []) if card is not None else [])]

    def _model_changed(self, card):
        self.target.reset_choices()
        self.target.value = PREDICTED
        self._check_scale()

    def _check_scale(self, *_):
        """Show whether the model's pixel size fits the image's calibration."""
        note = scale_note(self.model.card, self.image.value)
        self.warning.value = note
        self.warning.visible = bool(note)
        return note

    def _style(self, *_):
        if self.layer is not None and self.viewer is not None and self.layer in self.viewer.layers:
            self.layer.opacity = float(self.opacity.value)
            self.layer.colormap = self.colormap.value

    def run(self, *_):
        """Compute the maps in a worker thread and add (or update) the overlay layer."""
        from napari.utils.notifications import show_error, show_warning

        layer, path = self.image.value, self.model.path
        missing = missing_inputs("Attention", layer, path, self.model.tasks)
        if missing:
            show_error(missing)
            return None
        note = self._check_scale()
        if note:
            show_warning(f"Attention: {note}")
        data, cal, channel_axis = layer_frames(layer)
        device, method = self.model.device.value, self.method.value
        target = None if self.target.value == PREDICTED else self.target.value

        def work():
            from hyperspy_mmdl import explain, inference

            pred = inference.get_predictor(path, device=device)
            maps = yield from explain.iter_attention_map(np.asarray(data), cal, pred, method, target,
                                                         channel_axis=channel_axis)
            return maps

        return self.controls.start(work, lambda maps: self._add(layer, maps, method), "Attention")

    def _add(self, source, maps, method):
        name = f"{method} [{source.name}]"
        kwargs = overlay_kwargs(source)
        if self.viewer is None:
            return
        if name in self.viewer.layers:
            self.viewer.layers.remove(name)
        self.layer = self.viewer.add_image(
            np.asarray(maps, np.float32), name=name, colormap=self.colormap.value,
            opacity=float(self.opacity.value), blending="additive", contrast_limits=(0.0, 1.0),
            metadata={"method": method, "source": source.name, "model": str(self.model.path)}, **kwargs)
