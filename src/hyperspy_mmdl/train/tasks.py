"""End-to-end training tasks: classifier, PCE regressor (PSC-Fusion), boundary segmenter.

Each ``train_*`` function takes prepared data plus a recipe (see
:mod:`hyperspy_mmdl.train.recipes`), trains with :func:`~hyperspy_mmdl.train.loop.fit`,
scores the held-out part with :mod:`~hyperspy_mmdl.train.metrics`, optionally
writes a checkpoint with its model card, and returns a :class:`TrainResult`.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .splits import SEED, kfold_indices, train_val_test_split

__all__ = ["TrainResult", "build_model", "split_indices", "train_classifier", "train_segmenter",
           "train_pce", "cross_validate_pce", "softmax"]


@dataclass
class TrainResult:
    """Model, card, held-out metrics, training history and split indices."""

    model: object
    card: object
    metrics: dict
    history: dict
    splits: dict = field(default_factory=dict)
    checkpoint: Path | None = None
    fit: dict = field(default_factory=dict)


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def build_model(name: str, *, num_classes: int, in_chans: int, config: dict | None = None):
    """``models.create(name, num_classes=..., in_chans=..., **config)``; the boundary U-Net is built here too."""
    from hyperspy_mmdl import models

    return models.create(name, num_classes=num_classes, in_chans=in_chans, **dict(config or {}))


def split_indices(labels, data: dict, *, groups=None):
    """``(train, val, test)`` from a recipe's ``[data]`` fractions; crops of one group stay together."""
    val_f = float(data.get("val_fraction", 0.15))
    test_f = float(data.get("test_fraction", 0.1))
    seed = int(data.get("seed", SEED))
    stratify = data.get("split", "stratified") in ("stratified", "holdout", "upstream")
    if groups is None:
        return train_val_test_split(labels, val_f, test_f, stratify=stratify and labels is not None, seed=seed)
    groups = np.asarray(groups)
    uniq, first = np.unique(groups, return_index=True)
    glabels = None if labels is None else np.asarray(labels)[first]
    tr, va, te = train_val_test_split(glabels if glabels is not None else len(uniq), val_f, test_f,
                                      stratify=stratify and glabels is not None, seed=seed)
    pick = lambda g: np.flatnonzero(np.isin(groups, uniq[g]))  # noqa: E731
    return pick(tr), pick(va), pick(te)


def _fit_kwargs(recipe: dict, epochs, batch_size):
    tr = recipe.get("train", {})
    return dict(
        epochs=int(epochs if epochs is not None else tr.get("epochs", 10)),
        batch_size=int(batch_size if batch_size is not None else tr.get("batch_size", 32)),
        grad_clip=float(tr.get("grad_clip", 0.0)),
        amp=bool(tr.get("amp", True)),
        early_stopping_patience=int(tr.get("early_stopping_patience", 0)),
        monitor=tr.get("monitor"),
    )


def _optim(model, recipe, epochs, steps):
    from .optim import build_optimizer, build_scheduler

    opt = build_optimizer(model.parameters(), recipe.get("optimizer", {}))
    sched = build_scheduler(opt, recipe.get("schedule", {}), epochs=epochs, steps_per_epoch=steps)
    return opt, sched


def _recipe_record(recipe, fit_kw):
    keep = {k: recipe.get(k) for k in ("name", "paper", "optimizer", "schedule", "loss", "augment", "train")}
    keep["train"] = {**(keep.get("train") or {}), "epochs": fit_kw["epochs"], "batch_size": fit_kw["batch_size"]}
    return keep


