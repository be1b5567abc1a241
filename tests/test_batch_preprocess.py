"""mmdl batch preprocessing options: applied before segmentation, part of the resume identity."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hyperspy_mmdl.batch import (
    BatchParameters,
    process_frame,
    read_results,
    run_batch,
)
from hyperspy_mmdl.calibration import Calibration
from hyperspy_mmdl.cli import main as mmdl_main
from hyperspy_mmdl.grains.segment import segment
from hyperspy_mmdl.preprocess.denoise import gaussian
from hyperspy_mmdl.preprocess.normalize import normalize
from hyperspy_mmdl.synthetic import polycrystal

CAL = Calibration.from_pixel_size(10.0, "nm")


@pytest.fixture(scope="module")
def frames():
    return np.stack([polycrystal((160, 200), pixel_size=10.0, mean_ecd=150.0, data_bar=True, seed=s).image
                     for s in (1, 2, 3)]).astype(np.float32)


@pytest.fixture(scope="module")
def stack_file(frames, tmp_path_factory):
    import hyperspy.api as hs

    cal = CAL.with_frames()
    s = hs.signals.Signal2D(frames, axes=cal.to_axes(frames.shape))
    path = tmp_path_factory.mktemp("pre") / "bar.hspy"
    s.save(path, overwrite=True)
    return path


def test_process_frame_segments_the_preprocessed_analysed_rows(frames):
    """Data bar left out, then denoise, then normalise: the pipeline's order, on the rows above the bar."""
    img = frames[0]
    pre = {"remove_data_bar": True, "denoise": "gaussian", "denoise_params": {"sigma": 1.0}, "normalize": "minmax"}
    res = process_frame(img, CAL, BatchParameters(preprocess=pre))
    rows = res.analysed_rows
    top = 160 - round(0.075 * 160)
    assert abs(rows - top) <= 3
    seg_img = normalize(gaussian(img[:rows], 1.0), "minmax")
    want = np.asarray(segment(seg_img, CAL, method="auto", data_bar=False))
    assert res.labels.shape == img.shape
    np.testing.assert_array_equal(res.labels[:rows], want)
    assert (res.labels[rows:] == 0).all()
    # the analysed area is the rows above the bar
    assert res.analysed_area == pytest.approx(rows * 200 * 100.0)


def test_bad_preprocess_parameters():
    with pytest.raises(ValueError, match="normalize"):
        BatchParameters(preprocess={"normalize": "l2"})
    with pytest.raises(ValueError, match="denoise"):
        BatchParameters(preprocess={"denoise": "bm3d"})
    with pytest.raises(ValueError, match="unknown keys"):
        BatchParameters(preprocess={"crop": True})
    with pytest.raises(FileNotFoundError, match="checkpoint"):
        BatchParameters(preprocess={"denoise": "noise2void", "denoise_params": {"model": "nope.pt"}})
    # no preprocessing: the identity is the one of earlier versions (no "preprocess" key)
    assert "preprocess" not in BatchParameters().identity()
    assert BatchParameters(preprocess={"normalize": "minmax"}).hash() != BatchParameters().hash()


def test_cli_options_and_resume(stack_file, frames, tmp_path):
    out = tmp_path / "out"
    args = ["batch", str(stack_file), "--out", str(out), "--no-progress", "--remove-data-bar",
            "--denoise", "gaussian", "--denoise-param", "sigma=1.0", "--normalize", "minmax"]
    assert mmdl_main(args) == 0
    m = json.loads((out / "manifest.json").read_text())
    # --remove-data-bar is the default (data_bar=True), spelled as the pipeline spells it
    assert m["parameters"]["preprocess"] == {"denoise": "gaussian",
                                             "denoise_params": {"sigma": 1.0}, "normalize": "minmax"}
    _, table, _ = read_results(out)
    want = process_frame(frames[1], CAL, BatchParameters(preprocess=m["parameters"]["preprocess"]))
    assert int(table.set_index("frame").loc[1, "n_grains"]) == want.n_grains
    assert mmdl_main(args) == 0
    assert json.loads((out / "manifest.json").read_text())["counts"]["resumed"] == 3
    # other preprocessing, other results
    again = run_batch([stack_file], out, progress=False, preprocess={"normalize": "clahe"})
    assert again.counts["resumed"] == 0


def test_cli_denoise_param_needs_method(stack_file, tmp_path, capsys):
    rc = mmdl_main(["batch", str(stack_file), "--out", str(tmp_path / "o"), "--denoise-param", "sigma=1"])
    assert rc != 0 and "--denoise-param needs --denoise" in capsys.readouterr().err
