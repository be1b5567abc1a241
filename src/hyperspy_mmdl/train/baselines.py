"""Classical regressors of SPEC §2.2 ([PSC] Table S6) with 10-fold cross-validation.

Inputs are SEM feature factors (SPEC §3.1.7) plus encoded composition and
process (:func:`hyperspy_mmdl.train.tabular.tabular_features`). Numeric
features are z-scored for SVR, KNN and MLP only (tree models see raw values).
The folds come from :func:`hyperspy_mmdl.train.splits.kfold_indices`, so a deep
model scored with the same seed is compared on exactly the same splits.
"""

from __future__ import annotations

import numpy as np

from .metrics import regression_metrics, summarize_folds
from .splits import SEED, kfold_indices

__all__ = ["BASELINES", "make_baseline", "cross_validate_baselines", "format_cv_table"]

#: Table S6 hyperparameters (given) and the library each maps to
BASELINES = {
    "MLP": dict(solver="adam", alpha=1e-4, learning_rate="adaptive", max_iter=200, random_state=SEED),
    "SVR": dict(degree=3, C=300, gamma="scale"),
    "LightGBM": dict(n_estimators=1000, num_leaves=25, max_depth=-1, subsample=0.6, random_state=SEED),
    "RF": dict(n_estimators=500, max_depth=12, random_state=SEED),
    "KNN": dict(n_neighbors=5, weights="uniform", leaf_size=40),
}


def make_baseline(name: str, *, n_jobs: int = 1, **overrides):
    """A fresh scikit-learn estimator (a Pipeline with a StandardScaler for MLP, SVR, KNN).

    ``LightGBM`` needs the optional ``lightgbm`` package (extra ``baselines``);
    ``subsample_freq=1`` makes its ``subsample`` effective (SPEC §2.2 note).
    """
    if name not in BASELINES:
        raise ValueError(f"unknown baseline {name!r}; one of {list(BASELINES)}")
    params = {**BASELINES[name], **overrides}
    if name == "MLP":
        from sklearn.neural_network import MLPRegressor

        est, scale = MLPRegressor(**params), True
    elif name == "SVR":
        from sklearn.svm import SVR

        est, scale = SVR(**params), True
    elif name == "KNN":
        from sklearn.neighbors import KNeighborsRegressor

        est, scale = KNeighborsRegressor(n_jobs=n_jobs, **params), True
    elif name == "RF":
        from sklearn.ensemble import RandomForestRegressor

        est, scale = RandomForestRegressor(n_jobs=n_jobs, **params), False
    else:
        try:
            import lightgbm
        except ImportError:
            raise ImportError("the LightGBM baseline needs `pip install lightgbm` "
                              "(napari-mmdl[baselines])") from None
        est, scale = lightgbm.LGBMRegressor(n_jobs=n_jobs, verbose=-1, **params), False
    if scale:
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        return make_pipeline(StandardScaler(), est)
    return est


def cross_validate_baselines(X, y, *, models=tuple(BASELINES), folds=None, k: int = 10, seed: int = SEED,
                             n_jobs: int = 1, progress: bool = False) -> dict:
    """k-fold CV of the classical models.

    Parameters
    ----------
    X : ndarray (n, d)
    y : ndarray (n,)
    models : sequence of str
        Names from :data:`BASELINES`.
    folds : list of (train_idx, test_idx), optional
        Default ``kfold_indices(n, k, seed=seed)`` (``KFold(10, shuffle=True,
        random_state=2024)``).

    Returns
    -------
    dict
        ``{name: {"folds": [per-fold metrics], "summary": {metric: {mean, std}},
        "oof": out-of-fold predictions}}``.
    """
    import warnings

    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    folds = folds if folds is not None else kfold_indices(len(y), k, seed=seed)
    out = {}
    for name in models:
        per_fold, oof = [], np.full(len(y), np.nan)
        it = folds
        if progress:
            from tqdm.auto import tqdm

            it = tqdm(folds, desc=name, leave=False)
        for tr, te in it:
            est = make_baseline(name, n_jobs=n_jobs)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # MLP convergence warnings at max_iter=200 (given)
                est.fit(X[tr], y[tr])
            pred = est.predict(X[te])
            oof[te] = pred
            per_fold.append(regression_metrics(y[te], pred))
        out[name] = {"folds": per_fold, "summary": summarize_folds(per_fold), "oof": oof}
    return out


def format_cv_table(results: dict, keys=("R2", "MAE", "RMSE", "R")) -> str:
    """Plain-text table ``model | R2 mean ± SD | ...`` of CV results (deep and classical alike)."""
    head = f"{'model':<22}" + "".join(f"{k:>18}" for k in keys)
    lines = [head, "-" * len(head)]
    for name, res in results.items():
        s = res["summary"]
        lines.append(f"{name:<22}" + "".join(f"{s[k]['mean']:>11.3f} ± {s[k]['std']:<5.3f}" for k in keys))
    return "\n".join(lines)
