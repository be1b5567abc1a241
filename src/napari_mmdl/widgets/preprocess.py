"""Preprocess dock widget: normalise, denoise, remove the SEM data bar or super-resolve an image layer.

The chosen operation runs on the whole layer (every frame of a stack) in a
worker thread, with Cancel (nothing is added then) and Noise2Void's training
steps in the progress bar, and adds a new image
layer with the right scale and translate (super-resolution divides the pixel
size by the factor and keeps the image's edges in place; a cropped data bar
keeps the top-left corner). Intensity histograms of the current frame before
and after are drawn side by side, as in [PSC] Fig. S3 (counted in the worker,
drawn on the GUI thread as one artist each). When the data bar's
scale bar is found on an uncalibrated image, the widget says how long it is;
typing the printed length ("1 µm") calibrates the new layer.
"""

from __future__ import annotations

import numpy as np
from magicgui.widgets import (
    ComboBox,
    Container,
    FloatSpinBox,
    Label,
    LineEdit,
    ProgressBar,
    PushButton,
    SpinBox,
)
from qtpy.QtWidgets import QVBoxLayout, QWidget

from ._model_picker import image_layer_picker, run_in_steps

OPERATIONS = ("normalize", "denoise", "remove data bar", "super-resolve")
NORMALIZATIONS = ("minmax", "zscore", "clahe")
DENOISERS = ("gaussian", "median", "nl_means", "noise2void")
SR_MODELS = ("bicubic", "checkpoint file")


