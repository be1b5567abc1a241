"""A GUI that never freezes: the worst GUI-thread stall of every widget action in a real napari viewer.

A ``QTimer`` fires every 20 ms on the GUI thread; every gap between two of its
ticks longer than 20 ms is time the GUI could not answer (a frozen window). Each
action below is started the way a user starts it (its button's signal) and the
event loop runs until the action is over (its worker finished and its layers and
tables shown); the table reports, per action, the worst stall (gap − 20 ms), the
number of gaps over 100 ms, the action's wall time and whether it has a Cancel.

Images are real micrographs from ``../shared/data`` where present (the NIST
Ti-6Al-4V optical micrograph, 2048 × 1536 class; a perovskite SEM JPEG with a data
bar), else the built-in synthetic sample.

Usage (a virtual screen is needed)::

    xvfb-run -a -s "-screen 0 1600x1000x24" python benchmarks/gui_stall.py
    xvfb-run -a python benchmarks/gui_stall.py --actions grains,denoise

The target is no stall above 100 ms; tests never assert times.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MMDL_SHARED_DATA", ROOT.parent / "shared" / "data"))


class Probe:
    """Ticks every ``period`` ms on the GUI thread and keeps the gaps between ticks."""

    def __init__(self, period_ms=20):
        from qtpy.QtCore import QTimer

        self.period = period_ms / 1000
        self.timer = QTimer()
        self.timer.setInterval(period_ms)
        self.timer.timeout.connect(self._tick)
        self.last = time.perf_counter()
        self.gaps: list[float] = []
        self.timer.start()

    def _tick(self):
        now = time.perf_counter()
        self.gaps.append(now - self.last)
        self.last = now

    def reset(self):
        self.gaps = []
        self.last = time.perf_counter()

    def stalls(self):
        s = np.maximum(np.asarray(self.gaps or [0.0]) - self.period, 0)
        return float(s.max()), int((s > 0.1).sum())


class StallSampler:
    """``--trace``: a thread that samples the GUI thread's stack while it has not ticked for 100 ms.

    Tells where a stall is spent (the GUI thread's own work, or a worker holding the GIL:
    then the GUI thread's stack sits in the event loop).
    """

    def __init__(self, probe, every=0.02):
        import collections
        import threading

        self.probe, self.every = probe, every
        self.main = threading.main_thread().ident
        self.counts = collections.Counter()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        import traceback

        while not self.stop.wait(self.every):
            if time.perf_counter() - self.probe.last > 0.1:
                frame = sys._current_frames().get(self.main)
                if frame is None:
                    continue
                stack = traceback.extract_stack(frame)
                ours = [f for f in stack if "/site-packages/" not in f.filename or "napari_mmdl" in f.filename
                        or "hyperspy_mmdl" in f.filename]
                top = (ours or stack)[-1]
                deepest = stack[-1]
                self.counts[(f"{Path(top.filename).name}:{top.lineno} {top.name}",
                             f"{Path(deepest.filename).name}:{deepest.lineno} {deepest.name}")] += 1

    def report(self, n=8):
        out = [f"    {c * self.every * 1e3:.0f} ms  {a}  ->  {b}" for (a, b), c in self.counts.most_common(n)]
        self.counts.clear()
        return "\n".join(out)


def wait(app, probe, done, timeout=600):
    """Run the event loop until ``done()`` (the probe's ticks run in it)."""
    t0 = time.perf_counter()
    while not done():
        app.processEvents()
        time.sleep(0.002)
        if time.perf_counter() - t0 > timeout:
            raise TimeoutError("the action did not finish")
    # the result's layers are drawn in the next paints: let them happen under the probe
    t1 = time.perf_counter()
    while time.perf_counter() - t1 < 0.3:
        app.processEvents()
        time.sleep(0.002)
    probe._tick()  # close the last gap (a stall that ends with the action)
    return time.perf_counter() - t0


def real_image(viewer):
    """The NIST Ti-6Al-4V SEM micrograph (calibrated) if present, else the synthetic sample (its layer)."""
    tif = SHARED / "nist_gsat_grains" / "ti64_sem" / "sem_alpha_beta_ti_6al_4v.tif"
    if tif.exists():
        return viewer.open(str(tif), plugin="napari-mmdl")[0]
    return viewer.open_sample("napari-mmdl", "polycrystal")[0]


def databar_image(viewer):
    jpg = sorted((SHARED / "perovskite_sem_fapbi3_databar").rglob("*.jpg")) if SHARED.exists() else []
    if jpg:
        return viewer.open(str(jpg[0]))[0]  # napari's own reader: an uncalibrated JPEG
    return None


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--actions", default="", help="comma-separated action names (default: all)")
    ap.add_argument("--trace", action="store_true", help="print where the GUI thread spent each stall")
    args = ap.parse_args(argv)
    import napari
    from qtpy.QtWidgets import QApplication

    os.environ.setdefault("MMDL_MODELS_DIR", str(Path(os.environ.get("TMPDIR", "/tmp")) / "mmdl-gui-stall-models"))
    viewer = napari.Viewer(show=True)
    app = QApplication.instance()
    probe = Probe()
    sampler = StallSampler(probe) if args.trace else None
    image = real_image(viewer)
    bar_layer = databar_image(viewer)
    print(f"# image: {image.name} {image.data.shape}; data-bar image: "
          f"{bar_layer.name if bar_layer is not None else 'none'}; load {os.getloadavg()[0]:.2f}")
    rows = []

    def run(name, start, done, cancel: bool):
        if args.actions and not any(a in name for a in args.actions.split(",")):
            return
        for _ in range(3):
            app.processEvents()
        probe.reset()
        if sampler is not None:
            sampler.counts.clear()
        try:
            start()
            wall = wait(app, probe, done)
            worst, over = probe.stalls()
            rows.append((name, worst, over, wall, cancel, ""))
        except Exception as exc:  # a failing action is a finding, not the end of the table
            rows.append((name, float("nan"), 0, float("nan"), cancel, f"{type(exc).__name__}: {exc}"))
        print(f"{name}: worst stall {rows[-1][1] * 1e3:.0f} ms", file=sys.stderr, flush=True)
        if sampler is not None:
            print(sampler.report(), file=sys.stderr, flush=True)

    from napari_mmdl.widgets.attention import AttentionWidget
    from napari_mmdl.widgets.classify import ClassifyWidget
    from napari_mmdl.widgets.grains import GrainsWidget
    from napari_mmdl.widgets.predict_pce import PredictPCEWidget
    from napari_mmdl.widgets.preprocess import PreprocessWidget

    grains = GrainsWidget(viewer)
    viewer.window.add_dock_widget(grains)
    grains.image.value = image
    for label in ("grains: segment and measure (first)", "grains: segment and measure (again)"):
        run(label, grains.run_button.clicked.emit,
            lambda: grains._worker is None and grains.labels_layer is not None, True)

    pre = PreprocessWidget(viewer)
    viewer.window.add_dock_widget(pre)
    pre.image.value = image
    cancellable = hasattr(pre, "cancel_button")

    def preprocess(op, **choices):
        def start():
            pre.operation.value = op
            for k, v in choices.items():
                getattr(pre, k).value = v
            pre.run_button.clicked.emit()
        return start

    run("preprocess: normalize", preprocess("normalize"), lambda: pre._worker is None, cancellable)
    run("preprocess: denoise nl_means", preprocess("denoise", denoiser="nl_means"), lambda: pre._worker is None,
        cancellable)
    run("preprocess: denoise noise2void (100 steps)", preprocess("denoise", denoiser="noise2void", steps=100),
        lambda: pre._worker is None, cancellable)
    run("preprocess: super-resolve bicubic ×2", preprocess("super-resolve", sr_model="bicubic"),
        lambda: pre._worker is None, cancellable)
    if bar_layer is not None:
        pre.image.value = bar_layer
        run("preprocess: remove data bar", preprocess("remove data bar"), lambda: pre._worker is None, cancellable)
        pre.image.value = image

    cls = ClassifyWidget(viewer)
    viewer.window.add_dock_widget(cls)
    cls.image.value = image
    run("classify (shipped model)", cls.controls.run_button.clicked.emit, lambda: cls.controls.worker is None, True)
    att = AttentionWidget(viewer)
    viewer.window.add_dock_widget(att)
    att.image.value = image
    run("attention map (shipped model)", att.controls.run_button.clicked.emit,
        lambda: att.controls.worker is None, True)
    pce = PredictPCEWidget(viewer)
    viewer.window.add_dock_widget(pce)
    pce.image.value = image
    run("predict PCE (shipped model)", pce.controls.run_button.clicked.emit,
        lambda: pce.controls.worker is None, True)

    print("| action | worst stall (ms) | gaps > 100 ms | wall (s) | Cancel | note |")
    print("|---|---|---|---|---|---|")
    for name, worst, over, wall, cancel, note in rows:
        print(f"| {name} | {worst * 1e3:.0f} | {over} | {wall:.1f} | {'yes' if cancel else 'no'} | {note} |")
    viewer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
