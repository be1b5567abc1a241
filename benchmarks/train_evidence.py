"""Evidence that the training code learns (issue 5). Prints one table per experiment.

Run all, or one section::

    .venv/bin/python benchmarks/train_evidence.py [grain] [pce] [real] [unet] [--quick]

* ``grain``: the grain-size CNNs (recipe ``grain_size_small``: PSC image encoder;
  ``vgg_grain``: the paper's VGG and recipe) on synthetic micrographs of the three
  grain-size classes (labels from measured mean D_eq), held-out test accuracy.
* ``pce``:   PSC-Fusion with the image branch masked on the Perovskite-Database
  table (../shared/data/perovskite_pce_tabular), 10-fold CV, beside LightGBM and
  RF on the same folds, and the mean predictor.
* ``real``:  classifier on real micrographs: perovskite SEM vs metallography vs
  ceramic SEM crops from ../shared/data, held-out split by source image.
* ``unet``:  boundary U-Net trained on the TBM crops marked TrainDataset, scored on
  TestDataset against the human masks (boundary F1 at 2 px, mean-ECD error),
  beside the classical segmenters of hyperspy_mmdl.grains, all scored by
  hyperspy_mmdl.grains.evaluate.compare.

CPU only; each section takes minutes. Seeds are fixed (2024).
"""

from __future__ import annotations

import sys
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
QUICK = "--quick" in sys.argv


def _table(rows, head):
    w = [max(len(str(h)), *(len(str(r[i])) for r in rows)) for i, h in enumerate(head)]
    line = " | ".join(str(h).ljust(x) for h, x in zip(head, w))
    print(line)
    print("-" * len(line))
    for r in rows:
        print(" | ".join(str(v).ljust(x) for v, x in zip(r, w)))


# --------------------------------------------------------------------------- grain-size CNN
def grain(recipes=("grain_size_small", "vgg_grain"), n_per_class=None, epochs=None):
    """Grain-size CNNs on generated micrographs of the three classes (held-out stratified split).

    ``grain_size_small``: the [PSC] image encoder (BatchNorm, CBAM) with a head, 112² at
    0.05 µm/px; ``vgg_grain``: the [PSC] Table S7 VGG (no BatchNorm), 224² at 0.025 µm/px,
    with its paper optimiser (SGD 0.005, momentum 0.9, wd 5e-4, dropout 0.4), batch 16, 200 epochs.
    """
    from hyperspy_mmdl.train.datasets import synthetic_grain_size_set
    from hyperspy_mmdl.train.recipes import load_recipe
    from hyperspy_mmdl.train.tasks import train_classifier

    rows = []
    for name in recipes:
        # vgg_grain: the paper's optimiser (SGD 0.005, momentum 0.9, wd 5e-4); batch 16 and no early stopping
        # on this small set (with patience 15 it stops at chance before it starts to learn, ~epoch 60)
        recipe = load_recipe(name, ["train.batch_size=16", "train.early_stopping_patience=0"]
                             if name == "vgg_grain" else [])
        d = recipe["data"]
        n = n_per_class or 40
        ep = epochs or (30 if name == "grain_size_small" else (30 if QUICK else 200))
        kw = {"pixel_size": float(d["pixel_size"]), "bands": ((0.30, 0.36), (0.50, 0.70), (1.0, 1.6))} \
            if "pixel_size" in d else {}
        t0 = time.time()
        ims = synthetic_grain_size_set(n, size=int(d["input_size"]), seed=2024, **kw)
        res = train_classifier(ims, recipe, epochs=ep, progress=False)
        m = res.metrics
        rows.append([name, recipe["model"], f"{d['input_size']}²", len(ims), ep, m["n"], f"{m['accuracy']:.3f}",
                     f"{m['f1']:.3f}", f"{m['kappa']:.3f}", f"{m['mAUC']:.3f}", m["confusion_matrix"],
                     f"{time.time() - t0:.0f}"])
    print("\n[grain] grain-size CNNs on generated micrographs (classes from the measured mean D_eq)")
    _table(rows, ["recipe", "model", "input", "images", "epochs", "n test", "accuracy", "macro F1", "kappa",
                  "mAUC", "confusion", "s"])
    return rows


