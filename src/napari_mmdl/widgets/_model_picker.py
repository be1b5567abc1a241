"""Shared parts of the model widgets: a checkpoint picker, layer helpers, a worker runner.

The picker lists the models shipped with the package first (by name, with
their Markdown model card as the item's tooltip), then the checkpoints in the
user's models folder (:func:`hyperspy_mmdl.models.pretrained.models_folder`,
where ``mmdl train`` and the Train widget save), and accepts any other file.
Only models of the widget's task are listed. It shows the chosen model's card
summary (architecture, task, input, pixel size, classes, held-out score) and
offers only the devices that exist on this machine.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from magicgui.widgets import ComboBox, Container, FileEdit, Label, ProgressBar, PushButton

_NO_MODEL = "(none found: see below)"


def models_folder() -> Path:
    """The user's models folder (:func:`hyperspy_mmdl.models.pretrained.models_folder`; imported late: torch)."""
    from hyperspy_mmdl.models.pretrained import models_folder as folder

    return folder()


def devices() -> list[str]:
    """The device choices of this machine (:func:`hyperspy_mmdl.inference.device.available_devices`)."""
    from hyperspy_mmdl.inference.device import available_devices

    return available_devices()


def no_model_text(tasks=None) -> str:
    """What to do when no model is listed: train one, or put files in the models folder."""
    what = " or ".join(tasks) if tasks else "suitable"
    return (f"No {what} model found. Train one with Plugins > MM-DL Microstructure > Train (or `mmdl train`), "
            f"which saves into the models folder {models_folder()} ; or copy .pt files there and press "
            "'Refresh list'; or choose a file below.")


_CARDS: dict = {}


def read_card_cached(path: Path):
    """The model card of a checkpoint (cached by path and modification time)."""
    from hyperspy_mmdl.checkpoint import read_card

    path = Path(path)
    key = (str(path.resolve()), path.stat().st_mtime_ns)
    if key not in _CARDS:
        _CARDS[key] = read_card(path)
    return _CARDS[key]


def card_summary(card) -> str:
    """A few lines describing a model card."""
    lines = [f"{card.architecture} ({card.task})"]
    if card.input_size:
        lines.append("input " + "×".join(str(v) for v in card.input_size)
                     + (f" at {card.pixel_size:g} {card.pixel_unit}/px" if card.pixel_size
                        else ", trained on uncalibrated images"))
    lines.append(f"normalisation: {card.normalization}")
    if card.class_names:
        lines.append("classes: " + ", ".join(map(str, card.class_names)))
    if card.target_name:
        lines.append(f"target: {card.target_name} ({card.target_unit or ''})")
    m = card.metrics or {}
    shown = [f"{k} {v:.3g}" for k, v in m.items()
             if k in ("accuracy", "f1", "MAE", "R2", "boundary_f1", "chance_accuracy")
             and isinstance(v, (int, float)) and not isinstance(v, bool)]
    if not shown:
        shown = [f"{k} {v:.3g}" for k, v in m.items() if isinstance(v, (int, float)) and not isinstance(v, bool)][:4]
    if shown:
        lines.append("held-out: " + ", ".join(shown))
    if m.get("learned") is False:
        lines.append("WARNING: this model did not learn (held-out accuracy at chance)")
    return "\n".join(lines)


