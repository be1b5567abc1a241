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
           "DidNotLearnWarning", "auto_schedule", "learning_check", "linear_probe", "held_out_predictions",
           "adapt_batchnorm", "freeze_batchnorm",
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
    """``(train, val, test)`` from a recipe's ``[data]`` fractions; crops of one group stay together.

    With groups (source micrographs) and a stratified split, a held-out part
    gets at least one source of every class: a fraction too small for that is
    raised (and the split is not stratified when there are too few sources).

    Examples
    --------
    >>> groups = np.repeat(np.arange(17), 3)
    >>> labels = np.repeat(np.arange(17) % 3, 3)
    >>> tr, va, te = split_indices(labels, {"val_fraction": 0.1, "test_fraction": 0.2}, groups=groups)
    >>> np.unique(labels[va]).tolist(), np.unique(labels[te]).tolist()
    ([0, 1, 2], [0, 1, 2])
    """
    val_f = float(data.get("val_fraction", 0.15))
    test_f = float(data.get("test_fraction", 0.1))
    seed = int(data.get("seed", SEED))
    stratify = data.get("split", "stratified") in ("stratified", "holdout", "upstream")
    if groups is None:
        return train_val_test_split(labels, val_f, test_f, stratify=stratify and labels is not None, seed=seed)
    groups = np.asarray(groups)
    uniq, first = np.unique(groups, return_index=True)
    glabels = None if labels is None else np.asarray(labels)[first]
    if stratify and glabels is not None:
        # a stratified part needs a source of every class: raise a fraction too small for that
        k, n = len(np.unique(glabels)), len(uniq)
        need = k / n
        if test_f > 0:
            test_f = max(test_f, need)
        if val_f > 0:
            val_f = max(val_f, need * (1 - test_f))
        if val_f + test_f >= 1 or n - k * ((val_f > 0) + (test_f > 0)) < k:
            stratify = False  # too few sources to hold out one of each class
            val_f, test_f = float(data.get("val_fraction", 0.15)), float(data.get("test_fraction", 0.1))
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


class DidNotLearnWarning(UserWarning):
    """A classifier's held-out accuracy is not better than always answering the most frequent class."""


def auto_schedule(n_train: int, *, sample_budget: int = 2400, min_batch: int = 8, max_batch: int = 32,
                  min_steps: int = 8, min_epochs: int = 4, max_epochs: int = 100) -> dict:
    """Batch size, steps per epoch and epochs chosen from the number of training images.

    The batch is the power of two nearest ``n_train / 8`` within
    ``[min_batch, max_batch]`` (so an epoch has about eight steps or more, never
    one step with the whole set); an epoch has at least ``min_steps`` steps
    (drawn with replacement when the set is small); the number of epochs makes
    about ``sample_budget`` training crops in all.

    Returns
    -------
    dict
        ``{"batch_size", "steps_per_epoch", "epochs"}``; ``steps_per_epoch``
        is ``None`` when one pass over the set is enough.

    Examples
    --------
    >>> auto_schedule(40)
    {'batch_size': 8, 'steps_per_epoch': 8, 'epochs': 38}
    >>> auto_schedule(300)
    {'batch_size': 32, 'steps_per_epoch': None, 'epochs': 8}
    """
    n = max(int(n_train), 1)
    batch = int(np.clip(2 ** round(math.log2(max(n / 8, 1))), min_batch, max_batch))
    per_pass = math.ceil(n / batch)
    steps = max(per_pass, int(min_steps))
    epochs = int(np.clip(math.ceil(int(sample_budget) / (steps * batch)), min_epochs, max_epochs))
    return {"batch_size": batch, "steps_per_epoch": None if steps == per_pass else steps, "epochs": epochs}


def learning_check(y_true, y_pred, *, alpha: float = 0.05) -> dict:
    """Did a classifier learn? Held-out accuracy against always answering the most frequent class.

    The one-sided binomial test asks whether ``k`` correct answers out of
    ``n`` could come from a guesser right with the chance rate (the largest
    class fraction of the held-out images). ``learned`` is ``None`` when ``n``
    is too small for even a perfect score to be significant.

    Returns
    -------
    dict
        ``{"held_out_accuracy", "chance_accuracy", "learning_p_value", "learned", "held_out_n"}``.

    Examples
    --------
    >>> learning_check([0, 1, 2] * 4, [0, 1, 2] * 4)["learned"]
    True
    >>> learning_check([0, 1, 2] * 4, [0] * 12)["learned"]
    False
    """
    from scipy.stats import binom

    y_true, y_pred = np.asarray(y_true, int), np.asarray(y_pred, int)
    n = int(y_true.size)
    if n == 0:
        return {"held_out_accuracy": None, "chance_accuracy": None, "learning_p_value": None, "learned": None,
                "held_out_n": 0}
    chance = float(np.bincount(y_true).max() / n)
    k = int((y_true == y_pred).sum())
    p = float(binom.sf(k - 1, n, chance))
    best = float(binom.sf(n - 1, n, chance))
    learned = None if best >= alpha else bool(k / n > chance and p < alpha)
    return {"held_out_accuracy": k / n, "chance_accuracy": chance, "learning_p_value": p, "learned": learned,
            "held_out_n": n}


