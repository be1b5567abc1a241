"""The GPU table: every model's images/s (fp32, AMP, channels_last; batch 1 and 32), training steps,
tiled inference and Grad-CAM on 2048² frames, peak GPU memory.

Run on a CUDA machine (about 5 min)::

    python benchmarks/gpu.py                 # device cuda
    python benchmarks/gpu.py --dry-run       # tiny sizes, one iteration, on CPU (< 60 s): checks the script

Sections (each row times the same weights, after one warm-up call, synchronised):

1. inference: ``hyperspy_mmdl.models.list_models()`` × {fp32, AMP (bfloat16 on CPU,
   float16 on CUDA), fp32 channels_last} × batch {1, 32}: images/s;
2. training step (forward, backward, AdamW step; AMP on CUDA) of psc_fusion,
   eanet and msfb_resnet50 with PCA attention: ms per step at batch 32;
3. tiled inference: ``inference.predict_boundaries`` (the shipped boundary U-Net,
   the path of ``segment(method="learned")``) and Grad-CAM
   (``hyperspy_mmdl.explain.attention_map``, vgg_grain) on a 2048 × 2048 frame;
4. peak GPU memory of each section (``torch.cuda.max_memory_allocated``).

A model that cannot run is listed with the reason; the script goes on.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

TRAIN = ("psc_fusion", "eanet", "msfb_resnet50+pca_parallel")


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def peak_reset(device):
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()


def peak_mib(device):
    return torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else float("nan")


def build(spec, device):
    from hyperspy_mmdl import models

    name, _, att = spec.partition("+")
    return models.create(name, **({"attention": att} if att else {})).to(device)


def inputs(m, batch, device, size=None, channels_last=False):
    c, h, w = m.default_cfg["input_size"]
    if size:
        h, w = min(h, size), min(w, size)
    x = torch.randn(batch, c, h, w, device=device)
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    if m.default_cfg.get("name") in ("psc_fusion", "psc_fusion_ensemble"):
        fusion = m.members[0] if hasattr(m, "members") else m  # an ensemble's members share one config
        return (x, torch.rand(batch, fusion.composition[0].in_features, device=device),
                torch.zeros(batch, len(fusion.embeddings), dtype=torch.long, device=device))
    return (x,)


def autocast(device, on):
    dtype = torch.float16 if device.type == "cuda" else torch.bfloat16
    return torch.autocast(device.type, dtype=dtype, enabled=on)


def timed(fn, device, iters, budget, warm=True):
    if warm:
        fn()  # warm-up
    sync(device)
    n, t0 = 0, time.perf_counter()
    while True:
        fn()
        n += 1
        sync(device)
        el = time.perf_counter() - t0
        if n >= iters or el > budget:
            return el / n


def first_tensor(out):
    from hyperspy_mmdl.inference import main_output

    out = main_output(out)
    return out if torch.is_tensor(out) else next(v for v in out.values() if torch.is_tensor(v))


def inference_rows(args, device):
    from hyperspy_mmdl import models

    print(f"{'model':<30}{'mode':<15}" + "".join(f"{'img/s b' + str(b):>12}" for b in args.batches)
          + f"{'peak MiB':>10}")
    for spec in models.list_models() + ["msfb_resnet50+pca_parallel"]:
        try:
            m = build(spec, device).eval()
        except Exception as err:  # noqa: BLE001 - listed, the table goes on
            print(f"{spec:<30}skipped: {type(err).__name__}: {err}")
            continue
        for mode, amp, cl in (("fp32", False, False), ("amp", True, False), ("channels_last", False, True)):
            if cl:
                m = m.to(memory_format=torch.channels_last)
            row = f"{spec:<30}{mode:<15}"
            peak_reset(device)
            try:
                for b in args.batches:
                    with torch.inference_mode(), autocast(device, amp):
                        try:
                            xs = inputs(m, b, device, args.size, cl)
                            m(*xs)
                        except ValueError:  # a fixed input size (ViT, a flattening head): the model's own
                            xs = inputs(m, b, device, None, cl)
                        s = timed(lambda: m(*xs), device, args.iters, args.budget,  # noqa: B023
                                  warm=not args.dry_run)
                    row += f"{b / s:>12.1f}"
            except Exception as err:  # noqa: BLE001
                row += f"  failed: {type(err).__name__}: {str(err)[:80]}"
            print(row + f"{peak_mib(device):>10.0f}", flush=True)
        del m


def training_rows(args, device):
    print(f"\n{'training step':<30}{'batch':>6}{'ms/step':>10}{'img/s':>10}{'peak MiB':>10}")
    b = args.batches[-1]
    for spec in TRAIN:
        try:
            m = build(spec, device).train()
            opt = torch.optim.AdamW(m.parameters(), lr=1e-4)
            scaler = torch.amp.GradScaler(device.type, enabled=device.type == "cuda")
            try:
                xs = inputs(m, b, device, args.size)
                with torch.no_grad():
                    m(*xs)
            except ValueError:  # a fixed input size
                xs = inputs(m, b, device, None)

            def step():
                opt.zero_grad(set_to_none=True)
                with autocast(device, device.type == "cuda"):
                    loss = first_tensor(m(*xs)).float().pow(2).mean()  # noqa: B023
                scaler.scale(loss).backward()  # noqa: B023
                scaler.step(opt)  # noqa: B023
                scaler.update()  # noqa: B023

            peak_reset(device)
            s = timed(step, device, args.iters, args.budget, warm=not args.dry_run)
            print(f"{spec:<30}{b:>6}{1e3 * s:>10.1f}{b / s:>10.1f}{peak_mib(device):>10.0f}", flush=True)
        except Exception as err:  # noqa: BLE001
            print(f"{spec:<30}failed: {type(err).__name__}: {str(err)[:100]}")


def frame_rows(args, device):
    from hyperspy_mmdl import explain, inference, models
    from hyperspy_mmdl.calibration import Calibration
    from hyperspy_mmdl.synthetic import polycrystal

    n = args.frame
    img = np.asarray(polycrystal(shape=(n, n), pixel_size=10.0, unit="nm", seed=0).image, np.float32)
    cal = Calibration.from_pixel_size(10.0, "nm")
    print(f"\n{'on a ' + f'{n}×{n} frame':<30}{'s':>10}{'Mpx/s':>10}{'peak MiB':>10}")
    tile = min(512, n)

    def boundaries():
        return inference.predict_boundaries(img, cal, model="grain-boundary-unet", device=str(device), tile=tile,
                                            overlap=min(64, tile // 4))

    torch.manual_seed(0)
    net = models.create("vgg_grain", num_classes=3, in_chans=1)
    c, h, w = net.default_cfg["input_size"]
    card = dict(architecture="vgg_grain", config={"num_classes": 3, "in_chans": 1}, task="classify",
                input_size=[c, h, w], normalization="minmax", pixel_size=10.0, pixel_unit="nm",
                class_names=["a", "b", "c"])
    pred = inference.Predictor(net, card, device=str(device))

    def gradcam():
        return explain.attention_map(img, cal, pred, device=str(device), batch_size=args.batches[-1])

    for name, fn in (("tiled boundary U-Net", boundaries), ("Grad-CAM vgg_grain", gradcam)):
        try:
            peak_reset(device)
            s = timed(fn, device, 1 if args.dry_run else 2, args.budget, warm=not args.dry_run)
            print(f"{name:<30}{s:>10.2f}{n * n / s / 1e6:>10.2f}{peak_mib(device):>10.0f}", flush=True)
        except Exception as err:  # noqa: BLE001
            print(f"{name:<30}failed: {type(err).__name__}: {str(err)[:100]}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default=None, help="default cuda (cpu with --dry-run)")
    ap.add_argument("--dry-run", action="store_true", help="tiny sizes, one iteration: checks the script on CPU")
    ap.add_argument("--budget", type=float, default=1.5, help="seconds of timing per row at most")
    args = ap.parse_args(argv)
    device = torch.device(args.device or ("cpu" if args.dry_run else "cuda"))
    if args.dry_run:
        args.batches, args.iters, args.size, args.frame, args.budget = (1,), 1, 32, 256, 0.0
    else:
        args.batches, args.iters, args.size, args.frame = (1, 32), 50, None, 2048
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    t0 = time.perf_counter()
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"# napari-mmdl GPU table: {name}, torch {torch.__version__}"
          + (" — DRY RUN (tiny sizes, 1 iteration; the numbers mean nothing)" if args.dry_run else ""))
    inference_rows(args, device)
    training_rows(args, device)
    frame_rows(args, device)
    print(f"# total {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
