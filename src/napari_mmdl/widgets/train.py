"""Train dock widget: train a classifier from a folder, with a live loss curve; cancel any time.

Data sources:

* **class folders** — one sub-folder of images per class (``read_image_folder``);
* **grain-size labels** — a folder of calibrated micrographs, each labelled
  small / medium / large from its own measured mean grain ECD
  (``grain_size_labels``, no hand labels);
* **generated** — synthetic micrographs of the three grain-size classes
  (``synthetic_grain_size_set``), to try the widget without data;
* **PCE device table** — a CSV of devices (composition, process, PCE) whose
  rows may name SEM image files; a PCE model (PSC-Fusion) is trained with
  :func:`hyperspy_mmdl.train.tasks.train_pce`, its image branch on when rows
  have images and masked otherwise (the card says which inputs it uses).

Folders are read as ``mmdl train`` reads them
(:func:`hyperspy_mmdl.train.datasets.read_classification_data`): uncalibrated
images train at their own pixel size (a recipe's pixel size applies only to
calibrated folders), and crops in one sub-folder per source micrograph stay on
one side of the held-out split.

Training (:func:`hyperspy_mmdl.train.tasks.train_classifier` with the chosen
recipe; by default ``finetune``, the shipped backbone fine-tuned with a batch
size and schedule chosen from the data) runs in a separate thread driven by a
napari ``thread_worker`` generator that yields every batch loss and epoch's
metrics to the plot. Cancel stops after the current batch; nothing is saved
then. A finished model is saved with its model card into the user's model
folder (the one the model pickers list) or to the chosen file; a model whose
held-out accuracy stayed at chance is saved with a warning (its card says so).
"""

from __future__ import annotations

import queue
import threading
import time
from pathlib import Path

from magicgui.widgets import (
    ComboBox,
    Container,
    FileEdit,
    FloatSpinBox,
    Label,
    LineEdit,
    ProgressBar,
    PushButton,
    SpinBox,
)
from qtpy.QtWidgets import QVBoxLayout, QWidget

from ._model_picker import devices, models_folder

SOURCES = {
    "class folders": "folder",
    "grain-size labels (calibrated micrographs)": "grain_size",
    "generated grain-size set (no data needed)": "synthetic",
}
# ----- PCE (regress-pce): a device table whose rows may name SEM image files
PCE_SOURCE = "PCE device table (CSV; rows may name SEM images)"
SOURCES[PCE_SOURCE] = "pce_table"


def pce_recipes() -> list[str]:
    """Names of the bundled recipes for PCE regression (light: TOML only)."""
    from hyperspy_mmdl.train.recipes import list_recipes, load_recipe

    return [n for n in list_recipes() if load_recipe(n).get("task") == "regress-pce"]


def train_pce_table(path, recipe: dict, *, target: str, fields: str = "spec", epochs: int, device: str,
                    callbacks=(), pixel_size: float | None = None, status=None):
    """Train a PCE model on a device table (the image branch when rows name images, masked otherwise)."""
    from hyperspy_mmdl.train import tasks
    from hyperspy_mmdl.train.tabular import read_pce_table

    if path is None or not Path(path).is_file():
        raise ValueError(f"choose a device table (CSV), got {path}")
    table = read_pce_table(path, target=target or "JV_default_PCE", fields=fields)
    if status is not None:
        status(f"training on {len(table)} devices; inputs: {', '.join(table.inputs())}")
    return tasks.train_pce(table, recipe, epochs=epochs, device=device, callbacks=callbacks, progress=False,
                           pixel_size=pixel_size)


def classify_recipes() -> list[str]:
    """Names of the bundled recipes for image classification (light: TOML only)."""
    from hyperspy_mmdl.train.recipes import list_recipes, load_recipe

    return [n for n in list_recipes() if load_recipe(n).get("task") == "classify"]


def make_relay(q: queue.Queue, stop: threading.Event):
    """A :class:`~hyperspy_mmdl.train.loop.Callback` that forwards losses to ``q`` and stops when ``stop`` is set."""
    from hyperspy_mmdl.train.loop import Callback

    class Relay(Callback):
        @property
        def should_stop(self) -> bool:
            return stop.is_set()

        def on_train_begin(self, logs):
            q.put(("begin", logs))

        def on_batch_end(self, step, logs):
            q.put(("batch", step, float(logs["loss"])))

        def on_epoch_end(self, epoch, logs):
            q.put(("epoch", epoch, dict(logs)))

    return Relay()


