"""Make the shipped grain-size classifier ``grain-size-micronet`` (small / medium / large, SPEC §3.1.6).

Seeded and deterministic up to the CPU's floating point; writes
``src/hyperspy_mmdl/pretrained/grain-size-micronet.pt`` and its model card
``grain-size-micronet.md``. Run from the repository root (about half an hour
on two CPU cores)::

    nice python scripts/train_pretrained_classifier.py [--data ../shared/data] [--cache /tmp/gsm-cache]

Data (only sets whose licence allows shipping trained weights; see the card):

* generated polycrystals (:func:`hyperspy_mmdl.train.datasets.synthetic_grain_size_set`)
  at the model's pixel size, every class, labelled by measuring their grains;
* three real micrographs, each shown at many pixel sizes ("scale relabelling"):
  the micrograph is given a pixel size ``p`` (so that its grains measure
  0.15–4 µm), its class is what the pipeline measures at that calibration
  (:func:`hyperspy_mmdl.train.datasets.grain_size_labels`; the perovskite film
  is measured on its human boundary mask), and crops are resampled from ``p``
  to the model's 0.05 µm/px. Real grain shapes, contrast and noise thus reach
  all three classes at the scale the model sees them.

  - NIST GSAT Ti-6Al-4V SEM (Zeiss TIFF, 0.1116 µm/px) — NIST software statement;
  - NIST GSAT steel optical micrograph (0.2252 µm/px from the upstream readme) — held out entirely;
  - perovskite film SEM with a grain-boundary mask (yamanmy, MIT), uncalibrated.

Held out, and reported by source micrograph: the steel micrograph (every
scale), the right 30 % of the Ti-6Al-4V and perovskite micrographs (every
scale), and generated micrographs of other seeds. The TBM, ceramic and FAPbI3
sets are not used (TBM: kept unseen for ``benchmarks/classify_default.py``;
ceramic CC BY-NC; FAPbI3 licence conflicting).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
NAME = "grain-size-micronet"
PIXEL = 0.05          # µm/px of the model input
SIZE = 112            # model input side
SEED = 2024
BANDS = ((0.12, 0.38), (0.42, 0.78), (0.85, 4.0))   # nominal mean ECD (µm) of generated micrographs
HOLD_OUT_COLUMNS = 0.7  # columns right of this fraction are held out (Ti-6Al-4V, perovskite)

SOURCES = {
    "ti64_sem": dict(path="nist_gsat_grains/ti64_sem/sem_alpha_beta_ti_6al_4v.tif", pixel=None,
                     licence="NIST software licensing statement (use, copy, modify, distribute; acknowledge NIST)",
                     what="Ti-6Al-4V, polished, SEM backscatter (Zeiss GeminiSEM 300), NIST GSAT"),
    "steel_optical": dict(path="nist_gsat_grains/steel_optical/grain_structures_steel.tif", pixel=0.2252,
                          licence="NIST software licensing statement", held_out=True,
                          what="etched steel, optical micrograph, NIST GSAT (pixel size from the upstream readme)"),
    "perovskite_sem": dict(path="perovskite_sem_grain_gt/example3.png", mask="perovskite_sem_grain_gt/ground_truth3.png",
                           pixel=None, licence="MIT (yamanmy/grain_boundary.github.io)",
                           what="perovskite thin film, top-view SEM, human grain-boundary mask, uncalibrated"),
}


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def load_source(data: Path, name: str):
    """(image (H, W) float32, calibration or None, ground-truth labels or None) of a real source."""
    from skimage.measure import label

    from hyperspy_mmdl.calibration import Calibration
    from hyperspy_mmdl.train.datasets import load_micrograph

    spec = SOURCES[name]
    x, cal = load_micrograph(data / spec["path"], in_chans=1, normalization="none")
    x = x[0]
    if spec.get("pixel"):
        cal = Calibration.from_pixel_size(spec["pixel"], "µm")
    gt = None
    if spec.get("mask"):
        from hyperspy_mmdl import io

        m = np.asarray(io.load(data / spec["mask"]).data)
        m = m[..., 0] if m.ndim == 3 else m
        w = min(m.shape[1], x.shape[1])
        x, m = x[:, :w], m[:, :w]  # the mask is 2 px narrower (PROVENANCE.md)
        gt = label(m <= 127, connectivity=1).astype(np.int32)
    return x.astype(np.float32), (cal if cal.is_calibrated else None), gt


def measured_scales(data: Path, cache: Path) -> dict:
    """Per real source: the pixel sizes it is shown at and the class the pipeline measures at each."""
    from hyperspy_mmdl.calibration import Calibration
    from hyperspy_mmdl.train.datasets import grain_size_labels

    path = cache / "scales.json"
    if path.is_file():
        return json.loads(path.read_text())
    out = {}
    for name in SOURCES:
        x, cal, gt = load_source(data, name)
        # the native mean ECD in pixels: at the true calibration, or 1 µm/px for an uncalibrated source
        ref = cal or Calibration.from_pixel_size(1.0, "µm")
        _, mean = grain_size_labels([x], [ref], label_images=None if gt is None else [gt])
        ecd_px = float(mean[0]) / ref.pixel_size_in("µm")[1]
        h, w = x.shape
        region = min(h, int(w * (1.0 if SOURCES[name].get("held_out") else HOLD_OUT_COLUMNS)))
        # the finest scale whose crop window still fits in the training region
        d_min = max(0.15, ecd_px * PIXEL * SIZE / region / 0.95)
        rows = []
        for d in np.geomspace(d_min, 4.0, 9):
            p = float(d / ecd_px)
            cls, m = grain_size_labels([x], [Calibration.from_pixel_size(p, "µm")],
                                       label_images=None if gt is None else [gt])
            rows.append({"pixel_um": p, "nominal_ecd_um": float(d), "measured_ecd_um": float(m[0]),
                         "cls": int(cls[0])})
            log(f"{name}: shown at {p:.4f} µm/px -> measured mean ECD {m[0]:.3f} µm, class {int(cls[0])}")
        out[name] = {"ecd_px": ecd_px, "scales": rows}
    path.write_text(json.dumps(out, indent=1))
    return out


def real_crops(data: Path, scales: dict, seed: int = SEED):
    """Crops of the real sources at the model's pixel size: (images, labels, source, part) lists.

    The sources' left 70 % (training) and right 30 % (held out) draw their
    crop positions from one seeded stream, source after source; a source held
    out entirely draws from a stream of its own, so that it changes nothing
    of the training crops.
    """
    from hyperspy_mmdl.preprocess.resample import resize
    from hyperspy_mmdl.train.transforms import normalize

    shared = np.random.default_rng(seed)
    images, labels, sources, parts = [], [], [], []
    for k, (name, info) in enumerate(scales.items()):
        x, _, _ = load_source(data, name)
        h, w = x.shape
        if SOURCES[name].get("held_out"):
            rng, regions = np.random.default_rng([seed, k]), {"held-out": (0, w)}
        else:
            cut = int(w * HOLD_OUT_COLUMNS)
            rng, regions = shared, {"train": (0, cut), "held-out": (cut, w)}
        for row in info["scales"]:
            win = int(round(SIZE * PIXEL / row["pixel_um"]))  # native pixels of one model input
            for part, (c0, c1) in regions.items():
                if win > min(h, c1 - c0):
                    continue
                n = int(np.clip(round(2 * h * (c1 - c0) / win**2), 3, 12 if part == "train" else 4))
                for _ in range(n):
                    r = int(rng.integers(h - win + 1))
                    c = c0 + int(rng.integers(c1 - c0 - win + 1))
                    crop = resize(x[r:r + win, c:c + win], (SIZE, SIZE))
                    images.append(normalize(crop[None].astype(np.float32), "zscore"))
                    labels.append(row["cls"])
                    sources.append(name)
                    parts.append(part)
    return images, labels, sources, parts


def synthetic(n_per_class: int, seed: int, cache: Path, tag: str):
    """Generated micrographs at the model's pixel size (cached as .npz)."""
    from hyperspy_mmdl.train.datasets import synthetic_grain_size_set

    path = cache / f"synthetic-{tag}.npz"
    if path.is_file():
        z = np.load(path)
        return list(z["images"]), list(z["labels"])
    s = synthetic_grain_size_set(n_per_class, size=128, pixel_size=PIXEL, bands=BANDS, boundary_widths=(0.02, 0.1),
                                 normalization="zscore", seed=seed)
    np.savez_compressed(path, images=np.stack(s.images), labels=s.labels)
    return list(s.images), list(s.labels)


