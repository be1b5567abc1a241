"""``mmdl demo``: the main job in-process at a reduced size; files exist and the numbers are sane."""

from __future__ import annotations

import json
import re

import pandas as pd
import pytest

from hyperspy_mmdl.tables import read_table


pytestmark = pytest.mark.slow


def test_demo_main_job(tmp_path):
    from hyperspy_mmdl.cli.demo import main_job

    out = tmp_path / "demo"
    lines = []
    fig = main_job(out, size=320, log=lines.append)  # the default training (40 per class, 30 epochs)

    for name in ("grains.csv", "summary.csv", "summary.json", "ecd_histogram.png", "loss_curve.png",
                 "index.html", "input/synthetic_stack.hspy", "model/grain_size_small.pt"):
        assert (out / name).is_file(), name
    overlays = sorted(p.name for p in out.glob("attention_*.png"))
    assert len(overlays) == 3
    assert not list(out.glob("model/*.state.pt"))

    # grains: counts and mean ECD near the generator's ground truth (measured the same way)
    assert fig["frames"] == 3
    for n, n_true, e, e_true in zip(fig["n_grains"], fig["n_grains_true"], fig["mean_ecd_nm"],
                                    fig["mean_ecd_true_nm"]):
        assert n == pytest.approx(n_true, rel=0.2)
        assert e == pytest.approx(e_true, rel=0.15)
    assert fig["mean_ecd_nm"][0] < fig["mean_ecd_nm"][1] < fig["mean_ecd_nm"][2]

    # the classifier learned (3 classes: chance is 1/3); measured 0.97 on 30 held-out images, 3/3 frames
    assert fig["classifier_test_accuracy"] >= 0.85
    assert fig["frames_classified_correctly"] == 3

    grains = pd.read_csv(out / "grains.csv")
    assert list(grains.columns[:3]) == ["source", "frame", "label"]
    assert sorted(grains["frame"].unique()) == [0, 1, 2]
    assert grains.groupby("frame").size().tolist() == fig["n_grains"]
    summary = read_table(out / "summary.csv")
    assert summary["n_grains"].tolist() == fig["n_grains"]
    assert summary.attrs["units"]["pixel_size"] == "nm" and summary["pixel_size"].eq(20.0).all()
    assert summary.attrs["units"]["true_mean_ecd"] == summary.attrs["units"]["mean_ecd"] == "nm"
    assert summary["true_class"].tolist() == ["small", "medium", "large"]
    assert summary[["p_small", "p_medium", "p_large"]].sum(axis=1).round(4).eq(1).all()
    doc = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert doc["extra"]["classifier_test_accuracy"] == fig["classifier_test_accuracy"]

    page = (out / "index.html").read_text(encoding="utf-8")
    imgs = set(re.findall(r'<img src="([^"]+)"', page))
    assert {"ecd_histogram.png", "loss_curve.png", *overlays} <= imgs
    assert all((out / src).is_file() for src in imgs)
    assert 'href="grains.csv"' in page
    assert any("test accuracy" in line for line in lines)


def test_demo_is_a_subcommand():
    from hyperspy_mmdl.cli import build_parser

    args = build_parser().parse_args(["demo", "--out", "x", "--epochs", "2"])
    assert args.epochs == 2 and args.train_per_class == 40 and args.func.__module__ == "hyperspy_mmdl.cli.demo"