def train_classifier(image_set, recipe: dict, *, model_name: str | None = None, epochs: int | None = None,
                     batch_size: int | None = None, device="cpu", out=None, callbacks=(), progress=True,
                     resume=False, fit_mode: str = "crop", splits=None, model_config=None) -> TrainResult:
    """Train an image classifier on an :class:`~hyperspy_mmdl.train.datasets.ImageSet`.

    Parameters
    ----------
    image_set : ImageSet
    recipe : dict
        From :func:`~hyperspy_mmdl.train.recipes.load_recipe`.
    model_name : str, optional
        Registry name (default the recipe's ``model``).
    epochs, batch_size : int, optional
        Override the recipe.
    device : str
    out : str or Path, optional
        Checkpoint path; the per-epoch training state goes to ``<out>.state.pt``
        (used by ``resume``).
    callbacks : list
        :class:`~hyperspy_mmdl.train.loop.Callback` objects or ``f(epoch, logs)``.
    fit_mode : {"crop", "resize"}
    splits : tuple of index arrays, optional
        ``(train, val, test)``; default from the recipe's fractions and seed
        (stratified; crops of one source image kept together via ``groups``).
    model_config : dict, optional
        Extra ``models.create`` options (e.g. ``{"img_size": 64}``).
    """
    import torch

    from hyperspy_mmdl.checkpoint import ModelCard, save_checkpoint

    from .datasets import ImageClassification
    from .loop import fit, predict
    from .losses import build_loss
    from .metrics import classification_metrics
    from .transforms import Augment

    data = recipe.get("data", {})
    size = int(data.get("input_size", 224))
    in_chans = int(image_set.images[0].shape[0])
    names = list(image_set.class_names)
    labels = image_set.labels
    tr, va, te = splits if splits is not None else split_indices(labels, data, groups=image_set.groups)
    if len(tr) == 0:
        raise ValueError("no training samples after the split")
    seed = int(data.get("seed", SEED))
    torch.manual_seed(seed)
    aug = Augment(size, **recipe.get("augment", {}))
    pick = lambda idx: [image_set.images[i] for i in idx]  # noqa: E731
    train_ds = ImageClassification(pick(tr), labels[tr], size, augment=aug, fit=fit_mode, seed=seed)
    val_ds = ImageClassification(pick(va), labels[va], size, fit=fit_mode) if len(va) else None
    test_idx = te if len(te) else va
    test_ds = ImageClassification(pick(test_idx), labels[test_idx], size, fit=fit_mode) if len(test_idx) else None
    name = model_name or recipe.get("model")
    config = {**recipe.get("model_config", {}), **(model_config or {})}
    model = build_model(name, num_classes=len(names), in_chans=in_chans, config=config)
    fit_kw = _fit_kwargs(recipe, epochs, batch_size)
    fit_kw["batch_size"] = min(fit_kw["batch_size"], len(tr))
    steps = math.ceil(len(tr) / fit_kw["batch_size"])
    opt, sched = _optim(model, recipe, fit_kw["epochs"], steps)
    loss_fn = build_loss(recipe.get("loss", {}), train_labels=labels[tr], num_classes=len(names))
    state = Path(str(out) + ".state.pt") if out else None
    res = fit(model, train_ds, val_data=val_ds, loss_fn=loss_fn, optimizer=opt, scheduler=sched, task="classify",
              device=device, callbacks=callbacks, progress=progress, state_path=state, resume=resume, seed=seed,
              **fit_kw)
    metrics = {}
    if test_ds is not None:
        logits, y = predict(model, test_ds, batch_size=fit_kw["batch_size"], device=device)
        metrics = classification_metrics(y, softmax(logits), class_names=names,
                                          top_k=tuple(k for k in (1, 2) if k < len(names)))
        metrics["split"] = "test" if len(te) else "val"
    pixel_size, unit = image_set.pixel_size()
    cfg = {"num_classes": len(names), "in_chans": in_chans, **config}
    card = ModelCard(
        architecture=name, config=cfg, task="classify", input_size=[in_chans, size, size],
        normalization=data.get("normalization", "minmax"), pixel_size=pixel_size, pixel_unit=unit,
        class_names=names, metrics=_scalar_metrics(metrics),
        training_data={**image_set.summary(), "n_train": int(len(tr)), "n_val": int(len(va)),
                       "n_test": int(len(te)), "seed": seed, "fit": fit_mode},
        recipe=_recipe_record(recipe, fit_kw),
    )
    path = save_checkpoint(out, model, card) if out else None
    return TrainResult(model, card, metrics, res.history, {"train": tr, "val": va, "test": te}, path,
                       res.to_dict())


