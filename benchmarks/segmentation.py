"""Grain segmentation against human masks: every method × data set, leave-source-out.

One definition of the scores (:func:`hyperspy_mmdl.grains.evaluate.evaluate`,
pooled by :func:`~hyperspy_mmdl.grains.evaluate.pool`): boundary F1 at 2 px
with both boundary maps thinned (median over crops), relative errors of the
grain count and of the mean ECD (grains off the image edge, boundaries filled;
pooled), and of the Heyn mean lineal intercept (horizontal test lines every
8 px over thinned boundaries; pooled).

Data sets (``../shared/data``):

* ``tbm-test``: TBM optical metallography crops of the source micrographs the
  shipped learned model never saw (``TEST_SOURCES`` of
  ``scripts/train_pretrained_segmenter.py``);
* ``tbm-all``: every TBM crop (classical methods have seen none; the learned
  model was trained on some, so it is not scored there);
* ``perovskite``: the perovskite SEM image with its mask (never trained on);
* ``nist-gsat``: the NIST GSAT steel optical micrograph and Ti-6Al-4V SEM
  micrograph (never trained on by the segmenter), read with their calibration
  as a user's reader gives them, against **NIST GSAT's own boundary maps**: a
  reference tool's answer, not a human mask. Ti-6Al-4V's map holds open lines
  (its "grains" run into each other), so only F1 and the Heyn intercept are
  scored there; count and ECD columns are left empty for this set.

Each method runs as a user runs it: ``segment(image, method=...)`` with the
defaults, on the image as read (RGB PNG arrays; no pixel size: the crops are
uncalibrated).

Usage::

    python benchmarks/segmentation.py                    # the table
    python benchmarks/segmentation.py --model /tmp/x.pt  # another learned checkpoint
"""

from __future__ import annotations

import argparse
import importlib.util
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def _data_module():
    spec = importlib.util.spec_from_file_location("seg_data", ROOT / "scripts" / "train_pretrained_segmenter.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


METHODS = {
    "auto": dict(method="auto"),
    "boundary": dict(method="boundary"),
    "boundary-edge": dict(method="boundary", lines="edge"),
    "threshold": dict(method="threshold"),
    "learned": dict(method="learned"),
}


def nist_pairs():
    """``[(name, source, image, GSAT boundary mask, calibration)]`` of the NIST GSAT micrographs."""
    import tifffile

    from hyperspy_mmdl.io import load

    folder = data_root() / "nist_gsat_grains"
    out = []
    for image, reference in (("steel_optical/grain_structures_steel.tif",
                              "steel_optical/grains_steel_highlighted_segmented.tif"),
                             ("ti64_sem/sem_alpha_beta_ti_6al_4v.tif",
                              "ti64_sem/sem_alpha_beta_ti_6al_4v_segmented.tif")):
        with warnings.catch_warnings():  # the steel TIFF has no calibration: scored in pixels
            warnings.simplefilter("ignore", UserWarning)
            img = load(folder / image)
        mask = np.atleast_3d(tifffile.imread(folder / reference))[..., 0] > 127
        out.append((Path(image).name, image.split("/")[0], np.asarray(img.data), mask, img.calibration))
    return out


def data_root() -> Path:
    return _data_module().SHARED


def run(methods, datasets, model=None):
    from hyperspy_mmdl.grains import segment
    from hyperspy_mmdl.grains.evaluate import evaluate, pool

    data = _data_module()
    sets = {  # the images as a user's reader gives them (RGB PNG arrays)
        "tbm-test": lambda: data.tbm_pairs(data.TEST_SOURCES, as_read=True),
        "tbm-all": lambda: data.tbm_pairs(as_read=True),
        "perovskite": lambda: data.perovskite_pair(as_read=True),
        "nist-gsat": nist_pairs,
    }
    rows = []
    for ds in datasets:
        pairs = sets[ds]()
        for name in methods:
            if name == "learned" and ds == "tbm-all":
                continue
            kw = dict(METHODS[name])
            if name == "learned" and model is not None:
                kw["model"] = model
            t0 = time.perf_counter()
            scores = [evaluate(segment(img, cal, data_bar=False, **kw), mask) for _, _, img, mask, cal in
                      (p if len(p) == 5 else (*p, None) for p in pairs)]
            r = pool(scores)
            if ds == "nist-gsat":  # open reference lines: grains not comparable
                r.update(count_error=float("nan"), ecd_error=float("nan"))
            r.update(dataset=ds, method=name, seconds=(time.perf_counter() - t0) / len(pairs))
            rows.append(r)
            print(_row(r), flush=True)
    return rows


HEADER = (f"{'data set':<11} {'method':<14} {'crops':>5} {'F1':>5} {'P':>5} {'R':>5} {'count err':>9} "
          f"{'ECD err':>8} {'intercept err':>13} {'s/crop':>6}")


def _row(r):
    def pct(key, width, digits):
        v = r[key]
        return f"{'—':>{width}}" if v != v else f"{v:>+{width}.{digits}%}"

    return (f"{r['dataset']:<11} {r['method']:<14} {r['crops']:>5} {r['f1']:>5.2f} {r['precision']:>5.2f} "
            f"{r['recall']:>5.2f} {pct('count_error', 9, 0)} {pct('ecd_error', 8, 1)} {pct('intercept_error', 13, 1)} "
            f"{r['seconds']:>6.2f}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    ap.add_argument("--datasets", nargs="+", default=["tbm-test", "perovskite", "nist-gsat", "tbm-all"],
                    choices=["tbm-test", "perovskite", "nist-gsat", "tbm-all"])
    ap.add_argument("--model", help="learned checkpoint (default: the shipped grain-boundary-unet)")
    args = ap.parse_args(argv)
    print(HEADER)
    run(args.methods, args.datasets, args.model)


if __name__ == "__main__":
    main()