# --------------------------------------------------------------------------- PSC-Fusion CV
def pce(epochs=None):
    from hyperspy_mmdl.train.recipes import load_recipe
    from hyperspy_mmdl.train.tabular import read_pce_table
    from hyperspy_mmdl.train.tasks import cross_validate_pce

    path = DATA / "perovskite_pce_tabular" / "psc_ai_framework" / "Supplementary Data 3.csv"
    t0 = time.time()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = read_pce_table(path)
    recipe = load_recipe("psc_fusion")
    epochs = epochs or (10 if QUICK else 30)
    res = cross_validate_pce(table, recipe, k=10, mask="image", epochs=epochs, baselines=("LightGBM", "RF"))
    print(f"\n[pce] {path.name}: {len(table)} devices, composition dim {table.composition_dim}, process fields "
          f"{table.process_sizes}; 10-fold KFold(shuffle, 2024); PSC-Fusion image branch masked, {epochs} epochs; "
          f"{time.time() - t0:.0f} s")
    rows = []
    for name, r in res.items():
        s = r["summary"]
        rows.append([name, f"{s['R2']['mean']:.3f} ± {s['R2']['std']:.3f}", f"{s['MAE']['mean']:.3f}",
                     f"{s['RMSE']['mean']:.3f}", f"{s['R']['mean']:.3f}", f"{r['pooled']['R2']:.3f}"])
    rows.append(["mean predictor", "≤ 0 (by definition)", "", "", "", ""])
    _table(rows, ["model", "R2 mean ± SD", "MAE", "RMSE", "R", "pooled R2"])
    return res


# --------------------------------------------------------------------------- real micrographs
def real_crops(size=128, seed=2024):
    """Crops of real micrographs in three classes, grouped by source image."""
    from skimage import io as skio

    from hyperspy_mmdl.train.transforms import normalize

    def crops(img, step):
        img = img.astype(np.float32)
        if img.ndim == 3:
            img = img[..., :3].mean(-1)
        out = []
        for r in range(0, img.shape[0] - size + 1, step):
            for c in range(0, img.shape[1] - size + 1, step):
                out.append(normalize(img[r:r + size, c:c + size][None]))
        return out

    images, labels, groups = [], [], []
    src = 0
    # perovskite SEM: drop the overlay text (top 260 rows) and the data bar (rows >= 960 / 706)
    per = DATA / "perovskite_sem_fapbi3_databar"
    for f in sorted(per.glob("*.jpg")):
        img = skio.imread(f)
        bottom = 706 if f.name == "13.jpg" else 960
        for x in crops(img[260:bottom], 160):
            images.append(x), labels.append(0), groups.append(src)
        src += 1
    gt = DATA / "perovskite_sem_grain_gt" / "example3.png"
    if gt.exists():
        for x in crops(skio.imread(gt)[..., 0], 128):
            images.append(x), labels.append(0), groups.append(src)
        src += 1
    # metallography (optical, TBM): one crop per tile, grouped by source micrograph id
    tbm = DATA / "tbm_metallography_grains" / "images"
    for f in sorted(tbm.glob("*.png")):
        sid = int(f.name.split("-")[0])
        for x in crops(skio.imread(f), 128)[:: 2]:
            images.append(x), labels.append(1), groups.append(1000 + sid)
    steel = DATA / "nist_gsat_grains" / "steel_optical" / "grain_structures_steel.tif"
    if steel.exists():
        for x in crops(skio.imread(steel), 128):
            images.append(x), labels.append(1), groups.append(src)
        src += 1
    # ceramic SEM (pores)
    cer = DATA / "ceramic_sem_phase_seg"
    for f in sorted(list(cer.glob("train_pairs/*_sem.bmp")) + list(cer.glob("unlabeled_test/*_sem.bmp"))):
        for x in crops(skio.imread(f), 64):
            images.append(x), labels.append(2), groups.append(src)
        src += 1
    return images, np.asarray(labels), np.asarray(groups)


