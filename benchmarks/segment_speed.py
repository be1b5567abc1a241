"""Segmentation speed: ``segment(method="boundary")`` + ``measure`` before and after the speed-ups, in one run.

The "before" path is the code of commit ``BASELINE`` (read with ``git show``):
its ``_label_split`` (one ``h_maxima`` per suspected component, ``ndi.maximum``)
and ``ndi.median`` for the per-grain medians of the quality check; the "after"
path is this checkout. Both run on the same images, interleaved, best of
``--repeat``; the labels must be identical (the last column says so).

Images: generated polycrystals of 2048 × 1536 and 1024 × 768 px
(:func:`hyperspy_mmdl.synthetic.polycrystal`) and, when present, the real
Ti-6Al-4V Zeiss SEM TIFF of /work/shared/data/nist_gsat_grains/ti64_sem/.

Since the large components of a boundary segmentation are flooded (not cut into nearest-seed
cells that fall apart), labels of images with such components (the Ti-6Al-4V SEM) differ from
the baseline's by design; "labels same" says False for them.

Run: ``nice python benchmarks/segment_speed.py [--repeat 2] [--profile]``.
Timings on a shared machine are noisy: read the ratio column (same run).
"""

from __future__ import annotations

import argparse
import cProfile
import importlib
import pstats
import subprocess
import time
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

BASELINE = "2f53e8f"
TI64 = Path("/work/shared/data/nist_gsat_grains/ti64_sem/sem_alpha_beta_ti_6al_4v.tif")
ROOT = Path(__file__).resolve().parents[1]

seg_mod = importlib.import_module("hyperspy_mmdl.grains.segment")
quality = importlib.import_module("hyperspy_mmdl.grains.quality")


def _baseline_label_split():
    src = subprocess.run(["git", "-C", str(ROOT), "show", f"{BASELINE}:src/hyperspy_mmdl/grains/segment.py"],
                         capture_output=True, text=True, check=True).stdout
    ns = dict(seg_mod.__dict__)
    exec(src[src.index("def _label_split("):src.index("def _finish(")], ns)  # noqa: S102 - our own history
    return ns["_label_split"]


def _ndi_medians(g, labels):
    return ndi.median(g, labels, index=np.arange(1, int(labels.max()) + 1))


def images():
    from hyperspy_mmdl.calibration import Calibration
    from hyperspy_mmdl.synthetic import polycrystal

    for shape in ((1536, 2048), (768, 1024)):
        s = polycrystal(shape=shape, pixel_size=10.0, unit="nm", seed=0)
        yield f"polycrystal {shape[1]}×{shape[0]}", np.asarray(s.image), Calibration.from_pixel_size(10.0, "nm")
    if TI64.exists():
        from hyperspy_mmdl import io

        img = io.load(TI64)
        yield "Ti-6Al-4V SEM (real)", np.asarray(img.data), img.calibration
    else:
        print(f"# {TI64} absent: real image left out")


def run(img, cal, fast):
    from hyperspy_mmdl.grains.measure import measure

    new_split, new_medians = seg_mod._label_split, quality._label_medians
    if not fast:
        seg_mod._label_split, quality._label_medians = OLD_SPLIT, _ndi_medians
    try:
        t0 = time.perf_counter()
        labels = seg_mod.segment(img, cal, method="boundary")
        t1 = time.perf_counter()
        measure(labels, cal)
        t2 = time.perf_counter()
    finally:
        seg_mod._label_split, quality._label_medians = new_split, new_medians
    return t1 - t0, t2 - t1, labels


def main(argv=None) -> int:
    global OLD_SPLIT
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--profile", action="store_true", help="cProfile the new path on the first image")
    args = ap.parse_args(argv)
    OLD_SPLIT = _baseline_label_split()
    rows = []
    for name, img, cal in images():
        run(img, cal, True)  # warm-up (imports, measure's compiled kernels)
        best = {}
        for _ in range(args.repeat):
            for fast in (False, True):
                ts, tm, lab = run(img, cal, fast)
                b = best.get(fast)
                best[fast] = (min(ts, b[0]) if b else ts, min(tm, b[1]) if b else tm, lab)
        same = np.array_equal(best[False][2], best[True][2])
        rows.append((name, best[False][0], best[True][0], best[False][1], best[True][1], same,
                     int(best[True][2].max())))
        if args.profile and len(rows) == 1:
            prof = cProfile.Profile()
            prof.runcall(run, img, cal, True)
            pstats.Stats(prof).sort_stats("cumulative").print_stats(18)
    print(f"# segment(method='boundary') + measure; before = commit {BASELINE}, after = this checkout; "
          f"best of {args.repeat}, interleaved in one run")
    print(f"{'image':<26}{'method':<10}{'seg before':>11}{'seg after':>11}{'× faster':>9}{'measure':>9}"
          f"{'total ×':>9}{'grains':>8}{'labels same':>13}")
    for name, sb, sa, mb, ma, same, n in rows:
        print(f"{name:<26}{'boundary':<10}{sb:>10.2f}s{sa:>10.2f}s{sb / sa:>9.2f}{ma:>8.2f}s"
              f"{(sb + mb) / (sa + ma):>9.2f}{n:>8}{str(same):>13}")
    return 0 if all(r[5] for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