def _scalar_metrics(metrics: dict) -> dict:
    """The JSON-friendly subset of a metrics dict for a model card."""
    out = {}
    for k, v in metrics.items():
        if isinstance(v, (int, float, str, bool)) or v is None:
            out[k] = v
        elif k in ("AUC", "AP", "confusion_matrix", "class_names"):
            out[k] = v
    return out


def train_segmenter(images, masks, recipe: dict, *, val_images=None, val_masks=None, epochs: int | None = None,
                    batch_size: int | None = None, steps_per_epoch: int | None = None, device="cpu", out=None,
                    callbacks=(), progress=True, resume=False, pixel_size=None, unit="px",
                    model_config=None, data_summary=None) -> TrainResult:
    """Train the boundary U-Net on image/boundary-mask pairs (random crops, dihedral, contrast).

    ``images`` are ``(1, H, W)`` float32 arrays, ``masks`` ``(H, W)`` bool
    (boundary = True). Without ``val_images`` a fraction
    ``data.val_fraction`` of the pairs is held out for validation.
    """
    import torch

    from hyperspy_mmdl.checkpoint import ModelCard, save_checkpoint

    from .datasets import BoundarySegmentation
    from .loop import fit
    from .losses import build_loss
    from .transforms import Augment

    data = recipe.get("data", {})
    size = int(data.get("input_size", 128))
    seed = int(data.get("seed", SEED))
    torch.manual_seed(seed)
    if val_images is None and float(data.get("val_fraction", 0)) > 0 and len(images) > 2:
        tr, va, _ = train_val_test_split(len(images), float(data["val_fraction"]), 0.0, stratify=False, seed=seed)
        val_images, val_masks = [images[i] for i in va], [masks[i] for i in va]
        images, masks = [images[i] for i in tr], [masks[i] for i in tr]
    aug = Augment(size, **{**recipe.get("augment", {}), "random_crop": True})
    train_ds = BoundarySegmentation(images, masks, size, augment=aug, seed=seed)
    val_ds = BoundarySegmentation(val_images, val_masks, None) if val_images else None
    config = {**recipe.get("model_config", {}), **(model_config or {})}
    name = recipe.get("model", "unet_boundary")
    model = build_model(name, num_classes=1, in_chans=1, config=config)
    fit_kw = _fit_kwargs(recipe, epochs, batch_size)
    steps = int(steps_per_epoch or recipe.get("train", {}).get("steps_per_epoch", 0) or
                math.ceil(len(images) / fit_kw["batch_size"]))
    opt, sched = _optim(model, recipe, fit_kw["epochs"], steps)
    loss_fn = build_loss(recipe.get("loss", {"name": "bce_dice"}))
    state = Path(str(out) + ".state.pt") if out else None
    res = fit(model, train_ds, val_data=val_ds, loss_fn=loss_fn, optimizer=opt, scheduler=sched, task="segment",
              device=device, steps_per_epoch=steps, callbacks=callbacks, progress=progress, state_path=state,
              resume=resume, seed=seed, **{**fit_kw, "batch_size": fit_kw["batch_size"]})
    card = ModelCard(
        architecture=name, config={"num_classes": 1, "in_chans": 1, **config}, task="segment",
        input_size=[1, size, size], normalization=data.get("normalization", "minmax"),
        pixel_size=pixel_size, pixel_unit=unit, target_name="grain boundary probability", target_unit="",
        training_data={"n_train": len(images), "n_val": len(val_images or []), "seed": seed,
                       **(data_summary or {})},
        recipe=_recipe_record(recipe, fit_kw),
        metrics={"val_loss": float(res.best_score) if res.best_score is not None else None},
    )
    path = save_checkpoint(out, model, card) if out else None
    return TrainResult(model, card, card.metrics, res.history, {}, path, res.to_dict())