def real(model="grain_size_small", epochs=None, size=128):
    from hyperspy_mmdl.train.datasets import ImageSet
    from hyperspy_mmdl.train.recipes import load_recipe
    from hyperspy_mmdl.train.tasks import train_classifier

    t0 = time.time()
    images, labels, groups = real_crops(size)
    names = ["perovskite SEM", "metallography (optical)", "ceramic SEM"]
    from hyperspy_mmdl.calibration import Calibration

    ims = ImageSet(images, labels, names, [], [Calibration.uncalibrated(2)] * len(images), groups=groups)
    epochs = epochs or (6 if QUICK else 15)
    recipe = load_recipe(model, [f"data.input_size={size}", "data.val_fraction=0.15", "data.test_fraction=0.3",
                                 "train.batch_size=32", "train.early_stopping_patience=0"])
    res = train_classifier(ims, recipe, epochs=epochs, progress=False)
    m = res.metrics
    te = res.splits["test"]
    print(f"\n[real] {model} {size}x{size} on {len(images)} crops of real micrographs "
          f"{ims.summary()['per_class']}; split by source image (test: {len(te)} crops from "
          f"{len(np.unique(groups[te]))} sources); {epochs} epochs; {time.time() - t0:.0f} s")
    _table([[m["split"], m["n"], f"{m['accuracy']:.3f}", f"{m['precision']:.3f}", f"{m['recall']:.3f}",
             f"{m['f1']:.3f}", f"{m['kappa']:.3f}", f"{m['mAUC']:.3f}", f"{m['mAP']:.3f}", m["confusion_matrix"]]],
           ["split", "n", "accuracy", "macro P", "macro R", "macro F1", "kappa", "mAUC", "mAP", "confusion"])
    return m


# --------------------------------------------------------------------------- U-Net on TBM
def unet(epochs=None, steps=None):
    import pandas as pd

    from hyperspy_mmdl.train.datasets import read_segmentation_pairs
    from hyperspy_mmdl.train.recipes import load_recipe
    from hyperspy_mmdl.train.tasks import evaluate_segmentation, train_segmenter

    root = DATA / "tbm_metallography_grains"
    split = pd.read_csv(root / "upstream_split.csv")
    pick = lambda v: split.file[split.upstream_autosam_split == v].tolist()  # noqa: E731
    t0 = time.time()
    Xtr, Mtr, _ = read_segmentation_pairs(root / "images", root / "masks", names=pick("TrainDataset"))
    Xte, Mte, nte = read_segmentation_pairs(root / "images", root / "masks", names=pick("TestDataset"))
    epochs = epochs or (6 if QUICK else 20)
    steps = steps or (15 if QUICK else 30)
    recipe = load_recipe("unet_boundary", [f"train.steps_per_epoch={steps}"])
    res = train_segmenter(Xtr, Mtr, recipe, epochs=epochs, progress=False)
    t_train = time.time() - t0
    ev = evaluate_segmentation(res.model, Xte, Mte, names=nte)
    rows = [["unet_boundary (learned)", f"{ev['boundary_precision']:.3f}", f"{ev['boundary_recall']:.3f}",
             f"{ev['boundary_f1']:.3f}", f"{ev['mean_ecd_rel_error']:.3f}"]]
    rows += _classical_rows(root, nte)
    print(f"\n[unet] TBM: trained on {len(Xtr)} TrainDataset crops ({epochs} epochs x {steps} steps x batch "
          f"{recipe['train']['batch_size']} of {recipe['data']['input_size']}^2 crops, {t_train:.0f} s), "
          f"scored on {len(Xte)} TestDataset crops vs human masks (boundary tolerance 2 px)")
    _table(rows, ["method", "boundary P", "boundary R", "boundary F1", "mean-ECD rel. error"])
    return ev


def _classical_rows(root, names):
    """The classical segmenters of ``hyperspy_mmdl.grains`` on the same crops (colour PNGs), same scoring."""
    from PIL import Image

    from hyperspy_mmdl.grains import segment
    from hyperspy_mmdl.grains.evaluate import compare, labels_from_boundary_mask

    rows = []
    settings = {"grains.segment('auto')": {},
                "grains.segment('boundary', lines='edge')": dict(method="boundary", lines="edge", smoothing=1.5,
                                                                  min_diameter=6)}
    for title, kw in settings.items():
        scores = []
        for name in names:
            image = np.asarray(Image.open(root / "images" / name))
            mask = np.asarray(Image.open(root / "masks" / name))
            truth = labels_from_boundary_mask((mask[..., 0] if mask.ndim == 3 else mask) > 127)
            c = compare(segment(image, **kw), truth)
            scores.append((c["precision"], c["recall"], c["f1"], abs(c["ecd_error"])))
        rows.append([title, *(f"{v:.3f}" for v in np.mean(scores, axis=0))])
    return rows


if __name__ == "__main__":
    import torch

    torch.set_num_threads(2)
    wanted = [a for a in sys.argv[1:] if not a.startswith("--")] or ["grain", "pce", "real", "unet"]
    for name in wanted:
        {"grain": grain, "pce": pce, "real": real, "unet": unet}[name]()
