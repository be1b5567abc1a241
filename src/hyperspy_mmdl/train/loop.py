"""The training loop: epochs, validation, early stopping, clipping, AMP, progress, resume, callbacks.

Datasets yield ``(inputs, target)`` where ``inputs`` is a tensor or a tuple of
tensors (PSC-Fusion: image, composition, process); the model is called as
``model(*inputs)``. Shuffling uses ``seed + epoch``, and datasets with a
``set_epoch(epoch)`` method reseed their augmentation, so a resumed run sees
the same batches as an uninterrupted one.

A GUI follows and stops training through callbacks::

    class Live(Callback):
        def on_epoch_end(self, epoch, logs):
            curve.append(logs["loss"])          # draw the loss curve
            self.should_stop = cancel_clicked   # stop after this epoch
"""

from __future__ import annotations


import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

__all__ = ["Callback", "FitResult", "fit", "predict", "resolve_device"]

STATE_FORMAT = "napari-mmdl-train-state"


class Callback:
    """Hooks called by :func:`fit`. Set ``should_stop = True`` to stop after the current batch."""

    should_stop: bool = False

    def on_train_begin(self, logs: dict) -> None:
        """Called once with ``{"epochs", "steps_per_epoch", "start_epoch"}``."""

    def on_batch_end(self, step: int, logs: dict) -> None:
        """Called after each optimisation step with ``{"loss", "lr"}``."""

    def on_epoch_end(self, epoch: int, logs: dict) -> None:
        """Called after each epoch (0-based) with ``loss``, ``lr`` and the ``val_*`` metrics."""

    def on_train_end(self, logs: dict) -> None:
        """Called once at the end with the :class:`FitResult` as a dict."""


class _FunctionCallback(Callback):
    def __init__(self, fn):
        self.fn = fn

    def on_epoch_end(self, epoch, logs):
        if self.fn(epoch, logs) is False:
            self.should_stop = True


@dataclass
class FitResult:
    """What :func:`fit` returns."""

    history: dict = field(default_factory=dict)
    best_epoch: int = -1
    best_score: float | None = None
    epochs_run: int = 0
    stopped: str = "completed"  # "completed", "early_stopping", "callback", "time_limit"

    def to_dict(self) -> dict:
        return {"history": self.history, "best_epoch": self.best_epoch, "best_score": self.best_score,
                "epochs_run": self.epochs_run, "stopped": self.stopped}