# --------------------------------------------------------------------------- PCE (PSC-Fusion)
def _pce_config(table, config: dict) -> dict:
    """PSC-Fusion sizes from the encoded table (composition width, process vocabulary sizes, numeric inputs)."""
    n_comp = len(getattr(table, "composition_numeric", []) or [])
    n_proc = len(table.numeric_columns) - n_comp
    return {"composition_dim": table.composition_dim, "process_sizes": table.process_sizes,
            **({"numeric_dim": n_proc} if n_proc else {}),
            **({"composition_numeric_dim": n_comp} if n_comp else {}), **config}


def _masked_modalities(mask) -> list[str]:
    from ..inference.pce import MODALITIES

    if mask is None:
        return []
    if isinstance(mask, str):
        mask = [mask]
    bad = [m for m in mask if m not in MODALITIES]
    if bad:
        raise ValueError(f"unknown modality {bad}; one of {', '.join(MODALITIES)}")
    return list(mask)


def _apply_mask(model, masked):
    """Disable branches with the model's own switch (:func:`hyperspy_mmdl.inference.pce.set_modality_mask`)."""
    from ..inference.pce import set_modality_mask

    if masked:
        set_modality_mask(model, masked)


def train_pce(table, recipe: dict, *, rows_train=None, rows_val=None, rows_test=None, images=None,
              mask=None, epochs: int | None = None, batch_size: int | None = None, device="cpu", out=None,
              callbacks=(), progress=True, resume=False, model_name: str | None = None,
              model_config=None, pixel_size: float | None = None, unit: str = "µm") -> TrainResult:
    """Train PSC-Fusion on a :class:`~hyperspy_mmdl.train.tabular.PCETable`.

    Parameters
    ----------
    table : PCETable
    recipe : dict
    rows_train, rows_val, rows_test : array_like, optional
        Row indices; default a ``1 − test_fraction`` / ``test_fraction`` split
        with the recipe's seed. Without ``rows_val``, a recipe
        ``data.val_fraction`` > 0 holds that fraction of the training rows out
        for early stopping (a different part for each ensemble member).
    images : list of ndarray (C, H, W) or None, optional
        Normalised SEM image per row (``None`` for rows without one). By
        default the images the table's rows name are read
        (:func:`~hyperspy_mmdl.train.tabular.load_table_images`, at
        ``pixel_size`` or the recipe's ``data.pixel_size``). The image branch is
        trained when there are images, and masked otherwise.
    mask : str or list of str, optional
        Modalities to disable as well.
    pixel_size, unit : float, str, optional
        Resample the table's images to this pixel size (default: the recipe's
        ``data.pixel_size`` in µm, else the images' own).

    Returns
    -------
    TrainResult
        The card names the inputs the model uses (``card.extra["inputs"]``:
        ``image``, ``grain features``, ``composition``, ``process``) and the
        masked modalities.

    Examples
    --------
    >>> table = read_pce_table("devices.csv", fields="extended")            # doctest: +SKIP
    >>> res = train_pce(table, load_recipe("psc_fusion_ensemble"), out="pce.pt")  # doctest: +SKIP
    """
    import torch

    from hyperspy_mmdl.checkpoint import ModelCard, save_checkpoint

    from .loop import fit, predict
    from .losses import build_loss
    from .metrics import regression_metrics
    from .tabular import PCEDataset, load_table_images
    from .transforms import Augment

    data = recipe.get("data", {})
    seed = int(data.get("seed", SEED))
    in_chans = int(data.get("in_chans", 1))
    masked = _masked_modalities(mask)
    pixel = (None, "px")
    if images is None and getattr(table, "has_images", False) and "image" not in masked:
        if pixel_size is None and data.get("pixel_size"):
            pixel_size, unit = float(data["pixel_size"]), str(data.get("pixel_unit", "µm"))
        images, pixel = load_table_images(table, in_chans=in_chans, pixel_size=pixel_size, unit=unit,
                                          normalization=data.get("normalization", "minmax"),
                                          mask_data_bar=bool(data.get("mask_data_bar", True)))
    elif images is not None and pixel_size is not None:
        pixel = (float(pixel_size), unit)
    if images is not None and all(im is None for im in images):
        images = None
    if images is None and "image" not in masked:
        masked.append("image")  # no SEM image in the table: the image branch is off
    if rows_train is None:
        rows_train, rows_val, rows_test = train_val_test_split(
            len(table), float(data.get("val_fraction", 0.0)) if rows_val is None else 0.0,
            float(data.get("test_fraction", 0.2)), stratify=False, seed=seed)
        inner_val = False
    else:
        inner_val = rows_val is None and float(data.get("val_fraction", 0.0)) > 0
    rows_train = np.asarray(rows_train, dtype=int)
    rows_val = np.asarray([] if rows_val is None else rows_val, dtype=int)
    rows_test = np.asarray([] if rows_test is None else rows_test, dtype=int)
    size = int(data.get("input_size", 224))
    name = model_name or recipe.get("model", "psc_fusion")
    config = _pce_config(table, {**recipe.get("model_config", {}), **(model_config or {})})
    ensemble = name == "psc_fusion_ensemble"
    n_members = int(config.setdefault("n_members", 5)) if ensemble else 1
    member_config = {k: v for k, v in config.items() if k != "n_members"}
    # without an inner validation part per member, the members are fitted together (one pass over the
    # data per epoch, each member against its own loss): the same training, several times faster
    joint = ensemble and not inner_val
    model = build_model(name, num_classes=1, in_chans=in_chans, config=config) if ensemble and not joint else None
    fit_kw = _fit_kwargs(recipe, epochs, batch_size)
    loss_fn = _Flat(build_loss(recipe.get("loss", {"name": "mse"})))
    aug = Augment(size, **recipe.get("augment", {})) if images is not None else None
    histories, fits = [], []
    target_mean = target_std = None
    for k in range(1 if joint else n_members):
        mseed = seed + k
        torch.manual_seed(mseed)
        if joint:
            member = build_model(name, num_classes=1, in_chans=in_chans, config=config)
            model = member
            member.member_outputs = True
        else:
            member = build_model("psc_fusion" if ensemble else name, num_classes=1, in_chans=in_chans,
                                 config=member_config if ensemble else config)
        if model is None:
            model = member
        tr, va = rows_train, rows_val
        if inner_val:  # each member holds out its own part of the training rows for early stopping
            perm = np.random.default_rng([seed, k]).permutation(rows_train)
            nv = max(1, int(round(float(data["val_fraction"]) * len(perm))))
            tr, va = np.sort(perm[nv:]), np.sort(perm[:nv])
        if target_mean is None:  # one target scale for the whole ensemble (the card's): all training rows
            y_tr = table.target[rows_train]
            target_mean, target_std = ((float(y_tr.mean()), float(y_tr.std() or 1.0))
                                       if data.get("standardize_target", True) else (0.0, 1.0))
        mean, std = target_mean, target_std
        if hasattr(member, "set_numeric_scaling") and table.numeric.shape[1]:
            num = table.numeric[rows_train].astype(np.float64)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # a column without values: mean 0, SD 1
                member.set_numeric_scaling(np.nanmean(num, 0), np.nanstd(num, 0))
        _apply_mask(member, masked)
        ds = lambda rows, a=None: PCEDataset(table, rows, images=images, size=size,  # noqa: E731
                                             target_mean=mean, target_std=std, augment=a, seed=mseed)
        kw = dict(fit_kw, batch_size=min(fit_kw["batch_size"], len(tr)))
        steps = math.ceil(len(tr) / kw["batch_size"])
        opt, sched = _optim(member, recipe, kw["epochs"], steps)
        state = Path(f"{out}.state{'' if joint or n_members == 1 else f'-{k}'}.pt") if out else None
        res = fit(member, ds(tr, aug), val_data=ds(va) if va.size else None, loss_fn=loss_fn, optimizer=opt,
                  scheduler=sched, task="regress-pce", device=device, callbacks=callbacks, progress=progress,
                  state_path=state, resume=resume, seed=mseed, **kw)
        if joint:
            member.member_outputs = False
        elif ensemble:
            model.members[k].load_state_dict(member.state_dict())
        histories.append(res.history)
        fits.append(res.to_dict())
        if res.stopped == "callback":
            break
    _apply_mask(model, masked)
    mean, std = target_mean, target_std
    metrics, preds = {}, {}
    for part, rows in (("test", rows_test), ("train", rows_train)):
        if rows.size:
            out_, _ = predict(model, PCEDataset(table, rows, images=images, size=size, target_mean=mean,
                                                target_std=std), batch_size=256, device=device)
            preds[part] = out_.reshape(-1) * std + mean
            if part == "test":
                metrics = regression_metrics(table.target[rows], preds[part])
    off = set(masked) | set(getattr(model, "absent", ()))
    given = table.inputs() if hasattr(table, "inputs") else ["composition", "process"]
    # the grain features enter with the process values (g3): used while that branch is on
    inputs = [m for m in given if (m == "grain features" and "process" not in off) or m not in off | {"grain features"}]
    if images is None:
        inputs = [m for m in inputs if m != "image"]
    card = ModelCard(
        architecture=name, config={"num_classes": 1, "in_chans": in_chans, **config},
        task="regress-pce", input_size=[in_chans, size, size],
        normalization=data.get("normalization", "minmax"), pixel_size=pixel[0],
        pixel_unit=pixel[1] if pixel[0] is not None else "px", target_name=table.target_name,
        target_unit=table.target_unit, vocabularies=table.vocabularies,
        training_data={**table.summary(), "n_train": int(len(rows_train)), "n_val": int(rows_val.size),
                       "n_test": int(rows_test.size), "seed": seed, "masked_modalities": sorted(masked),
                       "members": n_members, "inner_validation": bool(inner_val)},
        metrics=_scalar_metrics(metrics), recipe=_recipe_record(recipe, fit_kw),
        target_mean=mean, target_std=std, masked_modalities=sorted(set(masked)),
        extra={"inputs": inputs},
    )
    path = save_checkpoint(out, model, card) if out else None
    history = histories[0] if len(histories) == 1 else {"members": histories, **histories[-1]}
    fit_info = fits[0] if len(fits) == 1 else {**fits[-1], "members": fits,
                                                 "epochs_run": int(sum(f["epochs_run"] for f in fits))}
    return TrainResult(model, card, metrics, history,
                       {"train": rows_train, "val": rows_val, "test": rows_test, "predictions": preds},
                       path, fit_info)


