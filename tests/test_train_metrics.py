"""Exact values of the SPEC §3.4–3.6 metrics on small arrays, and the PNG plots."""

from __future__ import annotations

import numpy as np
import pytest

from hyperspy_mmdl.train import metrics as M


def test_regression_metrics_exact():
    y = np.array([1.0, 2.0, 3.0, 4.0])
    p = np.array([1.5, 2.0, 2.0, 4.0])
    m = M.regression_metrics(y, p)
    assert m["MAE"] == pytest.approx(0.375)
    assert m["RMSE"] == pytest.approx(np.sqrt(1.25 / 4))
    assert m["R2"] == pytest.approx(1 - 1.25 / 5.0)
    assert m["R"] == pytest.approx(np.corrcoef(y, p)[0, 1])
    assert M.regression_metrics(y, y)["R2"] == 1.0
    assert M.regression_metrics(y, np.full(4, y.mean()))["R2"] == pytest.approx(0.0)
    with pytest.raises(ValueError, match="length"):
        M.regression_metrics(y, p[:3])


def test_confusion_and_kappa():
    y = [0, 0, 1, 1, 2, 2]
    assert M.cohen_kappa(y, y) == 1.0
    cm = M.confusion_matrix(y, [0, 1, 1, 1, 2, 0])
    assert cm.tolist() == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    # p_o = 4/6, p_e = (2*2 + 2*3 + 2*1)/36 = 12/36
    assert M.cohen_kappa(y, [0, 1, 1, 1, 2, 0]) == pytest.approx((4 / 6 - 1 / 3) / (1 - 1 / 3))
    # independent predictions: kappa ~ 0
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 3, 20000), rng.integers(0, 3, 20000)
    assert abs(M.cohen_kappa(a, b)) < 0.02


def test_precision_recall_f1_macro():
    r = M.precision_recall_f1([0, 0, 1, 1], [0, 1, 1, 1])
    # class 0: P=1, R=0.5, F1=2/3; class 1: P=2/3, R=1, F1=0.8
    assert r["precision"] == pytest.approx((1 + 2 / 3) / 2)
    assert r["recall"] == pytest.approx(0.75)
    assert r["f1"] == pytest.approx((2 / 3 + 0.8) / 2)


def test_top_k_and_warning():
    scores = np.array([[0.5, 0.3, 0.2], [0.1, 0.2, 0.7], [0.3, 0.4, 0.3]])
    y = [1, 2, 0]
    assert M.top_k_accuracy(y, scores, 1) == pytest.approx(1 / 3)
    assert M.top_k_accuracy(y, scores, 2) == pytest.approx(1.0)
    with pytest.warns(UserWarning, match="trivially"):
        assert M.top_k_accuracy(y, scores, 3) == 1.0


def test_classification_metrics_auc_ap():
    y = np.array([0, 0, 1, 1])
    scores = np.array([[0.9, 0.1], [0.6, 0.4], [0.3, 0.7], [0.45, 0.55]])
    m = M.classification_metrics(y, scores, class_names=["a", "b"], top_k=(1,))
    assert m["accuracy"] == 1.0 and m["kappa"] == 1.0 and m["f1"] == 1.0
    assert m["mAUC"] == 1.0 and m["mAP"] == 1.0
    assert m["confusion_matrix"] == [[2, 0], [0, 2]]
    # one inversion out of 4 positive-negative pairs -> AUC 0.75 for class 1
    scores2 = np.array([[0.9, 0.1], [0.3, 0.7], [0.4, 0.6], [0.2, 0.8]])
    m2 = M.classification_metrics(y, scores2, top_k=(1,))
    assert m2["AUC"]["1"] == pytest.approx(0.75)
    # ranking pos, neg, pos, neg -> AP = 0.5 * 1 + 0.5 * 2/3 (both classes)
    assert m2["AP"]["1"] == pytest.approx(0.5 + 1 / 3)
    assert m2["mAP"] == pytest.approx(0.5 + 1 / 3)


def test_wilcoxon_rank_sums():
    base = np.array([0.90, 0.85, 0.80, 0.70, 0.95, 0.60, 0.75])
    model = np.array([0.92, 0.85, 0.83, 0.75, 0.94, 0.70, 0.80])
    r = M.wilcoxon_signed_rank(base, model)
    n = r["n"]
    assert n == 6  # one zero difference dropped
    assert r["R_plus"] + r["R_minus"] == pytest.approx(n * (n + 1) / 2)
    assert r["R_plus"] == pytest.approx(1.0)  # only 0.95 > 0.94, smallest |d|
    assert r["T"] == min(r["R_plus"], r["R_minus"])
    assert 0 < r["p"] <= 1 and r["significant"] == (r["p"] < 0.05)
    # ties get average ranks -> half-integer sums possible
    t = M.wilcoxon_signed_rank([1, 2, 3, 4], [0, 1, 4, 4])
    assert t["R_plus"] + t["R_minus"] == pytest.approx(6.0)
    assert t["R_minus"] == pytest.approx(2.0) and t["R_plus"] == pytest.approx(4.0)


def test_summarize_folds():
    s = M.summarize_folds([{"R2": 0.5}, {"R2": 0.7}], keys=("R2",))
    assert s["R2"]["mean"] == pytest.approx(0.6) and s["R2"]["std"] == pytest.approx(0.1)


def test_plots_write_pngs(tmp_path):
    from hyperspy_mmdl.train import plots

    rng = np.random.default_rng(1)
    y = rng.normal(10, 3, 40)
    paths = [
        plots.parity_plot(y, y + rng.normal(0, 1, 40), tmp_path / "parity.png", train=(y, y)),
        plots.confusion_matrix_plot([[3, 1], [0, 4]], tmp_path / "cm.png", ["a", "b"]),
        plots.roc_pr_plot([0, 1, 1, 0], [[0.8, 0.2], [0.3, 0.7], [0.4, 0.6], [0.6, 0.4]], tmp_path / "roc.png"),
        plots.loss_curve_plot({"loss": [1, 0.5, 0.3], "val_loss": [1.1, 0.7, 0.6], "val_accuracy": [0.5, 0.7, 0.8]},
                              tmp_path / "loss.png"),
    ]
    for p in paths:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