def recipe():
    from hyperspy_mmdl.train.recipes import load_recipe

    return load_recipe("finetune", {
        "init": {}, "train.batch_size": 32, "train.epochs": 14, "train.max_minutes": 0,
        "optimizer.lr": 2e-3, "schedule.warmup_epochs": 1, "augment.zoom": 0.08,
        "data.val_fraction": 0.0, "data.test_fraction": 0.0})


def dataset(data: Path, cache: Path, synthetic_per_class: int):
    """The ImageSet of every crop and the (train, val, held-out) index arrays."""
    from hyperspy_mmdl.calibration import Calibration
    from hyperspy_mmdl.train.datasets import GRAIN_SIZE_CLASSES, ImageSet

    scales = measured_scales(data, cache)
    r_img, r_lab, r_src, r_part = real_crops(data, scales)
    log(f"real crops: {len(r_img)} ({sum(p == 'train' for p in r_part)} for training)")
    s_tr = synthetic(synthetic_per_class, SEED, cache, "train")
    s_va = synthetic(12, SEED + 1, cache, "val")
    s_te = synthetic(20, SEED + 2, cache, "test")
    log(f"generated micrographs: {len(s_tr[0])} train, {len(s_va[0])} validation, {len(s_te[0])} test")
    images = s_tr[0] + s_va[0] + s_te[0] + r_img
    labels = np.asarray(list(s_tr[1]) + list(s_va[1]) + list(s_te[1]) + r_lab, dtype=np.int64)
    n_syn = len(s_tr[0]) + len(s_va[0]) + len(s_te[0])
    source = np.asarray(["synthetic"] * n_syn + r_src)
    part = np.asarray(["train"] * len(s_tr[0]) + ["val"] * len(s_va[0]) + ["held-out"] * len(s_te[0]) + r_part)
    cal = Calibration.from_pixel_size(PIXEL, "µm")
    ims = ImageSet(images, labels, list(GRAIN_SIZE_CLASSES), [f"{s}-{i}" for i, s in enumerate(source)],
                   [cal] * len(images), source)
    splits = tuple(np.flatnonzero(part == k) for k in ("train", "val", "held-out"))
    sizes = {"train": len(s_tr[0]), "val": len(s_va[0]), "test": len(s_te[0])}
    return ims, splits, scales, sizes


