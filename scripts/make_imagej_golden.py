"""Binary particles and their ImageJ 1.53t Analyze Particles rows.

Run once and commit the outputs (needs the Debian ``imagej`` package and ``xvfb-run``, used through
``../shared/tools/imagej/run_imagej.sh``)::

    .venv/bin/python scripts/make_imagej_golden.py            # every case
    .venv/bin/python scripts/make_imagej_golden.py symmetric  # only the named cases

Each case is one binary image, measured by one ImageJ run: ``tests/data/imagej/<case>.npz``
(``binary`` uint8, ``pixel_size``) and ``<case>.csv`` (ImageJ's Results table, 6 decimals) for
``tests/test_measure.py`` and ``tests/test_imagej_parity.py``. The cases:

* ``blobs``, ``blobs_fine``, ``speckle``: thresholded noise; ``shapes``: drawn shapes, holes,
  single pixels, lines, particles touching the border.
* ``symmetric``: mirror-symmetric particles (second central cross moment exactly zero), where
  ImageJ's EllipseFitter takes its ``xy == 0`` branch or, when ``xy − x1·y1`` leaves one ulp,
  its ``HALFPI`` quirks: centred rows (the issue's 4-4-2 particle), mirrored random halves about
  the vertical, the horizontal or both axes, shapes symmetric about a diagonal (``u20 == u02``),
  rectangles and squares, symmetric rings.

The module is also the particle generator and the ImageJ comparison of
``tests/test_imagej_parity.py`` (live property test) and ``benchmarks/imagej_parity.py``:
:func:`random_particles`, :func:`composite`, :func:`run_imagej`, :func:`differences`.
"""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "tests" / "data" / "imagej"
SCRIPT = ROOT.parent / "shared" / "tools" / "imagej" / "run_imagej.sh"
IJ_JAR = Path("/usr/share/java/ij.jar")

# ImageJ column -> grains.measure column
IJ = {"Area": "area", "X": "centroid_x", "Y": "centroid_y", "Perim.": "perimeter", "Major": "major_axis",
      "Minor": "minor_axis", "Angle": "angle", "Circ.": "circularity", "Feret": "feret",
      "FeretAngle": "feret_angle", "MinFeret": "min_feret", "AR": "aspect_ratio", "Round": "roundness",
      "Solidity": "solidity"}
RTOL = 1e-5


# ---------------------------------------------------------------------------------------------- ImageJ


def imagej_available() -> str | None:
    """None when ImageJ can run here, else the reason it cannot."""
    if shutil.which("xvfb-run") is None or shutil.which("java") is None:
        return "xvfb-run and java are not installed"
    if not IJ_JAR.exists():
        return f"ImageJ 1.53t (Debian package imagej) is not installed ({IJ_JAR} missing)"
    if not SCRIPT.exists():
        return f"the ImageJ runner {SCRIPT} is not there (clone ../shared beside the project)"
    return None


def run_imagej(binary, csv, pixel_size=1.0, unit="pixel", timeout=600):
    """Analyze Particles (8-connected, no size limit, holes excluded) of a binary image into ``csv``."""
    import tifffile

    csv = Path(csv)
    with tempfile.TemporaryDirectory() as tmp:
        tif = Path(tmp) / "binary.tif"
        tifffile.imwrite(tif, (np.asarray(binary) > 0).astype(np.uint8) * 255)
        subprocess.run(["bash", str(SCRIPT), str(tif), str(csv), repr(float(pixel_size)) if pixel_size != 1 else "1",
                        unit], check=True, timeout=timeout, env={**os.environ, "IJ_TIMEOUT": str(timeout)})
    return csv


def read_imagej(csv):
    """ImageJ's Results CSV: (values, half_units), both DataFrames of the columns of :data:`IJ`.

    ``half_units`` is half a unit of the last digit ImageJ printed (``ResultsTable.d2s``): 0 for
    values printed as integers (ImageJ prints a value without decimals only when it is one),
    ``5e-7`` for 6 decimals, ``0.5e-3·10^e`` for the 4 significant digits of ``1.234E-e``.
    """
    import pandas as pd

    raw = pd.read_csv(csv, dtype=str)
    values = raw[list(IJ)].astype(float)
    half = raw[list(IJ)].apply(lambda col: col.map(_half_unit))
    return values, half


