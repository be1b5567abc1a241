"""Predict PCE dock widget: PSC-Fusion on an SEM image plus the device's composition and process.

Composition and process are chosen from the model card's vocabularies (one box
per field), numeric inputs (band gap, a grain size ...) typed in, or all of them
filled from a row of a device table. A model's grain features are measured on
the image (the same analysis as every route) when the model takes them. What the
model did with the inputs (an image a model trained without images leaves out, a
value it filled in with its training mean ...) is shown under the result.
"""

from __future__ import annotations

import numpy as np
from magicgui.widgets import CheckBox, ComboBox, Container, FileEdit, Label, LineEdit, PushButton, SpinBox

from ._model_picker import ModelPicker, RunControls, image_layer_picker, image_layers, layer_frames

UNKNOWN = "(unknown)"
NO_IMAGE = "(no image)"


class PredictPCEWidget(Container):
    """Composition and process are chosen from the model card's vocabularies (one box per field)."""

    def __init__(self, napari_viewer=None):
        self.viewer = napari_viewer
        self.image = image_layer_picker(napari_viewer, choices=self._layer_choices)
        self.model = ModelPicker(tasks=("regress-pce",))
        self.inputs = Label(label="inputs", value="")
        self.table = FileEdit(mode="r", label="device table", filter="*.csv", value="",
                              tooltip="fill the fields below from a row of a device table (CSV)")
        self.row = SpinBox(label="row", value=0, min=0, max=10_000_000)
        self.fill = PushButton(text="Fill from row")
        self.composition = Container(label="composition", labels=True)
        self.process = Container(label="process", labels=True)
        self.numeric = Container(label="numeric", labels=True)
        self.grain_features = CheckBox(label="grain features", value=False,
                                       tooltip="measure the image's grains (SPEC §3.1.7 factors) for a model "
                                               "trained with grain features")
        self.controls = RunControls("Predict PCE")
        self.result = Label(label="PCE", value="")
        self.weights = Label(label="fusion weights", value="")
        self.notes = Label(label="notes", value="")
        super().__init__(widgets=[self.image, self.model, self.inputs, self.table, self.row, self.fill,
                                  self.composition, self.process, self.numeric, self.grain_features,
                                  self.controls, self.result, self.weights, self.notes],
                         labels=True)
        self.pce = None
        self.fusion_weights = None
        self.last_notes: list[str] = []
        self._row, self._edited, self._filling = None, set(), False
        self.controls.run_button.changed.connect(self.run)
        self.fill.changed.connect(self.fill_from_table)
        self.model.on_change(self._model_changed)
        self._model_changed(self.model.card)

    def _layer_choices(self, _w=None):
        return [(NO_IMAGE, None)] + [(layer.name, layer) for layer in image_layers(self.viewer)]

    def _model_changed(self, card):
        for box in (self.composition, self.process, self.numeric):
            while len(box):
                box.pop()
        self.inputs.value = ""
        self.grain_features.value = False
        self.grain_features.enabled = False
        if card is None or not card.vocabularies:
            return
        from hyperspy_mmdl.tabular import grain_feature_columns

        self._row, self._edited = None, set()
        for kind, box in (("composition", self.composition), ("process", self.process)):
            for field, tokens in (card.vocabularies.get(kind) or {}).items():
                combo = ComboBox(name=str(field), label=str(field),
                                 choices=[UNKNOWN] + [str(t) for t in tokens], value=UNKNOWN)
                combo.changed.connect(lambda *_, f=str(field): self._mark_edited(f))
                box.append(combo)
        grains = grain_feature_columns(card.vocabularies)
        units = card.vocabularies.get("units") or {}
        for i, col in enumerate(card.numeric_inputs):
            unit = (grains.get(col) or {}).get("unit") or units.get(col) or ""
            tip = ("measured on the image when 'grain features' is on" if col in grains
                   else "empty: the training mean")
            box = LineEdit(name=f"numeric_{i}", label=f"{col}" + (f" [{unit}]" if unit else ""), value="",
                           tooltip=tip)
            box.column = col
            box.changed.connect(lambda *_, f=col: self._mark_edited(f))
            self.numeric.append(box)
        self.grain_features.enabled = bool(grains)
        self.grain_features.value = bool(grains)
        off = set(card.masked_modalities)
        inputs = (card.extra or {}).get("inputs") or [m for m in ("image", "composition", "process") if m not in off]
        self.inputs.value = ", ".join(inputs) + ("" if "image" not in off else " (trained without SEM images)")

    def _mark_edited(self, name):
        if not self._filling:
            self._edited.add(name)

    def values(self) -> tuple[dict, dict]:
        """The chosen ``(composition, process)`` dicts (unknown fields left out; numeric inputs by column
        name go with the composition).

        After *Fill from row*, the fields not changed since are the row's own cells (by column name),
        so a cell of several tokens (``TiO2-c | TiO2-mp``) is encoded exactly as in the table.
        """
        comp, proc = ({w.name: w.value for w in box if w.value != UNKNOWN}
                      for box in (self.composition, self.process))
        card = self.model.card
        if self._row is not None and card is not None:
            columns = card.vocabularies.get("columns") or {}
            for kind, out, box in (("composition", comp, self.composition), ("process", proc, self.process)):
                for w in box:
                    col = (columns.get(kind) or {}).get(w.name, w.name)
                    if w.name not in self._edited and col in self._row.index:
                        out.pop(w.name, None)
                        value = self._row[col]
                        if not (isinstance(value, float) and value != value):
                            out[col] = value.item() if hasattr(value, "item") else value
        for w in self.numeric:
            text = str(w.value).strip()
            if text:
                try:
                    comp[w.column] = float(text)
                except ValueError:
                    raise ValueError(f"{w.column}: {text!r} is not a number") from None
        return comp, proc

    def fill_from_table(self, *_):
        """Set every field from row ``row`` of the chosen device table (categories the model does not
        know stay unknown)."""
        from napari.utils.notifications import show_error

        from hyperspy_mmdl.tabular import _process_token, _tokens, read_table

        card = self.model.card
        path = self.table.value
        if card is None or not card.vocabularies or path is None or str(path) in ("", "."):
            show_error("Predict PCE: choose a PSC-Fusion model and a device table first")
            return None
        frame = read_table(path)
        if not 0 <= int(self.row.value) < len(frame):
            show_error(f"Predict PCE: {path} has {len(frame)} rows")
            return None
        row = frame.iloc[int(self.row.value)]
        columns = card.vocabularies.get("columns") or {}
        self._filling = True
        for kind, box in (("composition", self.composition), ("process", self.process)):
            for w in box:
                col = (columns.get(kind) or {}).get(w.name, w.name)
                value = row.get(col)
                toks = _tokens(value) if kind == "composition" else [_process_token(value)]
                choice = next((t for t in toks if t in w.choices), None) if toks else None
                if kind == "composition" and value is not None and str(value).strip() in w.choices:
                    choice = str(value).strip()
                w.value = choice if choice is not None else UNKNOWN
        for w in self.numeric:
            value = row.get(w.column)
            w.value = "" if value is None or (isinstance(value, float) and value != value) else str(value)
        self._filling = False
        self._row, self._edited = row, set()
        return row

    def run(self, *_):
        from napari.utils.notifications import show_error

        path = self.model.path
        if path is None or self.model.card is None:
            show_error("Predict PCE: choose a PSC-Fusion model first")
            return None
        layer = self.image.value
        try:
            composition, process = self.values()
        except ValueError as err:
            show_error(f"Predict PCE: {err}")
            return None
        device, grains = self.model.device.value, bool(self.grain_features.value)
        if layer is not None:
            data, cal, channel_axis = layer_frames(layer)
        else:
            data, cal, channel_axis = None, None, None
        notes: list[str] = []
        self.last_notes = notes

        def work():
            from hyperspy_mmdl import inference
            from hyperspy_mmdl.pipeline import frames_feature_factors, iter_frames

            pred = inference.get_predictor(path, device=device)
            feats = None
            if grains and data is not None and inference.uses_grain_features(pred.card):
                # the grains as every route analyses them
                frames = [f for _, f, _ in iter_frames(np.asarray(data), cal, rgb=channel_axis is not None)]
                feats = frames_feature_factors(frames, cal)
            return (yield from inference.iter_predict_pce(
                None if data is None else np.asarray(data), cal, pred, composition=composition,
                process=process, grain_features=feats, channel_axis=channel_axis, notes=notes))

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
        self.notes.value = "\n".join(n.replace("PCE model: ", "") for n in self.last_notes)
