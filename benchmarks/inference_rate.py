"""Inference at the machine's rate: our path against a plain PyTorch eval loop, same weights, one run.

For every registered model the benchmark builds one network (random weights: the
rate does not depend on them) and times, interleaved and best of ``--repeat``:

* **ours**: the route a user takes, through :mod:`hyperspy_mmdl.inference` with the
  network and its card: ``classify`` for classifiers, ``predict_pce`` for
  PSC-Fusion, ``predict_boundaries`` for the boundary U-Net, ``denoise`` and
  ``super_resolve`` for the restoration models. Frames are given at the card's
  input size and pixel size, so each frame is one tile; the time includes
  everything the route does (channels, normalisation, tiling, the forward
  passes, softmax or blending, copies back to numpy).
* **plain**: the loop written here, the way a PyTorch user writes it:
  ``model.eval()``, ``torch.inference_mode()``, a ready ``float32`` tensor of the
  same frames, ``model(x)`` per batch.

and prints img/s of both, their ratio (ours / plain: ≥ 1.0 is the target), the
achieved rate ``2 · MACs · img/s`` of our path and its share of the float32
matrix-multiply rate measured *the same way in the same run* (a 2048² GEMM, the
same threads, best of the same number of repeats, measured again before every row
and the best kept, so a busy machine lowers neither more than the other).

Usage::

    python benchmarks/inference_rate.py                    # every model, batch 1 and 32
    python benchmarks/inference_rate.py --models resnet50 vgg_grain --batches 32
    python benchmarks/inference_rate.py --threads 2 --repeat 3

Read timings from a quiet machine (``uptime`` load near 0).
"""

from __future__ import annotations

import argparse
import os
import platform
import time
import warnings

import numpy as np
import torch

from hyperspy_mmdl import inference, models
from hyperspy_mmdl.checkpoint import ModelCard
from hyperspy_mmdl.models.cost import count_flops

TASKS = {"unet_boundary": "segment", "n2v_unet": "denoise", "srcnn": "super-resolve",
         "rcan_lite": "super-resolve", "psc_fusion": "regress-pce", "psc_fusion_ensemble": "regress-pce"}


def matmul_gflops(n=2048, repeat=3):
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    return 2 * n ** 3 / best / 1e9


def pce_vocabularies():
    """The shipped PCE model's card: real vocabularies and its network's sizes."""
    from hyperspy_mmdl.checkpoint import read_card
    from hyperspy_mmdl.models.pretrained import resolve

    card = read_card(resolve("pce-perovskite-database"))
    return card.vocabularies, {k: card.config[k] for k in ("composition_dim", "process_sizes",
                                                         "composition_numeric_dim")}


def build(name):
    """``(network, card, our_fn(frames, batch), plain_inputs(x) -> args)`` for one registered model."""
    task = TASKS.get(name, "classify")
    config = {}
    vocab = None
    if task == "regress-pce":
        vocab, config = pce_vocabularies()
    net = models.create(name, **config).eval()
    c, h, w = net.default_cfg["input_size"]
    card = ModelCard(name, config=net.default_cfg["config"], task=task, input_size=[c, h, w],
                     class_names=[f"c{i}" for i in range(net.default_cfg["num_classes"])]
                     if task == "classify" else None,
                     vocabularies=vocab, scale_factor=2 if task == "super-resolve" else 1,
                     normalization="zscore" if task == "denoise" else "minmax")
    pair = (net, card)
    upsamples = bool(getattr(net, "upsamples", False))
    if task == "classify":
        def ours(frames, b):
            return inference.classify(frames, None, pair, device="cpu", batch_size=b, resample=False)
    elif task == "regress-pce":
        def ours(frames, b):
            return inference.predict_pce(frames, None, pair, device="cpu", batch_size=b, resample=False)
    elif task == "segment":  # one wide micrograph of n tiles side by side, as a large frame is cut
        def ours(frames, b):
            wide = np.concatenate(list(frames), axis=1)
            return inference.predict_boundaries(wide, None, pair, device="cpu", tile=h, overlap=0,
                                                batch_size=b, resample=False)
    elif task == "denoise":
        def ours(frames, b):
            return inference.denoise(frames, pair, device="cpu", tile=h, overlap=0, batch_size=b)
    else:  # SRCNN refines a bicubic ×2 upsampling: its tiles are twice the frame
        t = h if upsamples else 2 * h

        def ours(frames, b):
            return inference.super_resolve(frames, pair, device="cpu", tile=t, overlap=0, batch_size=b)

    def plain_args(x):
        if task == "super-resolve" and not upsamples:
            return (torch.nn.functional.interpolate(x, scale_factor=2, mode="bicubic"),)
        if task == "regress-pce":
            n = x.shape[0]
            comp = torch.zeros(n, config["composition_dim"])
            proc = torch.zeros(n, len(config["process_sizes"]), dtype=torch.long)
            return (x, comp, proc)
        return (x,)

    return net, card, ours, plain_args


