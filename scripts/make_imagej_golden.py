"""Generate small binary test images and their ImageJ 1.53t Analyze Particles results.

Writes ``tests/data/imagej/<case>.npz`` (``binary`` uint8 image, ``pixel_size``) and
``<case>.csv`` (ImageJ's Results table) for :mod:`tests.test_measure`. Needs the Debian
``imagej`` package and ``xvfb-run``; run once and commit the outputs::

    .venv/bin/python tests/data/make_imagej_golden.py
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import tifffile
from scipy import ndimage
from skimage import draw

OUT = Path(__file__).parent / "imagej"
SCRIPT = Path(__file__).resolve().parents[3] / "shared" / "tools" / "imagej" / "run_imagej.sh"


def cases():
    rng = np.random.default_rng(0)
    yield "blobs", ndimage.gaussian_filter(rng.random((128, 128)), 2.5) > 0.51, 1.0
    yield "blobs_fine", ndimage.gaussian_filter(rng.random((96, 96)), 1.2) > 0.55, 0.25
    b = np.zeros((80, 80), bool)  # shapes, holes, single pixels, diagonals, touching the border
    b[draw.disk((20, 20), 12)] = True
    b[draw.disk((20, 20), 4)] = False
    b[18:22, 18:22] = True  # island inside the hole
    b[draw.ellipse(55, 50, 6, 18, rotation=np.deg2rad(-50), shape=b.shape)] = True
    b[np.arange(40, 60), np.arange(5, 25)] = True  # 8-connected diagonal line
    b[np.arange(60, 70), np.arange(30, 20, -1)] = True
    b[0:5, 60:80] = True
    b[[70, 72, 74], [70, 72, 74]] = True  # single pixels
    b[5:30, 45] = True  # 1-px wide line
    b[35, 40:60] = True
    b[30:40, 65:75] = True
    b[33:37, 68:72] = False  # square with hole
    yield "shapes", b, 1.0
    rng = np.random.default_rng(3)  # many small touching particles
    yield "speckle", rng.random((64, 64)) > 0.6, 1.0


def main():
    if not SCRIPT.exists():
        sys.exit(f"ImageJ runner not found: {SCRIPT}")
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        for name, binary, px in cases():
            binary = binary.astype(np.uint8)
            tif = Path(tmp) / f"{name}.tif"
            tifffile.imwrite(tif, binary * 255)
            csv = OUT / f"{name}.csv"
            subprocess.run(["bash", str(SCRIPT), str(tif), str(csv), str(px), "nm" if px != 1 else "pixel"],
                           check=True, timeout=300)
            np.savez_compressed(OUT / f"{name}.npz", binary=binary, pixel_size=px)
            print(name, binary.shape, sum(1 for _ in open(csv)) - 1, "particles")


if __name__ == "__main__":
    main()
