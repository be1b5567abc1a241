"""Grain segmentation (+ measurement) speed on a real SEM image and large synthetic ones.

Images (each timed in one run, best of ``--repeat``):

* ``ti64_sem``: the NIST Ti-6Al-4V Zeiss SEM TIFF, 1024 × 768 (``../shared/data``);
* ``zeiss_2048``: frame 0 of rosettasciio's ``ZEISS_SEM_multipage.tif``, 2048 × 1536;
* ``ti64_sem x2``: the Ti-6Al-4V image upsampled to 2048 × 1536 (the size the issue names);
* ``synthetic 2048x1536`` and ``synthetic 4096²``: :func:`hyperspy_mmdl.synthetic.polycrystal`.

For each: ``grains.segment`` (the method "auto" picks, or the one given), then
``grains.measure`` (ImageJ convention) when that module is installed, and the
whole chain; a skimage baseline of the same boundary pipeline (``sato`` ridge
filter, full-image ``h_maxima`` markers, full-image ``watershed``) gives the
ratio. Target (issue 3): segment + measure of a 2048 × 1536 image under 2 s.

Usage::

    python benchmarks/grains.py               # all images
    python benchmarks/grains.py --quick       # skip the 4096² image and the baseline on it
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MMDL_SHARED_DATA", ROOT.parent / "shared" / "data"))


def _timed(fn, repeat=1):
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def _images(quick):
    import tifffile
    from scipy import ndimage

    from hyperspy_mmdl.calibration import Calibration
    from hyperspy_mmdl.synthetic import polycrystal

    ti = SHARED / "nist_gsat_grains" / "ti64_sem" / "sem_alpha_beta_ti_6al_4v.tif"
    if ti.exists():
        img = tifffile.imread(ti)[..., 0]
        cal = Calibration.from_pixel_size(0.1116, "µm")
        yield "ti64_sem", img, cal, dict(method="boundary", lines="edge", min_diameter="1.5 um")
        yield ("ti64_sem x2", ndimage.zoom(img, 2, order=1), cal.resampled(2),
               dict(method="boundary", lines="edge", min_diameter="1.5 um"))
    zeiss = SHARED / "rosettasciio_dm_tiff" / "tiff" / "sem_Zeiss" / "ZEISS_SEM_multipage.tif"
    if zeiss.exists():
        yield "zeiss_2048", tifffile.imread(zeiss)[0], Calibration.from_pixel_size(1.0, "nm"), dict(method="auto")
    s = polycrystal((1536, 2048), seed=0)
    yield "synthetic 2048x1536", s.image, s.calibration, dict(method="boundary")
    if not quick:
        s = polycrystal((4096, 4096), seed=0)
        yield "synthetic 4096²", s.image, s.calibration, dict(method="boundary")


def _baseline(image, sigma=1.0, h=2.0):
    """The same boundary pipeline with skimage building blocks on the whole image."""
    from scipy import ndimage
    from skimage.filters import sato, threshold_otsu
    from skimage.morphology import h_maxima
    from skimage.segmentation import watershed

    g = image.astype(np.float32)
    g = (g - g.min()) / max(float(np.ptp(g)), 1e-9)
    r = sato(g, sigmas=[sigma], black_ridges=True)
    lines = r > threshold_otsu(r)
    dist = ndimage.distance_transform_edt(~lines)
    markers, _ = ndimage.label(h_maxima(dist, h))
    labels = watershed(r, markers, watershed_line=True)
    labels[lines] = 0
    return labels


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--no-baseline", action="store_true")
    args = ap.parse_args(argv)

    from hyperspy_mmdl.grains import segment

    try:
        from hyperspy_mmdl.grains.measure import measure
    except ImportError:
        measure = None

    print(f"# grains benchmark  {platform.node()}  {platform.processor() or platform.machine()}  "
          f"cores={os.cpu_count()}  repeat={args.repeat}")
    head = (f"{'image':<22}{'shape':>12}{'method':>15}{'grains':>8}{'segment s':>11}{'measure s':>11}"
            f"{'total s':>9}{'grains/s':>10}{'baseline s':>12}{'speed-up':>10}")
    print(head)
    print("-" * len(head))
    for name, image, cal, params in _images(args.quick):
        t_seg, (labels, info) = _timed(lambda: segment(image, cal, return_info=True, **params), args.repeat)
        t_meas = float("nan")
        if measure is not None:
            t_meas, _ = _timed(lambda: measure(labels, cal), args.repeat)
        total = t_seg + (t_meas if measure is not None else 0.0)
        n = int(labels.max())
        t_base = float("nan")
        if not args.no_baseline and not (args.quick and image.size > 8e6):
            t_base, _ = _timed(lambda: _baseline(image), 1)
        method = info["method"] + ("/" + info["lines"] if info.get("lines") else "")
        shape = "x".join(str(v) for v in image.shape[::-1])
        print(f"{name:<22}{shape:>12}{method:>15}{n:>8}{t_seg:>11.2f}{t_meas:>11.2f}{total:>9.2f}"
              f"{n / total:>10.0f}{t_base:>12.2f}{t_base / t_seg:>10.1f}")
    if measure is None:
        print("(grains.measure not installed: measurement not timed)")
    print("target: segment + measure of 2048x1536 < 2 s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