def evaluate(model, card, data: Path, ims, splits) -> tuple[dict, dict]:
    """Held-out accuracy by source micrograph, and the whole real micrographs at their own calibration."""
    from hyperspy_mmdl import inference
    from hyperspy_mmdl.train.datasets import GRAIN_SIZE_CLASSES, grain_size_labels
    from hyperspy_mmdl.train.metrics import classification_metrics
    from hyperspy_mmdl.train.tasks import _scalar_metrics, held_out_predictions, learning_check

    va, te = splits[1], splits[2]
    probs = held_out_predictions(model, card, [ims.images[i] for i in te])
    pred = probs.argmax(1)
    labels, source = ims.labels[te], ims.groups[te]
    # the card's held-out figures, as train_classifier computes them (test metrics, check on val + test)
    val_pred = held_out_predictions(model, card, [ims.images[i] for i in va]).argmax(1)
    metrics = classification_metrics(labels, probs, class_names=list(GRAIN_SIZE_CLASSES), top_k=(1, 2))
    metrics["split"] = "test"
    metrics.update(learning_check(np.concatenate([ims.labels[va], labels]), np.concatenate([val_pred, pred])))
    card.metrics = _scalar_metrics(metrics)
    by_source = {}
    for s in sorted(np.unique(source)):
        sel = source == s
        y = labels[sel]
        by_source[str(s)] = {"n": int(sel.sum()), "accuracy": float(np.mean(pred[sel] == y)),
                             "per_class_n": np.bincount(y, minlength=3).tolist(),
                             "confusion": [[int(np.sum((y == a) & (pred[sel] == b))) for b in range(3)]
                                           for a in range(3)]}
        log(f"held out {s}: accuracy {by_source[s]['accuracy']:.3f} on {by_source[s]['n']} crops")
    whole = {}
    for name in ("ti64_sem", "steel_optical"):
        x, c, _ = load_source(data, name)
        p = inference.classify(x, c, (model, card), device="cpu")
        truth, mean = grain_size_labels([x], [c])
        whole[name] = {"pixel_um": c.pixel_size_in("µm")[1], "measured_ecd_um": float(mean[0]),
                       "measured_class": GRAIN_SIZE_CLASSES[int(truth[0])],
                       "predicted": GRAIN_SIZE_CLASSES[int(p.argmax())],
                       "probabilities": [round(float(v), 3) for v in p]}
        log(f"{name} whole image: measured {whole[name]['measured_class']}, predicted {whole[name]['predicted']}")
    return by_source, whole


