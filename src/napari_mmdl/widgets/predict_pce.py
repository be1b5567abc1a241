"""Predict PCE dock widget: PSC-Fusion on an SEM image plus the device's composition and process."""

from __future__ import annotations

import numpy as np
from magicgui.widgets import CheckBox, ComboBox, Container, Label

from ._model_picker import ModelPicker, RunControls, image_layer_picker, image_layers, layer_frames

UNKNOWN = "(unknown)"
NO_IMAGE = "(no image)"


class PredictPCEWidget(Container):
    """Composition and process are chosen from the model card's vocabularies (one box per field)."""

    def __init__(self, napari_viewer=None):
        self.viewer = napari_viewer
        self.image = image_layer_picker(napari_viewer, choices=self._layer_choices)
        self.model = ModelPicker(tasks=("regress-pce",))
        self.composition = Container(label="composition", labels=True)
        self.process = Container(label="process", labels=True)
        self.grain_features = CheckBox(label="grain features", value=False,
                                       tooltip="segment grains and add the SPEC §3.1.7 factors "
                                               "(only for models trained with them)")
        self.controls = RunControls("Predict PCE")
        self.result = Label(label="PCE", value="")
        self.weights = Label(label="fusion weights", value="")
        super().__init__(widgets=[self.image, self.model, self.composition, self.process,
                                  self.grain_features, self.controls, self.result, self.weights],
                         labels=True)
        self.pce = None
        self.fusion_weights = None
        self.controls.run_button.changed.connect(self.run)
        self.model.on_change(self._model_changed)
        self._model_changed(self.model.card)

    def _layer_choices(self, _w=None):
        return [(NO_IMAGE, None)] + [(layer.name, layer) for layer in image_layers(self.viewer)]

    def _model_changed(self, card):
        for box in (self.composition, self.process):
            while len(box):
                box.pop()
        if card is None or not card.vocabularies:
            return
        for kind, box in (("composition", self.composition), ("process", self.process)):
            for field, tokens in (card.vocabularies.get(kind) or {}).items():
                box.append(ComboBox(name=str(field), label=str(field),
                                    choices=[UNKNOWN] + [str(t) for t in tokens], value=UNKNOWN))

    def values(self) -> tuple[dict, dict]:
        """The chosen ``(composition, process)`` dicts (unknown fields left out)."""
        return tuple({w.name: w.value for w in box if w.value != UNKNOWN}
                     for box in (self.composition, self.process))

    def run(self, *_):
        from napari.utils.notifications import show_error

        path = self.model.path
        if path is None or self.model.card is None:
            show_error("Predict PCE: choose a PSC-Fusion model first")
            return None
        layer = self.image.value
        composition, process = self.values()
        device, grains = self.model.device.value, bool(self.grain_features.value)
        if layer is not None:
            data, cal, channel_axis = layer_frames(layer)
        else:
            data, cal, channel_axis = None, None, None

        def work():
            from hyperspy_mmdl import inference
            from hyperspy_mmdl.pipeline import frames_feature_factors, iter_frames

            pred = inference.get_predictor(path, device=device)
            feats = None
            if grains and data is not None:  # the grains as every route analyses them
                frames = [f for _, f, _ in iter_frames(np.asarray(data), cal, rgb=channel_axis is not None)]
                feats = frames_feature_factors(frames, cal)
            return (yield from inference.iter_predict_pce(
                None if data is None else np.asarray(data), cal, pred, composition=composition,
                process=process, grain_features=feats, channel_axis=channel_axis))

        return self.controls.start(work, self._show, "Predict PCE")

    def _show(self, result):
        pce, weights = result
        pce, weights = np.atleast_1d(np.asarray(pce)), np.asarray(weights).reshape(-1, 3)
        self.pce, self.fusion_weights = pce, weights
        unit = (self.model.card.target_unit if self.model.card else None) or "%"
        self.result.value = (f"{pce[0]:.2f} {unit}" if pce.size == 1 else
                             f"{pce.mean():.2f} {unit} mean of {pce.size} frames "
                             f"(min {pce.min():.2f}, max {pce.max():.2f})")
        w = weights.mean(0)
        self.weights.value = f"image {w[0]:.2f}, composition {w[1]:.2f}, process {w[2]:.2f}"