def _half_unit(text: str) -> float:
    text = text.strip()
    if text in ("NaN", "Infinity", "-Infinity"):
        return 0.0
    if "E" in text:
        mantissa, exponent = text.split("E")
        digits = len(mantissa.split(".")[1]) if "." in mantissa else 0
        return 0.5 * 10.0 ** (int(exponent) - digits)
    if "." in text:
        return 0.5 * 10.0 ** -len(text.split(".")[1])
    return 0.0


def differences(ours, csv):
    """Relative difference of every value of ``ours`` (``grains.measure`` rows) from ImageJ's ``csv``.

    The difference counted is the part beyond ImageJ's printing: ``max(0, |ours − ij| − h) / |ij|``
    with ``h`` half a unit of the last printed digit (:func:`read_imagej`), ``inf`` where ImageJ
    printed 0 and ours differs by more than ``h``. Returns a DataFrame with the columns of
    ``grains.measure`` (one row per particle); raises ``ValueError`` when the particle counts differ.
    """
    import pandas as pd

    values, half = read_imagej(csv)
    if len(values) != len(ours):
        raise ValueError(f"{csv}: {len(ours)} particles here, {len(values)} in ImageJ")
    out = {}
    for k, col in IJ.items():
        a = np.asarray(ours[col], dtype=float)
        b = values[k].to_numpy()
        excess = np.maximum(np.abs(a - b) - half[k].to_numpy(), 0.0)
        excess = np.where(np.isnan(a) & np.isnan(b), 0.0, excess)
        with np.errstate(divide="ignore", invalid="ignore"):
            rel = np.where(excess == 0, 0.0, excess / np.abs(b))
        out[col] = np.where(np.isnan(rel), np.inf, rel)
    return pd.DataFrame(out)


def measure_binary(binary, pixel_size=1.0, unit="nm"):
    """``grains.measure`` of the 8-connected particles of a binary image (ImageJ's particles, same order)."""
    from skimage.measure import label

    from hyperspy_mmdl.calibration import Calibration
    from hyperspy_mmdl.grains.measure import measure

    cal = Calibration.from_pixel_size(float(pixel_size), unit) if pixel_size != 1 else None
    return measure(label(np.asarray(binary) > 0, connectivity=2), cal)


# ------------------------------------------------------------------------------------------- particles


def _connected(b) -> bool:
    from skimage.measure import label

    return b.any() and label(b, connectivity=2).max() == 1


def _crop(b):
    rows, cols = np.flatnonzero(b.any(1)), np.flatnonzero(b.any(0))
    return b[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]


def _mirror(half, axis, shared):
    """``half`` and its mirror image side by side (axis 1) or stacked (axis 0), sharing the seam or not."""
    flipped = np.flip(half, axis)
    if shared:
        flipped = flipped[:, 1:] if axis == 1 else flipped[1:]
    return np.concatenate([half, flipped], axis=axis)


def _random_half(rng, h, w):
    from scipy import ndimage

    noise = ndimage.gaussian_filter(rng.random((h + 4, w + 4)), rng.uniform(0.6, 1.5))[2:-2, 2:-2]
    return noise > np.quantile(noise, rng.uniform(0.15, 0.6))