def main(argv=None) -> int:
    import torch

    from hyperspy_mmdl.checkpoint import load_checkpoint, save_checkpoint
    from hyperspy_mmdl.train.tasks import train_classifier

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--cache", default="/tmp/grain-size-micronet-cache")
    ap.add_argument("--out", default=str(ROOT / "src" / "hyperspy_mmdl" / "pretrained" / f"{NAME}.pt"))
    ap.add_argument("--synthetic-per-class", type=int, default=110)
    ap.add_argument("--evaluate", action="store_true",
                    help="do not train: score the model already in --out and rewrite its cards")
    args = ap.parse_args(argv)
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    torch.manual_seed(SEED)
    data, cache, out = Path(args.data), Path(args.cache), Path(args.out)
    cache.mkdir(parents=True, exist_ok=True)
    ims, splits, scales, sizes = dataset(data, cache, args.synthetic_per_class)
    if args.evaluate:
        model, card = load_checkpoint(out)
    else:
        log(f"training MicroNet on {len(splits[0])} images; held out {len(splits[2])}")
        res = train_classifier(ims, recipe(), splits=splits, progress=False, out=None, log=log,
                               callbacks=[lambda e, lg: log(f"epoch {e + 1}: loss {lg['loss']:.3f}, val accuracy "
                                                            f"{lg.get('val_accuracy', float('nan')):.3f}")])
        model, card = res.model, res.card
    by_source, whole = evaluate(model, card, data, ims, splits)
    card.metrics = {**card.metrics, "held_out_by_source": by_source}
    card.training_data = {
        **card.training_data,
        "sources": {k: {"what": v["what"], "licence": v["licence"], "file": v["path"]} for k, v in SOURCES.items()},
        "synthetic": {**sizes, "bands_um": BANDS},
        "scale_relabelling": scales, "held_out": "steel_optical entirely; right 30 % of ti64_sem and perovskite_sem;"
                                                " generated micrographs of other seeds",
        "script": "scripts/train_pretrained_classifier.py"}
    card.extra = {**card.extra, "whole_micrographs": whole, "name": NAME}
    model.eval()
    save_checkpoint(out, model, card)
    out.with_suffix(".md").write_text(card_markdown(model, card, by_source, whole, scales, len(splits[0])),
                                      encoding="utf-8")
    log(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB) and {out.with_suffix('.md').name}")
    return 0


