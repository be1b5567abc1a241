"""Classify dock widget: class probabilities of the selected image (every frame of a stack)."""

from __future__ import annotations

import numpy as np
from magicgui.widgets import Container, Label, Table

from ._model_picker import ModelPicker, RunControls, image_layer_picker, layer_frames, no_model_text, scale_note


def missing_inputs(what: str, layer, path, tasks) -> str:
    """The message for a Run without an image layer or a model ('' when both are there)."""
    if layer is None:
        return f"{what}: no image layer: open an image (File > Open, or File > Open Sample) and choose it"
    if path is None:
        return f"{what}: no model chosen. " + no_model_text(tasks)
    return ""


class ClassifyWidget(Container):
    """Pick an image layer and a classifier checkpoint; shows the probability of each class."""

    def __init__(self, napari_viewer=None):
        self.viewer = napari_viewer
        self.image = image_layer_picker(napari_viewer)
        self.model = ModelPicker(tasks=("classify",))
        self.controls = RunControls("Classify")
        self.warning = Label(label="scale", value="")
        self.result = Label(label="result", value="")
        self.table = Table()
        self.table.visible = False  # no header until there is a result
        super().__init__(widgets=[self.image, self.model, self.warning, self.controls, self.result, self.table],
                         labels=True)
        self.probabilities = None  # the last result, (frames, classes)
        self.class_names: list[str] = []
        self.controls.run_button.changed.connect(self.run)
        self.model.on_change(lambda _card: self._check_scale())
        self.image.changed.connect(self._check_scale)
        self._check_scale()

    def _check_scale(self, *_):
        """Show whether the model's pixel size fits the image's calibration."""
        note = scale_note(self.model.card, self.image.value)
        self.warning.value = note
        self.warning.visible = bool(note)
        return note

    def run(self, *_):
        """Classify in a worker thread (returns the worker)."""
        from napari.utils.notifications import show_error, show_warning

        layer, path = self.image.value, self.model.path
        missing = missing_inputs("Classify", layer, path, self.model.tasks)
        if missing:
            show_error(missing)
            return None
        note = self._check_scale()
        if note:
            show_warning(f"Classify: {note}")
        data, cal, channel_axis = layer_frames(layer)
        device = self.model.device.value

        def work():
            from hyperspy_mmdl import inference

            pred = inference.get_predictor(path, device=device)
            probs = yield from inference.iter_classify(np.asarray(data), cal, pred,
                                                       channel_axis=channel_axis)
            return probs, pred.class_names

        return self.controls.start(work, self._show, "Classify")

    def _show(self, result):
        probs, names = result
        probs = np.asarray(probs).reshape(-1, len(names))
        self.probabilities, self.class_names = probs, list(names)
        rows = [f"frame {i}" for i in range(len(probs))] if len(probs) > 1 else ["image"]
        self.table.value = {"data": [[round(float(p), 4) for p in row] for row in probs],
                            "columns": list(names), "index": rows}
        self.table.visible = True
        best = probs.mean(0)
        k = int(best.argmax())
        self.result.value = (f"{names[k]} ({best[k]:.1%})" if len(probs) == 1
                             else f"mean over {len(probs)} frames: {names[k]} ({best[k]:.1%})")
