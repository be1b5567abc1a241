"""Does ``segment(method="learned")`` cope with grains larger or smaller than it was trained on?

Generated micrographs (:func:`hyperspy_mmdl.synthetic.training_micrograph`, seeds the shipped
model never saw) are resampled by a magnification ``m`` (image linear, true labels nearest), as
if the same field had been recorded at ``m`` times the pixels. Each is segmented as a user
runs it, once at the image's own pixels (``scale=1``) and once with the default
``scale="auto"`` (:func:`hyperspy_mmdl.grains.learned.choose_scale`: the zoom at which the model
is most certain of the image's central window). Scores:
:func:`hyperspy_mmdl.grains.evaluate.evaluate`, pooled per magnification. The generator draws
grains down to a few pixels (after resampling by 0.33, many of 2 px), which the post-processing's
16-px minimum leaves out: count and size errors are large at every scale; read F1 first.

Usage::

    python benchmarks/segmentation_scale.py                 # 12 micrographs per magnification
    python benchmarks/segmentation_scale.py --n 4 --model /tmp/seg.pt
"""

from __future__ import annotations

import argparse
import time

import numpy as np

MAGNIFICATIONS = (0.33, 0.5, 1.0, 2.0, 3.0)
SIZE = 384  # side of the image a user gets, pixels
SEED = 90_000  # the training script's generated images use seed 2026


def cases(m: float, n: int, seed: int = SEED):
    """``n`` generated ``(image, labels)`` pairs at magnification ``m`` (``SIZE`` px a side)."""
    from hyperspy_mmdl.preprocess.resample import resize
    from hyperspy_mmdl.synthetic import training_micrograph

    rng = np.random.default_rng(seed + int(round(100 * m)))
    base = max(64, int(round(SIZE / m)))
    out = []
    for _ in range(n):
        img, _, lab = training_micrograph((base, base), rng=rng)
        out.append((resize(img, (SIZE, SIZE), order=1), resize(lab, (SIZE, SIZE), order=0)))
    return out


def run(n: int, model=None):
    from hyperspy_mmdl.grains import segment
    from hyperspy_mmdl.grains.evaluate import evaluate, pool

    rows = []
    for m in MAGNIFICATIONS:
        pairs = cases(m, n)
        for scale in (1.0, "auto"):
            t0 = time.perf_counter()
            scores, zooms = [], []
            for img, lab in pairs:
                kw = {} if model is None else {"model": model}
                pred, info = segment(img, method="learned", scale=scale, data_bar=False, return_info=True, **kw)
                scores.append(evaluate(pred, lab))
                zooms.append(info["learned"]["scale"])
            r = pool(scores)
            r.update(m=m, scale=str(scale), zoom=float(np.median(zooms)), seconds=(time.perf_counter() - t0) / n)
            rows.append(r)
            print(_row(r), flush=True)
    return rows


HEADER = (f"{'magnif.':>7} {'scale':>6} {'median zoom':>11} {'F1':>5} {'count err':>9} {'ECD err':>8} "
          f"{'intercept err':>13} {'s/image':>7}")


def _row(r):
    return (f"{r['m']:>7.2f} {r['scale']:>6} {r['zoom']:>11.2f} {r['f1']:>5.2f} {r['count_error']:>+9.0%} "
            f"{r['ecd_error']:>+8.1%} {r['intercept_error']:>+13.1%} {r['seconds']:>7.2f}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=12, help="micrographs per magnification")
    ap.add_argument("--model", help="learned checkpoint (default: the shipped grain-boundary-unet)")
    args = ap.parse_args(argv)
    print(HEADER)
    run(args.n, args.model)


if __name__ == "__main__":
    main()
