"""``mmdl analyze FILE... [--model CKPT] --out DIR``: grains of the user's files, a model's classes and maps."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

import torch

from hyperspy_mmdl import io  # noqa: E402
from hyperspy_mmdl.calibration import Calibration  # noqa: E402
from hyperspy_mmdl.cli import main  # noqa: E402
from hyperspy_mmdl.synthetic import polycrystal  # noqa: E402
from hyperspy_mmdl.tables import read_table


@pytest.fixture
def files(tmp_path):
    a = polycrystal((256, 256), pixel_size=10.0, unit="nm", mean_ecd=250.0, seed=3)
    b = polycrystal((192, 192), pixel_size=10.0, unit="nm", mean_ecd=250.0, n_frames=2, seed=4)
    fa = io.save(tmp_path / "in" / "film.tif", a.image, a.calibration)
    fb = io.save(tmp_path / "in" / "stack.hspy", b.image, b.calibration)
    return (fa, a), (fb, b)


def _untrained_classifier(path):
    from hyperspy_mmdl import models
    from hyperspy_mmdl.checkpoint import save_checkpoint

    torch.manual_seed(0)
    net = models.create("psc_encoder", num_classes=3, in_chans=1, head=True)
    card = dict(architecture="psc_encoder", config={"num_classes": 3, "in_chans": 1, "head": True},
                task="classify", input_size=[1, 64, 64], normalization="minmax", pixel_size=20.0,
                pixel_unit="nm", class_names=["small", "medium", "large"])
    return save_checkpoint(path, net, card)


def test_analyze_grains_only(files, tmp_path, capsys):
    (fa, a), (fb, b) = files
    out = tmp_path / "report"
    assert main(["analyze", str(fa), str(fb), "--lines", "dark", "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert "wrote" in captured.out
    summary = read_table(out / "summary.csv")
    assert summary["source"].tolist() == ["film.tif", "stack.hspy", "stack.hspy"]
    # progress: one line per frame on stderr, [file/files] name: grains (seconds)
    progress = [line for line in captured.err.splitlines() if line.startswith("[")]
    assert [line.split(" grains")[0] for line in progress] == [
        f"[1/2] film.tif: {summary['n_grains'][0]}", f"[2/2] stack.hspy frame 0: {summary['n_grains'][1]}",
        f"[2/2] stack.hspy frame 1: {summary['n_grains'][2]}"]
    assert all(line.endswith(" s)") for line in progress)
    assert summary["frame"].tolist() == [-1, 0, 1]
    assert summary.attrs["units"]["mean_ecd"] == "nm" and summary.attrs["units"]["gbld"] == "nm⁻¹"
    truth = [a.n_grains, *b.n_grains]
    np.testing.assert_allclose(summary["n_grains"], truth, rtol=0.2)
    assert "predicted_class" not in summary.columns
    grains = read_table(out / "grains.csv")
    assert grains.attrs["units"]["area"] == "nm²"
    assert len(grains) == summary["n_grains"].sum()
    assert grains["ecd"].between(20, 1500).all()
    assert sorted(p.name for p in out.glob("grains_*.png")) == ["grains_film.png", "grains_stack_f0.png",
                                                               "grains_stack_f1.png"]
    page = (out / "index.html").read_text(encoding="utf-8")
    assert "grains_film.png" in page and "ecd_histogram.png" in page


def test_analyze_with_a_model(files, tmp_path):
    (fa, _), _ = files
    ckpt = _untrained_classifier(tmp_path / "tiny.pt")
    out = tmp_path / "report"
    assert main(["analyze", str(fa), "--model", str(ckpt), "--device", "cpu", "--out", str(out)]) == 0
    doc = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    row = doc["frames"][0]
    assert row["predicted_class"] in ("small", "medium", "large")
    assert sum(row[f"p_{c}"] for c in ("small", "medium", "large")) == pytest.approx(1, abs=1e-5)
    assert (out / "attention_film.png").is_file()


def test_analyze_missing_file_is_an_error(files, tmp_path, capsys):
    (fa, _), _ = files
    out = tmp_path / "r"
    # the bad file is recorded, the good one analysed, the exit code says something failed
    assert main(["analyze", str(tmp_path / "nope.dm4"), str(fa), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "nope.dm4: no such file" in err and "1 of 2 file(s) failed" in err
    assert read_table(out / "summary.csv")["source"].tolist() == ["film.tif"]


def test_analyze_uncalibrated_file_reports_pixels(tmp_path, capsys):
    s = polycrystal((160, 160), seed=1)
    f = io.save(tmp_path / "plain.hspy", s.image, Calibration.uncalibrated(2))
    out = tmp_path / "r"
    assert main(["analyze", str(f), "--out", str(out)]) == 0
    summary = read_table(out / "summary.csv")
    assert summary.attrs["units"]["mean_ecd"] == "px"
    assert "no calibration: lengths in pixels" in (out / "index.html").read_text(encoding="utf-8")
    cap = capsys.readouterr()
    said = [line for line in (cap.out + cap.err).splitlines() if "calibration" in line]
    assert said == ["note: plain.hspy: no calibration: lengths in pixels"]     # once (the reader said it too)


def test_analyze_with_the_learned_model(files, tmp_path, capsys):
    (fa, a), _ = files
    out = tmp_path / "r"
    assert main(["analyze", str(fa), "--method", "learned", "--out", str(out)]) == 0
    assert "mean ECD" in capsys.readouterr().out
    import html

    page = html.unescape((out / "index.html").read_text(encoding="utf-8"))
    assert "segmentation: method learned, exclude border no." in page
    summary = read_table(out / "summary.csv")
    assert summary["n_grains"][0] == pytest.approx(a.n_grains, rel=0.35)
    assert summary.attrs["units"]["mean_ecd"] == "nm"


def test_non_square_pixels_get_a_note():
    from hyperspy_mmdl.pipeline import measure_frame

    lab = np.zeros((20, 20), np.int32)
    lab[2:8, 2:8] = 1
    fa = measure_frame(lab, Calibration(scale=(3.0, 0.002), units=("nm", "nm")))
    assert fa.notes == ["pixels are 1500× taller than wide (3 × 0.002 nm, y × x): shapes and sizes follow them; "
                        "check the file's calibration"]
    assert fa.table["aspect_ratio"][0] > 1000
    assert measure_frame(lab, Calibration(scale=(1.0, 1.2), units=("nm", "nm"))).notes == []


def test_a_note_when_the_two_astm_procedures_disagree():
    """Particles on a cracked substrate (a real Zeiss SEM TIFF) are not grains filling the image:
    planimetric and intercept G differ by ~1.8 and the analysis says so; grains that fill the
    image get no such note."""
    from tests.conftest import shared_data

    from hyperspy_mmdl.pipeline import MAX_G_DISAGREEMENT, analyze_frame

    img = io.load(shared_data("rosettasciio_dm_tiff", "tiff", "sem_Zeiss", "test_tiff_Zeiss_SEM_512pix.tif"))
    fa = analyze_frame(img.data, img.calibration)
    s = fa.summary
    assert abs(s["astm_g_planimetric"] - s["astm_g_intercept"]) > MAX_G_DISAGREEMENT
    assert any(n.startswith("ASTM G by the planimetric") for n in fa.notes)
    grains = polycrystal((400, 400), seed=5)
    fa = analyze_frame(grains.image, grains.calibration)
    assert abs(fa.summary["astm_g_planimetric"] - fa.summary["astm_g_intercept"]) < MAX_G_DISAGREEMENT
    assert not any(n.startswith("ASTM G") for n in fa.notes)
