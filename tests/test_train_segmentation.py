"""Boundary U-Net, learned segmentation, and its evidence on the TBM human masks."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from hyperspy_mmdl.grains.evaluate import boundary_f1  # noqa: E402
from hyperspy_mmdl.models.unet import UNetBoundary, unet_boundary  # noqa: E402
from hyperspy_mmdl.grains.learned import labels_from_boundaries, segment_learned  # noqa: E402
from hyperspy_mmdl.inference.segment import predict_boundaries  # noqa: E402


def test_unet_any_input_size():
    net = unet_boundary(in_chans=1, base_channels=4, depth=2)
    assert isinstance(net, UNetBoundary) and net.default_cfg["name"] == "unet_boundary"
    for shape in ((1, 1, 32, 32), (2, 1, 37, 53), (1, 1, 5, 9)):
        assert net(torch.rand(shape)).shape == (shape[0], 1, *shape[2:])


def test_labels_from_a_grid_of_boundaries():
    prob = np.zeros((60, 90), np.float32)
    prob[[19, 20, 39, 40], :] = 1
    prob[:, [29, 30, 59, 60]] = 1
    lab = labels_from_boundaries(prob, min_area=4)
    assert lab.dtype == np.int32 and lab.max() == 9
    assert (lab[prob == 1] == 0).all()  # the boundary band is 0 (zero="mask")
    line = labels_from_boundaries(prob, min_area=4, zero="line")
    assert line.max() == 9 and 0 < (line[prob == 1] == 0).mean() < 0.6  # only 1-px watershed lines
    sizes = np.bincount(lab.ravel())[1:]
    assert sizes.min() > 250


def test_boundary_f1_exact():
    a = np.zeros((20, 20), bool)
    a[10] = True
    assert boundary_f1(a, a, thin=False)["f1"] == 1.0
    b = np.roll(a, 1, axis=0)
    assert boundary_f1(b, a, tolerance=1, thin=False)["f1"] == 1.0
    assert boundary_f1(b, a, tolerance=0, thin=False)["f1"] == 0.0
    half = a.copy()
    half[10, 10:] = False
    r = boundary_f1(half, a, tolerance=0, thin=False)
    assert r["precision"] == 1.0 and r["recall"] == 0.5 and r["f1"] == pytest.approx(2 / 3)
    # thinned, a 5-px band drawn by hand and a 1-px predicted line on its centre agree
    band = np.zeros((20, 40), bool)
    band[8:13] = True
    line = np.zeros_like(band)
    line[10] = True
    assert boundary_f1(line, band, tolerance=0, thin=False)["recall"] == pytest.approx(0.2)
    assert boundary_f1(line, band, tolerance=1)["f1"] > 0.95


class _Pointwise(torch.nn.Module):
    def forward(self, x):
        return 4 * x - 2


def test_tiled_prediction_is_seamless():
    img = np.random.default_rng(0).random((150, 230)).astype(np.float32)
    whole = predict_boundaries(img, None, _Pointwise(), tile=512)
    tiled = predict_boundaries(img, None, _Pointwise(), tile=64, overlap=8)
    assert np.allclose(whole, tiled, atol=1e-6)
    assert np.allclose(whole, 1 / (1 + np.exp(-(4 * img_norm(img) - 2))), atol=1e-5)


def img_norm(x):
    return (x - x.min()) / (x.max() - x.min())


def _tbm(shared):
    import pandas as pd

    from hyperspy_mmdl.train.datasets import read_segmentation_pairs

    root = shared("tbm_metallography_grains")
    split = pd.read_csv(root / "upstream_split.csv")
    pick = lambda v: split.file[split.upstream_autosam_split == v].tolist()  # noqa: E731
    tr = read_segmentation_pairs(root / "images", root / "masks", names=pick("TrainDataset"))
    te = read_segmentation_pairs(root / "images", root / "masks", names=pick("TestDataset"))
    return root, tr, te


@pytest.mark.slow
def test_unet_learns_tbm_boundaries(shared, tmp_path):
    """Evidence 4 (short): trained on TrainDataset crops, scored on TestDataset vs the human masks."""
    from hyperspy_mmdl.checkpoint import load_checkpoint
    from hyperspy_mmdl.train.recipes import load_recipe
    from hyperspy_mmdl.train.tasks import evaluate_segmentation, train_segmenter

    _, (Xtr, Mtr, _), (Xte, Mte, nte) = _tbm(shared)
    assert len(Xtr) == 40 and len(Xte) == 13
    # the recipe's network at `benchmarks/train_evidence.py unet --quick` length: 6 epochs x 15 steps
    recipe = load_recipe("unet_boundary", ["train.steps_per_epoch=15"])
    res = train_segmenter(Xtr, Mtr, recipe, epochs=6, progress=False, out=tmp_path / "u.pt")
    torch.manual_seed(0)
    untrained = evaluate_segmentation(unet_boundary().eval(), Xte[:4], Mte[:4])
    ev = evaluate_segmentation(res.model, Xte, Mte, names=nte)
    print("TBM test:", {k: round(v, 3) for k, v in ev.items() if isinstance(v, float)},
          "untrained F1", round(untrained["boundary_f1"], 3))
    # measured with grains.learned.labels_from_boundaries' defaults (threshold 0.5 on the 1-px smoothed map,
    # closed grains only): F1 0.452 (P 0.70, R 0.34), mean-ECD error 0.17. 90 steps leave the map unsure
    # (median 0.32), so weak boundaries do not close grains; the shipped model's threshold is chosen on
    # validation sources instead (scripts/train_pretrained_segmenter.py). Before the closed-grain
    # post-processing, dangling boundary pieces were kept and the same model scored F1 0.59.
    assert ev["boundary_f1"] > 0.40
    assert ev["mean_ecd_rel_error"] < 0.25
    assert ev["boundary_f1"] > untrained["boundary_f1"] + 0.15
    # the checkpoint reloads through the registry and segments
    model, card = load_checkpoint(tmp_path / "u.pt")
    assert card.task == "segment" and card.config["base_channels"] == 16
    lab = segment_learned(Xte[0][0], None, tmp_path / "u.pt")
    assert lab.dtype == np.int32 and lab.shape == Xte[0][0].shape and lab.max() > 5


@pytest.mark.slow
def test_cli_train_and_evaluate_segment(shared, tmp_path, capsys):
    from hyperspy_mmdl.cli import main

    root = shared("tbm_metallography_grains")
    out = tmp_path / "unet.pt"
    rc = main(["train", "--task", "segment", "--data", str(root), "--split-file", str(root / "upstream_split.csv"),
               "--split-value", "TrainDataset", "--epochs", "1", "--set", "train.steps_per_epoch=2",
               "--set", "model_config.base_channels=4", "--plots", str(tmp_path / "plots"), "--no-progress",
               "--out", str(out)])
    assert rc == 0 and out.is_file() and (tmp_path / "plots" / "loss_curve.png").is_file()
    capsys.readouterr()
    rc = main(["evaluate", "--model", str(out), "--data", str(root), "--split-file",
               str(root / "upstream_split.csv"), "--split-value", "TestDataset", "--json"])
    assert rc == 0
    res = json.loads(capsys.readouterr().out)
    assert res["task"] == "segment" and res["n"] == 13
    assert {"boundary_precision", "boundary_recall", "boundary_f1", "mean_ecd_rel_error"} <= set(res)
    assert 0 <= res["boundary_f1"] <= 1