class _Flat:
    """Apply a loss to ``(B,)`` predictions whatever the model returns (``(B,)`` or ``(B, 1)``)."""

    def __init__(self, loss):
        self.loss = loss

    def __call__(self, out, target):
        if isinstance(out, tuple):
            out = out[0]
        if out.ndim == 2 and out.shape[1] > 1:  # an ensemble's members, each against the target
            return self.loss(out.float(), target.reshape(-1, 1).float().expand_as(out))
        return self.loss(out.reshape(-1).float(), target.reshape(-1).float())


def cross_validate_pce(table, recipe: dict, *, k: int | None = None, folds=None, mask=None, images=None,
                       epochs: int | None = None, device="cpu", progress=False, baselines=("LightGBM", "RF"),
                       baseline_features=None) -> dict:
    """k-fold CV of PSC-Fusion and classical baselines on the same folds.

    Returns ``{"PSC-Fusion": {"folds", "summary", "oof"}, "LightGBM": ..., ...}``
    (see :func:`hyperspy_mmdl.train.baselines.cross_validate_baselines`); the
    folds are ``KFold(k, shuffle=True, random_state=seed)``.
    """
    from .baselines import cross_validate_baselines
    from .metrics import regression_metrics, summarize_folds
    from .tabular import tabular_features

    data = recipe.get("data", {})
    k = int(k or data.get("folds", 10))
    folds = folds if folds is not None else kfold_indices(len(table), k, seed=int(data.get("seed", SEED)))
    per_fold, oof = [], np.full(len(table), np.nan)
    for i, (tr, te) in enumerate(folds):
        res = train_pce(table, recipe, rows_train=tr, rows_test=te, mask=mask, images=images, epochs=epochs,
                        device=device, progress=progress)
        oof[te] = res.splits["predictions"]["test"]
        per_fold.append(res.metrics)
    results = {"PSC-Fusion": {"folds": per_fold, "summary": summarize_folds(per_fold), "oof": oof}}
    if baselines:
        X = baseline_features if baseline_features is not None else tabular_features(table)[0]
        results.update(cross_validate_baselines(X, table.target, models=baselines, folds=folds))
    for name, r in results.items():
        r["pooled"] = regression_metrics(table.target, r["oof"])
    return results