class PreprocessWidget(QWidget):
    """Preprocess an image layer and compare the histograms before and after."""

    def __init__(self, napari_viewer=None):
        super().__init__()
        self.viewer = napari_viewer
        self.result_layer = None
        self.offer = None  # CalibrationOffer of the last data-bar run
        self._source = None
        self._worker = None

        self.image = image_layer_picker(napari_viewer)
        self.operation = ComboBox(label="operation", choices=OPERATIONS, value="normalize")
        self.normalization = ComboBox(label="normalisation", choices=NORMALIZATIONS, value="minmax")
        self.denoiser = ComboBox(label="denoiser", choices=DENOISERS, value="nl_means")
        self.strength = FloatSpinBox(label="sigma / size (px)", value=1.0, min=0.1, max=50.0, step=0.5,
                                     tooltip="Gaussian sigma or median window, in pixels")
        self.steps = SpinBox(label="Noise2Void steps", value=300, min=1, max=100_000,
                             tooltip="training steps on this image (self-supervised)")
        self.factor = ComboBox(label="factor", choices=[2, 3, 4], value=2)
        self.sr_model = ComboBox(label="SR model", choices=SR_MODELS, value="bicubic")
        self.sr_path = LineEdit(label="checkpoint", value="",
                                tooltip="a model trained with hyperspy_mmdl.preprocess.superres.train_superres")
        self.bar_mode = ComboBox(label="data bar", choices=["crop", "mask"], value="crop")
        self.scale_bar = LineEdit(label="scale bar length", value="",
                                  tooltip="the length printed by the scale bar, e.g. '1 µm' (uncalibrated images)")
        self.run_button = PushButton(text="Run")
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        self.progress = ProgressBar(label="", value=0, min=0, max=1, visible=False)
        self.status = Label(label="", value="")
        self.controls = Container(widgets=[
            self.image, self.operation, self.normalization, self.denoiser, self.strength, self.steps,
            self.factor, self.sr_model, self.sr_path, self.bar_mode, self.scale_bar, self.run_button,
            self.cancel_button, self.progress, self.status], labels=True)

        from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
        from matplotlib.figure import Figure

        self.figure = Figure(figsize=(4.5, 2.2))
        self.canvas = FigureCanvasQTAgg(self.figure)
        layout = QVBoxLayout()
        layout.addWidget(self.controls.native)
        layout.addWidget(self.canvas)
        self.setLayout(layout)

        self.run_button.changed.connect(self.run)
        self.cancel_button.changed.connect(self.cancel)
        self._stop = None
        for w in (self.operation, self.denoiser, self.sr_model):
            w.changed.connect(self._visibility)
        self._visibility()

    # ------------------------------------------------------------------ choices
    def _visibility(self, *_):
        op = self.operation.value
        self.normalization.visible = op == "normalize"
        self.denoiser.visible = op == "denoise"
        self.strength.visible = op == "denoise" and self.denoiser.value in ("gaussian", "median")
        self.steps.visible = op == "denoise" and self.denoiser.value == "noise2void"
        self.factor.visible = self.sr_model.visible = op == "super-resolve"
        self.sr_path.visible = op == "super-resolve" and self.sr_model.value == "checkpoint file"
        self.bar_mode.visible = self.scale_bar.visible = op == "remove data bar"

    # ------------------------------------------------------------------ running
    @staticmethod
    def _gray(layer):
        """The layer's intensities; colour as its BT.601 luminance (the colour policy)."""
        data = np.asarray(layer.data)
        if layer.rgb:
            from hyperspy_mmdl.preprocess.color import luminance

            data = luminance(data[..., :3])
        return data

    def _frame_index(self, ndim):
        """Index of the frame shown now (histograms are of that frame)."""
        if ndim <= 2:
            return ()
        if self.viewer is None:
            return (0,) * (ndim - 2)
        return tuple(self.viewer.dims.current_step[: ndim - 2])

    def compute(self, data, calibration, progress=None, should_stop=None):
        """Run the chosen operation on ``data`` (image or stack); returns ``(result, calibration, message)``.

        ``progress(step, steps, ...)`` and ``should_stop()`` reach Noise2Void's training loop.
        """
        from hyperspy_mmdl.preprocess import databar, denoise, normalize, superres

        op = self.operation.value
        if op == "normalize":
            return normalize.normalize(data, self.normalization.value), calibration, \
                f"normalised ({self.normalization.value})"
        if op == "denoise":
            method = self.denoiser.value
            if method == "noise2void":
                d = denoise.train_noise2void(data, steps=int(self.steps.value), progress=progress,
                                             should_stop=should_stop)
                return d(data), calibration, f"Noise2Void ({d.card.recipe['steps']} steps)"
            params = {"gaussian": {"sigma": self.strength.value},
                      "median": {"size": round(self.strength.value)}}.get(method, {})
            return denoise.denoise(data, method, **params), calibration, f"denoised ({method})"
        if op == "super-resolve":
            f = int(self.factor.value)
            model = "bicubic" if self.sr_model.value == "bicubic" else self.sr_path.value.strip()
            if not model:
                raise ValueError("choose a checkpoint file for the SR model")
            out, cal = superres.super_resolve(data, f, model, calibration)
            return out, cal, f"super-resolved ×{f} ({'bicubic' if model == 'bicubic' else 'model'})"
        frame = data[(0,) * (data.ndim - 2)] if data.ndim > 2 else data
        bar = databar.find_data_bar(frame)
        if bar is None:
            return data, calibration, "no data bar found"
        length = self.scale_bar.value.strip() or None
        offer = databar.offer_calibration(frame, length, bar=bar) \
            if (length or not calibration.is_calibrated) else None
        self.offer = offer
        out, cal = databar.remove_data_bar(data, calibration, mode=self.bar_mode.value, bar=bar)
        if self.bar_mode.value == "mask":
            out = np.where(out.mask, np.nan, out.data.astype(np.float32))
        msg = f"data bar rows {bar.top}–{bar.height} {'cropped' if self.bar_mode.value == 'crop' else 'masked'}"
        if offer is not None:
            if offer.calibration.is_calibrated:
                cal = offer.calibration
            msg += f"; {offer.explanation}"
        return out, cal, msg

    def run(self, *_):
        """Preprocess the chosen layer in a worker thread; returns the worker."""
        import threading
        import warnings

        from hyperspy_mmdl.preprocess.normalize import intensity_histogram
        from napari.qt.threading import create_worker

        from .grains import layer_calibration

        layer = self.image.value
        if layer is None:
            self.status.value = "choose an image layer"
            return None
        data = self._gray(layer)
        cal = layer_calibration(layer)
        self._source = layer
        index = self._frame_index(data.ndim)
        stop = self._stop = threading.Event()

        def job(progress):
            out, new_cal, msg = self.compute(data, cal, progress=progress, should_stop=stop.is_set)
            after = out[index] if np.ndim(out) > 2 else out
            hists = (intensity_histogram(data[index] if data.ndim > 2 else data), intensity_histogram(after))
            # the new layer's contrast limits counted here (no copy of the result), not by napari
            # on the GUI thread; napari's own estimate when they are not finite numbers
            with np.errstate(invalid="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN
                lo, hi = float(np.nanmin(out)), float(np.nanmax(out))
            limits = None
            if np.isfinite(lo) and np.isfinite(hi):
                limits = (lo, hi) if hi > lo else (lo, lo + 1.0)
            return out, new_cal, msg, hists, limits

        def work():
            return (yield from run_in_steps(job, stop))

        what = self.operation.value
        worker = create_worker(work, _start_thread=False, _progress={"desc": what})
        worker.yielded.connect(self._progress)
        worker.returned.connect(self._show_result)
        worker.errored.connect(self._failed)
        worker.finished.connect(self._done)
        self.run_button.enabled = False
        self.cancel_button.enabled = True
        self.progress.visible = True
        self.progress.max = 0
        self.status.value = f"{what}..."
        self._worker = worker
        worker.start()
        return worker

    def _progress(self, step):
        done, total = step
        self.progress.max = int(total)  # 0: busy
        self.progress.value = int(done) if total else 0
        if total:
            self.status.value = f"{self.operation.value}: step {done} of {total}"

    def cancel(self, *_):
        """Stop the running operation (Noise2Void at its next step, others when done); nothing is added."""
        if self._stop is not None:
            self._stop.set()
            self.status.value = f"{self.operation.value}: cancelling..."
            self.cancel_button.enabled = False

    def _done(self):
        self._worker = None
        self._stop = None
        self.run_button.enabled = True
        self.cancel_button.enabled = False
        self.progress.max = 1
        self.progress.visible = False

    def _failed(self, err):
        from napari.utils.notifications import show_error

        self.status.value = f"failed: {err}"
        show_error(f"Preprocess failed: {err}")

    def _show_result(self, result):
        from hyperspy_mmdl.preprocess.normalize import histogram_figure

        if result is None:  # cancelled
            self.status.value = f"{self.operation.value}: cancelled; nothing added"
            return
        out, cal, msg, hists, limits = result
        layer = self._source
        lead = out.ndim - 2
        scale = tuple(layer.scale[:lead]) + tuple(cal.scale[-2:])
        translate = tuple(layer.translate[:lead]) + tuple(cal.offset[-2:])
        kwargs = {"name": f"{layer.name} {self.operation.value}", "scale": scale, "translate": translate}
        if limits is not None:
            kwargs["contrast_limits"] = limits
        units = cal.to_napari()["units"]
        try:
            self.result_layer = self.viewer.add_image(out, units=tuple(layer.units[:lead]) + tuple(units[-2:]),
                                                      **kwargs)
        except (TypeError, ValueError):
            self.result_layer = self.viewer.add_image(out, **kwargs)
        histogram_figure(figure=self.figure, histograms=hists)
        self.canvas.draw_idle()
        self.status.value = msg
        from napari.utils.notifications import show_info

        show_info(f"Preprocess: {msg}")