def resolve_device(device=None) -> torch.device:
    """``"auto"``/None → CUDA if available, else MPS, else CPU."""
    if device in (None, "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    return torch.device(device)


def _to(x, device):
    if isinstance(x, (tuple, list)):
        return tuple(_to(v, device) for v in x)
    return x.to(device, non_blocking=True)


def _call(model, inputs):
    return model(*inputs) if isinstance(inputs, tuple) else model(inputs)


def _loader(dataset, batch_size, *, shuffle, seed, epoch, num_samples=None):
    from torch.utils.data import DataLoader

    n = len(dataset)
    if shuffle:
        g = torch.Generator().manual_seed(int(seed) + int(epoch))
        if num_samples:
            order = torch.randint(n, (int(num_samples),), generator=g).tolist()
        else:
            order = torch.randperm(n, generator=g).tolist()
    else:
        order = list(range(n))
    return DataLoader(dataset, batch_size=batch_size, sampler=order, num_workers=0,
                      collate_fn=getattr(dataset, "collate", None))


def predict(model, dataset, *, batch_size: int = 32, device="cpu", progress=False) -> tuple:
    """Run ``model`` over ``dataset`` in order; returns ``(outputs, targets)`` as numpy arrays."""
    device = resolve_device(device)
    model.eval().to(device)
    outs, tgts = [], []
    loader = _loader(dataset, batch_size, shuffle=False, seed=0, epoch=0)
    if progress:
        from tqdm.auto import tqdm

        loader = tqdm(loader, desc="predict", leave=False)
    with torch.no_grad():
        for inputs, target in loader:
            out = _call(model, _to(inputs, device))
            outs.append(out.float().cpu().numpy())
            tgts.append(target.cpu().numpy())
    return np.concatenate(outs), np.concatenate(tgts)


def _val_metrics(task, outputs, targets, loss):
    logs = {"val_loss": float(loss)}
    if task == "classify":
        logs["val_accuracy"] = float(np.mean(outputs.argmax(1) == targets))
    elif task == "regress-pce":
        err = outputs.reshape(-1) - targets.reshape(-1)
        logs["val_MAE"] = float(np.mean(np.abs(err)))
        ss_tot = float(np.sum((targets - targets.mean()) ** 2))
        logs["val_R2"] = float(1 - np.sum(err**2) / ss_tot) if ss_tot > 0 else float("nan")
    return logs


def _evaluate(model, dataset, loss_fn, task, batch_size, device):
    model.eval()
    outs, tgts, total, count = [], [], 0.0, 0
    with torch.no_grad():
        for inputs, target in _loader(dataset, batch_size, shuffle=False, seed=0, epoch=0):
            inputs, target = _to(inputs, device), target.to(device)
            out = _call(model, inputs)
            total += float(loss_fn(out, target)) * target.shape[0]
            count += target.shape[0]
            if task != "segment":
                outs.append(out.float().cpu().numpy())
                tgts.append(target.cpu().numpy())
    if task == "segment":
        return {"val_loss": total / max(count, 1)}
    return _val_metrics(task, np.concatenate(outs), np.concatenate(tgts), total / max(count, 1))


def _save_state(path: Path, **state):
    from hyperspy_mmdl.checkpoint import _atomic_torch_save

    _atomic_torch_save({"format": STATE_FORMAT, **state}, path)


def _load_state(path: Path) -> dict:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise ValueError(f"{path}: cannot resume, the training state is unreadable: {err}") from None
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise ValueError(f"{path}: not a napari-mmdl training state")
    return state


def fit(model, train_data, *, loss_fn, optimizer, epochs: int, batch_size: int = 32, val_data=None,
        task: str = "classify", scheduler=None, device="cpu", grad_clip: float = 0.0, amp: bool = True,
        early_stopping_patience: int = 0, monitor: str | None = None, steps_per_epoch: int | None = None,
        callbacks=(), progress: bool = True, state_path=None, resume: bool = False,
        seed: int = 2024, time_limit: float | None = None) -> FitResult:
    """Train ``model`` in place and return the history.

    Parameters
    ----------
    model : torch.nn.Module
    train_data, val_data : torch.utils.data.Dataset
        ``(inputs, target)`` items; ``val_data`` optional.
    loss_fn : callable
        ``loss_fn(output, target) -> scalar tensor``.
    optimizer : torch.optim.Optimizer
    epochs : int
        Total number of epochs (a resumed run continues up to this number).
    batch_size : int
    task : {"classify", "regress-pce", "segment"}
        Chooses the validation metrics (``val_accuracy``; ``val_MAE``,
        ``val_R2``; ``val_loss`` only).
    scheduler : torch.optim.lr_scheduler.LRScheduler, optional
        Stepped after every optimisation step.
    device : str or torch.device
        ``"auto"`` picks CUDA/MPS/CPU.
    grad_clip : float
        Clip the global gradient norm to this value (0 = off).
    amp : bool
        Mixed precision; applied on CUDA only (ignored on CPU and MPS).
    early_stopping_patience : int
        Stop when ``monitor`` has not improved for this many epochs (0 = off);
        the best weights are restored at the end whenever there is a
        validation set.
    monitor : str, optional
        ``"val_loss"`` (minimised) or ``"val_accuracy"``/``"val_R2"`` (maximised);
        default ``val_loss``.
    steps_per_epoch : int, optional
        Draw this many batches per epoch with replacement (for random-crop
        datasets); default: one pass over ``train_data``.
    callbacks : sequence of Callback or callables ``f(epoch, logs)``
        A callable returning ``False`` stops training.
    progress : bool
        tqdm progress bars.
    state_path : str or Path, optional
        Save the full training state here after every epoch
        (``torch.load(weights_only=True)``-compatible).
    resume : bool
        Continue from ``state_path`` if it exists.
    seed : int
        Shuffling seed (per epoch ``seed + epoch``).
    time_limit : float, optional
        Wall-clock seconds: no epoch starts that would, at the mean epoch
        time so far, end after this (stop reason ``"time_limit"``).
    """
    import time

    started = time.monotonic()
    device = resolve_device(device)
    model.to(device)
    use_amp = bool(amp) and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    callbacks = [cb if isinstance(cb, Callback) else _FunctionCallback(cb) for cb in callbacks]
    monitor = monitor or "val_loss"
    maximize = monitor != "val_loss" and "loss" not in monitor and "MAE" not in monitor
    history: dict = {}
    best_score, best_epoch, best_state, bad_epochs, start_epoch = None, -1, None, 0, 0
    state_path = Path(state_path) if state_path else None

    if resume and state_path is not None and state_path.is_file():
        st = _load_state(state_path)
        model.load_state_dict(st["model"])
        optimizer.load_state_dict(st["optimizer"])
        if scheduler is not None and st.get("scheduler") is not None:
            scheduler.load_state_dict(st["scheduler"])
        if st.get("scaler"):
            scaler.load_state_dict(st["scaler"])
        history = {k: list(v) for k, v in st["history"].items()}
        best_score, best_epoch = st["best_score"], st["best_epoch"]
        best_state, bad_epochs = st.get("best_state"), st["bad_epochs"]
        start_epoch = st["epoch"] + 1
        if st.get("torch_rng") is not None:
            torch.set_rng_state(st["torch_rng"])

    n_batches = steps_per_epoch or math.ceil(len(train_data) / batch_size)
    for cb in callbacks:
        cb.on_train_begin({"epochs": epochs, "steps_per_epoch": n_batches, "start_epoch": start_epoch})
    result = FitResult(history=history)
    stop = None
    epoch_bar = None
    if progress:
        from tqdm.auto import tqdm

        epoch_bar = tqdm(total=epochs, initial=start_epoch, desc="epochs", unit="epoch")
    step = start_epoch * n_batches
    for epoch in range(start_epoch, epochs):
        model.train()
        if hasattr(train_data, "set_epoch"):
            train_data.set_epoch(epoch)
        num_samples = steps_per_epoch * batch_size if steps_per_epoch else None
        loader = _loader(train_data, batch_size, shuffle=True, seed=seed, epoch=epoch, num_samples=num_samples)
        total, count = 0.0, 0
        for inputs, target in loader:
            inputs, target = _to(inputs, device), target.to(device)
            optimizer.zero_grad(set_to_none=True)
            with torch.autocast(device_type=device.type, enabled=use_amp):
                out = _call(model, inputs)
                loss = loss_fn(out, target)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"loss became {float(loss.detach())} at epoch {epoch + 1}; lower the learning "
                                         f"rate or enable gradient clipping")
            scaler.scale(loss).backward()
            if grad_clip and grad_clip > 0:
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            scaler.step(optimizer)
            scaler.update()
            if scheduler is not None:
                scheduler.step()
            step += 1
            loss_value = float(loss.detach())
            total += loss_value * target.shape[0]
            count += target.shape[0]
            blogs = {"loss": loss_value, "lr": optimizer.param_groups[0]["lr"]}
            for cb in callbacks:
                cb.on_batch_end(step, blogs)
            if any(cb.should_stop for cb in callbacks):
                stop = "callback"
                break
        logs = {"loss": total / max(count, 1), "lr": optimizer.param_groups[0]["lr"]}
        if val_data is not None and len(val_data):
            logs.update(_evaluate(model, val_data, loss_fn, task, batch_size, device))
        for k, v in logs.items():
            history.setdefault(k, []).append(v)
        history.setdefault("epoch", []).append(epoch + 1)
        # early stopping / best weights
        if monitor in logs:
            score = logs[monitor]
            better = best_score is None or (score > best_score if maximize else score < best_score)
            if better:
                best_score, best_epoch, bad_epochs = score, epoch, 0
                best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
            else:
                bad_epochs += 1
                if early_stopping_patience and bad_epochs >= early_stopping_patience and stop is None:
                    stop = "early_stopping"
        if epoch_bar is not None:
            epoch_bar.update(1)
            epoch_bar.set_postfix({k: f"{v:.4g}" for k, v in logs.items() if k != "lr"})
        for cb in callbacks:
            cb.on_epoch_end(epoch, dict(logs))
        if stop is None and any(cb.should_stop for cb in callbacks):
            stop = "callback"
        result.epochs_run = epoch + 1
        if state_path is not None:
            _save_state(state_path, model=model.state_dict(), optimizer=optimizer.state_dict(),
                        scheduler=None if scheduler is None else scheduler.state_dict(),
                        scaler=scaler.state_dict() if use_amp else None, history=history, epoch=epoch,
                        best_score=best_score, best_epoch=best_epoch, best_state=best_state,
                        bad_epochs=bad_epochs, torch_rng=torch.get_rng_state())
        if stop is None and time_limit is not None and epoch + 1 < epochs:
            elapsed = time.monotonic() - started
            per_epoch = elapsed / (epoch + 1 - start_epoch)
            if elapsed + per_epoch > float(time_limit):  # the next epoch would end past the limit
                stop = "time_limit"
        if stop is not None:
            break
    if epoch_bar is not None:
        epoch_bar.close()
    if best_state is not None and val_data is not None:
        model.load_state_dict(best_state)
    result.history, result.best_epoch, result.best_score = history, best_epoch, best_score
    result.stopped = stop or "completed"
    result.epochs_run = max(result.epochs_run, start_epoch)
    for cb in callbacks:
        cb.on_train_end(result.to_dict())
    return result
