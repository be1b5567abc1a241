"""ImageJ 1.53t parity of ``grains.measure`` on every particle of generated and real binaries.

Each binary is measured once by ImageJ's Analyze Particles (``../shared/tools/imagej/run_imagej.sh``,
under Xvfb) and by ``measure(label(binary, connectivity=2))``; particles are matched by order
(both list them in raster order of their first pixel). Binaries:

* generated (``scripts/make_imagej_golden.py``): random small particles (single pixels, lines,
  mirror-symmetric, with holes, concave, blobs, ellipses, touching the border) and mirror-symmetric
  ones only, each set packed into one composite image;
* real, from ``../shared/data``: the human grain masks of ``tbm_metallography_grains`` (53 tiles,
  mosaicked with 2-px gaps) and ``perovskite_sem_grain_gt/ground_truth3.png``, grains and boundary
  networks; the NIST GSAT segmented images (steel grains and boundaries, Ti-6Al-4V skeleton and
  the regions between), also with their pixel sizes (0.2252 µm, 0.1116 µm); and Otsu-thresholded
  micrographs, both polarities (NIST steel and Ti-6Al-4V, the ceramic SEM tiles, the perovskite
  SEM images, the TBM micrographs).

The difference of a value is what is left beyond ImageJ's printing (6 decimals, or 4 significant
digits below 1e-6): ``max(0, |ours − ij| − h) / |ij|``, ``h`` half a unit of the last printed digit.
The script prints, per binary and per column, the particle counts, the maximum relative difference
and the number of particles above 1e-5.

Usage::

    .venv/bin/python benchmarks/imagej_parity.py [--generated N] [--no-real]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MMDL_SHARED_DATA", ROOT.parent / "shared" / "data"))


def _golden():
    spec = importlib.util.spec_from_file_location("make_imagej_golden", ROOT / "scripts" / "make_imagej_golden.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _gray(path):
    from skimage.io import imread

    a = imread(path)
    if a.ndim == 3:
        a = a[..., :3] @ np.array([0.299, 0.587, 0.114]) if a.shape[-1] >= 3 else a[..., 0]
    return np.asarray(a, dtype=float)


def mosaic(binaries, cols=8, gap=2):
    """Binaries side by side on a grid, ``gap`` background pixels apart (one ImageJ run for all)."""
    h = max(b.shape[0] for b in binaries) + gap
    w = max(b.shape[1] for b in binaries) + gap
    rows = -(-len(binaries) // cols)
    out = np.zeros((rows * h, min(cols, len(binaries)) * w), bool)
    for i, b in enumerate(binaries):
        r, c = divmod(i, cols)
        out[r * h + gap // 2:r * h + gap // 2 + b.shape[0], c * w + gap // 2:c * w + gap // 2 + b.shape[1]] = b
    return out


def otsu_both(paths):
    """Otsu threshold of each image, bright and dark phases, as two mosaics."""
    from skimage.filters import threshold_otsu

    grays = [_gray(p) for p in paths]
    bright = [g > threshold_otsu(g) for g in grays]
    return mosaic(bright), mosaic([~b for b in bright])


def real_binaries():
    """(name, binary, pixel size, unit) of the real binaries found in ../shared/data."""
    tbm = sorted((SHARED / "tbm_metallography_grains" / "masks").glob("*.png"))
    if tbm:
        boundaries = [_gray(p) >= 127 for p in tbm]
        yield f"TBM masks: grains ({len(tbm)} tiles)", mosaic([~b for b in boundaries]), 1.0, "pixel"
        yield f"TBM masks: boundaries ({len(tbm)} tiles)", mosaic(boundaries), 1.0, "pixel"
    gt = SHARED / "perovskite_sem_grain_gt" / "ground_truth3.png"
    if gt.exists():
        g = _gray(gt)
        yield "perovskite ground_truth3: grains", g < 127, 1.0, "pixel"
        yield "perovskite ground_truth3: boundaries", g >= 127, 1.0, "pixel"
    gsat = SHARED / "nist_gsat_grains"
    steel = gsat / "steel_optical" / "grains_steel_highlighted_segmented.tif"
    if steel.exists():
        s = _gray(steel) > 127
        yield "NIST steel segmented: grains", ~s, 1.0, "pixel"
        yield "NIST steel segmented: grains, 0.2252 um", ~s, 0.2252, "um"
        yield "NIST steel segmented: boundaries", s, 1.0, "pixel"
    ti = gsat / "ti64_sem" / "sem_alpha_beta_ti_6al_4v_segmented.tif"
    if ti.exists():
        s = _gray(ti) > 127
        yield "NIST Ti-6Al-4V segmented: skeleton", s, 1.0, "pixel"
        yield "NIST Ti-6Al-4V segmented: regions, 0.1116 um", ~s, 0.1116, "um"
    for name, paths in (
            ("NIST steel micrograph", [gsat / "steel_optical" / "grain_structures_steel.tif"]),
            ("NIST Ti-6Al-4V micrograph", [gsat / "ti64_sem" / "sem_alpha_beta_ti_6al_4v.tif"]),
            ("ceramic SEM tiles", sorted((SHARED / "ceramic_sem_phase_seg").glob("*/*_sem.bmp"))),
            ("ceramic thresholded tiles", sorted((SHARED / "ceramic_sem_phase_seg").glob("*/*_th.bmp"))),
            ("perovskite SEM example3", [SHARED / "perovskite_sem_grain_gt" / "example3.png"]),
            ("perovskite FAPbI3 SEM", sorted((SHARED / "perovskite_sem_fapbi3_databar").glob("*.jpg"))),
            ("TBM micrographs", sorted((SHARED / "tbm_metallography_grains" / "images").glob("*.png")))):
        paths = [p for p in paths if p.exists()]
        if paths:
            bright, dark = otsu_both(paths)
            yield f"{name}, Otsu bright ({len(paths)})", bright, 1.0, "pixel"
            yield f"{name}, Otsu dark ({len(paths)})", dark, 1.0, "pixel"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--generated", type=int, default=10000, help="random particles (plus a fifth as many "
                        "mirror-symmetric ones)")
    parser.add_argument("--no-real", action="store_true", help="generated particles only")
    args = parser.parse_args()
    golden = _golden()
    reason = golden.imagej_available()
    if reason:
        raise SystemExit(reason)
    rng = np.random.default_rng(2024)
    sources = []
    if args.generated:
        sources.append(("generated: random particles", golden.composite(
            golden.random_particles(rng, args.generated), rng), 1.0, "pixel"))
        sources.append(("generated: mirror-symmetric particles", golden.composite(
            golden.random_particles(rng, args.generated // 5, symmetric=True), rng), 1.0, "pixel"))
    sources = iter(sources) if args.no_real else _chain(sources, real_binaries())

    columns = list(golden.IJ.values())
    worst = dict.fromkeys(columns, 0.0)
    above = dict.fromkeys(columns, 0)
    total = bad_total = 0
    print(f"{'binary':<52} {'size':>11} {'particles':>9} {'>1e-5':>6}")
    with tempfile.TemporaryDirectory() as tmp:
        for name, binary, px, unit in sources:
            csv = Path(tmp) / "results.csv"
            golden.run_imagej(binary, csv, px, unit)
            df = golden.measure_binary(binary, px, "µm" if unit == "um" else "nm")
            diff = golden.differences(df, csv)
            flagged = diff > golden.RTOL
            bad = int(flagged.any(axis=1).sum())
            print(f"{name:<52} {binary.shape[1]:>5}x{binary.shape[0]:<5} {len(df):>9} {bad:>6}", flush=True)
            total += len(df)
            bad_total += bad
            for col in columns:
                worst[col] = max(worst[col], float(diff[col].to_numpy().max(initial=0.0)))
                above[col] += int(flagged[col].sum())
    print(f"\n{total} particles, {len(columns)} columns; {bad_total} particles above 1e-5 relative difference "
          f"in any column")
    print(f"{'column':<14} {'max rel. diff':>13} {'> 1e-5':>7}")
    for col in columns:
        print(f"{col:<14} {worst[col]:>13.2e} {above[col]:>7}")


def _chain(first, second):
    yield from first
    yield from second


if __name__ == "__main__":
    main()