def plain_loop(net, frames, b, in_chans, plain_args):
    """The benchmark's own eval loop: a ready float32 tensor, ``model(x)`` per batch."""
    x = torch.from_numpy(frames)[:, None]
    if in_chans == 3:
        x = x.expand(-1, 3, -1, -1).contiguous()
    with torch.inference_mode():
        for i in range(0, len(x), b):
            net(*plain_args(x[i:i + b]))


def timed(fn, repeat):
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", nargs="*", default=models.list_models())
    ap.add_argument("--batches", type=int, nargs="*", default=[1, 32])
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--repeat", type=int, default=2, help="interleaved repeats; the best is kept")
    ap.add_argument("--frames-b1", type=int, default=8, help="frames timed at batch 1")
    args = ap.parse_args(argv)
    warnings.simplefilter("ignore")  # PCE: "no value for ...: the training mean is used", once per call
    torch.set_num_threads(args.threads)
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, load {os.getloadavg()[0]:.2f}")
    ceiling = matmul_gflops(repeat=args.repeat + 1)
    print(f"# matmul rate (2048² float32, best of {args.repeat + 1}): {ceiling:.1f} GFLOP/s at start")
    head = ["model", "GMAC", "batch", "ours img/s", "plain img/s", "ours/plain", "GFLOP/s", "% matmul"]
    print("| " + " | ".join(head) + " |")
    print("|" + "|".join("---" for _ in head) + "|")
    rng = np.random.default_rng(0)
    for name in args.models:
        net, card, ours, plain_args = build(name)
        c, h, w = card.input_size
        if card.task == "regress-pce":  # the image branch and the tabular heads, one device
            macs = count_flops(net, inputs=plain_args(torch.zeros(1, c, h, w)), device="cpu")
        elif card.task == "super-resolve" and not getattr(net, "upsamples", False):
            macs = count_flops(net, (c, 2 * h, 2 * w))  # SRCNN runs at the output size
        else:
            macs = count_flops(net, tuple(card.input_size))
        for b in args.batches:
            n = b if b > 1 else args.frames_b1
            frames = rng.random((n, h, w), dtype=np.float32)
            ours(frames[:min(n, 2)], min(b, 2))  # warm-up (first-call allocations, lazy imports)
            plain_loop(net, frames[:min(n, 2)], min(b, 2), c, plain_args)
            ceiling = max(ceiling, matmul_gflops(repeat=args.repeat + 1))
            t_ours = t_plain = float("inf")
            for _ in range(args.repeat):  # interleaved: a busy spell hits both
                t_ours = min(t_ours, timed(lambda: ours(frames, b), 1))
                t_plain = min(t_plain, timed(lambda: plain_loop(net, frames, b, c, plain_args), 1))
            ips_o, ips_p = n / t_ours, n / t_plain
            gf = 2 * macs * ips_o / 1e9
            print(f"| {name} | {macs / 1e9:.3f} | {b} | {ips_o:.1f} | {ips_p:.1f} | {ips_o / ips_p:.2f} | "
                  f"{gf:.1f} | {100 * gf / ceiling:.0f} % |", flush=True)
        del net
    print(f"# matmul rate, best over the run: {ceiling:.1f} GFLOP/s (the '% matmul' column uses the best so far)")


if __name__ == "__main__":
    main()
