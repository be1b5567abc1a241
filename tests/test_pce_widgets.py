"""Predict PCE and Train (PCE device table) dock widgets in a real napari viewer (run under Xvfb)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from hyperspy_mmdl import inference
from hyperspy_mmdl.calibration import Calibration
from hyperspy_mmdl.synthetic import polycrystal

pytestmark = pytest.mark.gui


@pytest.fixture
def models_dir(tmp_path, monkeypatch):
    folder = tmp_path / "models"
    monkeypatch.setenv("MMDL_MODELS_DIR", str(folder))
    inference.clear_cache()
    yield folder
    inference.clear_cache()


@pytest.fixture
def grain_model(tmp_path):
    """A PSC-Fusion file trained (briefly) on a device table with a band gap and a grain size, no images."""
    from test_pce import _devices

    from hyperspy_mmdl.train.recipes import load_recipe
    from hyperspy_mmdl.train.tabular import read_pce_table
    from hyperspy_mmdl.train.tasks import train_pce

    frame = _devices(80)
    path = tmp_path / "devices.csv"
    frame.to_csv(path, index=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        table = read_pce_table(path, composition_numeric=["Perovskite_band_gap"])
    torch.manual_seed(0)
    res = train_pce(table, load_recipe("psc_fusion", ["train.epochs=3"]), out=tmp_path / "pce.pt", progress=False)
    return res.checkpoint, path, frame


def test_predict_pce_widget_image_and_device_row(make_napari_viewer, qtbot, models_dir, grain_model):
    """A model trained without images, an SEM image and a row of the device table: the PCE the other routes
    give, the grains of the image used, and the note that the image itself is not."""
    from napari_mmdl.widgets.predict_pce import UNKNOWN, PredictPCEWidget

    from hyperspy_mmdl.pipeline import analyze_frame, grain_feature_factors

    path, table, frame = grain_model
    viewer = make_napari_viewer()
    film = polycrystal((160, 160), pixel_size=10.0, unit="nm", mean_ecd=400.0, seed=4)
    viewer.add_image(film.image, name="sem", scale=(10, 10), units=("nm", "nm"))
    w = PredictPCEWidget(viewer)
    w.model.path = path
    assert [b.label for b in w.numeric] == ["Perovskite_band_gap", "grain_size_nm [nm]"]
    assert w.grain_features.enabled and w.grain_features.value
    assert w.inputs.value.startswith("grain features, composition, process (trained without SEM images)")
    w.table.value = table
    w.row.value = 5
    w.fill_from_table()
    assert w.composition.etl.value in (frame["ETL_stack_sequence"][5].split(" | ")[0], UNKNOWN)
    assert float(w.numeric[0].value) == pytest.approx(frame["Perovskite_band_gap"][5])
    w.image.value = viewer.layers["sem"]
    assert w.run() is not None
    qtbot.waitUntil(lambda: w.controls.worker is None, timeout=60_000)
    qtbot.waitUntil(lambda: w.pce is not None, timeout=5000)
    cal = Calibration.from_pixel_size(10, "nm")
    factors = grain_feature_factors(analyze_frame(film.image, cal))[None]
    row = frame.iloc[5]
    ref, _ = inference.predict_pce(film.image, cal, path, composition=row, process=row, grain_features=factors,
                                   notes=[])
    assert w.pce[0] == pytest.approx(float(ref), rel=1e-5)
    assert "trained without SEM images, so the image is not used (its grains are)" in w.notes.value
    # without an image: the row's own grain size
    w.image.value = None
    w.run()
    qtbot.waitUntil(lambda: w.controls.worker is None, timeout=60_000)
    alone, _ = inference.predict_pce(None, None, path, composition=row, process=row, notes=[])
    qtbot.waitUntil(lambda: w.pce[0] == pytest.approx(alone, rel=1e-5), timeout=5000)


def test_train_widget_trains_a_pce_model_on_a_device_table(make_napari_viewer, qtbot, models_dir, tmp_path):
    from test_pce import _devices

    from hyperspy_mmdl.checkpoint import read_card
    from napari_mmdl.widgets.train import PCE_SOURCE, TrainWidget

    table = tmp_path / "devices.csv"
    _devices(80).to_csv(table, index=False)
    w = TrainWidget(make_napari_viewer())
    w.source.value = PCE_SOURCE
    assert not w.table.native.isHidden() and w.folder.native.isHidden()
    assert set(w.recipe.choices) >= {"psc_fusion", "psc_fusion_ensemble"} and "vgg_grain" not in w.recipe.choices
    w.recipe.value = "psc_fusion"
    w.table.value = table
    w.epochs.value = 3
    w.device.value = "cpu"
    assert w.start() is not None
    qtbot.waitUntil(lambda: w.worker is None, timeout=120_000)
    assert w.result is not None and not w.result["cancelled"], w.status.value
    card = read_card(w.result["path"])
    assert card.task == "regress-pce" and card.masked_modalities == ["image"]
    assert card.extra["inputs"] == ["grain features", "composition", "process"]
    assert "test R²" in w.status.value and w.history["epoch"] == [1, 2, 3]
    # back to a classification source: the classification recipes again
    w.source.value = "class folders"
    assert "vgg_grain" in w.recipe.choices and "psc_fusion" not in w.recipe.choices