# --------------------------------------------------------------------------- evaluation
def evaluate_segmentation(model, images, masks, *, threshold: float = 0.5, tolerance: float = 2,
                          device="cpu", names=None) -> dict:
    """Boundary precision/recall/F1 and grain count / mean-ECD errors of a boundary model.

    Boundary probabilities come from the inference predictor
    (:func:`hyperspy_mmdl.inference.segment.predict_boundaries`; ``model`` is a
    module, a checkpoint path or a predictor), predicted grains from
    :func:`~hyperspy_mmdl.grains.learned.labels_from_boundaries`; the
    reference grains are the 4-connected regions between the lines of each
    human mask. Both are scored with :func:`hyperspy_mmdl.grains.evaluate.compare`,
    the same definition the classical segmenters are validated with (boundaries
    thinned to centre lines, ``tolerance`` px; ECD with boundaries filled, grains
    touching the image edge left out), so learned and classical figures compare
    directly. Returns the means over images plus a per-image list.
    """
    from ..grains.evaluate import compare, labels_from_boundary_mask
    from ..grains.learned import labels_from_boundaries
    from ..inference.segment import boundary_predictor, predict_boundaries

    pred = boundary_predictor(model, device=device)
    rows = []
    for i, (x, m) in enumerate(zip(images, masks)):
        x2 = np.asarray(x)[0] if np.ndim(x) == 3 else np.asarray(x)
        prob = predict_boundaries(x2, None, pred, device=device)
        lab = labels_from_boundaries(prob, threshold=threshold)
        c = compare(lab, labels_from_boundary_mask(m), tolerance=tolerance)
        rows.append({"name": names[i] if names else str(i), "boundary_precision": c["precision"],
                     "boundary_recall": c["recall"], "boundary_f1": c["f1"], "mean_ecd_px": c["ecd_pred"],
                     "mean_ecd_true_px": c["ecd_true"], "mean_ecd_rel_error": abs(c["ecd_error"]),
                     "n_grains": c["n_pred"], "n_grains_true": c["n_true"]})
    keys = ("boundary_precision", "boundary_recall", "boundary_f1", "mean_ecd_rel_error")
    with warnings.catch_warnings():  # an image with no inner grains has NaN ECD errors
        warnings.simplefilter("ignore", RuntimeWarning)
        out = {k: float(np.nanmean([r[k] for r in rows])) for k in keys}
    n_pred, n_true = sum(r["n_grains"] for r in rows), sum(r["n_grains_true"] for r in rows)
    out.update({"count_rel_error": (n_pred - n_true) / max(n_true, 1), "n": len(rows),
                "tolerance_px": tolerance, "per_image": rows})
    return out


