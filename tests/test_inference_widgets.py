"""Classify / Attention / Predict PCE dock widgets in a real napari viewer (run under Xvfb)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_inference import COMP, PROC, VOCAB, TinyFusion  # noqa: E402

from hyperspy_mmdl import inference  # noqa: E402
from hyperspy_mmdl.checkpoint import save_checkpoint  # noqa: E402

pytestmark = pytest.mark.gui


class TinyNet(torch.nn.Module):
    def __init__(self, num_classes=3, in_chans=1):
        super().__init__()
        self.features = torch.nn.Sequential(torch.nn.Conv2d(in_chans, 4, 3, padding=1), torch.nn.ReLU())
        self.fc = torch.nn.Linear(4, num_classes)

    def forward(self, x):
        return self.fc(self.features(x).mean((2, 3)))


CARD = dict(architecture="tiny_widget_net", task="classify", input_size=[1, 32, 32], normalization="minmax",
            pixel_size=20.0, pixel_unit="nm", class_names=["small", "medium", "large"],
            metrics={"accuracy": 0.9})


@pytest.fixture
def checkpoint(tmp_path, monkeypatch):
    """A tiny classifier file in a temporary models folder; its architecture is registered for the test."""
    from hyperspy_mmdl import checkpoint as ckpt

    torch.manual_seed(0)
    folder = tmp_path / "models"
    path = save_checkpoint(folder / "tiny.pt", TinyNet(), CARD)
    real = ckpt.load_checkpoint

    def load(p, device="cpu", model=None, **kw):
        card = ckpt.read_card(p)
        if model is None and card.architecture in ("tiny_widget_net", "tiny_fusion"):
            model = TinyFusion() if card.task == "regress-pce" else TinyNet()
        return real(p, device=device, model=model, **kw)

    monkeypatch.setattr(ckpt, "load_checkpoint", load)
    monkeypatch.setenv("MMDL_MODELS_DIR", str(folder))
    inference.clear_cache()
    yield path
    inference.clear_cache()


def _wait(qtbot, widget, timeout=30000):
    """Wait until the widget's worker thread has finished (it may already have)."""
    qtbot.waitUntil(lambda: widget.controls.worker is None, timeout=timeout)


def test_classify_and_attention_widgets(make_napari_viewer, qtbot, checkpoint):
    from napari_mmdl.widgets.attention import AttentionWidget
    from napari_mmdl.widgets.classify import ClassifyWidget

    viewer = make_napari_viewer()
    rng = np.random.default_rng(0)
    image = rng.random((3, 64, 80)).astype(np.float32)
    src = viewer.add_image(image, name="film", scale=(1, 10, 10), translate=(0, 50, -20),
                           units=("s", "nm", "nm"))
    cls = ClassifyWidget(viewer)
    viewer.window.add_dock_widget(cls)
    assert cls.image.value is src
    assert str(checkpoint) in cls.model.listed.choices  # listed from the models folder
    cls.model.listed.value = str(checkpoint)
    assert cls.model.path == checkpoint
    assert "small, medium, large" in cls.model.info.value
    assert cls.run() is not None
    _wait(qtbot, cls)
    qtbot.waitUntil(lambda: cls.probabilities is not None, timeout=5000)
    assert cls.probabilities.shape == (3, 3)
    np.testing.assert_allclose(cls.probabilities.sum(1), 1, atol=1e-5)
    expected = inference.classify(image, inference.Calibration(scale=(1, 10, 10), units=("s", "nm", "nm")),
                                  checkpoint, device="cpu")
    np.testing.assert_allclose(cls.probabilities, expected, atol=1e-6)
    assert cls.class_names == ["small", "medium", "large"]
    assert cls.table.shape == (3, 3)
    assert any(n in cls.result.value for n in CARD["class_names"])

    att = AttentionWidget(viewer)
    viewer.window.add_dock_widget(att)
    att.image.value = src
    att.model.listed.value = str(checkpoint)
    assert att.target.choices == ("(predicted class)", "small", "medium", "large")
    att.opacity.value = 0.7
    assert att.run() is not None
    _wait(qtbot, att)
    qtbot.waitUntil(lambda: att.layer is not None, timeout=5000)
    over = viewer.layers["gradcam [film]"]
    assert over.data.shape == image.shape
    np.testing.assert_allclose(over.scale, src.scale)
    np.testing.assert_allclose(over.translate, src.translate)
    assert tuple(str(u) for u in over.units) == tuple(str(u) for u in src.units)
    assert over.opacity == pytest.approx(0.7) and over.colormap.name == "inferno"
    assert over.data.min() >= 0 and over.data.max() == pytest.approx(1.0)
    att.colormap.value = "magma"
    assert over.colormap.name == "magma"


