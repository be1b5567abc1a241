"""The Train dock widget: generated data, a recipe, Start, live loss curve, saved checkpoint with its card; Cancel."""

from __future__ import annotations

import numpy as np
import pytest


pytestmark = pytest.mark.gui


@pytest.fixture
def models_dir(tmp_path, monkeypatch):
    folder = tmp_path / "models"
    monkeypatch.setenv("MMDL_MODELS_DIR", str(folder))
    return folder


def test_train_widget_trains_and_saves_into_the_models_folder(make_napari_viewer, qtbot, models_dir):
    from hyperspy_mmdl.checkpoint import read_card
    from napari_mmdl.widgets.classify import ClassifyWidget
    from napari_mmdl.widgets.train import SOURCES, TrainWidget

    viewer = make_napari_viewer()
    w = TrainWidget(viewer)
    viewer.window.add_dock_widget(w)
    assert "grain_size_small" in w.recipe.choices and "vgg_grain" in w.recipe.choices
    assert w.recipe.value == "finetune" and w.epochs.value == 0  # the default: epochs chosen from the data
    w.recipe.value = "grain_size_small"
    assert w.epochs.value == 30
    w.source.value = [k for k, v in SOURCES.items() if v == "synthetic"][0]
    assert w.folder.native.isHidden() and not w.n_per_class.native.isHidden()
    w.n_per_class.value = 6
    w.epochs.value = 3
    w.device.value = "cpu"
    worker = w.start()
    assert worker is not None and not w.start_button.enabled
    qtbot.waitUntil(lambda: w.worker is None, timeout=90_000)
    assert w.result is not None and not w.result["cancelled"], w.status.value
    path = w.result["path"]
    assert path.parent == models_dir and path.name.startswith("grain_size_small-")
    card = read_card(path)
    assert card.task == "classify" and card.class_names == ["small", "medium", "large"]
    assert card.input_size == [1, 112, 112] and card.pixel_size == pytest.approx(0.05)
    assert card.recipe["train"]["epochs"] == 3
    # the live curve saw every epoch and every batch
    assert w.history["epoch"] == [1, 2, 3] and len(w.history["loss"]) == 3
    assert len(w.batches) >= 3 and w.progress.value == 3
    assert len(w.figure.axes[0].lines) >= 2
    assert "saved" in w.status.value
    # the model pickers list it
    cls = ClassifyWidget(viewer)
    assert str(path) in cls.model.listed.choices
    cls.model.listed.value = str(path)
    assert cls.model.path == path and "psc_encoder" in cls.model.info.value


def test_train_widget_cancel_saves_nothing(make_napari_viewer, qtbot, models_dir):
    from napari_mmdl.widgets.train import SOURCES, TrainWidget

    viewer = make_napari_viewer()
    w = TrainWidget(viewer)
    w.recipe.value = "grain_size_small"
    w.source.value = [k for k, v in SOURCES.items() if v == "synthetic"][0]
    w.n_per_class.value = 6
    w.epochs.value = 500
    w.device.value = "cpu"
    w.start()
    qtbot.waitUntil(lambda: len(w.batches) >= 1, timeout=60_000)
    w.cancel_button.clicked.emit()
    qtbot.waitUntil(lambda: w.worker is None, timeout=30_000)
    assert w.result["cancelled"] and w.result["path"] is None
    assert w.result["epochs_run"] < 500
    assert not models_dir.exists() or not list(models_dir.glob("*.pt"))
    assert "cancelled" in w.status.value and w.start_button.enabled


def test_train_widget_errors_become_notifications(make_napari_viewer, qtbot, models_dir, tmp_path, monkeypatch):
    from napari_mmdl.widgets.train import TrainWidget

    shown = []
    monkeypatch.setattr("napari.utils.notifications.show_error", lambda msg: shown.append(msg))
    w = TrainWidget(make_napari_viewer())
    w.folder.value = str(tmp_path / "does-not-exist")
    w.start()
    qtbot.waitUntil(lambda: w.worker is None, timeout=30_000)
    assert shown and "Train failed" in shown[0] and "folder" in shown[0]
    assert w.start_button.enabled and w.result is None


def test_train_widget_default_trains_an_uncalibrated_class_folder(make_napari_viewer, qtbot, models_dir, tmp_path):
    """The default recipe on a folder of uncalibrated PNGs (the widget used to stop with 'cannot resample
    to 0.05 µm/px'): the shipped backbone with a head fitted on its features, saved with its card."""
    from PIL import Image

    from hyperspy_mmdl.checkpoint import read_card
    from napari_mmdl.widgets.train import SOURCES, TrainWidget

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:96, :96]
    for k in range(8):  # stripes vs speckle, one source micrograph per file
        stripes = 127 + 100 * np.sin(xx / (2 + k % 3) + rng.uniform(0, 6))
        speckle = rng.integers(0, 255, (96, 96))
        for cls, x in (("stripes", stripes), ("speckle", speckle)):
            (tmp_path / "data" / cls).mkdir(parents=True, exist_ok=True)
            Image.fromarray(x.astype(np.uint8)).save(tmp_path / "data" / cls / f"{k}.png")
    viewer = make_napari_viewer()
    w = TrainWidget(viewer)
    assert w.source.value == [k for k, v in SOURCES.items() if v == "folder"][0] and w.recipe.value == "finetune"
    w.folder.value = str(tmp_path / "data")
    w.epochs.value = 1
    w.device.value = "cpu"
    w.start()
    qtbot.waitUntil(lambda: w.worker is None, timeout=180_000)
    assert w.result is not None and not w.result["cancelled"], w.status.value
    card = read_card(w.result["path"])
    assert w.result["path"].parent == models_dir and card.architecture == "micronet"
    assert card.pixel_size is None and card.pixel_unit == "px"  # trained at the images' own pixel size
    assert card.recipe["init"]["pretrained"] == "grain-size-micronet"
    assert card.metrics["held_out_accuracy"] == 1.0 and card.metrics["learned"] in (True, None)
    assert "saved" in w.status.value
