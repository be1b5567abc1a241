"""napari end to end: open a real dm4 through the plugin reader, segment, paint a grain, re-measure,
classify with a tiny checkpoint, show attention, save the labels; layer data, scale, units, table values."""

from __future__ import annotations

import numpy as np
import pytest

import torch

from conftest import shared_data  # noqa: E402

pytestmark = pytest.mark.gui

DM4 = ("ncempy_dm", "dmTest_float32_nonSquare_diffPixelSize.dm4")  # 64×128, y 2 Å/px, x 1 nm/px


@pytest.fixture
def tiny_checkpoint(tmp_path, monkeypatch):
    """An untrained 3-class psc_encoder with its card, in a temporary models folder."""
    from hyperspy_mmdl import inference, models
    from hyperspy_mmdl.checkpoint import save_checkpoint

    torch.manual_seed(0)
    folder = tmp_path / "models"
    card = {"architecture": "psc_encoder", "config": {"num_classes": 3, "in_chans": 1, "head": True},
            "task": "classify", "input_size": [1, 32, 32], "normalization": "minmax", "pixel_size": 1.0,
            "pixel_unit": "nm", "class_names": ["small", "medium", "large"], "metrics": {"accuracy": 0.5}}
    path = save_checkpoint(folder / "tiny.pt", models.create("psc_encoder", num_classes=3, in_chans=1,
                                                             head=True), card)
    monkeypatch.setenv("MMDL_MODELS_DIR", str(folder))
    inference.clear_cache()
    yield path
    inference.clear_cache()


def test_real_dm4_through_every_widget(make_napari_viewer, qtbot, tiny_checkpoint, tmp_path):
    from hyperspy_mmdl import io
    from napari_mmdl.widgets.attention import AttentionWidget
    from napari_mmdl.widgets.classify import ClassifyWidget
    from napari_mmdl.widgets.grains import GrainsWidget

    path = shared_data(*DM4)
    viewer = make_napari_viewer()
    [image] = viewer.open(str(path), plugin="napari-mmdl")
    assert image.data.shape == (64, 128)
    np.testing.assert_allclose(image.scale, (0.2, 1.0))  # Å × nm in the file: nm on both axes
    assert tuple(str(u) for u in image.units) == ("nanometer", "nanometer")
    assert image.metadata["path"] == str(path)

    # segment and measure
    grains = GrainsWidget(viewer)
    viewer.window.add_dock_widget(grains, name="Grains")
    assert grains.image.value is image
    grains.run()
    qtbot.waitUntil(lambda: grains.labels_layer is not None, timeout=60_000)
    qtbot.waitUntil(lambda: grains.run_button.enabled, timeout=10_000)
    labels = grains.labels_layer
    assert labels.data.shape == image.data.shape
    np.testing.assert_allclose(labels.scale, (0.2, 1.0))
    assert tuple(str(u) for u in labels.units) == ("nanometer", "nanometer")
    n0 = int(labels.data.max())
    assert n0 >= 1 and len(grains.table) == n0 and grains.grid.rowCount() == n0

    # paint a new 10×20 px grain over the labels, then re-measure
    new = n0 + 1
    data = labels.data.copy()
    data[10:20, 40:60] = new
    labels.data = data
    grains.remeasure()
    t = grains.table
    row = t[t["label"] == new].iloc[0]
    # 200 px of 0.2 nm × 1 nm (y in Å is expressed in x's nm)
    assert row["area"] == pytest.approx(200 * 0.2 * 1.0)
    assert row["ecd"] == pytest.approx(np.sqrt(4 * 40.0 / np.pi))
    assert t.attrs["units"]["area"] in ("nm²", "nm^2")
    assert list(labels.features["label"]) == list(t["label"]) and grains.grid.rowCount() == len(t)
    assert grains.summary["n_grains"] == len(t)

    # save the painted labels through the plugin's writer: calibration kept
    [saved] = labels.save(str(tmp_path / "grains.tif"), plugin="napari-mmdl")
    back = io.load(saved)
    np.testing.assert_array_equal(np.asarray(back.data), labels.data)
    assert back.calibration.pixel_size_in("nm") == pytest.approx((0.2, 1.0))

    # classify with the tiny checkpoint listed from the models folder
    cls = ClassifyWidget(viewer)
    viewer.window.add_dock_widget(cls, name="Classify")
    cls.image.value = image
    cls.model.listed.value = str(tiny_checkpoint)  # listed after the shipped models
    assert cls.model.path == tiny_checkpoint and "small, medium, large" in cls.model.info.value
    cls.run()
    qtbot.waitUntil(lambda: cls.probabilities is not None, timeout=60_000)
    assert cls.probabilities.shape == (1, 3)
    np.testing.assert_allclose(cls.probabilities.sum(), 1, atol=1e-5)
    assert cls.result.value.split(" ")[0] in ("small", "medium", "large")

    # attention overlay aligned with the image
    att = AttentionWidget(viewer)
    viewer.window.add_dock_widget(att, name="Attention")
    att.image.value = image
    att.model.listed.value = str(tiny_checkpoint)
    att.run()
    qtbot.waitUntil(lambda: att.layer is not None, timeout=60_000)
    over = att.layer
    assert over.data.shape == image.data.shape
    assert tuple(over.scale) == tuple(image.scale) and tuple(over.translate) == tuple(image.translate)
    assert tuple(str(u) for u in over.units) == ("nanometer", "nanometer")
    assert 0.0 <= over.data.min() and over.data.max() == pytest.approx(1.0)