def _resolve_schedule(recipe: dict, n_train: int, epochs, batch_size) -> tuple[dict, int | None]:
    """A copy of ``recipe`` with "auto" batch size / epochs replaced (:func:`auto_schedule`); also the
    steps per epoch (``None``: one pass over the training images)."""
    import copy

    r = copy.deepcopy(recipe)
    tr = r.setdefault("train", {})
    auto_batch = batch_size is None and str(tr.get("batch_size")) == "auto"
    fixed = {} if auto_batch else {"min_batch": int(batch_size or tr.get("batch_size", 32)),
                                   "max_batch": int(batch_size or tr.get("batch_size", 32))}
    plan = auto_schedule(n_train, sample_budget=int(tr.get("sample_budget", 2400)), **fixed)
    if auto_batch:
        tr["batch_size"] = plan["batch_size"]
    if epochs is None and str(tr.get("epochs")) == "auto":
        tr["epochs"] = plan["epochs"]
    return r, plan["steps_per_epoch"] if auto_batch else None


def _init_from_pretrained(model, name: str, architecture: str) -> dict:
    """Copy every tensor of the pretrained model ``name`` whose name and shape match, but the head.

    A missing file or another architecture than ``architecture`` leaves the
    random initialisation (with a warning).
    """
    from hyperspy_mmdl.checkpoint import load_checkpoint, read_card

    try:
        card = read_card(name)
        if card.architecture != architecture:
            warnings.warn(f"pretrained starting point {name!r} is a {card.architecture!r}, not {architecture!r}: "
                          "training from random weights", UserWarning, stacklevel=3)
            return {"pretrained": None, "copied": 0}
        src, card = load_checkpoint(name)
    except (FileNotFoundError, KeyError) as err:
        warnings.warn(f"pretrained starting point {name!r} not available ({err}); training from random "
                      "weights", UserWarning, stacklevel=3)
        return {"pretrained": None, "copied": 0}
    state = model.state_dict()
    copied = 0
    for k, v in src.state_dict().items():
        if k in state and state[k].shape == v.shape and not k.startswith("head."):
            state[k] = v
            copied += 1
    if not copied:
        raise ValueError(f"pretrained model {name!r} ({card.architecture}) shares no weights with "
                         f"{type(model).__name__}")
    model.load_state_dict(state)
    return {"pretrained": name, "copied": copied, "pretrained_architecture": card.architecture}


def _batchnorms(model) -> list:
    import torch

    return [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]


def adapt_batchnorm(model, dataset, *, views: int = 2, device="cpu", batch_size: int = 32) -> int:
    """Re-estimate the BatchNorm statistics of ``model`` on ``dataset`` (AdaBN); returns the layers updated.

    A pretrained backbone's normalisation statistics come from its own
    training images; recomputing them (cumulative averages over ``views``
    augmented passes) standardises its features on the new images before a
    head is fitted on them.
    """
    import torch

    from .loop import _loader, resolve_device

    bns = _batchnorms(model)
    if not bns:
        return 0
    dev = resolve_device(device)
    model.to(dev).train()
    saved = [bn.momentum for bn in bns]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative moving average over every batch
    with torch.no_grad():
        for v in range(views):
            if hasattr(dataset, "set_epoch"):
                dataset.set_epoch(20_000 + v)
            for x, _ in _loader(dataset, batch_size, shuffle=True, seed=v, epoch=0):
                model(x.to(dev))
    for bn, m in zip(bns, saved):
        bn.momentum = m
    model.eval()
    return len(bns)


def freeze_batchnorm(model) -> None:
    """Keep ``model``'s BatchNorm layers in evaluation mode (fixed statistics) even in ``model.train()``.

    Fine-tuning on a few images in small batches then changes the
    convolutions only: the features the head was fitted on, and those seen
    at inference, are computed the same way as in training.
    """
    bns = _batchnorms(model)
    if not bns:
        return
    plain_train = model.train

    def train(mode: bool = True):
        plain_train(mode)
        for bn in bns:
            bn.eval()
        return model

    model.train = train


