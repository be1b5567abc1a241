"""Model registry: ``create(name, num_classes=..., in_chans=..., **config)``.

Every entry is a function ``fn(num_classes=..., in_chans=..., **config) ->
nn.Module`` registered with :func:`register_model`. :func:`create` stores the
full set of build arguments in ``model.default_cfg["config"]`` so a checkpoint
card can rebuild the identical architecture with
``create(card["architecture"], **card["config"])``.
"""

from __future__ import annotations

from typing import Callable

__all__ = ["register_model", "create", "list_models", "model_entry"]

_REGISTRY: dict[str, dict] = {}


def register_model(name: str | None = None, *, input_size=(1, 224, 224), num_classes: int = 3):
    """Decorator registering a model builder under ``name`` (default: the function name).

    Parameters
    ----------
    name : str, optional
        Registry name.
    input_size : tuple of int
        Default ``(C, H, W)`` input of the model (used for cost tables).
    num_classes : int
        Default number of outputs.
    """

    def deco(fn: Callable) -> Callable:
        key = name or fn.__name__
        if key in _REGISTRY:
            raise ValueError(f"model {key!r} is registered twice")
        _REGISTRY[key] = {"fn": fn, "input_size": tuple(input_size), "num_classes": int(num_classes)}
        return fn

    return deco


def list_models() -> list[str]:
    """Registered model names, sorted."""
    return sorted(_REGISTRY)


def model_entry(name: str) -> dict:
    """The registry record ``{"fn", "input_size", "num_classes"}`` of ``name``."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown model {name!r}; available: {', '.join(list_models())}")
    return _REGISTRY[name]


def create(name: str, num_classes: int | None = None, in_chans: int | None = None, **config):
    """Build a registered model.

    Parameters
    ----------
    name : str
        A name from :func:`list_models`.
    num_classes : int, optional
        Number of outputs (default: the entry's default).
    in_chans : int, optional
        Input channels, 1 (grey) or 3 (default: the entry's default).
    **config
        Architecture options of that model (see its builder's docstring).

    Returns
    -------
    torch.nn.Module
        With ``default_cfg = {"name", "input_size", "num_classes", "config"}``.
    """
    entry = model_entry(name)
    num_classes = entry["num_classes"] if num_classes is None else int(num_classes)
    in_chans = entry["input_size"][0] if in_chans is None else int(in_chans)
    if in_chans not in (1, 3):
        raise ValueError(f"in_chans must be 1 or 3, got {in_chans}")
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    model = entry["fn"](num_classes=num_classes, in_chans=in_chans, **config)
    size = tuple(getattr(model, "input_hw", entry["input_size"][1:]))
    model.default_cfg = {
        "name": name,
        "input_size": (in_chans, *size),
        "num_classes": num_classes,
        "config": {"num_classes": num_classes, "in_chans": in_chans, **config},
    }
    return model