def test_widget_errors_become_notifications(make_napari_viewer, qtbot, checkpoint, monkeypatch):
    from napari_mmdl.widgets.classify import ClassifyWidget

    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((40, 40), np.float32), name="blank")
    shown = []
    monkeypatch.setattr("napari.utils.notifications.show_error", lambda msg: shown.append(msg))
    cls = ClassifyWidget(viewer)
    cls.model.listed.value = str(checkpoint)
    assert cls.model.path == checkpoint
    checkpoint.unlink()  # the file disappears between choosing and running
    assert cls.run() is not None
    _wait(qtbot, cls)
    qtbot.waitUntil(lambda: bool(shown), timeout=5000)
    assert "Classify failed" in shown[0] and "not found" in shown[0]
    assert cls.controls.run_button.enabled and cls.probabilities is None


def test_classify_can_be_cancelled(make_napari_viewer, qtbot, checkpoint):
    from napari_mmdl.widgets.classify import ClassifyWidget

    viewer = make_napari_viewer()
    viewer.add_image(np.random.default_rng(1).random((40, 256, 256)).astype(np.float32), name="long",
                     scale=(1, 20, 20), units=("s", "nm", "nm"))
    cls = ClassifyWidget(viewer)
    cls.model.listed.value = str(checkpoint)
    aborted = []
    worker = cls.run()
    worker.aborted.connect(lambda: aborted.append(True))
    cls.controls.cancel_button.clicked.emit()  # as a click would
    _wait(qtbot, cls)
    qtbot.waitUntil(lambda: bool(aborted), timeout=5000)
    assert cls.probabilities is None and cls.controls.run_button.enabled


def test_predict_pce_widget_choices_from_the_card(make_napari_viewer, qtbot, checkpoint):
    from hyperspy_mmdl.calibration import Calibration
    from napari_mmdl.widgets.predict_pce import UNKNOWN, PredictPCEWidget

    torch.manual_seed(3)
    card = dict(architecture="tiny_fusion", task="regress-pce", input_size=[1, 32, 32],
                normalization="minmax", pixel_size=20.0, pixel_unit="nm", target_name="PCE",
                target_unit="%", vocabularies=VOCAB, extra={"target_mean": 15.0, "target_std": 2.0})
    path = save_checkpoint(checkpoint.parent / "fusion.pt", TinyFusion(), card)
    viewer = make_napari_viewer()
    image = np.random.default_rng(2).random((48, 48)).astype(np.float32)
    viewer.add_image(image, name="sem", scale=(20, 20), units=("nm", "nm"))
    w = PredictPCEWidget(viewer)
    w.model.path = path
    assert [b.name for b in w.composition] == ["perovskite_type", "etl"]
    assert w.composition.etl.choices == (UNKNOWN, "TiO2", "SnO2")
    assert w.process.antisolvent.choices == (UNKNOWN, "chlorobenzene", "toluene")
    for name, value in COMP.items():
        getattr(w.composition, name).value = value
    for name, value in PROC.items():
        getattr(w.process, name).value = value
    w.image.value = viewer.layers["sem"]
    assert w.run() is not None
    _wait(qtbot, w)
    qtbot.waitUntil(lambda: w.pce is not None, timeout=5000)
    ref, weights = inference.predict_pce(image, Calibration.from_pixel_size(20, "nm"), path, device="cpu",
                                         composition=COMP, process=PROC)
    assert w.pce[0] == pytest.approx(ref, rel=1e-5)
    np.testing.assert_allclose(w.fusion_weights[0], weights, rtol=1e-5)
    assert w.result.value.endswith("%") and "composition" in w.weights.value


