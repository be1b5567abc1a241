"""The Preprocess dock widget in a real napari viewer (run under Xvfb)."""

from __future__ import annotations

import numpy as np
import pytest

from hyperspy_mmdl.synthetic import polycrystal

pytestmark = pytest.mark.gui


def _run(widget, qtbot):
    widget.result_layer = None
    widget.run()
    qtbot.waitUntil(lambda: widget.result_layer is not None or widget.status.value.startswith("failed"),
                    timeout=60_000)
    qtbot.waitUntil(lambda: widget.run_button.enabled, timeout=10_000)
    assert widget.result_layer is not None, widget.status.value
    return widget.result_layer


def test_preprocess_widget(make_napari_viewer, qtbot):
    from napari_mmdl.widgets.preprocess import PreprocessWidget

    viewer = make_napari_viewer()
    s = polycrystal((120, 160), pixel_size=10.0, unit="nm", seed=3, data_bar=True)
    image = viewer.add_image(s.image * 200 + 5, name="film", scale=(10.0, 10.0), translate=(100.0, 50.0),
                             units=("nm", "nm"))
    widget = PreprocessWidget(viewer)
    viewer.window.add_dock_widget(widget)
    assert widget.image.value is image

    # normalise: [0, 1], histograms before/after drawn
    layer = _run(widget, qtbot)
    assert layer.data.min() == 0 and layer.data.max() == 1
    assert tuple(layer.contrast_limits) == (0.0, 1.0)  # counted in the worker: the data's range
    assert tuple(layer.scale) == (10.0, 10.0) and tuple(layer.translate) == (100.0, 50.0)
    axes = widget.figure.axes
    assert len(axes) == 2 and axes[0].get_title() == "before" and axes[1].get_title() == "after"
    assert axes[1].patches[0].get_data().values.sum() == 120 * 160  # every pixel counted once

    # data bar crop
    widget.image.value = image
    widget.operation.value = "remove data bar"
    assert not widget.scale_bar.native.isHidden() and widget.normalization.native.isHidden()
    layer = _run(widget, qtbot)
    assert layer.data.shape == (s.data_bar_top, 160) and "cropped" in widget.status.value

    # super-resolution: pixel size / 2, edges kept
    widget.image.value = image
    widget.operation.value = "super-resolve"
    widget.factor.value = 2
    layer = _run(widget, qtbot)
    assert layer.data.shape == (240, 320)
    assert np.allclose(layer.scale, (5.0, 5.0)) and np.allclose(layer.translate, (97.5, 47.5))

    # denoise (Gaussian)
    widget.image.value = image
    widget.operation.value = "denoise"
    widget.denoiser.value = "gaussian"
    assert not widget.strength.native.isHidden() and widget.steps.native.isHidden()
    layer = _run(widget, qtbot)
    assert layer.data.std() < image.data.std()


def test_preprocess_noise2void_shows_its_steps_and_cancels(make_napari_viewer, qtbot):
    """Noise2Void reports its training steps in the progress bar; Cancel stops it and adds nothing."""
    from napari_mmdl.widgets.preprocess import PreprocessWidget

    viewer = make_napari_viewer()
    s = polycrystal((96, 96), pixel_size=10.0, unit="nm", seed=4)
    viewer.add_image(s.image.astype(np.float32), name="film")
    widget = PreprocessWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget.operation.value = "denoise"
    widget.denoiser.value = "noise2void"
    widget.steps.value = 100_000  # far more than the test waits for
    widget.run()
    qtbot.waitUntil(lambda: widget.progress.max == 100_000 and widget.progress.value >= 2, timeout=60_000)
    assert "step" in widget.status.value and widget.cancel_button.enabled
    n_layers = len(viewer.layers)
    widget.cancel_button.clicked.emit()
    qtbot.waitUntil(lambda: widget.run_button.enabled, timeout=30_000)
    assert "cancelled" in widget.status.value
    assert len(viewer.layers) == n_layers and widget.result_layer is None
    assert not widget.cancel_button.enabled
