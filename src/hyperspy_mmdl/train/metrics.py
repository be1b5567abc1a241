"""Regression and classification metrics of SPEC §3.4–3.6.

Every function takes plain arrays and returns floats, arrays or small dicts whose
keys are the metric names used everywhere in napari-mmdl (model cards, the
``mmdl evaluate --json`` output, the benchmark tables):

* regression: ``MAE``, ``RMSE``, ``R2``, ``R``;
* classification: ``accuracy``, ``precision``, ``recall``, ``f1`` (macro
  averages), ``kappa`` (Cohen's κ, a fraction, not %), ``top{k}``,
  ``confusion_matrix``, ``AUC`` / ``AP`` (per class, one-vs-rest), ``mAUC``,
  ``mAP``;
* comparison of two models: :func:`wilcoxon_signed_rank` (``R_plus``,
  ``R_minus``, ``T``, ``p``, ``significant``).
"""

from __future__ import annotations

import warnings

import numpy as np

__all__ = [
    "regression_metrics",
    "confusion_matrix",
    "cohen_kappa",
    "top_k_accuracy",
    "precision_recall_f1",
    "roc_curves",
    "pr_curves",
    "classification_metrics",
    "wilcoxon_signed_rank",
    "summarize_folds",
]


def _1d(name, values, dtype=float):
    arr = np.asarray(values, dtype=dtype)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}")
    return arr


def regression_metrics(y_true, y_pred) -> dict:
    """MAE, RMSE, R² and Pearson R of a regression (SPEC §3.4).

    Parameters
    ----------
    y_true, y_pred : array_like, shape (n,)
        Measured and predicted values.

    Returns
    -------
    dict
        ``{"MAE", "RMSE", "R2", "R", "n"}``. ``R2`` is ``1 − SS_res/SS_tot``
        (negative when worse than predicting the mean); ``R2`` and ``R`` are
        NaN when ``y_true`` (or ``y_pred`` for ``R``) is constant.
    """
    y = _1d("y_true", y_true)
    p = _1d("y_pred", y_pred)
    if y.shape != p.shape:
        raise ValueError(f"y_true and y_pred differ in length: {y.size} vs {p.size}")
    if y.size == 0:
        raise ValueError("no samples to score")
    err = y - p
    ss_res = float(np.sum(err**2))
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    r2 = 1.0 - ss_res / ss_tot if ss_tot > 0 else float("nan")
    if y.size > 1 and np.std(y) > 0 and np.std(p) > 0:
        r = float(np.corrcoef(y, p)[0, 1])
    else:
        r = float("nan")
    return {
        "MAE": float(np.mean(np.abs(err))),
        "RMSE": float(np.sqrt(np.mean(err**2))),
        "R2": float(r2),
        "R": r,
        "n": int(y.size),
    }


def confusion_matrix(y_true, y_pred, num_classes: int | None = None) -> np.ndarray:
    """Counts ``C[i, j]`` of samples of true class ``i`` predicted as ``j``."""
    y = _1d("y_true", y_true, int)
    p = _1d("y_pred", y_pred, int)
    if y.shape != p.shape:
        raise ValueError(f"y_true and y_pred differ in length: {y.size} vs {p.size}")
    n = int(num_classes if num_classes is not None else max(y.max(initial=-1), p.max(initial=-1)) + 1)
    if y.size and (min(y.min(), p.min()) < 0 or max(y.max(), p.max()) >= n):
        raise ValueError(f"class indices must lie in [0, {n})")
    cm = np.zeros((n, n), dtype=np.int64)
    np.add.at(cm, (y, p), 1)
    return cm


def cohen_kappa(y_true, y_pred, num_classes: int | None = None) -> float:
    """Cohen's κ = (p_o − p_e)/(1 − p_e) from the confusion-matrix marginals (SPEC §3.5).

    Returns 1.0 for perfect agreement; 0 in expectation for predictions
    independent of the labels. When ``p_e == 1`` (a single class in both) κ is
    1.0 if the agreement is perfect, else 0.0.
    """
    cm = confusion_matrix(y_true, y_pred, num_classes).astype(float)
    n = cm.sum()
    if n == 0:
        raise ValueError("no samples to score")
    p_o = np.trace(cm) / n
    p_e = float(np.sum(cm.sum(axis=1) * cm.sum(axis=0)) / n**2)
    if p_e >= 1.0:
        return 1.0 if p_o == 1.0 else 0.0
    return float((p_o - p_e) / (1.0 - p_e))