# --------------------------------------------------------------------------- honest pickers (issue 15)
PRETRAINED = "grain-size-micronet"


def _item_texts(picker):
    box = picker.listed.native
    return [box.itemText(i) for i in range(box.count())]


def test_pickers_list_shipped_models_first_with_their_cards(make_napari_viewer, checkpoint):
    from qtpy.QtCore import Qt

    from hyperspy_mmdl.inference.device import available_devices
    from napari_mmdl.widgets.attention import AttentionWidget
    from napari_mmdl.widgets.classify import ClassifyWidget

    viewer = make_napari_viewer()
    cls, att = ClassifyWidget(viewer), AttentionWidget(viewer)
    for w in (cls, att):
        texts = _item_texts(w.model)
        assert texts[0] == f"{PRETRAINED} (shipped)" and "tiny.pt" in texts
        assert not any("grain-boundary" in t for t in texts)  # a segmenter is not a classifier
        tip = w.model.listed.native.itemData(0, Qt.ToolTipRole)
        assert f"# {PRETRAINED}" in tip and "licence" in tip.lower() and "held-out" in tip.lower()
        assert "micronet (classify)" in w.model.info.value and "0.05 µm/px" in w.model.info.value
        # only devices that exist here
        assert list(w.model.device.choices) == available_devices()
        import torch

        if not torch.cuda.is_available():
            assert not any(d.startswith("cuda") for d in w.model.device.choices)
    assert "mps" not in cls.model.device.choices or torch.backends.mps.is_available()


def test_no_model_points_to_train_and_the_models_folder(make_napari_viewer, qtbot, tmp_path, monkeypatch):
    from hyperspy_mmdl.models import pretrained
    from napari_mmdl.widgets.classify import ClassifyWidget

    folder = tmp_path / "empty-models"
    monkeypatch.setenv("MMDL_MODELS_DIR", str(folder))
    monkeypatch.setattr(pretrained, "list_pretrained", lambda: [])  # a package without shipped models
    shown = []
    monkeypatch.setattr("napari.utils.notifications.show_error", lambda msg: shown.append(msg))
    viewer = make_napari_viewer()
    cls = ClassifyWidget(viewer)
    assert _item_texts(cls.model)[0].startswith("(none found")
    assert "Train" in cls.model.info.value and str(folder) in cls.model.info.value
    assert cls.run() is None and "no image layer" in shown[-1]
    viewer.add_image(np.zeros((40, 40), np.float32), name="blank")
    assert cls.image.value is not None
    assert cls.run() is None
    assert "no model chosen" in shown[-1] and "choose an image layer" not in shown[-1]
    assert "Train" in shown[-1] and str(folder) in shown[-1]
    # the empty result table has no header ("data | columns" before)
    assert cls.table.native.isHidden() and list(cls.table.column_headers) == []


def test_scale_warning_for_uncalibrated_and_far_images(make_napari_viewer, tmp_path, monkeypatch):
    from napari_mmdl.widgets.attention import AttentionWidget
    from napari_mmdl.widgets.classify import ClassifyWidget

    monkeypatch.setenv("MMDL_MODELS_DIR", str(tmp_path / "models"))
    viewer = make_napari_viewer()
    image = np.zeros((300, 300), np.float32)
    fine = viewer.add_image(image, name="fine", scale=(20, 20), units=("nm", "nm"))
    cls, att = ClassifyWidget(viewer), AttentionWidget(viewer)
    assert cls.model.card.pixel_size == pytest.approx(0.05)
    cls.image.value = fine
    assert cls.warning.value == "" and cls.warning.native.isHidden()
    pixels = viewer.add_image(image, name="pixels")  # no calibration
    for w in (cls, att):
        w.image.value = pixels
        assert "uncalibrated" in w.warning.value and not w.warning.native.isHidden()
    coarse = viewer.add_image(image, name="coarse", scale=(1, 1), units=("µm", "µm"))
    cls.image.value = coarse
    assert "20× coarser" in cls.warning.value


