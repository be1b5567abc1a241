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

    def load(p, device="cpu", model=None):
        card = ckpt.read_card(p)
        if model is None:
            model = TinyFusion() if card.task == "regress-pce" else TinyNet()
        return real(p, device=device, model=model)

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
    assert cls.model.path == checkpoint  # listed from the models folder
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