def _features(model, dataset, views: int, device, batch_size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """``model.features`` of ``views`` passes over ``dataset`` (augmented when it has an augmentation)."""
    import torch

    from .loop import _loader, resolve_device

    dev = resolve_device(device)
    model.eval().to(dev)
    feats, ys = [], []
    with torch.no_grad():
        for v in range(views):
            if hasattr(dataset, "set_epoch"):
                dataset.set_epoch(10_000 + v)
            for x, y in _loader(dataset, batch_size, shuffle=False, seed=0, epoch=0):
                feats.append(model.features(x.to(dev)).float().cpu().numpy())
                ys.append(np.asarray(y))
    return np.concatenate(feats), np.concatenate(ys)


def linear_probe(model, train_ds, val_ds, num_classes: int, *, device="cpu", views: int = 4,
                 seed: int = SEED) -> dict:
    """Fit the model's linear head on frozen features (multinomial logistic regression).

    Features (``model.features``) of ``views`` augmented crops of every
    training image are standardised; the regularisation strength is chosen
    on the validation crops (log-loss) among ``C ∈ {0.01, 0.1, 1}`` (0.1
    without validation images); the fitted map, standardisation included, is
    written into ``model.head``.

    Returns
    -------
    dict
        ``{"C", "train_accuracy", "val_accuracy", "views"}``.
    """
    import torch
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import log_loss

    X, y = _features(model, train_ds, views, device)
    mu, sd = X.mean(0), X.std(0) + 1e-6
    Z = (X - mu) / sd
    Xv = yv = None
    if val_ds is not None and len(val_ds):
        Xv, yv = _features(model, val_ds, 1, device)
        Xv = (Xv - mu) / sd
    present = np.unique(y)
    best = None
    for C in ((0.01, 0.1, 1.0) if Xv is not None else (0.1,)):
        clf = LogisticRegression(C=C, max_iter=3000, class_weight="balanced", random_state=seed).fit(Z, y)
        score = 0.0
        if Xv is not None:
            pv = np.full((len(Xv), num_classes), 1e-9)
            pv[:, clf.classes_] = clf.predict_proba(Xv)
            score = log_loss(yv, pv / pv.sum(1, keepdims=True), labels=list(range(num_classes)))
        if best is None or score < best[0]:
            best = (score, C, clf)
    _, C, clf = best
    coef = np.zeros((num_classes, X.shape[1]))
    bias = np.full(num_classes, -30.0)  # classes absent from the training crops: never predicted
    if len(clf.classes_) == 2 and clf.coef_.shape[0] == 1:
        coef[clf.classes_[1]], bias[clf.classes_] = clf.coef_[0], [0.0, clf.intercept_[0]]
    else:
        coef[clf.classes_], bias[clf.classes_] = clf.coef_, clf.intercept_
    w = coef / sd
    b = bias - w @ mu
    with torch.no_grad():
        model.head.weight.copy_(torch.as_tensor(w, dtype=model.head.weight.dtype))
        model.head.bias.copy_(torch.as_tensor(b, dtype=model.head.bias.dtype))
    out = {"C": C, "views": int(views), "train_accuracy": float(np.mean(clf.predict(Z) == y)),
           "classes_seen": [int(c) for c in present]}
    if Xv is not None:
        out["val_accuracy"] = float(np.mean(clf.predict(Xv) == yv))
    return out


def _param_groups(model, init: dict, lr: float):
    """Trainable parameters: the head at ``lr``, the rest at ``lr · backbone_lr_scale``; ``freeze`` fixed."""
    for name in init.get("freeze", []) or []:
        for p in model.get_submodule(name).parameters():
            p.requires_grad_(False)
    scale = float(init.get("backbone_lr_scale", 1.0))
    head = [p for n, p in model.named_parameters() if n.startswith("head.") and p.requires_grad]
    rest = [p for n, p in model.named_parameters() if not n.startswith("head.") and p.requires_grad]
    if scale == 1.0 or not head:
        return head + rest
    return [{"params": rest, "lr": lr * scale}, {"params": head, "lr": lr}]


def held_out_predictions(model, card, images, *, device="cpu", max_tiles_side: int = 4) -> np.ndarray:
    """Class probabilities of held-out images, as a user gets them (tiles averaged).

    Each image (already at the model's pixel size and normalised) goes through
    :func:`hyperspy_mmdl.inference.classify`, which cuts it into the model's
    input tiles and averages their probabilities. Images larger than
    ``max_tiles_side`` model inputs along an axis are scored on their centre
    window of that size, which bounds the time a large folder takes.
    """
    from .. import inference

    pred = inference.get_predictor((model, card), device=device)
    side = None if not card.input_size else int(max_tiles_side) * int(card.input_size[-1])
    out = []
    for x in images:
        x = np.asarray(x)
        if side is not None:
            h, w = x.shape[-2:]
            r, c = max((h - side) // 2, 0), max((w - side) // 2, 0)
            x = x[..., r:r + side, c:c + side]
        rgb = x.ndim == 3 and x.shape[0] == 3
        out.append(inference.classify(x if rgb else x.reshape(x.shape[-2:]), None, pred, resample=False,
                                      channel_axis=0 if rgb else None, device=device))
    return np.asarray(out, dtype=np.float32).reshape(len(images), -1)


def train_classifier(image_set, recipe: dict, *, model_name: str | None = None, epochs: int | None = None,
                     batch_size: int | None = None, device="cpu", out=None, callbacks=(), progress=True,
                     resume=False, fit_mode: str = "crop", splits=None, model_config=None, log=None) -> TrainResult:
    """Train an image classifier on an :class:`~hyperspy_mmdl.train.datasets.ImageSet`.

    Parameters
    ----------
    image_set : ImageSet
    recipe : dict
        From :func:`~hyperspy_mmdl.train.recipes.load_recipe`. ``train.batch_size``
        and ``train.epochs`` may be ``"auto"`` (:func:`auto_schedule`); an
        ``[init]`` section starts from a pretrained model (``pretrained``: a
        shipped name or a file; ``linear_probe``: fit the head first with
        :func:`linear_probe`; ``freeze``: modules kept fixed;
        ``backbone_lr_scale``); ``train.max_minutes`` bounds the training time.
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
    log : callable, optional
        Called with one-line progress notes (linear probe, schedule).

    Returns
    -------
    TrainResult
        ``metrics`` are those of the test images (tiles averaged, as
        :func:`hyperspy_mmdl.inference.classify` gives them) plus the
        :func:`learning_check` of all held-out images. A run whose held-out
        accuracy is at chance warns with :class:`DidNotLearnWarning` and its
        card says ``learned: false``.
    """
    import time

    import torch

    from hyperspy_mmdl.checkpoint import ModelCard, save_checkpoint

    from .datasets import ImageClassification
    from .loop import fit
    from .losses import build_loss
    from .metrics import classification_metrics
    from .transforms import Augment

    log = log or (lambda _msg: None)
    started = time.monotonic()
    data = recipe.get("data", {})
    size = int(data.get("input_size", 224))
    in_chans = int(image_set.images[0].shape[0])
    names = list(image_set.class_names)
    labels = image_set.labels
    tr, va, te = splits if splits is not None else split_indices(labels, data, groups=image_set.groups)
    if len(tr) == 0:
        raise ValueError("no training samples after the split")
    recipe, steps_per_epoch = _resolve_schedule(recipe, len(tr), epochs, batch_size)
    seed = int(data.get("seed", SEED))
    torch.manual_seed(seed)
    aug = Augment(size, **recipe.get("augment", {}))
    pick = lambda idx: [image_set.images[i] for i in idx]  # noqa: E731
    train_ds = ImageClassification(pick(tr), labels[tr], size, augment=aug, fit=fit_mode, seed=seed)
    val_ds = ImageClassification(pick(va), labels[va], size, fit=fit_mode) if len(va) else None
    name = model_name or recipe.get("model")
    config = {**recipe.get("model_config", {}), **(model_config or {})}
    model = build_model(name, num_classes=len(names), in_chans=in_chans, config=config)
    init = dict(recipe.get("init") or {})
    init_record: dict = {}
    if init.get("pretrained") and not resume:
        init_record = _init_from_pretrained(model, str(init["pretrained"]), name)
        if not init_record.get("pretrained"):
            init = {}
        elif init.get("linear_probe", True) and hasattr(model, "features") and hasattr(model, "head"):
            views = int(np.clip(math.ceil(400 / len(tr)), 2, 8))
            if init.get("batchnorm", "adapt") == "adapt":
                init_record["batchnorm"] = f"re-estimated on the training images ({adapt_batchnorm(model, train_ds, views=2, device=device)} layers), then fixed"
            probe = linear_probe(model, train_ds, val_ds, len(names), device=device, views=views, seed=seed)
            init_record["linear_probe"] = probe
            log(f"linear head on frozen {init['pretrained']} features: train accuracy "
                f"{probe['train_accuracy']:.2f}" + (f", validation {probe['val_accuracy']:.2f}"
                                                    if "val_accuracy" in probe else "") + f" (C={probe['C']})")
    if init.get("batchnorm") in ("adapt", "fixed") or "batchnorm" in init_record:
        freeze_batchnorm(model)
    fit_kw = _fit_kwargs(recipe, epochs, batch_size)
    if steps_per_epoch is None:
        fit_kw["batch_size"] = min(fit_kw["batch_size"], len(tr))
    steps = steps_per_epoch or math.ceil(len(tr) / fit_kw["batch_size"])
    lr = float(recipe.get("optimizer", {}).get("lr", 1e-3))
    from .optim import build_optimizer, build_scheduler

    opt = build_optimizer(_param_groups(model, init, lr), recipe.get("optimizer", {}))
    sched = build_scheduler(opt, recipe.get("schedule", {}), epochs=fit_kw["epochs"], steps_per_epoch=steps)
    loss_fn = build_loss(recipe.get("loss", {}), train_labels=labels[tr], num_classes=len(names))
    state = Path(str(out) + ".state.pt") if out else None
    max_min = recipe.get("train", {}).get("max_minutes")
    limit = None if not max_min else max(float(max_min) * 60 - (time.monotonic() - started), 1.0)
    log(f"training {name} on {len(tr)} images (validation {len(va)}, test {len(te)}): batch {fit_kw['batch_size']}, "
        f"{steps} steps per epoch, up to {fit_kw['epochs']} epochs"
        + (f", at most {float(max_min):g} min" if max_min else ""))
    res = fit(model, train_ds, val_data=val_ds, loss_fn=loss_fn, optimizer=opt, scheduler=sched, task="classify",
              device=device, callbacks=callbacks, progress=progress, state_path=state, resume=resume, seed=seed,
              steps_per_epoch=steps_per_epoch, time_limit=limit, **fit_kw)
    pixel_size, unit = image_set.pixel_size()
    cfg = {"num_classes": len(names), "in_chans": in_chans, **config}
    card = ModelCard(
        architecture=name, config=cfg, task="classify", input_size=[in_chans, size, size],
        normalization=data.get("normalization", "minmax"), pixel_size=pixel_size, pixel_unit=unit,
        class_names=names,
        training_data={**image_set.summary(), "n_train": int(len(tr)), "n_val": int(len(va)),
                       "n_test": int(len(te)), "seed": seed, "fit": fit_mode,
                       **({"sources": int(len(np.unique(image_set.groups)))} if image_set.groups is not None
                          else {}),
                       **({"split_by": "source"} if image_set.groups is not None else {})},
        recipe={**_recipe_record(recipe, fit_kw), **({"init": init_record} if init_record else {})},
    )
    metrics, held_y, held_p = {}, [], []
    if fit_mode == "crop":
        probs = {part: held_out_predictions(model, card, pick(idx), device=device)
                 for part, idx in (("val", va), ("test", te)) if len(idx)}
    else:  # resized inputs: the model saw whole images squeezed to its input
        from .loop import predict

        probs = {part: softmax(predict(model, ImageClassification(pick(idx), labels[idx], size, fit=fit_mode),
                                       batch_size=fit_kw["batch_size"], device=device)[0])
                 for part, idx in (("val", va), ("test", te)) if len(idx)}
    for part, idx in (("val", va), ("test", te)):
        if part in probs:
            held_y.append(labels[idx])
            held_p.append(probs[part].argmax(1))
    report = probs.get("test", probs.get("val"))
    if report is not None:
        idx = te if len(te) else va
        metrics = classification_metrics(labels[idx], report, class_names=names,
                                         top_k=tuple(k for k in (1, 2) if k < len(names)))
        metrics["split"] = "test" if len(te) else "val"
    check = learning_check(np.concatenate(held_y) if held_y else [], np.concatenate(held_p) if held_p else [])
    metrics.update(check)
    card.metrics = _scalar_metrics(metrics)
    card.extra = {**card.extra, "fit": {"stopped": res.stopped, "epochs_run": res.epochs_run,
                                        "seconds": round(time.monotonic() - started, 1)}}
    if check["learned"] is False:
        warnings.warn(f"the classifier did not learn: held-out accuracy {check['held_out_accuracy']:.2f} on "
                      f"{check['held_out_n']} images is at chance ({check['chance_accuracy']:.2f}, always "
                      f"answering the most frequent class; p = {check['learning_p_value']:.2g}). Try the default "
                      "recipe ('finetune'), more images or more epochs.", DidNotLearnWarning, stacklevel=2)
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
