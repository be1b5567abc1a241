"""Screenshots of each dock widget on the built-in synthetic sample, for the README (docs/*.png).

Run under a virtual screen::

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python scripts/screenshots.py

Only synthetic data is used (never files of ../shared/data). A small grain-size
classifier is trained first into a temporary models folder (a few seconds) so
Classify and Attention have a model to show.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

DOCS = Path(__file__).resolve().parents[1] / "docs"
WIDTH = 1100  # px of the saved PNGs


def wait(cond, timeout=300.0):
    from qtpy.QtWidgets import QApplication

    t0 = time.time()
    while not cond():
        QApplication.processEvents()
        time.sleep(0.02)
        if time.time() - t0 > timeout:
            raise TimeoutError("widget did not finish")
    for _ in range(20):
        QApplication.processEvents()
        time.sleep(0.02)


def save(viewer, name):
    import numpy as np
    from PIL import Image

    viewer.reset_view()
    wait(lambda: True)
    arr = np.asarray(viewer.screenshot(canvas_only=False, flash=False))
    img = Image.fromarray(arr[..., :3])
    if img.width > WIDTH:
        img = img.resize((WIDTH, round(img.height * WIDTH / img.width)), Image.LANCZOS)
    img = img.quantize(colors=96, method=Image.Quantize.MEDIANCUT)
    path = DOCS / f"{name}.png"
    img.save(path, optimize=True)
    print(f"wrote {path} ({path.stat().st_size // 1024} KB)")


def main() -> int:
    DOCS.mkdir(exist_ok=True)
    models = Path(tempfile.mkdtemp(prefix="mmdl-models-"))
    os.environ["MMDL_MODELS_DIR"] = str(models)

    import warnings

    warnings.filterwarnings("ignore")  # no warning toasts (e.g. the PyQt5 deprecation) in the pictures
    os.environ["NAPARI_CONFIG"] = str(models / "napari-settings.yaml")  # leave the user's settings alone
    import napari
    from napari.settings import get_settings

    get_settings().application.gui_notification_level = "error"

    from hyperspy_mmdl.train import tasks
    from hyperspy_mmdl.train.recipes import load_recipe
    from napari_mmdl.widgets.train import build_image_set

    recipe = load_recipe("grain_size_small")
    tasks.train_classifier(build_image_set("synthetic", None, recipe, n_per_class=40), recipe, epochs=30,
                           device="cpu", progress=False, out=models / "grain_size_small.pt")
    (models / "grain_size_small.pt.state.pt").unlink(missing_ok=True)

    from napari_mmdl.widgets.attention import AttentionWidget
    from napari_mmdl.widgets.batch import BatchWidget
    from napari_mmdl.widgets.classify import ClassifyWidget
    from napari_mmdl.widgets.grains import GrainsWidget
    from napari_mmdl.widgets.predict_pce import PredictPCEWidget
    from napari_mmdl.widgets.preprocess import PreprocessWidget
    from napari_mmdl.widgets.train import SOURCES, TrainWidget

    viewer = napari.Viewer(title="napari-mmdl")
    viewer.window.resize(1600, 1000)
    viewer.open_sample("napari-mmdl", "polycrystal")
    image = viewer.layers["synthetic polycrystal"]

    def dock(widget, name):
        for d in list(viewer.window.dock_widgets.values()) if hasattr(viewer.window, "dock_widgets") else []:
            viewer.window.remove_dock_widget(d)
        return viewer.window.add_dock_widget(widget, name=name, area="right")

    grains = GrainsWidget(viewer)
    dw = dock(grains, "Grains")
    grains.image.value = image
    grains.run()
    wait(lambda: grains.labels_layer is not None and grains.run_button.enabled)
    save(viewer, "grains")
    viewer.window.remove_dock_widget(dw)
    grains.labels_layer.visible = False
    grains.labels_layer.show_selected_label = False

    cls = ClassifyWidget(viewer)
    dw = dock(cls, "Classify")
    cls.image.value = image
    cls.run()
    wait(lambda: cls.controls.worker is None and cls.probabilities is not None)
    save(viewer, "classify")
    viewer.window.remove_dock_widget(dw)

    att = AttentionWidget(viewer)
    dw = dock(att, "Attention")
    att.image.value = image
    att.run()
    wait(lambda: att.controls.worker is None and att.layer is not None)
    save(viewer, "attention")
    viewer.window.remove_dock_widget(dw)
    att.layer.visible = False

    pre = PreprocessWidget(viewer)
    dw = dock(pre, "Preprocess")
    pre.image.value = image
    pre.operation.value = "denoise"
    pre.denoiser.value = "nl_means"
    pre.run()
    wait(lambda: pre.result_layer is not None and pre.run_button.enabled)
    save(viewer, "preprocess")
    viewer.window.remove_dock_widget(dw)
    pre.result_layer.visible = False

    pce = PredictPCEWidget(viewer)
    dw = dock(pce, "Predict PCE")
    save(viewer, "predict_pce")
    viewer.window.remove_dock_widget(dw)

    train = TrainWidget(viewer)
    dw = dock(train, "Train")
    train.source.value = [k for k, v in SOURCES.items() if v == "synthetic"][0]
    train.n_per_class.value = 40  # the widget's defaults: 40 images per class, 30 epochs
    train.epochs.value = 30
    train.device.value = "cpu"
    train.out.value = str(models / "screenshot-run.pt")
    train.start()
    wait(lambda: train.worker is None)
    save(viewer, "train")
    viewer.window.remove_dock_widget(dw)

    batch = BatchWidget(viewer)
    dock(batch, "Batch")
    save(viewer, "batch")
    viewer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
