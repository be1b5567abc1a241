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