def evaluate_checkpoint(checkpoint, data, *, device="cpu", plots=None, split_file=None, split_value=None,
                        masks_dir=None, target: str | None = None) -> dict:
    """Score a checkpoint on new data, by its task.

    * ``classify``: ``data`` is a folder per class (the card's class names);
      returns :func:`~hyperspy_mmdl.train.metrics.classification_metrics`.
    * ``regress-pce``: ``data`` is a CSV encoded with the card's vocabularies
      (``target``: the measured column, default the card's ``target_name``;
      rows that name SEM images give them to a model that uses images);
      returns MAE, RMSE, R2, R.
    * ``segment``: ``data`` holds ``images/`` and ``masks/`` (or give
      ``masks_dir``); ``split_file`` (CSV with a file column and a split column)
      and ``split_value`` select rows; returns :func:`evaluate_segmentation`.

    ``plots`` is a folder for PNGs (confusion matrix, ROC/PR, parity).
    """
    from .. import inference
    from . import plots as P
    from .loop import predict
    from .metrics import classification_metrics, regression_metrics

    pred = inference.get_predictor(checkpoint, device=device)  # loaded once, as every model is applied
    model, card = pred.model, pred.card
    data = Path(data)
    size = int(card.input_size[-1]) if card.input_size else 224
    result = {"checkpoint": str(checkpoint), "task": card.task, "architecture": card.architecture,
              "data": str(data)}
    if card.task == "classify":
        from .datasets import read_image_folder

        # the raw images with their calibration (data bar cropped): the predictor resamples them to the
        # card's pixel size, normalises and tiles them exactly as `classify` does for a user
        ims = read_image_folder(data, class_names=card.class_names, in_chans=card.in_chans or 1,
                                normalization="none")
        probs = np.stack([inference.classify(x, cal, pred, channel_axis=0, device=device)
                          for x, cal in zip(ims.images, ims.calibrations)])
        y = ims.labels
        m = classification_metrics(y, probs, class_names=card.class_names,
                                   top_k=tuple(k for k in (1, 2) if k < len(card.class_names)))
        result.update(m)
        if plots:
            P.confusion_matrix_plot(m["confusion_matrix"], Path(plots) / "confusion_matrix.png", card.class_names)
            P.roc_pr_plot(y, probs, Path(plots) / "roc_pr.png", card.class_names)
    elif card.task == "regress-pce":
        from .tabular import PCEDataset, load_table_images, read_pce_table

        target = target or card.target_name or "JV_default_PCE"
        table = read_pce_table(data, target=target, vocabulary=card.vocabularies,
                               image_column=None if "image" not in card.masked_modalities else "")
        _apply_mask(model, card.masked_modalities)
        images = None
        if table.has_images and "image" not in card.masked_modalities:
            # as training read them: data bar cropped, resampled to the card's pixel size, normalised
            images, _ = load_table_images(table, in_chans=card.in_chans or 1, pixel_size=card.pixel_size,
                                          unit=card.pixel_unit, normalization=card.normalization)
        if images is None and "image" not in card.masked_modalities:
            _apply_mask(model, sorted(set(card.masked_modalities) | {"image"}))
            result["note"] = "no SEM images in the table: scored with the image branch off"
        out, _ = predict(model, PCEDataset(table, np.arange(len(table)), images=images, size=size), device=device,
                         batch_size=256)
        _apply_mask(model, card.masked_modalities)
        pce = out.reshape(-1) * card.target_std + card.target_mean
        result["target"] = target
        result.update(regression_metrics(table.target, pce))
        if plots:
            P.parity_plot(table.target, pce, Path(plots) / "parity.png", label=target,
                          unit=card.target_unit or "%")
    elif card.task == "segment":
        from .datasets import read_segmentation_pairs

        names = None
        if split_file:
            import pandas as pd

            tab = pd.read_csv(split_file)
            names = tab.iloc[:, 0].astype(str).tolist()
            if split_value is not None:
                names = tab[tab.iloc[:, 1].astype(str) == str(split_value)].iloc[:, 0].astype(str).tolist()
        imgs, msks, nm = read_segmentation_pairs(data / "images" if masks_dir is None else data,
                                                 Path(masks_dir) if masks_dir else data / "masks", names=names,
                                                 normalization="none")  # the predictor normalises
        result.update(evaluate_segmentation(pred, imgs, msks, device=device, names=nm))
    else:  # pragma: no cover - ModelCard validates the task
        raise ValueError(f"unknown task {card.task!r}")
    return result
