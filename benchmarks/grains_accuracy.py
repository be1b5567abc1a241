"""Accuracy of the classical grain segmenters: generator ground truth, human masks, NIST GSAT G.

Prints, per data set and method:

* synthetic default sample (512², 250 nm grains, both boundary polarities):
  relative error of mean ECD and grain count of ``segment`` + ``measure`` against
  the generator's labels (all grains, boundary pixels excluded), boundary F1;
* human masks (``perovskite_sem_grain_gt``, 1 image; ``tbm_metallography_grains``,
  53 crops): boundary F1 at 2 px tolerance (skeletons), relative error of grain
  count and mean ECD of the grains not touching the border, boundaries filled
  (:func:`hyperspy_mmdl.grains.evaluate.compare`); TBM pooled over crops;
* NIST GSAT steel and Ti-6Al-4V: ASTM E112 G by Heyn intercept (and Jeffries)
  of our segmentation, of GSAT's own boundary map measured by us, and of GSAT's
  intercept CSVs.

Usage::

    python benchmarks/grains_accuracy.py
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MMDL_SHARED_DATA", ROOT.parent / "shared" / "data"))


def _table(labels, cal):
    try:
        from hyperspy_mmdl.grains.measure import measure
    except ImportError:  # same columns from skimage until grains.measure is installed
        from skimage.measure import regionprops_table
        from skimage.segmentation import clear_border

        sy, sx = cal.pixel_size
        t = pd.DataFrame(regionprops_table(labels, properties=("label", "area", "perimeter",
                                                               "axis_major_length", "axis_minor_length")))
        t["area"] *= sy * sx
        t["perimeter"] *= sx
        t["major_axis"] = t.pop("axis_major_length") * sx
        t["aspect_ratio"] = t["major_axis"] / (t.pop("axis_minor_length") * sx).clip(lower=1e-12)
        t["ecd"] = np.sqrt(4 * t["area"] / np.pi)
        t["touches_border"] = ~t["label"].isin(set(np.unique(clear_border(labels))) - {0})
        t.attrs["image_area"] = labels.size * sy * sx
        return t
    return measure(labels, cal)


def _png(path, channel=None):
    from PIL import Image

    a = np.asarray(Image.open(path))
    return a if channel is None else a[..., channel]


def synthetic_rows():
    from hyperspy_mmdl.grains import segment
    from hyperspy_mmdl.grains.evaluate import boundary_f1
    from hyperspy_mmdl.synthetic import polycrystal

    for boundary in ("dark", "bright"):
        s = polycrystal(boundary=boundary)
        truth = _table(s.labels, s.calibration)
        for method in ("auto", "boundary"):
            labels, info = segment(s.image, s.calibration, method=method, return_info=True)
            found = _table(labels, s.calibration)
            yield dict(data=f"synthetic {boundary}", method=f"{method}->{info['method']}",
                       f1=boundary_f1(labels, s.labels)["f1"], count_error=len(found) / len(truth) - 1,
                       ecd_error=found["ecd"].mean() / truth["ecd"].mean() - 1, n=len(found), n_true=len(truth))


def human_rows():
    from hyperspy_mmdl.grains import segment
    from hyperspy_mmdl.grains.evaluate import compare, labels_from_boundary_mask

    folder = SHARED / "perovskite_sem_grain_gt"
    if folder.exists():
        image = _png(folder / "example3.png", 0)[:, :535]
        truth = labels_from_boundary_mask(_png(folder / "ground_truth3.png", 0) > 127)
        for name, params in [("auto", {}), ("boundary/edge", dict(method="boundary", lines="edge")),
                             ("threshold", dict(method="threshold"))]:
            c = compare(segment(image, **params), truth)
            yield dict(data="perovskite_sem_grain_gt", method=name, f1=c["f1"], count_error=c["count_error"],
                       ecd_error=c["ecd_error"], n=c["n_pred"], n_true=c["n_true"])
    folder = SHARED / "tbm_metallography_grains"
    if folder.exists():
        pairs = [(_png(p), labels_from_boundary_mask(_png(folder / "masks" / p.name) > 127))
                 for p in sorted((folder / "images").glob("*.png"))]
        for name, params in [("boundary/edge (tuned)", dict(method="boundary", lines="edge", smoothing=1.5,
                                                            min_diameter=6)),
                             ("boundary/edge", dict(method="boundary", lines="edge")),
                             ("auto", {}), ("threshold", dict(method="threshold"))]:
            cs = [compare(segment(img, **params), truth) for img, truth in pairs]
            n, nt = sum(c["n_pred"] for c in cs), sum(c["n_true"] for c in cs)
            ecd = np.mean([c["ecd_pred"] for c in cs]) / np.mean([c["ecd_true"] for c in cs]) - 1
            yield dict(data=f"tbm ({len(cs)} crops)", method=name, f1=float(np.mean([c["f1"] for c in cs])),
                       count_error=n / nt - 1, ecd_error=ecd, n=n, n_true=nt)


def nist_rows():
    import tifffile

    from hyperspy_mmdl.calibration import Calibration
    from hyperspy_mmdl.grains import segment, summarize
    from hyperspy_mmdl.grains.astm import g_intercept, heyn_intercept

    cases = [("steel_optical", "grain_structures_steel_highlighted.tif", "grains_steel_highlighted_segmented.tif",
              0.2252, dict(method="auto"), "grains_steel_highlighted_distances"),
             ("steel_optical", "grain_structures_steel.tif", "grains_steel_highlighted_segmented.tif",
              0.2252, dict(method="auto"), "grains_steel_highlighted_distances"),
             ("ti64_sem", "sem_alpha_beta_ti_6al_4v.tif", "sem_alpha_beta_ti_6al_4v_segmented.tif", 0.1116,
              dict(method="boundary", lines="edge", min_diameter="1.5 um"), "sem_alpha_beta_ti_6al_4v_distances")]
    for folder, raw, seg, px, params, csv in cases:
        root = SHARED / "nist_gsat_grains" / folder
        if not root.exists():
            continue
        cal = Calibration.from_pixel_size(px, "µm")
        nist = {kind: g_intercept(pd.read_csv(root / f"{csv}_{kind}.csv").iloc[:, 1].mean() * px / 1000)
                for kind in ("e112", "line_grid")}
        bmap = tifffile.imread(root / seg)
        bmap = (bmap[..., 0] if bmap.ndim == 3 else bmap) > 127
        labels = segment(tifffile.imread(root / raw), cal, **params)
        st = summarize(_table(labels, cal), cal, labels=labels)
        yield dict(image=raw, params=params, nist_e112=nist["e112"], nist_grid=nist["line_grid"],
                   ours_on_gsat_map=heyn_intercept(bmap, cal)["G"], ours_heyn=st["astm_g_intercept"],
                   ours_jeffries=st["astm_g_planimetric"], grains=st["n_grains"])


def main() -> int:
    pd.set_option("display.width", 200)
    pd.set_option("display.float_format", lambda v: f"{v:.3f}")
    try:
        import hyperspy_mmdl.grains.measure  # noqa: F401

        print("# tables from grains.measure (ImageJ convention)")
    except ImportError:
        print("# grains.measure not installed: tables from skimage (same columns)")
    print("\n## generator ground truth (default 512² sample)")
    print(pd.DataFrame(list(synthetic_rows())).to_string(index=False))
    print("\n## human masks (F1 at 2 px; count/ECD of inner grains, boundaries filled)")
    print(pd.DataFrame(list(human_rows())).to_string(index=False))
    print("\n## ASTM E112 G against NIST GSAT")
    print(pd.DataFrame(list(nist_rows())).to_string(index=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
