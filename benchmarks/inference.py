"""Inference throughput: images/s of ``classify`` and ``attention_map``, batched vs frame by frame.

A stack of ``FRAMES`` synthetic polycrystal micrographs of ``SIZE × SIZE`` pixels
(default 20 × 1024 × 1024, 10 nm/px) is classified and explained with Grad-CAM
by a model from the registry (default ``vgg_grain``, the grain-size CNN of SPEC
§1.2, 224 × 224 input, random weights: speed does not depend on them). The
model card's pixel size is 20 nm/px, so every frame is resampled to 512 × 512
and cut into 224 × 224 tiles with 25 % overlap (9 tiles per frame), as a real
run would. Three ways are timed in one run:

* ``batched``: one call on the HyperSpy signal (``s.classify`` /
  ``s.attention_map``): the tiles of all frames are pooled and run in batches
  of ``--batch`` tiles;
* ``batched, lazy``: the same on ``s.as_lazy()``: one batched call per dask
  block of 8 frames;
* ``per frame (map)``: HyperSpy ``s.map`` calling the array function on one
  frame at a time (the tiles of one frame are still batched);
* ``per tile``: frame by frame with ``batch_size=1``, one tile per forward
  pass (what a loop over crops does).

Usage::

    python benchmarks/inference.py                       # CPU, 20 × 1024², vgg_grain
    python benchmarks/inference.py --frames 4 --size 512 # quick
    python benchmarks/inference.py --device cuda         # on a GPU machine

Prints a table of images/s with the ratio to the per-frame mode (best of
``--repeat`` interleaved runs) and the largest difference of each mode's
output from the per-frame output, relative to its largest value.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np


def _timed(fn, repeat=1):
    best = float("inf")
    out = None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=20)
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--model", default="vgg_grain")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch", type=int, default=16, help="tiles per forward pass in the batched mode")
    ap.add_argument("--skip-per-tile", action="store_true", help="leave out the slowest mode")
    ap.add_argument("--repeat", type=int, default=2, help="interleaved repeats; the best time is kept")
    args = ap.parse_args(argv)

    import hyperspy.api as hs
    import torch

    from hyperspy_mmdl import explain, inference, models
    from hyperspy_mmdl.calibration import Calibration
    from hyperspy_mmdl.synthetic import polycrystal

    hs.preferences.General.show_progressbar = False
    torch.manual_seed(0)
    net = models.create(args.model, num_classes=3, in_chans=1)
    c, h, w = net.default_cfg["input_size"]
    card = dict(architecture=args.model, config={"num_classes": 3, "in_chans": 1}, task="classify",
                input_size=[c, h, w], normalization="minmax", pixel_size=20.0, pixel_unit="nm",
                class_names=["small", "medium", "large"])
    pred = inference.Predictor(net, card, device=args.device)

    sample = polycrystal(shape=(args.size, args.size), pixel_size=10.0, unit="nm",
                         n_frames=args.frames, seed=0)
    data = np.asarray(sample.image, dtype=np.float32).reshape(args.frames, args.size, args.size)
    cal = Calibration.from_pixel_size(10.0, "nm")
    s = hs.signals.Signal2D(data)
    s.set_signal_type("microstructure")
    for ax in s.axes_manager.signal_axes:
        ax.scale, ax.units = 10.0, "nm"
    frames_shape = inference.prepare_frames(data[0], cal, pred)[0][0].shape
    n_tiles = len(inference._plan([np.zeros(frames_shape, np.float32)], (h, w), 0.25)[1])

    inference.classify(data[:1], cal, pred, batch_size=args.batch)  # warm-up (allocations, oneDNN)
    rows = []
    for what in ("classify", "attention_map"):
        if what == "classify":
            batched = lambda: s.classify(pred, batch_size=args.batch).data  # noqa: E731
            per_frame = lambda: s.map(inference.classify, calibration=cal, model=pred,  # noqa: E731
                                      inplace=False).data
            per_tile = lambda: np.stack([inference.classify(f, cal, pred, batch_size=1)  # noqa: E731
                                         for f in data])
        else:
            # raw maps (normalize=False): with random weights a map can be ~0 everywhere and
            # scaling it to [0, 1] would only amplify rounding noise in the comparison
            batched = lambda: s.attention_map(pred, batch_size=args.batch, normalize=False).data  # noqa: E731
            per_frame = lambda: s.map(explain.attention_map, calibration=cal, model=pred,  # noqa: E731
                                      normalize=False, inplace=False).data
            per_tile = lambda: np.stack([explain.attention_map(f, cal, pred, batch_size=1,  # noqa: E731
                                                               normalize=False) for f in data])
        lazy = s.as_lazy()
        if what == "classify":
            batched_lazy = lambda: lazy.classify(pred, batch_size=args.batch).data.compute()  # noqa: E731
        else:
            batched_lazy = lambda: lazy.attention_map(pred, batch_size=args.batch,  # noqa: E731
                                                      normalize=False).data.compute()
        modes = [("batched", batched), ("batched, lazy", batched_lazy), ("per frame (map)", per_frame)]
        if not args.skip_per_tile:
            modes.append(("per tile", per_tile))
        results = {}
        for _ in range(args.repeat):  # interleaved repeats, best time of each mode
            for mode, fn in modes:
                t, out = _timed(fn)
                best = results.get(mode, (float("inf"), None))[0]
                results[mode] = (min(t, best), np.asarray(out))
        ref = results["per frame (map)"][1]
        for mode, (t, out) in results.items():
            err = float(np.abs(out - ref).max() / max(np.abs(ref).max(), 1e-30))
            rows.append((what, mode, t, args.frames / t, results["per frame (map)"][0] / t, err))

    print(f"# napari-mmdl inference benchmark — {args.frames} frames of {args.size}×{args.size} px at "
          f"10 nm/px -> resampled to 20 nm/px, {n_tiles} tiles of {h}×{w} per frame")
    print(f"# model {args.model} ({sum(p.numel() for p in net.parameters()):,} params), device "
          f"{pred.device}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs")
    print(f"{'function':<15}{'mode':<18}{'time (s)':>10}{'images/s':>10}{'× per frame':>13}"
          f"{'rel. diff':>12}")
    for what, mode, t, ips, ratio, err in rows:
        print(f"{what:<15}{mode:<18}{t:>10.2f}{ips:>10.2f}{ratio:>13.2f}{err:>12.1e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