def symmetric_particle(rng, size=14):
    """A random particle with a cross moment Σ(x−x̄)(y−ȳ) of exactly zero, or symmetric about a diagonal."""
    kind = rng.choice(["rows", "rows", "mirror", "mirror", "diagonal", "rect", "ring", "rows_holes"])
    for _ in range(100):
        if kind in ("rows", "rows_holes"):  # runs centred on one vertical line (the issue's 4-4-2 particle)
            width = int(rng.integers(2, size + 1))
            h = int(rng.integers(2, size + 1))
            widths = width - 2 * rng.integers(0, (width + 1) // 2, h)
            widths[rng.integers(h)] = width
            b = np.zeros((h, width), bool)
            for r, wr in enumerate(widths):
                b[r, (width - wr) // 2:(width - wr) // 2 + wr] = True
            if kind == "rows_holes":  # a centred hole (or notch) of 1 or 2 pixels in a row of width >= 3
                r = int(rng.integers(0, h))
                if widths[r] >= 3:
                    b[r, (width - 1) // 2:width // 2 + 1] = False
            if rng.random() < 0.5:
                b = b.T  # centred on a horizontal line
        elif kind == "mirror":
            axis = rng.choice(["v", "h", "both"])
            h = int(rng.integers(1, (size if axis == "v" else size // 2) + 1))
            w = int(rng.integers(1, (size if axis == "h" else size // 2) + 1))
            b = _random_half(rng, h, w)
            if axis in ("v", "both"):
                b = _mirror(b, 1, rng.random() < 0.5)
            if axis in ("h", "both"):
                b = _mirror(b, 0, rng.random() < 0.5)
        elif kind == "diagonal":  # symmetric about the main or the anti-diagonal: u20 == u02
            s = int(rng.integers(2, size + 1))
            a = _random_half(rng, s, s)
            b = a | a.T
            if rng.random() < 0.3:
                b = b | b[::-1, ::-1]  # also point-symmetric: both diagonals
            if rng.random() < 0.5:
                b = b[:, ::-1]
        elif kind == "rect":
            h, w = (int(v) for v in rng.integers(1, size + 1, 2))
            if rng.random() < 0.3:
                w = h
            b = np.ones((h, w), bool)
        else:  # ring: a rectangle with a centred rectangular hole, or a mirrored shape with a mirrored hole
            h, w = (int(v) for v in rng.integers(4, size + 1, 2))
            b = np.ones((h, w), bool)
            th, tw = (int(v) for v in rng.integers(1, 3, 2))
            b[th:h - th, tw:w - tw] = False
            if rng.random() < 0.5:  # an island in the hole, centred
                cy, cx = h // 2, w // 2
                if h - 2 * th >= 3 and w - 2 * tw >= 3:
                    b[cy - (1 - h % 2):cy + 1, cx - (1 - w % 2):cx + 1] = True
        if not b.any():
            continue
        b = _crop(b)
        if max(b.shape) <= size and _connected(b):
            return b
    return np.ones((2, 3), bool)


def random_particle(rng, size=14):
    """One random small particle: single pixel, line, symmetric, with holes, concave, blob or ellipse."""
    from skimage import draw

    kind = rng.choice(["pixel", "line", "line", "symmetric", "symmetric", "symmetric", "holes", "concave", "blob",
                       "blob", "ellipse"])
    if kind == "symmetric":
        return symmetric_particle(rng, size)
    for _ in range(100):
        if kind == "pixel":
            b = np.ones((1, 1), bool)
        elif kind == "line":
            style = rng.choice(["h", "v", "diag", "thick", "any"])
            n = int(rng.integers(1, size + 1))
            if style == "h":
                b = np.ones((1, n), bool)
            elif style == "v":
                b = np.ones((n, 1), bool)
            elif style == "diag":
                b = np.eye(n, dtype=bool)[:, ::rng.choice([1, -1])]
            elif style == "thick":
                b = np.ones((int(rng.integers(2, 4)), n), bool)
                b = b if rng.random() < 0.5 else b.T
            else:
                b = np.zeros((size, size), bool)
                r0, c0, r1, c1 = (int(v) for v in rng.integers(0, size, 4))
                b[draw.line(r0, c0, r1, c1)] = True
        elif kind == "holes":
            h, w = (int(v) for v in rng.integers(4, size + 1, 2))
            if rng.random() < 0.5:
                b = np.ones((h, w), bool)
            else:
                b = np.zeros((h, w), bool)
                b[draw.ellipse((h - 1) / 2, (w - 1) / 2, h / 2, w / 2, shape=b.shape)] = True
            for _hole in range(int(rng.integers(1, 4))):
                r, c = int(rng.integers(1, h - 1)), int(rng.integers(1, w - 1))
                b[r:r + int(rng.integers(1, 3)), c:c + int(rng.integers(1, 3))] = False
        elif kind == "concave":
            style = rng.choice(["L", "U", "T", "cross", "stairs", "walk"])
            h, w = (int(v) for v in rng.integers(3, size + 1, 2))
            b = np.zeros((h, w), bool)
            t = int(rng.integers(1, 3))
            if style == "L":
                b[:, :t] = True
                b[-t:, :] = True
            elif style == "U":
                b[:, :t] = True
                b[:, -t:] = True
                b[-t:, :] = True
            elif style == "T":
                b[:t, :] = True
                b[:, w // 2:w // 2 + t] = True
            elif style == "cross":
                b[h // 2:h // 2 + t, :] = True
                b[:, w // 2:w // 2 + t] = True
            elif style == "stairs":
                for i in range(min(h, w)):
                    b[i, :i + 1] = True
                b = b[:, ::rng.choice([1, -1])]
            else:  # a random walk, 4-connected steps
                y, x = h // 2, w // 2
                for _step in range(int(rng.integers(5, 4 * size))):
                    b[y, x] = True
                    dy, dx = [(0, 1), (0, -1), (1, 0), (-1, 0)][int(rng.integers(4))]
                    y, x = min(max(y + dy, 0), h - 1), min(max(x + dx, 0), w - 1)
        elif kind == "blob":
            h, w = (int(v) for v in rng.integers(2, size + 1, 2))
            b = _random_half(rng, h, w)
            from skimage.measure import label

            lab = label(b, connectivity=2)
            if lab.max() > 1:
                b = lab == 1 + np.argmax(np.bincount(lab.ravel())[1:])
        else:  # ellipse at a sub-pixel centre and any angle
            ry, rx = rng.uniform(0.5, size / 2 - 0.5, 2)
            b = np.zeros((size, size), bool)
            b[draw.ellipse(size / 2 - 0.5 + rng.uniform(-0.5, 0.5), size / 2 - 0.5 + rng.uniform(-0.5, 0.5), ry, rx,
                           shape=b.shape, rotation=rng.uniform(0, math.pi))] = True
        if not b.any():
            continue
        b = _crop(b)
        if max(b.shape) <= size and _connected(b):
            return b
    return np.ones((1, 1), bool)


def random_particles(rng, n, size=14, symmetric=False):
    """``n`` random particles (bool arrays cropped to their bounding box, one 8-connected piece each)."""
    make = symmetric_particle if symmetric else random_particle
    return [make(rng, size) for _ in range(n)]


def composite(particles, rng, border=0.5):
    """Pack particles into one binary image, one per cell of a grid, at least one pixel apart.

    Cells are the largest particle plus one pixel; each particle sits at a random place of its cell
    with the cell's last row and column left empty, so no two particles touch, not even diagonally.
    Particles of the outer cells touch the image border with probability ``border`` (the grid is
    eight times wider than high, so that many do).
    """
    cell = max(max(p.shape) for p in particles) + 1
    k = len(particles)
    rows = max(1, int(round(math.sqrt(k / 8))))
    cols = -(-k // rows)
    image = np.zeros((rows * cell, cols * cell), bool)
    for i, p in enumerate(particles):
        r, c = divmod(i, cols)
        h, w = p.shape
        oy = int(rng.integers(0, cell - h))
        ox = int(rng.integers(0, cell - w))
        if rng.random() < border:
            oy = 0 if r == 0 else (cell - h if r == rows - 1 else oy)
        if rng.random() < border:
            ox = 0 if c == 0 else (cell - w if c == cols - 1 else ox)
        image[r * cell + oy:r * cell + oy + h, c * cell + ox:c * cell + ox + w] |= p
    return image


# ------------------------------------------------------------------------------------------- the cases


def issue_particle():
    """The issue's particle: rows of 4, 4 and 2 pixels, the short row centred (ImageJ Major 4.110886)."""
    b = np.zeros((3, 4), bool)
    b[0:2] = True
    b[2, 1:3] = True
    return b


def cases():
    from scipy import ndimage
    from skimage import draw

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
    rng = np.random.default_rng(14)  # mirror-symmetric particles (issue 14)
    particles = [issue_particle(), issue_particle().T, issue_particle()[::-1]] + random_particles(
        rng, 237, size=12, symmetric=True)
    yield "symmetric", composite(particles, rng, border=0.3), 1.0


def main(names):
    reason = imagej_available()
    if reason:
        sys.exit(reason)
    OUT.mkdir(parents=True, exist_ok=True)
    for name, binary, px in cases():
        if names and name not in names:
            continue
        binary = binary.astype(np.uint8)
        csv = run_imagej(binary, OUT / f"{name}.csv", px, "nm" if px != 1 else "pixel")
        np.savez_compressed(OUT / f"{name}.npz", binary=binary, pixel_size=px)
        print(name, binary.shape, sum(1 for _ in open(csv)) - 1, "particles")


if __name__ == "__main__":
    main(sys.argv[1:])