def test_sample_image_with_the_shipped_model_in_three_clicks(make_napari_viewer, qtbot, tmp_path, monkeypatch):
    """File > Open Sample > Synthetic polycrystal; open Classify (Attention); press its button."""
    from napari_mmdl.widgets.attention import AttentionWidget
    from napari_mmdl.widgets.classify import ClassifyWidget

    monkeypatch.setenv("MMDL_MODELS_DIR", str(tmp_path / "models"))  # a fresh install: no models of one's own
    inference.clear_cache()
    viewer = make_napari_viewer()
    viewer.open_sample("napari-mmdl", "polycrystal")  # click 1
    src = viewer.layers["synthetic polycrystal"]
    cls = ClassifyWidget(viewer)  # click 2
    viewer.window.add_dock_widget(cls)
    assert cls.image.value is src and cls.model.path.stem == PRETRAINED and cls.warning.value == ""
    cls.controls.run_button.clicked.emit()  # click 3
    qtbot.waitUntil(lambda: cls.probabilities is not None, timeout=120_000)
    assert cls.result.value.startswith("small")  # 250 nm grains (mean ECD < 0.4 µm)
    assert not cls.table.native.isHidden() and list(cls.table.column_headers) == ["small", "medium", "large"]
    att = AttentionWidget(viewer)
    viewer.window.add_dock_widget(att)
    assert att.image.value is src and att.model.path.stem == PRETRAINED
    att.controls.run_button.clicked.emit()
    qtbot.waitUntil(lambda: att.layer is not None, timeout=120_000)
    over = viewer.layers["gradcam [synthetic polycrystal]"]
    assert over.data.shape == src.data.shape and float(over.data.max()) == pytest.approx(1.0)
    np.testing.assert_allclose(over.scale, src.scale)


def test_sample_image_predict_pce_with_the_shipped_model_in_three_clicks(make_napari_viewer, qtbot, tmp_path,
                                                                         monkeypatch):
    """File > Open Sample; open Predict PCE; press its button: the shipped PCE model, the same value as the core."""
    from hyperspy_mmdl.calibration import Calibration
    from hyperspy_mmdl.models.pretrained import pretrained_path
    from napari_mmdl.widgets.predict_pce import PredictPCEWidget

    monkeypatch.setenv("MMDL_MODELS_DIR", str(tmp_path / "models"))  # a fresh install
    inference.clear_cache()
    viewer = make_napari_viewer()
    viewer.open_sample("napari-mmdl", "polycrystal")  # click 1
    src = viewer.layers["synthetic polycrystal"]
    w = PredictPCEWidget(viewer)  # click 2
    viewer.window.add_dock_widget(w)
    assert w.model.path.stem == "pce-perovskite-database" and len(w.composition) > 0
    w.image.value = src
    w.controls.run_button.clicked.emit()  # click 3
    qtbot.waitUntil(lambda: w.pce is not None, timeout=120_000)
    # the core's answer for the same inputs (every field unknown: the model's own defaults)
    cal = Calibration.from_pixel_size(float(src.scale[-1]), str(src.units[-1]))
    ref, _ = inference.predict_pce(np.asarray(src.data), cal, pretrained_path("pce-perovskite-database"),
                                   device="cpu", composition={}, process={})
    assert w.pce[0] == pytest.approx(float(np.ravel(ref)[0]), rel=1e-5)
    assert 0.48 <= w.pce[0] <= 20.6  # within the training table's PCE range
    assert w.result.value.endswith("%")