def top_k_accuracy(y_true, scores, k: int = 1) -> float:
    """Fraction of samples whose true class is among the ``k`` highest scores.

    Warns (``UserWarning``) when ``k`` is at least the number of classes, where
    the value is trivially 1.
    """
    y = _1d("y_true", y_true, int)
    s = np.asarray(scores, dtype=float)
    if s.ndim != 2 or s.shape[0] != y.size:
        raise ValueError(f"scores must have shape (n_samples, n_classes) = ({y.size}, C), got {s.shape}")
    k = int(k)
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if k >= s.shape[1]:
        warnings.warn(
            f"top-{k} accuracy with {s.shape[1]} classes is trivially 1 (k >= number of classes)",
            UserWarning,
            stacklevel=2,
        )
        return 1.0
    # rank of the true class: number of classes scored strictly higher
    true_score = s[np.arange(y.size), y]
    higher = (s > true_score[:, None]).sum(axis=1)
    return float(np.mean(higher < k))


def precision_recall_f1(y_true, y_pred, num_classes: int | None = None, average: str = "macro"):
    """Precision, recall and F1 per class and averaged (``"macro"`` or ``"weighted"``).

    A class that is never predicted has precision 0 (likewise recall for a class
    absent from ``y_true``), as scikit-learn's ``zero_division=0``.
    """
    cm = confusion_matrix(y_true, y_pred, num_classes).astype(float)
    tp = np.diag(cm)
    pred = cm.sum(axis=0)
    true = cm.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(pred > 0, tp / np.where(pred > 0, pred, 1), 0.0)
        recall = np.where(true > 0, tp / np.where(true > 0, true, 1), 0.0)
        denom = precision + recall
        f1 = np.where(denom > 0, 2 * precision * recall / np.where(denom > 0, denom, 1), 0.0)
    if average == "macro":
        w = np.full(cm.shape[0], 1.0 / cm.shape[0])
    elif average == "weighted":
        w = true / true.sum()
    else:
        raise ValueError(f"average must be 'macro' or 'weighted', got {average!r}")
    return {
        "precision": float(np.sum(w * precision)),
        "recall": float(np.sum(w * recall)),
        "f1": float(np.sum(w * f1)),
        "per_class": {"precision": precision, "recall": recall, "f1": f1, "support": true.astype(int)},
    }


def _one_vs_rest(y_true, scores):
    y = _1d("y_true", y_true, int)
    s = np.asarray(scores, dtype=float)
    if s.ndim != 2 or s.shape[0] != y.size:
        raise ValueError(f"scores must have shape (n_samples, n_classes) = ({y.size}, C), got {s.shape}")
    return y, s


def roc_curves(y_true, scores) -> list[dict]:
    """Per-class one-vs-rest ROC curves: ``[{"fpr", "tpr", "AUC"}]``.

    ``AUC`` is NaN for a class with no positive or no negative sample.
    """
    from sklearn.metrics import roc_auc_score, roc_curve

    y, s = _one_vs_rest(y_true, scores)
    out = []
    for c in range(s.shape[1]):
        pos = y == c
        if pos.all() or not pos.any():
            out.append({"fpr": np.array([]), "tpr": np.array([]), "AUC": float("nan")})
            continue
        fpr, tpr, _ = roc_curve(pos, s[:, c])
        out.append({"fpr": fpr, "tpr": tpr, "AUC": float(roc_auc_score(pos, s[:, c]))})
    return out


def pr_curves(y_true, scores) -> list[dict]:
    """Per-class one-vs-rest precision–recall curves: ``[{"precision", "recall", "AP"}]``."""
    from sklearn.metrics import average_precision_score, precision_recall_curve

    y, s = _one_vs_rest(y_true, scores)
    out = []
    for c in range(s.shape[1]):
        pos = y == c
        if not pos.any():
            out.append({"precision": np.array([]), "recall": np.array([]), "AP": float("nan")})
            continue
        prec, rec, _ = precision_recall_curve(pos, s[:, c])
        out.append({"precision": prec, "recall": rec, "AP": float(average_precision_score(pos, s[:, c]))})
    return out


