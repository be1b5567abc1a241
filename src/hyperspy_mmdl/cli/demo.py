"""``mmdl demo``: the main job on the built-in synthetic sample, start to finish.

Generates a calibrated stack of synthetic polycrystals (one frame per grain-size
class, ground truth known), writes it as HSPY and reads it back with its
calibration; segments, measures and summarises every frame; trains a small
grain-size classifier on generated micrographs; classifies the frames, computes
Grad-CAM attention maps and writes a report folder (grain table CSV, summary
CSV/JSON, ECD histogram, attention overlays, loss curve, index.html).
A few minutes at most on two CPU cores.
"""

from __future__ import annotations

import time
from pathlib import Path

#: nominal mean ECDs (nm) of the demo stack's frames: small, medium, large (SPEC §3.1.6 bands)
DEMO_ECDS = (330.0, 600.0, 1400.0)
#: physical width of the grain boundaries, nm (2 px at the default 20 nm/px; the training set
#: draws widths from 10-100 nm)
BOUNDARY_NM = 40.0
#: nominal mean-ECD bands (µm) of the generated training set at 0.05 µm/px (>= 6 px per grain)
TRAIN_BANDS = ((0.30, 0.36), (0.50, 0.70), (1.0, 1.6))


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "demo", help="the main job on a synthetic sample: grains, training, classification, report",
        description=__doc__.split("\n\n")[1] if __doc__ else None)
    p.add_argument("--out", type=Path, default=Path("mmdl-demo"), help="report folder (default: mmdl-demo)")
    p.add_argument("--size", type=int, default=512, help="frame height and width in pixels (default: 512)")
    p.add_argument("--pixel-size", type=float, default=20.0, help="pixel size in nm (default: 20)")
    p.add_argument("--mean-ecd", type=float, nargs="+", default=list(DEMO_ECDS), metavar="NM",
                   help="nominal mean grain ECD of each frame, nm (default: 330 600 1400)")
    p.add_argument("--train-per-class", type=int, default=40,
                   help="generated training images per grain-size class (default: 40)")
    p.add_argument("--epochs", type=int, default=30, help="training epochs (default: 30)")
    p.add_argument("--device", default="cpu", help="cpu (default), auto, cuda, mps")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.set_defaults(func=run)


def _truth(sample) -> dict:
    """Grain count, mean ECD and class of a sample's ground-truth grains, measured like the segmentation."""
    from hyperspy_mmdl.grains import measure, summarize

    cal = sample.calibration.image
    s = summarize(measure(sample.labels, cal), cal, labels=sample.labels)
    return {"n_grains": int(s["n_grains"]), "mean_ecd": float(s["mean_ecd"]),
            "class": s["grain_size_class"], "nominal_ecd": float(sample.mean_ecd)}


