"""Super-resolution evidence on real perovskite SEM images: bicubic vs SRCNN vs RCAN-lite ([PSC] Tables S2–S3).

Protocol (SPEC §2.4): each HR image (data bar removed, overlay text cropped
away, scaled to [0, 1]) is cropped to a multiple of the factor and
bicubic-downsampled (antialiased) by ×2, ×3, ×4; the LR image is
reconstructed; PSNR and SSIM (Wang et al., 11×11 Gaussian σ = 1.5) are taken on
the grey channel after shaving ``scale`` pixels from each border.

Training and test images are disjoint:

* train: ``perovskite_sem_grain_gt/example3.png``, ``perovskite_sem_fapbi3_databar/{13,57,198}.jpg``;
* test: ``perovskite_sem_fapbi3_databar/{199,200,201}.jpg`` (calibrated, 20.0 / 33.4 / 20.0 nm/px).

The ``fapbi3`` JPEGs are YOLO prediction outputs with white text in the top-left
corner (rows < 260 of the 1280-wide images, < 190 of ``13.jpg``): only the rows
below the text and above the data bar are used.

Run (≈ 10 min on 2 CPU cores with the defaults)::

    .venv/bin/python benchmarks/superres.py [--steps-srcnn 500] [--steps-rcan 600] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
TRAIN = ["perovskite_sem_grain_gt/example3.png", "perovskite_sem_fapbi3_databar/13.jpg",
         "perovskite_sem_fapbi3_databar/57.jpg", "perovskite_sem_fapbi3_databar/198.jpg"]
TEST = ["perovskite_sem_fapbi3_databar/199.jpg", "perovskite_sem_fapbi3_databar/200.jpg",
        "perovskite_sem_fapbi3_databar/201.jpg"]
OVERLAY_ROWS = {1280: 270, 1024: 200}  # rows of the YOLO text overlay (+ margin) by image width

PSC_PSNR = {2: (36.84, 37.48, 38.14), 3: (33.91, 34.33, 35.20), 4: (33.07, 33.27, 34.13)}  # bicubic, SRCNN, RCAN
PSC_SSIM = {2: (0.8684, 0.8804, 0.8928), 3: (0.8233, 0.8112, 0.8476), 4: (0.7875, 0.8082, 0.8174)}


def load(name: str) -> np.ndarray:
    """The image area of a real SEM file: grey, data bar and overlay text removed."""
    from PIL import Image

    from hyperspy_mmdl.preprocess.databar import find_data_bar

    a = np.asarray(Image.open(DATA / name))
    g = a[..., 0] if a.ndim == 3 else a  # gray content (R = G = B)
    bar = find_data_bar(a[..., :3] if a.ndim == 3 else a)
    bottom = bar.top if bar is not None else g.shape[0]
    if "example3" in name:
        g = g[2:-2, 2:-2]  # alpha-faded border
        return g.astype(np.float32)
    top = OVERLAY_ROWS.get(g.shape[1], 0)
    return g[top:bottom].astype(np.float32)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps-srcnn", type=int, default=500)
    p.add_argument("--steps-rcan", type=int, default=600)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--patch", type=int, default=48, help="HR patch side")
    p.add_argument("--factors", type=int, nargs="+", default=[2, 3, 4])
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads (1 is fastest for these small nets on a busy 2-core machine)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=None, help="write checkpoints and results.json here")
    args = p.parse_args(argv)

    import torch

    from hyperspy_mmdl.preprocess import superres as sr

    torch.set_num_threads(args.threads)
    missing = [n for n in TRAIN + TEST if not (DATA / n).exists()]
    if missing:
        print(f"real data not available under {DATA}: {missing}", file=sys.stderr)
        return 2
    train = [load(n) for n in TRAIN]
    test = [load(n) for n in TEST]
    print("train:", ", ".join(f"{n.split('/')[-1]} {im.shape}" for n, im in zip(TRAIN, train)))
    print("test: ", ", ".join(f"{n.split('/')[-1]} {im.shape}" for n, im in zip(TEST, test)))
    methods = {"SRCNN": {}, "RCAN-lite": {}}
    times = {"SRCNN": {}, "RCAN-lite": {}}
    for f in args.factors:
        for label, arch, steps in (("SRCNN", "srcnn", args.steps_srcnn), ("RCAN-lite", "rcan_lite", args.steps_rcan)):
            t0 = time.perf_counter()
            r = sr.train_superres(train, arch, f, steps=steps, batch_size=args.batch,
                                  patch_size=args.patch, seed=args.seed)
            times[label][f] = time.perf_counter() - t0
            methods[label][f] = r
            print(f"trained {label} x{f}: {steps} steps in {times[label][f]:.0f} s "
                  f"(final loss {r.card.metrics['final_loss']:.5f})", flush=True)
            if args.out:
                r.save(args.out / f"{arch}_x{f}.pt")
    t0 = time.perf_counter()
    res = sr.evaluate(test, methods, factors=args.factors)
    t_eval = time.perf_counter() - t0
    print()
    print(sr.format_tables(res))
    print("Rows method, columns scale (PSNR dB / SSIM), mean over the test images:")
    print("| Method | " + " | ".join(f"×{f} PSNR | ×{f} SSIM" for f in args.factors) + " | train time |")
    print("|---" * (2 * len(args.factors) + 2) + "|")
    for m in ["bicubic", "SRCNN", "RCAN-lite"]:
        cells = []
        for f in args.factors:
            row = res[(res["method"] == m) & (res["scale"] == f)].iloc[0]
            cells += [f"{row['PSNR']:.2f}", f"{row['SSIM']:.4f}"]
        t = "–" if m == "bicubic" else f"{sum(times[m].values()):.0f} s"
        print(f"| {m} | " + " | ".join(cells) + f" | {t} |")
    print()
    print("Gaps over bicubic here vs [PSC] Tables S2–S3 (other images, so only ordering and gaps compare):")
    for f in args.factors:
        sub = res[res["scale"] == f].set_index("method")
        ours = [sub.loc[m, "PSNR"] - sub.loc["bicubic", "PSNR"] for m in ("SRCNN", "RCAN-lite")]
        ours_s = [sub.loc[m, "SSIM"] - sub.loc["bicubic", "SSIM"] for m in ("SRCNN", "RCAN-lite")]
        b, s_, r_ = PSC_PSNR[f]
        bs, ss, rs = PSC_SSIM[f]
        print(f"  ×{f}: PSNR SRCNN {ours[0]:+.2f} dB (PSC {s_ - b:+.2f}), RCAN-lite {ours[1]:+.2f} dB "
              f"(PSC RCAN {r_ - b:+.2f}); SSIM SRCNN {ours_s[0]:+.4f} (PSC {ss - bs:+.4f}), "
              f"RCAN-lite {ours_s[1]:+.4f} (PSC RCAN {rs - bs:+.4f})")
    print(f"\nevaluation: {t_eval:.0f} s; threads {args.threads}")
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "results.json").write_text(json.dumps(
            {"table": res.to_dict(orient="records"), "per_image": res.attrs["per_image"],
             "train_seconds": {m: {str(k): v for k, v in t.items()} for m, t in times.items()},
             "train": TRAIN, "test": TEST, "args": {k: str(v) for k, v in vars(args).items()}}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
