"""Batch dock widget: run :func:`hyperspy_mmdl.batch.run_batch` on files or a folder.

The run happens in a worker thread; the widget polls its progress, can cancel it
(the items in flight finish, the rest stay pending and a rerun resumes) and shows
the manifest's status summary when it ends.
"""

from __future__ import annotations

import threading
from pathlib import Path

from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FileEdit,
    Label,
    LineEdit,
    ProgressBar,
    PushButton,
    SpinBox,
    TextEdit,
)

# Offered in the method box; any name :func:`hyperspy_mmdl.grains.segment` accepts can be typed.
DEFAULT_METHODS = ("auto",)


def _segment_methods() -> tuple[str, ...]:
    try:  # the grains module may list its methods; stay light if not
        from hyperspy_mmdl.grains import segment as seg_mod

        methods = getattr(seg_mod, "METHODS", None)
        if methods:
            return tuple(methods)
    except Exception:
        pass
    return DEFAULT_METHODS


def summarize_manifest(manifest: dict) -> str:
    """A short human-readable status summary of a batch manifest."""
    c = manifest.get("counts", {})
    lines = [
        f"state: {manifest.get('state')}",
        f"inputs: {c.get('inputs', 0)} ({c.get('failed_inputs', 0)} failed)",
        f"frames: {c.get('frames', 0)}: {c.get('done', 0)} done ({c.get('resumed', 0)} resumed), "
        f"{c.get('error', 0)} failed, {c.get('pending', 0)} pending",
    ]
    outputs = manifest.get("outputs") or {}
    if "n_grains" in outputs:
        lines.append(f"grains: {outputs['n_grains']} rows in {outputs.get('grains_parquet')}")
    for entry in manifest.get("inputs", []):
        if entry.get("error"):
            lines.append(f"! {Path(str(entry.get('file'))).name}: {entry['error']}")
    return "\n".join(lines)


class BatchWidget(Container):
    """Choose inputs and an output folder, a segmentation method and optional checkpoint; run."""

    def __init__(self, napari_viewer=None):
        super().__init__(labels=True)
        self.viewer = napari_viewer
        self.inputs = FileEdit(mode="rm", label="input files", filter="*")
        self.folder = FileEdit(mode="d", label="or input folder", value="")
        self.out = FileEdit(mode="d", label="output folder", value="")
        self.method = ComboBox(label="segment", choices=_segment_methods(), value=_segment_methods()[0])
        self.params = LineEdit(label="parameters", value="",
                               tooltip="segmentation parameters, e.g. min_area=20,watershed=true")
        self.use_ckpt = CheckBox(label="classify", value=False)
        self.checkpoint = FileEdit(mode="r", label="checkpoint", filter="*.pt *.pth *.safetensors *.ckpt")
        self.workers = SpinBox(label="workers", value=0, min=0, max=64,
                               tooltip="0: in this process; N: a local dask.distributed cluster")
        self.run_button = PushButton(text="Run")
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        self.progress = ProgressBar(label="progress", value=0, min=0, max=1)
        self.status = Label(label="", value="")
        self.summary = TextEdit(label="summary", value="")
        self.summary.native.setReadOnly(True)
        self.extend([self.inputs, self.folder, self.out, self.method, self.params, self.use_ckpt,
                     self.checkpoint, self.workers, self.run_button, self.cancel_button, self.progress,
                     self.status, self.summary])
        self.run_button.changed.connect(self.start)
        self.cancel_button.changed.connect(self.cancel)
        self._cancel = threading.Event()
        self._thread: threading.Thread | None = None
        self._done = (0, 0)
        self.result = None
        self.error: BaseException | None = None
        self._timer = None

    # ------------------------------------------------------------------ helpers
    @staticmethod
    def _text(edit: FileEdit) -> str:
        """What the user typed or picked (FileEdit turns an empty field into the current folder)."""
        return str(edit.line_edit.value).strip()

    def _input_list(self) -> list[str]:
        files = [str(p) for p in (self.inputs.value or ()) if str(p) not in ("", ".")] \
            if self._text(self.inputs) else []
        if self._text(self.folder):
            files.append(str(self.folder.value))
        return files

    def run_kwargs(self) -> dict:
        """The arguments of :func:`run_batch` the widget's fields describe (validated)."""
        from hyperspy_mmdl.cli.batch import parse_pairs

        inputs = self._input_list()
        if not inputs:
            raise ValueError("choose input files or an input folder")
        if not self._text(self.out):
            raise ValueError("choose an output folder")
        out = str(self.out.value)
        kwargs = dict(inputs=inputs, out=out, segment=str(self.method.value),
                      segment_params=parse_pairs(self.params.value, "parameters"), progress=False,
                      workers=int(self.workers.value) or None)
        if self.use_ckpt.value:
            if not self._text(self.checkpoint):
                raise ValueError("choose a checkpoint file or untick 'classify'")
            ckpt = str(self.checkpoint.value)
            kwargs["classify"] = ckpt
        return kwargs

    # ------------------------------------------------------------------ run / cancel
    def start(self, *_):
        if self._thread is not None and self._thread.is_alive():
            return
        try:
            kwargs = self.run_kwargs()
        except (ValueError, FileNotFoundError) as err:
            self.status.value = f"error: {err}"
            return
        self._cancel.clear()
        self.result, self.error, self._done = None, None, (0, 0)
        self.run_button.enabled, self.cancel_button.enabled = False, True
        self.status.value = "running..."
        self.summary.value = ""

        def on_progress(done, total):
            self._done = (done, total)

        def work():
            from hyperspy_mmdl.batch import run_batch

            try:
                self.result = run_batch(cancel=self._cancel, on_progress=on_progress, **kwargs)
            except BaseException as err:  # shown in the widget
                self.error = err

        self._thread = threading.Thread(target=work, name="mmdl-batch", daemon=True)
        self._thread.start()
        from qtpy.QtCore import QTimer

        self._timer = QTimer()
        self._timer.setInterval(200)
        self._timer.timeout.connect(self._poll)
        self._timer.start()

    def cancel(self, *_):
        self._cancel.set()
        self.status.value = "cancelling (finishing the frames in flight)..."

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the run ends (for scripts and tests); True if it ended."""
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                return False
        self._poll()
        return True

    def _poll(self):
        done, total = self._done
        if total:
            self.progress.max = total
            self.progress.value = done
        if self._thread is not None and not self._thread.is_alive():
            if self._timer is not None:
                self._timer.stop()
            self._thread = None
            self.run_button.enabled, self.cancel_button.enabled = True, False
            if self.error is not None:
                self.status.value = f"error: {self.error}"
            elif self.result is not None:
                code = self.result.exit_code
                self.status.value = {0: "finished", 1: "finished with failures", 130: "cancelled"}.get(
                    code, f"exit code {code}")
                self.summary.value = summarize_manifest(self.result.manifest)
