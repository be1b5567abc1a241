"""End-to-end training tasks: classifier, PCE regressor (PSC-Fusion), boundary segmenter.

Each ``train_*`` function takes prepared data plus a recipe (see
:mod:`hyperspy_mmdl.train.recipes`), trains with :func:`~hyperspy_mmdl.train.loop.fit`,
scores the held-out part with :mod:`~hyperspy_mmdl.train.metrics`, optionally
writes a checkpoint with its model card, and returns a :class:`TrainResult`.
"""

from __future__ import annotations

import math
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
    config = dict(config or {})
    try:
        from hyperspy_mmdl import models
        create = getattr(models, "create", None)
    except ImportError:  # pragma: no cover
        create = None
    if name == "unet_boundary":
        known = create is not None and name in _list_models(models)
        if not known:
            from hyperspy_mmdl.models.unet import unet_boundary

            return unet_boundary(num_classes=num_classes, in_chans=in_chans, **config)
    if create is None:
        raise ValueError(f"cannot build {name!r}: hyperspy_mmdl.models has no create()")
    return create(name, num_classes=num_classes, in_chans=in_chans, **config)


def _list_models(models):
    lister = getattr(models, "list_models", None)
    try:
        return set(lister()) if lister else set()
    except Exception:  # pragma: no cover
        return set()


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
