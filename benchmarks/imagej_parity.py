"""ImageJ 1.53t parity of ``grains.measure`` on real, human-annotated grain masks.

Grains are the regions between the boundary lines of the human masks in
``../shared/data/tbm_metallography_grains/masks`` (53 tiles, 256², mosaicked
with 2-px gaps into one binary so ImageJ starts once) and
``../shared/data/perovskite_sem_grain_gt/ground_truth3.png``. Both images are
measured by ImageJ's Analyze Particles (``/work/shared/tools/imagej/run_imagej.sh``,
under Xvfb) and by ``measure(label(binary, connectivity=2))``; the script prints
the particle counts and the maximum relative difference per column.

Usage::

    .venv/bin/python benchmarks/imagej_parity.py
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MMDL_SHARED_DATA", ROOT.parent / "shared" / "data"))
SCRIPT = ROOT.parent / "shared" / "tools" / "imagej" / "run_imagej.sh"
IJ = {"Area": "area", "X": "centroid_x", "Y": "centroid_y", "Perim.": "perimeter", "Major": "major_axis",
      "Minor": "minor_axis", "Angle": "angle", "Circ.": "circularity", "Feret": "feret",
      "FeretAngle": "feret_angle", "MinFeret": "min_feret", "AR": "aspect_ratio", "Round": "roundness",
      "Solidity": "solidity"}


def binaries():
    from skimage.io import imread

    tiles = sorted((SHARED / "tbm_metallography_grains" / "masks").glob("*.png"))
    if tiles:
        cols = 8
        rows = -(-len(tiles) // cols)
        mosaic = np.zeros((rows * 258, cols * 258), bool)
        for i, p in enumerate(tiles):
            m = imread(p)
            m = m[..., 0] if m.ndim == 3 else m
            r, c = divmod(i, cols)
            mosaic[r * 258 + 1:r * 258 + 257, c * 258 + 1:c * 258 + 257] = m < 127
        yield f"tbm masks ({len(tiles)} tiles)", mosaic
    gt = SHARED / "perovskite_sem_grain_gt" / "ground_truth3.png"
    if gt.exists():
        m = imread(gt)
        m = m[..., 0] if m.ndim == 3 else m
        yield "perovskite ground_truth3", m < 127


def main():
    import pandas as pd
    import tifffile
    from skimage.measure import label

    from hyperspy_mmdl.grains.measure import measure

    worst = {c: 0.0 for c in IJ.values()}
    total = 0
    ties = 0
    with tempfile.TemporaryDirectory() as tmp:
        for name, binary in binaries():
            tif, csv = Path(tmp) / "b.tif", Path(tmp) / "b.csv"
            tifffile.imwrite(tif, binary.astype(np.uint8) * 255)
            subprocess.run(["bash", str(SCRIPT), str(tif), str(csv)], check=True, timeout=600)
            ij = pd.read_csv(csv)
            df = measure(label(binary, connectivity=2))
            if len(df) != len(ij):
                raise SystemExit(f"{name}: {len(df)} particles here, {len(ij)} in ImageJ")
            print(f"{name}: {binary.shape[1]}x{binary.shape[0]}, {len(df)} particles")
            total += len(df)
            for k, col in IJ.items():
                a, b = df[col].to_numpy(float), ij[k].to_numpy(float)
                rel = np.abs(a - b) / np.maximum(np.abs(b), 1e-12)
                if col == "feret_angle":
                    ties += int((rel > 1e-5).sum())
                    rel = rel[rel <= 1e-5]
                worst[col] = max(worst[col], float(rel.max(initial=0.0)))
    print(f"\n{total} particles in all; FeretAngle differs on {ties} (equal-length diameters)")
    print(f"{'column':<14} max rel. diff")
    for col, v in worst.items():
        print(f"{col:<14} {v:.2e}")


if __name__ == "__main__":
    main()
