"""PNG figures of training and evaluation: parity, confusion matrix, ROC/PR, loss curves.

Figures are built with :class:`matplotlib.figure.Figure` and the Agg canvas
directly (no pyplot state), so they work in threads, tests and headless runs.
Each function writes a PNG and returns its path.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["parity_plot", "confusion_matrix_plot", "roc_pr_plot", "loss_curve_plot"]


def _figure(figsize):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, format="png")
    return path


def parity_plot(y_true, y_pred, path, *, train=None, label="PCE", unit="%", title=None) -> Path:
    """Measured vs predicted scatter with the identity line (test red, train green as Fig. S5).

    ``train`` is an optional ``(y_true_train, y_pred_train)`` pair.
    """
    from .metrics import regression_metrics

    fig = _figure((4.5, 4.5))
    ax = fig.add_subplot(111)
    y, p = np.asarray(y_true, float), np.asarray(y_pred, float)
    lo, hi = [y.min(), p.min()], [y.max(), p.max()]
    if train is not None:
        yt, pt = np.asarray(train[0], float), np.asarray(train[1], float)
        ax.scatter(yt, pt, s=8, c="tab:green", alpha=0.5, label="train")
        lo += [yt.min(), pt.min()]
        hi += [yt.max(), pt.max()]
    m = regression_metrics(y, p)
    ax.scatter(y, p, s=10, c="tab:red", alpha=0.7, label=f"test (R²={m['R2']:.3f})")
    a, b = min(lo), max(hi)
    ax.plot([a, b], [a, b], "k--", lw=1)
    ax.set_xlabel(f"measured {label} ({unit})")
    ax.set_ylabel(f"predicted {label} ({unit})")
    ax.set_title(title or f"MAE {m['MAE']:.2f}, RMSE {m['RMSE']:.2f}")
    ax.legend(loc="upper left", fontsize=8)
    return _save(fig, path)


def confusion_matrix_plot(cm, path, class_names=None, *, normalize=False, title="Confusion matrix") -> Path:
    """Confusion matrix as an annotated heat map (rows: true, columns: predicted)."""
    cm = np.asarray(cm, dtype=float)
    n = cm.shape[0]
    names = list(class_names) if class_names else [str(i) for i in range(n)]
    shown = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1) if normalize else cm
    size = max(3.5, 0.5 * n + 2)
    fig = _figure((size, size))
    ax = fig.add_subplot(111)
    im = ax.imshow(shown, cmap="Blues")
    fig.colorbar(im, ax=ax, fraction=0.046)
    ax.set_xticks(range(n), names, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(n), names, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    if n <= 30:
        thresh = shown.max() / 2 if shown.size else 0
        for i in range(n):
            for j in range(n):
                txt = f"{shown[i, j]:.2f}" if normalize else f"{int(cm[i, j])}"
                ax.text(j, i, txt, ha="center", va="center", fontsize=7,
                        color="white" if shown[i, j] > thresh else "black")
    return _save(fig, path)


def roc_pr_plot(y_true, scores, path, class_names=None) -> Path:
    """Per-class one-vs-rest ROC (left) and precision–recall (right) curves."""
    from .metrics import pr_curves, roc_curves

    rocs, prs = roc_curves(y_true, scores), pr_curves(y_true, scores)
    names = list(class_names) if class_names else [str(i) for i in range(len(rocs))]
    fig = _figure((9, 4.2))
    ax1, ax2 = fig.add_subplot(121), fig.add_subplot(122)
    for name, r, p in zip(names, rocs, prs):
        if r["fpr"].size:
            ax1.plot(r["fpr"], r["tpr"], lw=1, label=f"{name} ({r['AUC']:.3f})")
        if p["recall"].size:
            ax2.plot(p["recall"], p["precision"], lw=1, label=f"{name} ({p['AP']:.3f})")
    ax1.plot([0, 1], [0, 1], "k:", lw=0.8)
    ax1.set_xlabel("false positive rate")
    ax1.set_ylabel("true positive rate")
    ax1.set_title(f"ROC, mAUC {np.nanmean([r['AUC'] for r in rocs]):.3f}")
    ax2.set_xlabel("recall")
    ax2.set_ylabel("precision")
    ax2.set_title(f"PR, mAP {np.nanmean([p['AP'] for p in prs]):.3f}")
    if len(names) <= 12:
        ax1.legend(fontsize=7, loc="lower right")
        ax2.legend(fontsize=7, loc="lower left")
    return _save(fig, path)


def loss_curve_plot(history: dict, path, *, keys=None) -> Path:
    """Loss (left) and any other logged metric (right) per epoch from a training history.

    ``history`` maps names (``"loss"``, ``"val_loss"``, ``"val_accuracy"``...) to
    lists of per-epoch values, as :func:`hyperspy_mmdl.train.loop.fit` returns.
    """
    keys = keys or [k for k, v in history.items() if isinstance(v, (list, tuple)) and v]
    losses = [k for k in keys if "loss" in k]
    others = [k for k in keys if k not in losses and k not in ("epoch", "lr")]
    fig = _figure((9 if others else 4.5, 3.8))
    ax = fig.add_subplot(121 if others else 111)
    for k in losses:
        ax.plot(np.arange(1, len(history[k]) + 1), history[k], marker=".", label=k)
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.legend(fontsize=8)
    if others:
        ax2 = fig.add_subplot(122)
        for k in others:
            ax2.plot(np.arange(1, len(history[k]) + 1), history[k], marker=".", label=k)
        ax2.set_xlabel("epoch")
        ax2.legend(fontsize=8)
    return _save(fig, path)
