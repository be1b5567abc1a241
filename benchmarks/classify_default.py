"""Does ``mmdl train --task classify --data FOLDER`` learn with its defaults? Default vs the papers' recipes.

Builds a real 3-class task from ``../shared/data`` in a temporary folder —
**perovskite** film SEM (FAPbI3 set, crops between the overlaid text and the
data bar), **optical metallography** (TBM crops) and **ceramic** SEM — one
sub-folder per source micrograph inside each class folder, and splits it by
source micrograph: some sources of every class are held out in a separate
folder that no training run sees. Each recipe is trained with the command a
user types (``mmdl train --task classify --data TRAIN [--recipe R]``, its own
settings verbatim) and its checkpoint is scored on the held-out sources as a
user would classify them (``mmdl evaluate``'s path: whole images, tiles
averaged). Prints the table: held-out accuracy per class, wall time, whether
the run said it learned, and the exit status.

Run from the repository root (the papers' recipes take tens of minutes on two
CPU cores; ``--recipes finetune`` runs only the default)::

    nice python benchmarks/classify_default.py [--recipes finetune grain_size_small eanet vgg_grain]

The data stay under /tmp (licences: TBM MIT repo, ceramic CC BY-NC 4.0, FAPbI3
conflicting: benchmark use only, nothing of them is shipped).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("MMDL_SHARED_DATA", ROOT.parent / "shared" / "data"))
RECIPES = ("finetune", "grain_size_small", "eanet", "vgg_grain")
CROP = 256
SEED = 2024
HELD_OUT = {"perovskite": 2, "metallography": 4, "ceramic": 2}  # source micrographs held out per class


def _grey(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim == 3:
        x = x[..., :3].mean(-1)
    return x


def _save(path: Path, x: np.ndarray) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.clip(x, 0, 255).astype(np.uint8)).save(path)


def build(root: Path) -> dict:
    """Write ``root/{train,held_out}/<class>/<source>/*.png``; returns the sources of each part."""
    from PIL import Image

    sources: dict = {"perovskite": {}, "metallography": {}, "ceramic": {}}
    # perovskite SEM: the image between the overlaid prediction text (top) and the data bar (bottom)
    rows = {"13.jpg": (190, 705)}
    for f in sorted((DATA / "perovskite_sem_fapbi3_databar").glob("*.jpg")):
        x = _grey(np.asarray(Image.open(f)))
        r0, r1 = rows.get(f.name, (260, 960))
        x = x[r0:r1]
        tiles = [x[r:r + CROP, c:c + CROP] for r in range(0, x.shape[0] - CROP + 1, CROP)
                 for c in range(0, x.shape[1] - CROP + 1, CROP)]
        sources["perovskite"][f.stem] = tiles[:8]
    # optical metallography (TBM): 256×256 crops named <source>-<row>-<col>.png
    for f in sorted((DATA / "tbm_metallography_grains" / "images").glob("*.png")):
        sources["metallography"].setdefault(f.name.split("-")[0], []).append(_grey(np.asarray(Image.open(f))))
    # ceramic SEM: 256×256 images, each its own source, as four overlapping 160×160 corner crops
    for f in sorted((DATA / "ceramic_sem_phase_seg").rglob("*_sem.bmp")):
        x = _grey(np.asarray(Image.open(f)))
        sources["ceramic"][f.stem] = [x[r:r + 160, c:c + 160] for r in (0, 96) for c in (0, 96)]
    rng = np.random.default_rng(SEED)
    split = {}
    for cls, by_source in sources.items():
        names = sorted(by_source)
        held = set(rng.choice(names, HELD_OUT[cls], replace=False).tolist())
        for name in names:
            part = "held_out" if name in held else "train"
            split.setdefault(part, {}).setdefault(cls, []).append(name)
            for i, tile in enumerate(by_source[name]):
                _save(root / part / cls / name / f"{name}-{i}.png", tile)
    return split


def count(folder: Path) -> dict:
    return {c.name: len(list(c.rglob("*.png"))) for c in sorted(folder.iterdir())}


def train(recipe: str, train_dir: Path, out: Path) -> tuple[int, float, str]:
    cmd = [sys.executable, "-m", "hyperspy_mmdl.cli", "train", "--task", "classify", "--data", str(train_dir),
           "--out", str(out), "--device", "cpu", "--no-progress"]
    if recipe != "finetune":  # the default is what a user gets without --recipe
        cmd += ["--recipe", recipe]
    t0 = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    return proc.returncode, time.monotonic() - t0, proc.stdout + proc.stderr


def main(argv=None) -> int:
    import torch

    from hyperspy_mmdl.checkpoint import read_card
    from hyperspy_mmdl.train.tasks import evaluate_checkpoint

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--recipes", nargs="+", default=list(RECIPES))
    ap.add_argument("--work", default="/tmp/mmdl-classify-default")
    args = ap.parse_args(argv)
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    for needed in ("perovskite_sem_fapbi3_databar", "tbm_metallography_grains", "ceramic_sem_phase_seg"):
        if not (DATA / needed).is_dir():
            print(f"skipped: {DATA / needed} is not here")
            return 0
    work = Path(args.work)
    if work.exists():
        import shutil

        shutil.rmtree(work)
    split = build(work)
    print(f"task: {DATA} -> {work}")
    print(f"  training folder  {count(work / 'train')}  sources {json.dumps(split['train'])}")
    print(f"  held-out folder  {count(work / 'held_out')}  sources {json.dumps(split['held_out'])}")
    rows = []
    for recipe in args.recipes:
        out = work / "models" / f"{recipe}.pt"
        rc, seconds, text = train(recipe, work / "train", out)
        row = {"recipe": recipe + (" (default)" if recipe == "finetune" else ""), "exit": rc,
               "minutes": seconds / 60}
        if out.is_file():
            card = read_card(out)
            ev = evaluate_checkpoint(out, work / "held_out", device="cpu")
            cm = np.asarray(ev["confusion_matrix"])
            row.update(accuracy=ev["accuracy"], n=int(cm.sum()),
                       per_class={c: f"{cm[i, i]}/{cm[i].sum()}" for i, c in enumerate(card.class_names)},
                       learned=card.metrics.get("learned"), epochs=card.recipe.get("train", {}).get("epochs"),
                       batch=card.recipe.get("train", {}).get("batch_size"))
        else:
            row["error"] = text.strip().splitlines()[-1] if text.strip() else "no output"
        rows.append(row)
        print(f"  {recipe}: exit {rc}, {seconds / 60:.1f} min" + (f", held-out accuracy {row['accuracy']:.3f}"
                                                                  if "accuracy" in row else f", {row.get('error')}"),
              flush=True)
    print()
    print("held-out accuracy on unseen source micrographs (whole images, tiles averaged)")
    print(f"{'recipe':<22} {'accuracy':>8} {'n':>4} {'per class (correct/n)':<58} {'time':>7} {'learned':>8} "
          f"{'exit':>4}  settings")
    for r in rows:
        if "accuracy" not in r:
            print(f"{r['recipe']:<22} {'-':>8} {'-':>4} {r['error'][:58]:<58} {r['minutes']:>5.1f} m {'-':>8} "
                  f"{r['exit']:>4}")
            continue
        pc = ", ".join(f"{k} {v}" for k, v in r["per_class"].items())
        print(f"{r['recipe']:<22} {r['accuracy']:>8.3f} {r['n']:>4} {pc:<58} {r['minutes']:>5.1f} m "
              f"{str(r['learned']):>8} {r['exit']:>4}  batch {r['batch']}, {r['epochs']} epochs")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