def main_job(out, *, size: int = 512, pixel_size: float = 20.0, mean_ecds=DEMO_ECDS,
             train_per_class: int = 40, epochs: int = 30, device: str = "cpu", seed: int = 0,
             log=print) -> dict:
    """Run the whole chain into ``out``; returns the key figures (also in ``summary.json``)."""
    import numpy as np

    from hyperspy_mmdl import io, report
    from hyperspy_mmdl.calibration import Calibration
    from hyperspy_mmdl.synthetic import polycrystal
    from hyperspy_mmdl.train import plots, tasks
    from hyperspy_mmdl.train.datasets import synthetic_grain_size_set
    from hyperspy_mmdl.train.recipes import load_recipe

    t0 = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)

    # 1. a calibrated stack with known grains, written and read back
    width = max(1, round(BOUNDARY_NM / pixel_size))
    samples = [polycrystal(shape=(size, size), pixel_size=pixel_size, unit="nm", mean_ecd=float(e),
                           boundary="dark", boundary_width=min(width, max(1, int(e / pixel_size // 3))),
                           seed=seed + k) for k, e in enumerate(mean_ecds)]
    stack = np.stack([s.image for s in samples])
    cal = Calibration.from_pixel_size(pixel_size, "nm").with_frames()
    truth = [_truth(s) for s in samples]
    path = io.save(out / "input" / "synthetic_stack.hspy", stack, cal, title="synthetic polycrystal stack",
                   metadata={"seed": seed, "pixel_size_nm": pixel_size})
    img = io.load(path)
    c = img.calibration
    if not c.is_calibrated or abs(c.pixel_size_in("nm")[1] - pixel_size) > 1e-6 * pixel_size:
        raise ValueError(f"{path} did not keep its calibration ({c.describe()})")
    log(f"read {path}: {len(img.data)} frames of {size}×{size} px at {c.describe()}")

    # 2. segment, measure, summarise every frame
    # the sample's boundaries are dark lines (auto-detection may take thick ones for edges)
    results = report.analyze_image(np.asarray(img.data), c, source=path.name, truth=truth,
                                   segment_kwargs={"method": "boundary", "lines": "dark"})
    for r in results:
        log(f"  frame {r.frame}: {r.summary['n_grains']} grains (truth {r.truth['n_grains']}), mean ECD "
            f"{r.summary['mean_ecd']:.0f} nm (truth {r.truth['mean_ecd']:.0f} nm), measured class "
            f"{r.summary['grain_size_class']}")
    t_grains = time.perf_counter() - t0

    # 3. train a small grain-size classifier on generated micrographs
    recipe = load_recipe("grain_size_small")
    d = recipe["data"]
    train_set = synthetic_grain_size_set(train_per_class, size=int(d["input_size"]),
                                         pixel_size=float(d["pixel_size"]), bands=TRAIN_BANDS,
                                         seed=2024 + seed)
    log(f"training {recipe['model']} ({recipe['name']} recipe) on {len(train_set)} generated micrographs "
        f"{train_set.summary()['per_class']}, {epochs} epochs on {device}")
    t1 = time.perf_counter()
    ckpt = out / "model" / "grain_size_small.pt"
    res = tasks.train_classifier(train_set, recipe, epochs=epochs, device=device, out=ckpt, progress=False)
    Path(str(ckpt) + ".state.pt").unlink(missing_ok=True)
    t_train = time.perf_counter() - t1
    acc = float(res.metrics.get("accuracy", float("nan")))
    plots.loss_curve_plot(res.history, out / "loss_curve.png")
    log(f"  test accuracy {acc:.2f} on {len(res.splits['test'])} held-out images ({t_train:.0f} s); wrote {ckpt}")

    # 4. classify and explain the stack's frames
    for r in results:
        report.predict_frame(r, ckpt, device=device, attention="gradcam")
        log(f"  frame {r.frame}: model says {r.predicted_class} ({float(np.max(r.probabilities)):.0%}), "
            f"true class {r.truth['class']}")

    # 5. the report
    correct = sum(r.predicted_class == r.truth["class"] for r in results)
    figures = {
        "frames": len(results),
        "n_grains": [int(r.summary["n_grains"]) for r in results],
        "n_grains_true": [r.truth["n_grains"] for r in results],
        "mean_ecd_nm": [float(r.summary["mean_ecd"]) for r in results],
        "mean_ecd_true_nm": [r.truth["mean_ecd"] for r in results],
        "classifier_test_accuracy": acc,
        "classifier_n_test": int(len(res.splits["test"])),
        "frames_classified_correctly": int(correct),
        "checkpoint": str(ckpt),
        "seconds": {"grains": round(t_grains, 1), "training": round(t_train, 1)},
    }
    notes = [
        f"Synthetic calibrated stack ({len(results)} frames of {size}×{size} px at {pixel_size:g} nm/px, "
        f"nominal mean ECD {', '.join(f'{e:g}' for e in mean_ecds)} nm), read back from {path.name}.",
        f"Classifier: {recipe['model']} trained on {len(train_set)} generated micrographs for {epochs} "
        f"epochs; test accuracy {acc:.2f}. Attention: Grad-CAM of the predicted class.",
    ]
    paths = report.write_report(results, out, title="napari-mmdl demo: synthetic polycrystal stack",
                                notes=notes, extra=figures, images={"training loss": out / "loss_curve.png"})
    figures["seconds"]["total"] = round(time.perf_counter() - t0, 1)
    log(f"wrote {out}/index.html ({len(paths)} files) in {figures['seconds']['total']:.0f} s; "
        f"{correct}/{len(results)} frames classified as their true class")
    return figures


def run(args) -> int:
    main_job(args.out, size=args.size, pixel_size=args.pixel_size, mean_ecds=args.mean_ecd,
             train_per_class=args.train_per_class, epochs=args.epochs, device=args.device, seed=args.seed)
    return 0
