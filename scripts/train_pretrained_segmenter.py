"""Train the shipped grain-boundary segmenter ``grain-boundary-unet`` (seeded, reproducible).

Data (licences allow shipping weights trained on them):

* ``tbm_metallography_grains`` (MIT): human grain-boundary masks on optical
  metallography crops. Split by **source micrograph** (the number before the
  first ``-`` of a crop's name): sources in ``TEST_SOURCES`` are never trained
  on (the held-out metrics of the card), ``VAL_SOURCES`` choose the epoch and
  the post-processing, the rest train.
* generated micrographs (:func:`hyperspy_mmdl.synthetic.training_micrograph`):
  optical, SEM and channelling styles with noise, blur, charging and grain sizes
  of 8–70 px.

``perovskite_sem_grain_gt`` (MIT, one SEM image) is held out entirely: a test of
a kind of micrograph the model never saw a real example of.

Usage::

    python scripts/train_pretrained_segmenter.py            # writes src/hyperspy_mmdl/pretrained/
    python scripts/train_pretrained_segmenter.py --steps 200 --out /tmp/seg.pt   # a quick run

The held-out table is printed by ``benchmarks/segmentation.py``, which the card quotes.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MMDL_SHARED_DATA", ROOT.parent / "shared" / "data"))
OUT = ROOT / "src" / "hyperspy_mmdl" / "pretrained" / "grain-boundary-unet.pt"
NAME = "grain-boundary-unet"
SEED = 2026
TEST_SOURCES = (10, 13, 16, 19, 22)
VAL_SOURCES = (12, 20)


def _grey(a):
    a = np.asarray(a, dtype=np.float32)
    if a.ndim == 3:
        a = a[..., :3] @ np.array([0.299, 0.587, 0.114], np.float32)
    return a


def tbm_pairs(sources=None, *, as_read=False):
    """``[(name, source, image, boundary mask bool)]`` of the TBM crops.

    The image is grey float32 in [0, 1] (training), or the PNG's array as a user's
    reader gives it (``as_read=True``: RGB uint8, for the benchmark).
    """
    from PIL import Image

    folder = SHARED / "tbm_metallography_grains"
    out = []
    for p in sorted((folder / "images").glob("*.png")):
        src = int(p.name.split("-")[0])
        if sources is not None and src not in sources:
            continue
        raw = np.array(Image.open(p))
        img = raw if as_read else (_grey(raw) / 255.0).astype(np.float32)
        mask = _grey(np.array(Image.open(folder / "masks" / p.name))) > 127
        out.append((p.name, src, img, mask))
    return out


def perovskite_pair(*, as_read=False):
    """The perovskite SEM image (left 535 columns, see its PROVENANCE.md) and its boundary mask."""
    from PIL import Image

    folder = SHARED / "perovskite_sem_grain_gt"
    mask = np.array(Image.open(folder / "ground_truth3.png"))[..., :3].max(-1) > 127
    raw = np.array(Image.open(folder / "example3.png"))[:, : mask.shape[1], :3]
    img = raw if as_read else (_grey(raw) / 255.0).astype(np.float32)
    return [("example3.png", "perovskite", img, mask)]


def split_sources():
    """Train / validation / test TBM sources (whole source micrographs on one side only)."""
    every = sorted({int(p.name.split("-")[0]) for p in (SHARED / "tbm_metallography_grains" / "images").glob("*.png")})
    train = tuple(s for s in every if s not in TEST_SOURCES + VAL_SOURCES)
    return train, VAL_SOURCES, TEST_SOURCES


def recipe(steps: int, base_channels: int = 8):
    from hyperspy_mmdl.train.recipes import load_recipe

    r = load_recipe("unet_boundary")
    r["model_config"] = {"base_channels": base_channels, "depth": 4}
    r["data"].update(input_size=128, seed=SEED, normalization="minmax")
    r["train"].update(batch_size=8, epochs=max(steps // 40, 1), steps_per_epoch=min(steps, 40), amp=False,
                      early_stopping_patience=0, grad_clip=1.0)
    r["augment"] = {"dihedral": True, "random_crop": True, "contrast": 0.2, "zoom": 0.3}
    r["loss"] = {"name": "bce_dice", "pos_weight": 3.0}
    return r


GRID = [dict(threshold=t, merge=m, marker_erosion=e) for t in (0.15, 0.2, 0.3, 0.4, 0.5) for m in (None, 0.4, 0.5, 0.6)
        for e in (1, 2) if m is None or m >= t]


def _objective(r):
    """Lower is better: boundary misses and both size errors count alike."""
    return (1 - r["f1"]) + abs(r["ecd_error"]) + abs(r["intercept_error"])


def _score(probs, pairs, post):
    from hyperspy_mmdl.grains.evaluate import evaluate, pool
    from hyperspy_mmdl.grains.learned import labels_from_boundaries

    return pool([evaluate(labels_from_boundaries(p, **post), m) for p, (_, _, _, m) in zip(probs, pairs)])


def reference_intercept(masks) -> dict:
    """Median, 10th and 90th percentile of the Heyn mean lineal intercepts (px) of the training
    masks: the grain sizes the model knows.

    Stored on the card as ``extra["grain_intercept_px"]`` (what the model card says the model knows).
    """
    from hyperspy_mmdl.grains.evaluate import heyn_intercept

    p10, median, p90 = np.nanpercentile([heyn_intercept(m)["intercept"] for m in masks], [10, 50, 90])
    return {"median": round(float(median), 2), "p10": round(float(p10), 2), "p90": round(float(p90), 2)}


def generated(n: int):
    """The ``n`` generated training micrographs and masks (seeded)."""
    from hyperspy_mmdl.synthetic import training_micrograph

    rng = np.random.default_rng(SEED)
    return [training_micrograph((256, 256), rng=rng)[:2] for _ in range(n)]


def finalize(path: Path, reference_px: dict):
    """Choose the post-processing on the validation sources, measure the held-out sets as a user
    runs them (:func:`~hyperspy_mmdl.grains.learned.segment_learned`, scale chosen automatically),
    write both into the checkpoint's card and the Markdown card beside it."""
    import hyperspy_mmdl.inference  # noqa: F401  (registers the runners)
    from hyperspy_mmdl.checkpoint import load_checkpoint, runner, save_checkpoint
    from hyperspy_mmdl.grains.evaluate import evaluate, pool
    from hyperspy_mmdl.grains.learned import segment_learned

    predict = runner("segment")
    _, val_src, test_src = split_sources()
    val = tbm_pairs(val_src)
    probs = [predict(img, None, str(path), device="cpu") for _, _, img, _ in val]
    scored = [(post, _score(probs, val, post)) for post in GRID]
    post, best = min(scored, key=lambda pr: _objective(pr[1]))
    print(f"post-processing chosen on validation sources {val_src}: {post} -> F1 {best['f1']:.3f}, "
          f"ECD {best['ecd_error']:+.1%}, intercept {best['intercept_error']:+.1%}")
    model, card = load_checkpoint(path)
    card.extra = {**(card.extra or {}), "postprocess": post, "grain_intercept_px": reference_px}
    save_checkpoint(path, model, card)
    held = {}
    for name, pairs in (("tbm_test_sources", tbm_pairs(test_src)), ("perovskite_sem", perovskite_pair())):
        r = pool([evaluate(segment_learned(img, None, path, device="cpu"), m) for _, _, img, m in pairs])
        held[name] = {k: round(float(r[k]), 4) for k in ("f1", "precision", "recall", "count_error", "ecd_error",
                                                        "intercept_error")} | {"crops": r["crops"]}
        print(name, held[name])
    card.metrics = {**(card.metrics or {}), "validation": {k: round(float(best[k]), 4) for k in
                                                           ("f1", "ecd_error", "intercept_error")},
                    **{f"held_out_{k}": v for k, v in held.items()}}
    save_checkpoint(path, model, card)
    path.with_suffix(".md").write_text(_card_markdown(card, post, best, held), encoding="utf-8")
    return held


