"""Reproducible data splits: stratified train/val/test and k-fold CV (seed 2024 by default)."""

from __future__ import annotations

import numpy as np

__all__ = ["SEED", "train_val_test_split", "kfold_indices"]

SEED = 2024


def train_val_test_split(n_or_labels, val_fraction=0.15, test_fraction=0.10, *, stratify=True,
                         seed: int = SEED):
    """Index arrays ``(train, val, test)``.

    Parameters
    ----------
    n_or_labels : int or array_like
        Number of samples, or their class labels (needed for stratification).
    val_fraction, test_fraction : float
        Fractions of the whole set; either may be 0 (an empty array is returned).
    stratify : bool
        Keep the class proportions in every part (labels required).
    seed : int
        Seed of the shuffles.
    """
    from sklearn.model_selection import train_test_split

    if np.ndim(n_or_labels) == 0:
        n, labels = int(n_or_labels), None
    else:
        labels = np.asarray(n_or_labels)
        n = labels.size
    if not 0 <= val_fraction < 1 or not 0 <= test_fraction < 1 or val_fraction + test_fraction >= 1:
        raise ValueError(f"fractions must be in [0, 1) and sum below 1, got val={val_fraction}, "
                         f"test={test_fraction}")
    idx = np.arange(n)
    strat = labels if (stratify and labels is not None) else None
    rest, test = (idx, idx[:0])
    if test_fraction > 0:
        rest, test = train_test_split(idx, test_size=test_fraction, random_state=seed, stratify=strat)
    train, val = rest, idx[:0]
    if val_fraction > 0:
        sub = None if strat is None else strat[rest]
        train, val = train_test_split(rest, test_size=val_fraction / (1 - test_fraction),
                                      random_state=seed, stratify=sub)
    return np.sort(train), np.sort(val), np.sort(test)


def kfold_indices(n_or_labels, k: int = 10, *, stratify=False, seed: int = SEED):
    """List of ``(train_idx, test_idx)`` for k-fold CV.

    Plain ``KFold(k, shuffle=True, random_state=seed)`` by default (SPEC §2.2),
    ``StratifiedKFold`` with ``stratify=True`` and labels given. The same seed
    gives the same folds to the deep model and the classical baselines.
    """
    from sklearn.model_selection import KFold, StratifiedKFold

    if np.ndim(n_or_labels) == 0:
        n, labels = int(n_or_labels), None
    else:
        labels = np.asarray(n_or_labels)
        n = labels.size
    idx = np.arange(n)
    if stratify:
        if labels is None:
            raise ValueError("stratified k-fold needs the labels")
        folds = StratifiedKFold(k, shuffle=True, random_state=seed).split(idx, labels)
    else:
        folds = KFold(k, shuffle=True, random_state=seed).split(idx)
    return [(np.asarray(a), np.asarray(b)) for a, b in folds]