class ModelPicker(Container):
    """Choose a shipped model, one from the models folder, or a file; shows its card.

    Parameters
    ----------
    tasks : tuple of str, optional
        Only list and accept models of these card tasks (e.g. ``("classify",)``).
    """

    def __init__(self, tasks: tuple[str, ...] | None = None):
        self.tasks = tasks
        self.listed = ComboBox(label="model", choices=self._folder_choices, nullable=False)
        self.file = FileEdit(mode="r", label="or file", filter="*.pt *.pth *.ckpt", value="")
        self.refresh = PushButton(text="Refresh list")
        self.device = ComboBox(label="device", choices=devices(), value="auto")
        self.info = Label(label="card", value="")
        super().__init__(widgets=[self.listed, self.file, self.refresh, self.device, self.info],
                         labels=True)
        self._callbacks: list[Callable] = []
        self.listed.changed.connect(self._update)
        self.file.changed.connect(self._update)
        self.refresh.changed.connect(self._refresh)
        self._tooltips()
        self._update()

    # ---------------------------------------------------------------- choices
    def _fits(self, path: Path) -> bool:
        if not self.tasks:
            return True
        try:
            return read_card_cached(path).task in self.tasks
        except Exception:  # noqa: BLE001 - an unreadable file is listed; choosing it says why
            return True

    def _folder_choices(self, _widget=None):
        from hyperspy_mmdl.models.pretrained import trained_models

        out = [(f"{name} (shipped)" if pretrained else name, str(path))
               for name, path, pretrained in trained_models() if self._fits(path)]
        return out or [(_NO_MODEL, "")]

    def _tooltips(self) -> None:
        """The Markdown card of each shipped model (the card summary for others) as the item's tooltip."""
        from qtpy.QtCore import Qt

        from hyperspy_mmdl.models.pretrained import PRETRAINED_DIR

        box = self.listed.native
        for i in range(box.count()):
            value = box.itemData(i)
            path = Path(value) if value else None
            if path is None:
                tip = no_model_text(self.tasks)
            elif path.parent == PRETRAINED_DIR and path.with_suffix(".md").is_file():
                tip = path.with_suffix(".md").read_text(encoding="utf-8")
            else:
                try:
                    tip = card_summary(read_card_cached(path))
                except Exception as err:  # noqa: BLE001
                    tip = f"{path.name}: {err}"
            box.setItemData(i, tip, Qt.ToolTipRole)

    def _refresh(self, *_):
        self.listed.reset_choices()
        self._tooltips()
        self._update()

    def on_change(self, callback: Callable) -> None:
        """Call ``callback(card_or_None)`` whenever the chosen model changes."""
        self._callbacks.append(callback)

    # ---------------------------------------------------------------- state
    @property
    def path(self) -> Path | None:
        """The chosen checkpoint: the file field when set, else the listed model."""
        f = self.file.value
        if f is not None and str(f) not in ("", ".") and Path(f).is_file():
            return Path(f)
        v = self.listed.value
        return Path(v) if v else None

    @path.setter
    def path(self, value) -> None:
        self.file.value = str(value)
        self._update()

    @property
    def card(self):
        p = self.path
        if p is None:
            return None
        try:
            card = read_card_cached(p)
        except Exception:  # noqa: BLE001 - shown in the info label by _update
            return None
        return None if self.tasks and card.task not in self.tasks else card

    def _update(self, *_):
        p = self.path
        card, text = None, no_model_text(self.tasks)
        if p is not None:
            try:
                card = read_card_cached(p)
                text = card_summary(card)
                if self.tasks and card.task not in self.tasks:
                    text = f"{p.name}: a {card.task!r} model; this widget needs {' or '.join(self.tasks)}"
                    card = None
            except Exception as err:  # noqa: BLE001 - unreadable file: say why
                text = f"{p.name}: {err}"
        self.info.value = text
        self.listed.native.setToolTip(self.listed.native.itemData(self.listed.native.currentIndex(),
                                                                  _tooltip_role()) or "")
        for cb in self._callbacks:
            cb(card)


def _tooltip_role():
    from qtpy.QtCore import Qt

    return Qt.ToolTipRole


def scale_note(card, layer) -> str:
    """A warning when the layer's calibration does not fit the model's pixel size ('' when it does)."""
    if card is None or layer is None:
        return ""
    from hyperspy_mmdl.inference.prepare import scale_warning

    data, cal, channel_axis = layer_frames(layer)
    shape = data.shape[:-1] if channel_axis is not None else data.shape
    return scale_warning(card, cal, tuple(shape[-2:]))


# --------------------------------------------------------------------------- layers
def image_layers(viewer) -> list:
    import napari

    return [layer for layer in viewer.layers if isinstance(layer, napari.layers.Image)] if viewer else []


def image_layer_picker(viewer, label: str = "image", choices=None):
    """A ComboBox of the viewer's image layers that follows layers being added and removed.

    The one layer picker of the plugin's widgets (Grains, Preprocess, Classify,
    Predict PCE, Attention); ``choices`` (a magicgui choices callable) replaces
    the plain list of image layers.
    """
    from magicgui.widgets import ComboBox

    if choices is None:
        def choices(_w=None):
            return [(layer.name, layer) for layer in image_layers(viewer)]
    box = ComboBox(label=label, choices=choices)
    if viewer is not None:
        viewer.layers.events.inserted.connect(box.reset_choices)
        viewer.layers.events.removed.connect(box.reset_choices)
    return box