def _targets(held) -> str:
    """Which of issue 14's targets the held-out sets meet, in words."""
    missed = [f"{name}: F1 {h['f1']:.2f}, mean-ECD error {h['ecd_error']:+.1%}, intercept error "
              f"{h['intercept_error']:+.1%}" for name, h in held.items()
              if h["f1"] < 0.75 or abs(h["ecd_error"]) > 0.10 or abs(h["intercept_error"]) > 0.05]
    return "met on every held-out set" if not missed else "not all met: " + "; ".join(missed)


def _card_markdown(card, post, val, held) -> str:
    td = card.training_data
    rows = "\n".join(
        f"| {name} | {h['crops']} | {h['f1']:.2f} | {h['precision']:.2f} | {h['recall']:.2f} | "
        f"{h['count_error']:+.0%} | {h['ecd_error']:+.1%} | {h['intercept_error']:+.1%} |"
        for name, h in held.items())
    return f"""# grain-boundary-unet

Grain-boundary probability of a grey micrograph (one value per pixel), turned into closed grains by
`hyperspy_mmdl.grains.learned.labels_from_boundaries`. Used by `segment(method="learned")` and chosen by
`method="auto"` when an image's boundary lines are broken, faint or absent.

- **Architecture**: `unet_boundary` {card.config}; one output logit per pixel; input one grey
  channel, `{card.normalization}` normalisation; no pixel size. Trained on grains of 8–70 px across (Heyn
  intercepts of the training masks: median {card.extra['grain_intercept_px']['median']} px, 10th–90th percentile
  {card.extra['grain_intercept_px']['p10']}–{card.extra['grain_intercept_px']['p90']} px, `extra["grain_intercept_px"]`).
  `segment(method="learned")` runs it at the zoom (0.35–2×) where it is most certain of the image's central
  window (`hyperspy_mmdl.grains.learned.choose_scale`), so grains far larger or smaller than these are
  resampled towards them; `scale=1` turns that off.
- **Post-processing** (chosen on the validation sources, stored on the card): `{post}`.
- **Training data**:
  - {td.get('real')}
  - {td.get('generated')}
  - validation: {td.get('validation')}; held out: {td.get('held_out')}.
- **Licences**: TBM crops MIT (Scientific-Computing-Lab/MLOgraphyPlusPlus); generated images are the
  project's own. `perovskite_sem_grain_gt` (MIT) is only a test. Non-commercial or unlicensed sets of
  `../shared/data` trained nothing here.
- **Recipe**: {card.recipe}
- **Made by**: `python scripts/train_pretrained_segmenter.py` (seed {td.get('seed')}); the table below is
  printed again by `python benchmarks/segmentation.py`.

## Held-out metrics (sources never trained on)

Measured as a user runs the model (`segment_learned`, scale chosen automatically). Definitions:
`hyperspy_mmdl.grains.evaluate` (boundary F1 at 2 px on thinned boundaries, median over crops;
grain count, mean ECD and Heyn mean lineal intercept pooled over the crops, relative errors).

| data | crops | F1 | precision | recall | count error | mean-ECD error | intercept error |
|---|---|---|---|---|---|---|---|
{rows}

Validation sources: F1 {val['f1']:.2f}, mean-ECD error {val['ecd_error']:+.1%}, intercept error
{val['intercept_error']:+.1%}.

## Limits

Issue 14's targets on unseen sources (boundary F1 ≥ 0.75, mean-ECD error ≤ 10 %, intercept error ≤ 5 %)
are {_targets(held)}. Part of the F1 gap is in the human TBM masks: they also hold open, dangling
boundary lines that closed grains cannot reproduce. Trained on optical metallography with texture contrast and on generated
SEM/optical/channelling images; a real SEM example was never seen in training. The zoom rule reaches
grains from about half to three times the training sizes; beyond that, bin or enlarge the image first.
Twin boundaries were not modelled.
"""


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=1200)
    ap.add_argument("--synthetic", type=int, default=240, help="generated micrographs (256 px)")
    ap.add_argument("--real-repeat", type=int, default=4, help="times each real training crop is listed")
    ap.add_argument("--base-channels", type=int, default=8, help="U-Net channels of the first stage")
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--finalize-only", action="store_true",
                    help="only choose the post-processing and write the cards of an existing --out")
    args = ap.parse_args(argv)
    if args.finalize_only:
        masks = [m for _, _, _, m in tbm_pairs(split_sources()[0])] + [m for _, m in generated(args.synthetic)]
        finalize(args.out, reference_intercept(masks))
        return

    import torch

    from hyperspy_mmdl.train.tasks import train_segmenter

    torch.set_num_threads(int(os.environ.get("MMDL_THREADS", "1")))
    train_src, val_src, test_src = split_sources()
    real = tbm_pairs(train_src)
    val = tbm_pairs(val_src)
    t0 = time.time()
    synth = generated(args.synthetic)
    print(f"{len(real)} real training crops (sources {train_src}), {len(val)} validation crops "
          f"(sources {val_src}), {len(synth)} generated ({time.time() - t0:.0f} s)")
    images = [im[None] for _, _, im, _ in real] * args.real_repeat + [im[None] for im, _ in synth]
    masks = [m for _, _, _, m in real] * args.real_repeat + [m for _, m in synth]
    summary = {
        "real": "tbm_metallography_grains (MIT; github.com/Scientific-Computing-Lab/MLOgraphyPlusPlus): "
                f"{len(real)} crops of sources {list(train_src)}, human boundary masks",
        "generated": f"{len(synth)} hyperspy_mmdl.synthetic.training_micrograph images, 256 px, seed {SEED}",
        "validation": f"tbm sources {list(val_src)} ({len(val)} crops)",
        "held_out": f"tbm sources {list(test_src)}; perovskite_sem_grain_gt (never trained on)",
        "script": "scripts/train_pretrained_segmenter.py",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    res = train_segmenter(images, masks, recipe(args.steps, args.base_channels),
                          val_images=[im[None] for _, _, im, _ in val],
                          val_masks=[m for _, _, _, m in val], out=args.out, progress=True,
                          data_summary=summary)
    print(f"saved {res.checkpoint} ({res.checkpoint.stat().st_size / 1e6:.1f} MB) in {time.time() - t0:.0f} s")
    print(json.dumps(res.metrics))
    finalize(res.checkpoint, reference_intercept([m for _, _, _, m in real] + [m for _, m in synth]))


if __name__ == "__main__":
    main()
