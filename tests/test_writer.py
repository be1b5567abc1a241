"""Writers: labels to calibrated .tif / .zspy (round trip through io.load and the reader), grain tables to CSV."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from hyperspy_mmdl import io
from napari_mmdl._writer import layer_meta_calibration, write_labels, write_table


def _labels():
    lab = np.zeros((40, 60), np.int32)
    lab[5:15, 5:20] = 1
    lab[20:35, 30:55] = 2
    return lab


META = {"name": "film grains", "scale": [12.5, 10.0], "translate": [100.0, -50.0], "units": ("nanometer",) * 2,
        "axis_labels": ("-2", "-1")}


@pytest.mark.parametrize("suffix", [".tif", ".zspy"])
def test_labels_round_trip_keeps_calibration(tmp_path, suffix):
    lab = _labels()
    [out] = write_labels(str(tmp_path / f"grains{suffix}"), lab, META)
    img = io.load(out)
    np.testing.assert_array_equal(np.asarray(img.data), lab)
    assert np.issubdtype(np.asarray(img.data).dtype, np.integer)
    cal = img.calibration
    assert cal.pixel_size == pytest.approx((12.5, 10.0))
    assert cal.units == ("nm", "nm")
    assert cal.offset == pytest.approx((100.0, -50.0))


def test_labels_stack_round_trip(tmp_path):
    stack = np.stack([_labels(), _labels() * 2])
    meta = {"scale": [1.0, 0.02, 0.02], "translate": [0, 0, 0], "units": ("pixel", "micrometer", "micrometer")}
    [out] = write_labels(str(tmp_path / "stack.zspy"), stack, meta)
    img = io.load(out)
    assert img.data.shape == stack.shape
    assert img.calibration.image.pixel_size_in("µm") == pytest.approx((0.02, 0.02))
    assert img.calibration.unit == "nm"  # 0.02 µm pixels read best as 20 nm


def test_reader_opens_written_labels(tmp_path):
    from napari_mmdl._reader import get_reader

    [out] = write_labels(str(tmp_path / "grains.tif"), _labels(), META)
    [(data, kwargs, kind)] = get_reader(out)(out)
    np.testing.assert_array_equal(np.asarray(data), _labels())
    assert tuple(kwargs["scale"]) == pytest.approx((12.5, 10.0))
    assert tuple(kwargs["units"]) == ("nm", "nm")


def test_meta_without_units_is_pixels():
    cal = layer_meta_calibration({"scale": [1, 1]}, 2)
    assert not cal.is_calibrated and cal.names == ("y", "x")


def test_table_to_csv(tmp_path):
    feats = pd.DataFrame({"index": [0, 1], "label": [1, 2], "area": [0.5, 1.25], "ecd": [0.8, 1.26]})
    [out] = write_table(str(tmp_path / "grains.csv"), _labels(), {"name": "g", "features": feats})
    back = pd.read_csv(out)
    assert list(back.columns) == ["label", "area", "ecd"]
    np.testing.assert_allclose(back["area"], [0.5, 1.25])


def test_table_without_features_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="no features table"):
        write_table(str(tmp_path / "g.csv"), _labels(), {"name": "g", "features": pd.DataFrame()})
    with pytest.raises(ValueError, match=r"\.csv"):
        write_table(str(tmp_path / "g.txt"), _labels(), {"features": pd.DataFrame({"a": [1]})})


@pytest.mark.gui
def test_napari_saves_labels_through_the_plugin(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    layer = viewer.add_labels(_labels(), name="film grains", scale=(12.5, 10.0), translate=(100.0, -50.0),
                              units=("nm", "nm"))
    layer.features = pd.DataFrame({"index": [0, 1], "label": [1, 2], "ecd": [1.0, 2.0]})
    written = layer.save(str(tmp_path / "g.tif"), plugin="napari-mmdl")
    assert io.load(written[0]).calibration.pixel_size == pytest.approx((12.5, 10.0))
    written = layer.save(str(tmp_path / "g.csv"), plugin="napari-mmdl")
    assert pd.read_csv(written[0])["ecd"].tolist() == [1.0, 2.0]


# ----------------------------------------------------------------------------- ImageJ-ready TIFFs
def _touching_grains():
    """Synthetic grains grown until they touch (no boundary lines): one particle as a plain mask."""
    from skimage.segmentation import expand_labels

    from hyperspy_mmdl.synthetic import polycrystal

    s = polycrystal((160, 200), pixel_size=10.0, unit="nm", seed=6)
    return expand_labels(s.labels, 4).astype(np.int32)


def _contacts(mask, lab):
    """Pairs of 8-adjacent foreground pixels of ``mask`` that belong to different labels."""
    m = np.where(mask, lab, 0)
    n = 0
    h, w = m.shape
    for dy, dx in ((0, 1), (1, 0), (1, 1), (1, -1)):
        a = m[: h - dy, max(0, -dx): w - max(0, dx)]
        b = m[dy:, max(0, dx): w - max(0, -dx) if dx < 0 else w]
        b = b[:, : a.shape[1]]
        n += int(((a > 0) & (b > 0) & (a != b)).sum())
    return n


def test_separated_mask_keeps_every_grain_one_particle():
    from skimage.measure import label

    from hyperspy_mmdl.grains.export import count_particles, separated_mask

    lab = _touching_grains()
    n = len(np.unique(lab[lab > 0]))
    assert n > 40 and (lab == 0).mean() < 0.01
    assert count_particles(lab > 0) < n / 10  # a plain mask: the grains merge
    mask = separated_mask(lab)
    assert _contacts(mask, lab) == 0 and _contacts(lab > 0, lab) > 0
    assert count_particles(mask) == n
    pieces = label(np.where(mask, lab, 0), connectivity=2)
    assert len(np.unique(pieces)) - 1 == n  # each grain one 8-connected piece, none gone
    # only contact pixels are given up, and only a thin line of them
    removed = (lab > 0) & ~mask
    from scipy import ndimage as ndi

    other = ndi.maximum_filter(lab, 3) != ndi.minimum_filter(np.where(lab > 0, lab, lab.max() + 1), 3)
    assert not (removed & ~other).any()
    assert removed.sum() < 0.12 * (lab > 0).sum()


def test_separated_mask_protects_a_thin_grain():
    """A one-pixel-wide grain between two others survives: its neighbours give way."""
    from hyperspy_mmdl.grains.export import count_particles, separated_mask

    lab = np.zeros((12, 12), np.int32)
    lab[1:11, 1:5] = 2
    lab[1:11, 5] = 1  # lowest label, one pixel wide: eroding it would delete it
    lab[1:11, 6:11] = 3
    mask = separated_mask(lab)
    assert mask[1:11, 5].all()
    assert count_particles(mask) == 3 and _contacts(mask, lab) == 0


def test_label_tiff_is_16_bit_with_imagej_calibration(tmp_path):
    import tifffile

    lab = _touching_grains()
    meta = dict(META, scale=[12.5, 12.5])
    [out] = write_labels(str(tmp_path / "grains.tif"), lab, meta)
    with tifffile.TiffFile(out) as tif:
        page = tif.pages[0]
        assert page.dtype == np.uint16
        np.testing.assert_array_equal(page.asarray(), lab)
        assert tif.imagej_metadata["unit"] == "nm"
        num, den = page.tags["XResolution"].value
        assert den / num == pytest.approx(12.5)  # pixels per unit, as ImageJ reads it
    assert io.load(out).calibration.pixel_size == pytest.approx((12.5, 12.5))


def test_label_tiff_above_65535_labels_is_32_bit(tmp_path):
    import tifffile

    from hyperspy_mmdl.grains.export import write_label_tiff

    lab = np.arange(70_000, dtype=np.int64).reshape(350, 200)
    out = write_label_tiff(tmp_path / "many.tif", lab)
    back = tifffile.imread(out)
    assert back.dtype == np.uint32 and back.max() == 69_999


def test_binary_writer_keeps_grains_apart(tmp_path):
    import tifffile

    from hyperspy_mmdl.grains.export import count_particles
    from napari_mmdl._writer import write_binary

    lab = _touching_grains()
    stack = np.stack([lab, np.where(lab > 0, lab + 1000, 0)])
    meta = {"name": "g", "scale": [1.0, 20.0, 20.0], "translate": [0, 0, 0], "units": ("pixel", "nm", "nm")}
    [out] = write_binary(str(tmp_path / "mask.tif"), stack, meta)
    back = tifffile.imread(out)
    assert back.shape == stack.shape and back.dtype == np.uint8 and set(np.unique(back)) == {0, 255}
    assert count_particles(back) == 2 * len(np.unique(lab[lab > 0]))
    assert io.load(out).calibration.image.pixel_size == pytest.approx((20.0, 20.0))
    with pytest.raises(ValueError, match=r"\.tif"):
        write_binary(str(tmp_path / "mask.zspy"), lab, meta)


def _imagej():
    import shutil
    from pathlib import Path

    script = Path(__file__).resolve().parents[2] / "shared" / "tools" / "imagej" / "run_imagej.sh"
    if shutil.which("xvfb-run") is None or not Path("/usr/share/java/ij.jar").exists() or not script.exists():
        pytest.skip("ImageJ 1.53t (Debian imagej), xvfb-run and ../shared/tools/imagej are needed")
    return script


def _imagej_count(script, path):
    import subprocess

    out = path.with_suffix(".csv")
    subprocess.run(["bash", str(script), str(path), str(out)], check=True, timeout=300)
    return len(pd.read_csv(out))


@pytest.mark.imagej
def test_imagej_counts_the_grains_of_the_binary_export(tmp_path, shared):
    """A real SEM image segmented by the pipeline; ImageJ 1.53t's Analyze Particles on the binary
    export finds our grains, where the plain mask merges neighbours."""
    import tifffile
    from skimage.measure import label

    from hyperspy_mmdl.grains.export import write_binary_tiff
    from hyperspy_mmdl.pipeline import analyze_frame

    script = _imagej()
    img = io.load(shared("perovskite_sem_fapbi3_databar", "198.jpg"))
    lab = analyze_frame(img.data, img.calibration).labels
    n = len(np.unique(lab)) - 1
    pieces = label(lab, connectivity=2).max()  # ImageJ's particles of a perfect export
    assert n > 500
    tifffile.imwrite(tmp_path / "plain.tif", ((lab > 0) * 255).astype(np.uint8))
    plain = _imagej_count(script, tmp_path / "plain.tif")
    with pytest.warns(UserWarning, match=f"{n} grains give {pieces} particles") if pieces != n else \
            _no_warning():
        ours = _imagej_count(script, write_binary_tiff(tmp_path / "mask.tif", lab, img.calibration))
    assert plain < n and ours == pieces
    # every label one 8-connected piece (a label in several pieces would be several particles)
    single = label(lab, connectivity=2).astype(np.int32)
    assert _imagej_count(script, write_binary_tiff(tmp_path / "single.tif", single)) == single.max()


def _no_warning():
    import contextlib
    import warnings

    @contextlib.contextmanager
    def cm():
        with warnings.catch_warnings():
            warnings.simplefilter("error", UserWarning)
            yield
    return cm()


@pytest.mark.imagej
def test_imagej_reads_the_label_tiff_calibration(tmp_path):
    import subprocess

    script = _imagej()
    lab = _touching_grains()
    macro = tmp_path / "cal.ijm"
    macro.write_text('args = split(getArgument(), ","); setBatchMode(true); open(args[0]);\n'
                     'getPixelSize(unit, pw, ph); getMinAndMax(mn, mx);\n'
                     'File.saveString("" + bitDepth() + "," + nSlices + "," + unit + "," + d2s(pw, 9) + ","'
                     ' + d2s(ph, 9) + "," + mx, args[1]); close("*");\n')
    for name, scale, unit, expect in (("nm.tif", 33.36, "nanometer", "nm"), ("um.tif", 0.2, "micrometer", "micron")):
        meta = {"name": "g", "scale": [scale, scale], "translate": [0, 0], "units": (unit, unit)}
        [out] = write_labels(str(tmp_path / name), lab, meta)
        txt = tmp_path / (name + ".txt")
        subprocess.run(["xvfb-run", "-a", "timeout", "120", "java", "-Xmx1g", "-jar", "/usr/share/java/ij.jar",
                        "-batch", str(macro), f"{out},{txt}"], check=True, capture_output=True, timeout=180)
        bits, slices, ij_unit, pw, ph, mx = txt.read_text().split(",")
        assert (bits, slices) == ("16", "1") and float(mx) == lab.max()
        assert ij_unit in ({"nm"} if expect == "nm" else {"micron", "microns", "µm"})
        assert float(pw) == pytest.approx(scale, rel=1e-6) and float(ph) == pytest.approx(scale, rel=1e-6)
    assert script.exists()