def layer_frames(layer):
    """``(data, calibration, channel_axis)`` of an image layer for the inference functions.

    Multiscale layers use the full-resolution level. The calibration is built
    from the layer's ``scale``, ``translate``, ``units`` and ``axis_labels``.
    """
    from hyperspy_mmdl.calibration import Calibration

    data = layer.data[0] if getattr(layer, "multiscale", False) else layer.data
    return data, Calibration.from_napari(layer), (-1 if layer.rgb else None)


def overlay_kwargs(layer) -> dict:
    """``scale``, ``translate``, ``units``, ``axis_labels`` to align a new layer with ``layer``."""
    kw = dict(scale=tuple(layer.scale), translate=tuple(layer.translate))
    if getattr(layer, "units", None) is not None:
        kw["units"] = tuple(layer.units)
    if getattr(layer, "axis_labels", None) is not None:
        kw["axis_labels"] = tuple(layer.axis_labels)
    return kw


# --------------------------------------------------------------------------- worker
class RunControls(Container):
    """Run / Cancel buttons and a progress bar driving one ``thread_worker`` at a time."""

    def __init__(self, run_text: str = "Run"):
        self.run_button = PushButton(text=run_text)
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        self.progress = ProgressBar(label="progress", value=0, min=0, max=1)
        super().__init__(widgets=[self.run_button, self.cancel_button, self.progress], labels=False)
        self.worker = None
        self.cancel_button.changed.connect(self.cancel)

    def start(self, generator_function, on_result, what: str):
        """Run ``generator_function()`` (yields ``(done, total)``, returns the result) in a thread."""
        from napari.qt.threading import create_worker
        from napari.utils.notifications import show_error, show_info

        def errored(err):
            show_error(f"{what} failed: {err}")

        worker = create_worker(generator_function, _progress={"desc": what}, _start_thread=False,
                               _connect={"errored": errored})
        self.worker = worker
        self.run_button.enabled = False
        self.cancel_button.enabled = True
        self.progress.value = 0

        def progress(step):
            done, total = step
            self.progress.max = max(int(total), 1)
            self.progress.value = int(done)

        def finished():
            self.run_button.enabled = True
            self.cancel_button.enabled = False
            self.worker = None

        worker.yielded.connect(progress)
        worker.returned.connect(on_result)
        worker.aborted.connect(lambda: show_info(f"{what} cancelled"))
        worker.finished.connect(finished)
        worker.start()
        return worker

    def cancel(self, *_):
        if self.worker is not None:
            self.worker.quit()


def run_in_steps(fn: Callable, stop, poll: float = 0.05):
    """Generator running ``fn(progress)`` in a thread of its own: yields ``(done, total)``, returns its result.

    For work that reports progress through a callback (``progress(done, total, ...)``,
    as :func:`hyperspy_mmdl.preprocess.denoise.train_noise2void` does) rather than
    by yielding: a napari generator worker can then show its steps. ``(0, 0)``
    (busy) is yielded until the first report, then the last report every ``poll``
    seconds. Cancel by setting ``stop`` (a :class:`threading.Event`, which ``fn``
    may watch to end early): the generator then waits for ``fn`` to end (no
    thread is left computing behind the GUI's back) and returns ``None``.

    Examples
    --------
    >>> import threading
    >>> def job(progress):
    ...     for i in range(3):
    ...         progress(i + 1, 3)
    ...     return "done"
    >>> steps = run_in_steps(job, threading.Event(), poll=0.01)
    >>> try:
    ...     while True:
    ...         last = next(steps)
    ... except StopIteration as stop:
    ...     print(last, stop.value)
    (3, 3) done
    """
    import threading

    state = [(0, 0)]
    box: dict = {}

    def progress(done, total, *_):
        state[0] = (int(done), int(total))

    def target():
        try:
            box["value"] = fn(progress)
        except BaseException as err:  # noqa: BLE001 - handed to the generator's caller
            box["error"] = err

    thread = threading.Thread(target=target, daemon=True, name="mmdl-steps")
    thread.start()
    try:
        while thread.is_alive():
            thread.join(poll)
            if stop.is_set():
                thread.join()
                return None
            yield state[0]
    except GeneratorExit:
        stop.set()
        raise
    yield state[0]
    if stop.is_set():
        return None
    if "error" in box:
        raise box["error"]
    return box["value"]
