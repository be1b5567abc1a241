"""Speed of ImageJ-exact ``grains.measure`` vs skimage ``regionprops_table`` vs ImageJ Analyze Particles.

Label images: the NIST Ti-6Al-4V SEM image upsampled to 2048 × 1536 and
segmented by ``grains.segment`` (as in ``benchmarks/grains.py``), and a
4096² ``synthetic.polycrystal`` ground truth. Every tool measures the same
particles: the 8-connected components of ``labels > 0``. ImageJ is timed inside
the macro (``benchmarks/imagej_timing.ijm``, best of 3, JVM start and file
reading excluded); ours and skimage are best of 3 after a warm-up call (numba
compiles once per machine and caches). skimage props: area, perimeter,
axis_major_length, axis_minor_length, orientation, solidity, feret_diameter_max.

Usage::

    .venv/bin/python benchmarks/measure_speed.py [--quick]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MMDL_SHARED_DATA", ROOT.parent / "shared" / "data"))
MACRO = Path(__file__).with_name("imagej_timing.ijm")


def _best(fn, repeat=3):
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def label_images(quick):
    import tifffile
    from scipy import ndimage

    from hyperspy_mmdl.calibration import Calibration
    from hyperspy_mmdl.grains import segment
    from hyperspy_mmdl.synthetic import polycrystal

    ti = SHARED / "nist_gsat_grains" / "ti64_sem" / "sem_alpha_beta_ti_6al_4v.tif"
    if ti.exists():
        img = ndimage.zoom(tifffile.imread(ti)[..., 0], 2, order=1)
        cal = Calibration.from_pixel_size(0.1116, "µm").resampled(2)
        yield "ti64_sem 2048x1536", segment(img, cal, method="boundary", lines="edge", min_diameter="1.5 um")
    if not quick:
        yield "synthetic 4096²", polycrystal((4096, 4096), seed=0).labels


def imagej_time(binary):
    import tifffile

    with tempfile.TemporaryDirectory() as tmp:
        tif = Path(tmp) / "b.tif"
        tifffile.imwrite(tif, binary.astype(np.uint8) * 255)
        res = subprocess.run(["xvfb-run", "-a", "timeout", "600", "java", "-Xmx4g", "-jar", "/usr/share/java/ij.jar",
                              "-batch", str(MACRO), f"{tif},3"], capture_output=True, text=True, timeout=700)
    m = re.search(r"particles=(\d+) best_s=([0-9.eE+-]+)", res.stdout + res.stderr)
    if not m:
        return None, None
    return int(m.group(1)), float(m.group(2))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="skip the 4096² image")
    ap.add_argument("--no-imagej", action="store_true", help="do not run ImageJ")
    args = ap.parse_args()
    from skimage.measure import label, regionprops_table

    from hyperspy_mmdl.grains.measure import measure

    measure(np.eye(8, dtype=np.int32))  # numba warm-up (compile or load the cache)
    rows = []
    for name, labels in label_images(args.quick):
        lab = label(labels > 0, connectivity=2)
        n = int(lab.max())
        t_ours = _best(lambda: measure(lab))
        props = ("label", "area", "perimeter", "axis_major_length", "axis_minor_length", "orientation",
                 "solidity", "feret_diameter_max")
        t_sk = _best(lambda: regionprops_table(lab, properties=props), repeat=1)
        n_ij, t_ij = (None, None) if args.no_imagej else imagej_time(lab > 0)
        rows.append((name, n, t_ours, t_sk, n_ij, t_ij))
        print(f"done {name}", flush=True)
    print(f"\n{'image':<20} {'grains':>7} {'ours s':>8} {'grains/s':>9} {'skimage s':>9} {'ImageJ s':>9} "
          f"{'IJ grains':>9} {'skimage/ours':>12} {'ImageJ/ours':>11}")
    for name, n, t_ours, t_sk, n_ij, t_ij in rows:
        ij = f"{t_ij:9.3f}" if t_ij is not None else f"{'n/a':>9}"
        ratio = f"{t_ij / t_ours:11.1f}" if t_ij is not None else f"{'n/a':>11}"
        print(f"{name:<20} {n:7d} {t_ours:8.3f} {n / t_ours:9.0f} {t_sk:9.2f} {ij} {str(n_ij):>9} "
              f"{t_sk / t_ours:12.1f} {ratio}")


if __name__ == "__main__":
    main()