def classification_metrics(y_true, scores=None, *, y_pred=None, class_names=None, top_k=(1, 2)) -> dict:
    """All classification metrics of SPEC §3.5 in one dict.

    Parameters
    ----------
    y_true : array_like of int, shape (n,)
        True class indices.
    scores : array_like, shape (n, C), optional
        Class scores or probabilities; needed for top-k, ROC/PR, mAUC, mAP.
    y_pred : array_like of int, optional
        Predicted classes; defaults to ``argmax(scores)``.
    class_names : list of str, optional
        Names for the per-class entries (default ``"0"``, ``"1"``...).
    top_k : tuple of int
        Which top-k accuracies to report (``top1``, ``top2``...). Values with
        ``k >= C`` are skipped with a warning.

    Returns
    -------
    dict
        JSON-friendly: ``accuracy``, ``precision``, ``recall``, ``f1``,
        ``kappa``, ``top1``..., ``mAUC``, ``mAP``, ``AUC`` and ``AP`` (per class
        dicts), ``confusion_matrix`` (list of lists), ``class_names``, ``n``.
    """
    y = _1d("y_true", y_true, int)
    if scores is not None:
        scores = np.asarray(scores, dtype=float)
        num_classes = scores.shape[1]
        if y_pred is None:
            y_pred = np.argmax(scores, axis=1)
    else:
        if y_pred is None:
            raise ValueError("give scores or y_pred")
        num_classes = len(class_names) if class_names else None
    p = _1d("y_pred", y_pred, int)
    cm = confusion_matrix(y, p, num_classes)
    num_classes = cm.shape[0]
    names = list(class_names) if class_names else [str(i) for i in range(num_classes)]
    if len(names) != num_classes:
        raise ValueError(f"{len(names)} class names for {num_classes} classes")
    prf = precision_recall_f1(y, p, num_classes)
    out = {
        "n": int(y.size),
        "class_names": names,
        "accuracy": float(np.trace(cm) / cm.sum()),
        "precision": prf["precision"],
        "recall": prf["recall"],
        "f1": prf["f1"],
        "kappa": cohen_kappa(y, p, num_classes),
        "confusion_matrix": cm.tolist(),
    }
    if scores is not None:
        for k in top_k:
            if k >= num_classes:
                warnings.warn(
                    f"top-{k} accuracy skipped: trivially 1 with {num_classes} classes", UserWarning,
                    stacklevel=2,
                )
                continue
            out[f"top{k}"] = top_k_accuracy(y, scores, k)
        rocs = roc_curves(y, scores)
        prs = pr_curves(y, scores)
        auc = [r["AUC"] for r in rocs]
        ap = [r["AP"] for r in prs]
        out["AUC"] = dict(zip(names, auc))
        out["AP"] = dict(zip(names, ap))
        out["mAUC"] = float(np.nanmean(auc)) if np.isfinite(auc).any() else float("nan")
        out["mAP"] = float(np.nanmean(ap)) if np.isfinite(ap).any() else float("nan")
    return out


def wilcoxon_signed_rank(baseline, model, alpha: float = 0.05) -> dict:
    """Wilcoxon signed-rank comparison of two models on paired scores (SPEC §3.6).

    Parameters
    ----------
    baseline, model : array_like, shape (n,)
        Paired values, e.g. per-class AUC of a baseline and of the new model.
    alpha : float
        Significance level of the two-sided test.

    Returns
    -------
    dict
        ``R_plus`` (rank sum where the baseline is larger), ``R_minus``,
        ``T = min(R_plus, R_minus)``, ``p`` (two-sided, from
        ``scipy.stats.wilcoxon(..., zero_method="wilcox")``), ``significant``
        and ``n`` (non-zero pairs). Zero differences are dropped and ties get
        average ranks, so ``R_plus + R_minus == n(n+1)/2``.
    """
    from scipy.stats import rankdata, wilcoxon

    a = _1d("baseline", baseline)
    b = _1d("model", model)
    if a.shape != b.shape:
        raise ValueError(f"baseline and model differ in length: {a.size} vs {b.size}")
    d = a - b
    d = d[d != 0]
    n = int(d.size)
    if n == 0:
        return {"R_plus": 0.0, "R_minus": 0.0, "T": 0.0, "p": 1.0, "significant": False, "n": 0}
    ranks = rankdata(np.abs(d), method="average")
    r_plus = float(ranks[d > 0].sum())
    r_minus = float(ranks[d < 0].sum())
    res = wilcoxon(a, b, zero_method="wilcox", alternative="two-sided")
    p = float(res.pvalue)
    return {
        "R_plus": r_plus,
        "R_minus": r_minus,
        "T": min(r_plus, r_minus),
        "p": p,
        "significant": bool(p < alpha),
        "n": n,
    }


def summarize_folds(per_fold: list[dict], keys=("MAE", "RMSE", "R2", "R")) -> dict:
    """Mean and SD over folds: ``{key: {"mean", "std", "folds": [...]}}``."""
    out = {}
    for key in keys:
        vals = np.array([f[key] for f in per_fold], dtype=float)
        out[key] = {"mean": float(np.nanmean(vals)), "std": float(np.nanstd(vals)), "folds": vals.tolist()}
    return out
