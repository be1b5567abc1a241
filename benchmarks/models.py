"""Model zoo speed on this machine: params, FLOPs, CPU images/s at batch 1 and 32, share of the matmul ceiling.

Run: ``nice .venv/bin/python benchmarks/models.py [--threads 2] [--models a b ...] [--device cpu|cuda]``.
The ceiling is the measured float32 matrix-multiply rate (2048² GEMM); a
model's achieved rate is ``2 · MACs · images/s`` (one MAC = 2 floating-point
operations), its fraction of the ceiling the last column. On CUDA the models
run with AMP (bfloat16) and channels_last.
"""

from __future__ import annotations

import argparse
import time

import torch

from hyperspy_mmdl import models
from hyperspy_mmdl.models.cost import count_flops, count_parameters

DEFAULT = ["psc_encoder", "psc_fusion", "vgg_grain", "eanet", "vit", "vgg16_bn", "vgg16_bn_cbam", "resnet50",
           "msfb_resnet50", "msfb_resnet50+pca_parallel"]


def matmul_gflops(device, n=2048, repeats=5, dtype=torch.float32):
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    a @ b
    sync(device)
    t = time.perf_counter()
    for _ in range(repeats):
        a @ b
    sync(device)
    return 2 * n ** 3 * repeats / (time.perf_counter() - t) / 1e9


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def build(spec, device):
    name, _, att = spec.partition("+")
    m = models.create(name, **({"attention": att} if att else {})).eval().to(device)
    return m


def inputs(m, batch, device):
    c, h, w = m.default_cfg["input_size"]
    x = torch.randn(batch, c, h, w, device=device)
    if device.type == "cuda":
        x = x.to(memory_format=torch.channels_last)
    if m.default_cfg["name"] == "psc_fusion":
        return (x, torch.rand(batch, m.composition[0].in_features, device=device),
                torch.zeros(batch, len(m.embeddings), dtype=torch.long, device=device))
    return (x,)


def images_per_s(m, batch, device, budget_s):
    xs = inputs(m, batch, device)
    ctx = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else torch.autocast("cpu", enabled=False)
    with torch.inference_mode(), ctx:
        m(*xs)  # warm-up
        sync(device)
        n, t0 = 0, time.perf_counter()
        while True:
            m(*xs)
            n += 1
            sync(device)
            el = time.perf_counter() - t0
            if el > budget_s or n >= 50:
                return n * batch / el, el / n * 1e3


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", nargs="*", default=DEFAULT)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--budget", type=float, default=3.0, help="seconds of timing per model and batch size")
    ap.add_argument("--batches", type=int, nargs="*", default=[1, 32])
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    ceiling = matmul_gflops(device)
    print(f"device {device}, {torch.get_num_threads()} threads, torch {torch.__version__}; "
          f"matmul ceiling {ceiling:.1f} GFLOP/s (2048² fp32)")
    head = f"{'model':<28} {'params (M)':>10} {'GMACs':>7} {'ceil GF/s':>9}"
    for b in args.batches:
        head += f" {'img/s b' + str(b):>10} {'ms/it b' + str(b):>10} {'% ceil':>7}"
    print(head)
    for spec in args.models:
        m = build(spec, device)
        macs = count_flops(m, m.default_cfg["input_size"])
        ceiling = max(ceiling, matmul_gflops(device))  # again per row: other jobs share this machine
        row = f"{spec:<28} {count_parameters(m) / 1e6:>10.3f} {macs / 1e9:>7.3f} {ceiling:>9.1f}"
        for b in args.batches:
            ips, ms = images_per_s(m, b, device, args.budget)
            ceiling = max(ceiling, matmul_gflops(device))  # the peak; load only lowers it
            row += f" {ips:>10.2f} {ms:>10.1f} {100 * 2 * macs * ips / 1e9 / ceiling:>6.1f}%"
        print(row, flush=True)
        del m


if __name__ == "__main__":
    main()