def build_image_set(source: str, folder, recipe: dict, *, pixel_size: float | None = None,
                    n_per_class: int = 40, seed: int = 2024, log=None):
    """The :class:`~hyperspy_mmdl.train.datasets.ImageSet` of a data source (see the module docstring)."""
    from hyperspy_mmdl.train import datasets as D

    d = recipe.get("data", {})
    size = int(d.get("input_size", 224))
    if source == "synthetic":
        from hyperspy_mmdl.cli.demo import TRAIN_BANDS

        pixel = pixel_size or d.get("pixel_size") or 0.05
        kw = {"pixel_size": float(pixel), "bands": TRAIN_BANDS} if float(pixel) >= 0.05 else {}
        return D.synthetic_grain_size_set(n_per_class, size=size, seed=seed,
                                          normalization=d.get("normalization", "minmax"), **kw)
    folder = Path(folder) if folder else None
    if folder is None or not folder.is_dir():
        raise ValueError(f"choose a folder of images (got {folder})")
    return D.read_classification_data(folder, recipe, pixel_size=pixel_size, unit="µm",
                                      grain_size_classes=source == "grain_size", log=log)


class TrainWidget(QWidget):
    """Choose data, a recipe and epochs; Start trains with a live loss curve; Cancel stops."""

    def __init__(self, napari_viewer=None):
        super().__init__()
        self.viewer = napari_viewer
        self.source = ComboBox(label="data", choices=list(SOURCES), value=list(SOURCES)[0])
        self.folder = FileEdit(mode="d", label="folder", value="")
        from hyperspy_mmdl.train.recipes import DEFAULT_CLASSIFY

        recipes = classify_recipes()
        self.recipe = ComboBox(label="recipe", choices=recipes,
                               value=DEFAULT_CLASSIFY if DEFAULT_CLASSIFY in recipes else recipes[0],
                               tooltip=f"{DEFAULT_CLASSIFY}: the shipped backbone fine-tuned, batch size and "
                                       "epochs chosen from the data (the default); the others are the papers' "
                                       "recipes, verbatim")
        self.epochs = SpinBox(label="epochs", value=0, min=0, max=10_000,
                              tooltip="0 = chosen from the number of images (recipes with epochs = 'auto')")
        self.pixel_size = FloatSpinBox(label="resample to (µm/px)", value=0.0, min=0.0, max=100.0, step=0.005,
                                       tooltip="0 = the recipe's pixel size when every image is calibrated, "
                                               "else the images' own")
        self.n_per_class = SpinBox(label="images per class", value=40, min=3, max=1000,
                                   tooltip="generated set only")
        self.out = FileEdit(mode="w", label="save as", filter="*.pt", value="",
                            tooltip="empty: <recipe>-<date>.pt in the models folder")
        # PCE device table (shown for the PCE source only)
        self.table = FileEdit(mode="r", label="device table", filter="*.csv", value="")
        self.target = LineEdit(label="target column", value="JV_default_PCE")
        self.fields = ComboBox(label="device fields", choices=["spec", "extended"], value="spec",
                               tooltip="SPEC Table S1 fields, or more of the Perovskite Database's")
        self.device = ComboBox(label="device", choices=devices(), value="auto")
        self.start_button = PushButton(text="Start")
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        self.progress = ProgressBar(label="epochs", value=0, min=0, max=1)
        self.status = Label(label="", value=f"models folder: {models_folder()}")
        self.controls = Container(widgets=[self.source, self.folder, self.table, self.target, self.fields,
                                           self.recipe, self.epochs, self.pixel_size,
                                           self.n_per_class, self.out, self.device, self.start_button,
                                           self.cancel_button, self.progress, self.status], labels=True)
        from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
        from matplotlib.figure import Figure

        self.figure = Figure(figsize=(3.5, 2.6), tight_layout=True)
        self.canvas = FigureCanvasQTAgg(self.figure)
        layout = QVBoxLayout()
        layout.addWidget(self.controls.native)
        layout.addWidget(self.canvas)
        self.setLayout(layout)

        self.worker = None
        self.result = None  # {"path", "card", "metrics", "cancelled"} of the last run
        self.history: dict = {}
        self.batches: list = []  # (fractional epoch, loss)
        self._steps_per_epoch = 1
        self._stop = threading.Event()
        self.source.changed.connect(self._source_changed)
        self.recipe.changed.connect(self._recipe_changed)
        self.start_button.changed.connect(self.start)
        self.cancel_button.changed.connect(self.cancel)
        self._source_changed()
        self._recipe_changed()
        self._plot()

    # ------------------------------------------------------------------ settings
    def _source_changed(self, *_):
        kind = SOURCES[self.source.value]
        self.folder.visible = kind != "synthetic"
        self.n_per_class.visible = kind == "synthetic"
        self._pce_source_changed(kind)

    def _pce_source_changed(self, kind):
        """PCE table fields shown, the recipe list switched between classification and PCE recipes."""
        pce = kind == "pce_table"
        for w in (self.table, self.target, self.fields):
            w.visible = pce
        if pce:
            self.folder.visible = False
        recipes = pce_recipes() if pce else classify_recipes()
        if list(self.recipe.choices) != recipes:
            keep = "psc_fusion_ensemble" if pce else "grain_size_small"
            self.recipe.choices = recipes
            self.recipe.value = keep if keep in recipes else recipes[0]

    def _recipe_changed(self, *_):
        from hyperspy_mmdl.train.recipes import load_recipe

        r = load_recipe(self.recipe.value)
        epochs = r.get("train", {}).get("epochs", 30)
        self.epochs.value = 0 if str(epochs) == "auto" else int(epochs)

    def output_path(self) -> Path:
        f = self.out.value
        if f is not None and str(f) not in ("", "."):
            p = Path(f)
            return p if p.suffix else p.with_suffix(".pt")
        return models_folder() / f"{self.recipe.value}-{time.strftime('%Y%m%d-%H%M%S')}.pt"

    # ------------------------------------------------------------------ running
    def start(self, *_):
        """Start training in a worker thread; returns the worker."""
        from napari.qt.threading import create_worker
        from napari.utils.notifications import show_error, show_info

        from hyperspy_mmdl.train.recipes import load_recipe

        source = SOURCES[self.source.value]
        recipe = load_recipe(self.recipe.value)
        epochs, device = (int(self.epochs.value) or None), self.device.value
        pixel = float(self.pixel_size.value) or None
        folder, n_per_class, out = self.folder.value, int(self.n_per_class.value), self.output_path()
        table, target, fields = self.table.value, str(self.target.value).strip(), self.fields.value
        self._stop = stop = threading.Event()
        self.history, self.batches, self.result = {}, [], None
        self.progress.max, self.progress.value = epochs or 1, 0
        self._plot()

        def work():
            q: queue.Queue = queue.Queue()
            box: dict = {}

            def train():
                try:
                    import warnings

                    from hyperspy_mmdl.train import tasks

                    def note(msg):
                        q.put(("status", msg))

                    q.put(("status", "preparing data..."))
                    if source == "pce_table":
                        box["result"] = train_pce_table(table, recipe, target=target, fields=fields, epochs=epochs,
                                                        device=device, callbacks=[make_relay(q, stop)],
                                                        pixel_size=pixel, status=lambda m: q.put(("status", m)))
                        return
                    image_set = build_image_set(source, folder, recipe, pixel_size=pixel, n_per_class=n_per_class,
                                                log=note)
                    q.put(("status", f"training on {len(image_set)} images {image_set.summary()['per_class']}"))
                    with warnings.catch_warnings(record=True) as caught:
                        warnings.simplefilter("always", tasks.DidNotLearnWarning)
                        box["result"] = tasks.train_classifier(image_set, recipe, epochs=epochs, device=device,
                                                               callbacks=[make_relay(q, stop)], progress=False,
                                                               log=note)
                    box["not_learned"] = next((str(w.message) for w in caught
                                               if issubclass(w.category, tasks.DidNotLearnWarning)), None)
                except BaseException as err:  # noqa: BLE001 - re-raised in the worker below
                    box["error"] = err
                finally:
                    q.put(("end",))

            thread = threading.Thread(target=train, name="mmdl-train", daemon=True)
            thread.start()
            while True:
                try:
                    item = q.get(timeout=0.2)
                except queue.Empty:
                    continue
                if item[0] == "end":
                    break
                yield item
            thread.join()
            if "error" in box:
                raise box["error"]
            res = box["result"]
            if stop.is_set():
                return {"cancelled": True, "path": None, "card": res.card, "metrics": res.metrics,
                        "epochs_run": res.fit.get("epochs_run")}
            from hyperspy_mmdl.checkpoint import save_checkpoint

            path = save_checkpoint(out, res.model, res.card)
            return {"cancelled": False, "path": path, "card": res.card, "metrics": res.metrics,
                    "epochs_run": res.fit.get("epochs_run"), "not_learned": box.get("not_learned")}

        def errored(err):
            self.status.value = f"failed: {err}"
            show_error(f"Train failed: {err}")

        def returned(result):
            self.result = result
            if result["cancelled"]:
                self.status.value = f"cancelled after {result['epochs_run']} epoch(s); nothing saved"
                show_info("Training cancelled; nothing saved")
            elif result.get("not_learned"):
                from napari.utils.notifications import show_warning

                self.status.value = f"DID NOT LEARN; saved {Path(result['path']).name} anyway"
                show_warning(f"Train: {result['not_learned']} Saved as {result['path']} (its card says so).")
            else:
                acc = result["metrics"].get("accuracy")
                r2 = result["metrics"].get("R2")  # PCE models: held-out R² and MAE
                self.status.value = (f"saved {Path(result['path']).name}"
                                     + (f" (held-out accuracy {acc:.2f})" if acc is not None else "")
                                     + (f" (test R² {r2:.2f}, MAE {result['metrics']['MAE']:.2f})"
                                        if r2 is not None else ""))
                show_info(f"Train: wrote {result['path']} (press 'Refresh list' in the model widgets)")

        def finished():
            self.start_button.enabled = True
            self.cancel_button.enabled = False
            self.worker = None

        # errored through _connect: create_worker re-raises errors of workers without that handler
        worker = create_worker(work, _start_thread=False,
                               _connect={"yielded": self._on_yield, "returned": returned, "errored": errored,
                                         "finished": finished})
        self.worker = worker
        self.start_button.enabled = False
        self.cancel_button.enabled = True
        self.status.value = "starting..."
        worker.start()
        return worker

    def cancel(self, *_):
        """Stop training after the current batch (nothing is saved)."""
        if self.worker is not None:
            self._stop.set()
            self.status.value = "cancelling..."

    # ------------------------------------------------------------------ live curve
    def _on_yield(self, item):
        kind = item[0]
        if kind == "status":
            self.status.value = item[1]
        elif kind == "begin":
            self._steps_per_epoch = max(int(item[1].get("steps_per_epoch", 1)), 1)
            self.progress.max = max(int(item[1].get("epochs", 1)), 1)
        elif kind == "batch":
            self.batches.append((item[1] / self._steps_per_epoch, item[2]))
            if len(self.batches) % max(1, self._steps_per_epoch // 4) == 0:
                self._plot()
        elif kind == "epoch":
            epoch, logs = item[1], item[2]
            for k, v in logs.items():
                self.history.setdefault(k, []).append(float(v))
            self.history.setdefault("epoch", []).append(epoch + 1)
            self.progress.value = min(epoch + 1, self.progress.max)
            acc = logs.get("val_accuracy")
            self.status.value = (f"epoch {epoch + 1}: loss {logs['loss']:.3f}"
                                 + (f", val accuracy {acc:.2f}" if acc is not None else ""))
            self._plot()

    def _plot(self):
        self.figure.clear()
        ax = self.figure.add_subplot(111)
        if self.batches:
            x, y = zip(*self.batches)
            ax.plot(x, y, color="0.75", lw=0.8, label="batch loss")
        ep = self.history.get("epoch", [])
        for key, colour in (("loss", "C0"), ("val_loss", "C1")):
            if self.history.get(key):
                ax.plot(ep, self.history[key], marker=".", color=colour, label=key)
        if self.history.get("val_accuracy"):
            ax2 = ax.twinx()
            ax2.plot(ep, self.history["val_accuracy"], marker=".", color="C2", label="val_accuracy")
            ax2.set_ylim(0, 1.05)
            ax2.set_ylabel("val accuracy", fontsize=8)
            ax2.tick_params(labelsize=7)
        ax.set_xlabel("epoch", fontsize=8)
        ax.set_ylabel("loss", fontsize=8)
        ax.tick_params(labelsize=7)
        if self.batches or ep:
            ax.legend(fontsize=7, loc="upper right")
        self.canvas.draw_idle()