def card_markdown(model, card, by_source, whole, scales, n_train) -> str:
    m = card.metrics
    seconds = float((card.extra.get("fit") or {}).get("seconds") or float("nan"))
    rows = "\n".join(f"| {s} | {v['n']} | {v['accuracy']:.3f} | {v['per_class_n']} |" for s, v in by_source.items())
    whole_rows = "\n".join(f"| {k} | {v['pixel_um']:.4g} | {v['measured_ecd_um']:.2f} | {v['measured_class']} | "
                           f"{v['predicted']} | {v['probabilities']} |" for k, v in whole.items())
    scale_rows = "\n".join(
        f"| {name} | {info['ecd_px']:.1f} | " + ", ".join(f"{r['pixel_um']:.3g}→{'SML'[r['cls']]}"
                                                        for r in info['scales']) + " |"
        for name, info in scales.items())
    rec = card.recipe
    return f"""# {NAME}

Grain-size classifier of micrographs: **small** (mean grain ECD < 0.4 µm), **medium** (0.4–0.8 µm),
**large** (> 0.8 µm), the classes of SPEC §3.1.6. Made by `scripts/train_pretrained_classifier.py` (seed {SEED}).

- Architecture: `micronet` (napari-mmdl's small CNN, {sum(p.numel() for p in model.parameters()):,}
  parameters), input 1 × {SIZE} × {SIZE} at **{PIXEL} µm/px**, per-image z-score normalisation.
  Images at any other calibrated pixel size are resampled to {PIXEL} µm/px before the model sees them, and
  larger images are cut into tiles whose probabilities are averaged. An uncalibrated image cannot be brought
  to that scale: its answer is not meaningful (the napari widgets warn).
- Labels: no hand labels. Every training image's class is the mean grain ECD measured by the package's
  own pipeline (`hyperspy_mmdl.train.datasets.grain_size_labels`: `pipeline.analyze_frame`, or
  `measure_frame` on a ground-truth label image).
- Its backbone is the starting point of the default training recipe `finetune`
  (`mmdl train --task classify --data FOLDER`).

## Data and licences

| source | what | licence | use |
|---|---|---|---|
| generated | `hyperspy_mmdl.synthetic` polycrystals at {PIXEL} µm/px, mean ECD drawn in {BANDS} µm | project | train / val / held-out (other seeds) |
| ti64_sem | {SOURCES['ti64_sem']['what']} | {SOURCES['ti64_sem']['licence']} | left 70 % train, right 30 % held out |
| steel_optical | {SOURCES['steel_optical']['what']} | {SOURCES['steel_optical']['licence']} | held out entirely |
| perovskite_sem | {SOURCES['perovskite_sem']['what']} | {SOURCES['perovskite_sem']['licence']} | left 70 % train, right 30 % held out |

Not used: TBM metallography (kept unseen for `benchmarks/classify_default.py`), the ceramic SEM set
(CC BY-NC 4.0, no commercial ML training), the FAPbI3 perovskite SEM set (licence conflicting upstream).

**Scale relabelling.** A real micrograph is shown at several assumed pixel sizes *p* so that its grains
span 0.15–4 µm; at each *p* the pipeline measures its mean ECD and gives the class, and crops are resampled
from *p* to {PIXEL} µm/px. Native mean ECD (px) and the pixel sizes used (µm/px → measured class):

| source | mean ECD (px) | pixel sizes → class |
|---|---|---|
{scale_rows}

## Recipe

Optimiser {rec.get('optimizer')}, schedule {rec.get('schedule')}, loss {rec.get('loss')},
{rec.get('train', {}).get('epochs')} epochs of batch {rec.get('train', {}).get('batch_size')} on {n_train}
images, augmentation {rec.get('augment')}. Training took {seconds / 60:.1f} min on a 2-core CPU shared with
other work.

## Held-out results, by source micrograph

Accuracy of the held-out crops (model input size, at {PIXEL} µm/px; every scale of each source):

| source | crops | accuracy | per class (S, M, L) |
|---|---|---|---|
{rows}

All held-out crops: accuracy {m.get('accuracy', float('nan')):.3f} (n = {m.get('n')}), macro F1
{m.get('f1', float('nan')):.3f}, Cohen's kappa {m.get('kappa', float('nan')):.3f}; chance (most frequent
class) {m.get('chance_accuracy', float('nan')):.3f}, learned: {m.get('learned')}.

Whole real micrographs at their own calibration, as `s.classify("{NAME}")` sees them:

| micrograph | pixel size (µm) | measured mean ECD (µm) | measured class | predicted | probabilities (S, M, L) |
|---|---|---|---|---|---|
{whole_rows}

## Limits

Three real micrographs is little: the real texture of the "small" and "medium" classes comes from
one SEM micrograph (Ti-6Al-4V) and one optical one (steel, held out) shown at finer assumed pixel
sizes. The classes follow the pipeline's measurement, with its errors. Check the answer against
*Grains > Segment and measure* on your own images.
"""


if __name__ == "__main__":
    raise SystemExit(main())
