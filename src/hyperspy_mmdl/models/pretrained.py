"""Trained models shipped inside the package, by name.

Each shipped model is one checkpoint file in ``hyperspy_mmdl/pretrained/``,
``<name>.pt`` (the ordinary checkpoint format of :mod:`hyperspy_mmdl.checkpoint`,
its model card inside), with the human-readable model card beside it as
``<name>.md`` (data, licence, recipe, held-out metrics, the script that made it).
Wherever a checkpoint path is accepted, one of these names works too:
:func:`resolve` turns a name into its file.

Examples
--------
>>> "grain-boundary-unet" in list_pretrained()  # doctest: +SKIP
True
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["PRETRAINED_DIR", "list_pretrained", "pretrained_path", "model_card_text", "resolve"]

#: The folder of the shipped checkpoints.
PRETRAINED_DIR = Path(__file__).resolve().parents[1] / "pretrained"

_SUFFIX = ".pt"


def list_pretrained() -> list[str]:
    """Names of the models shipped with the package, sorted.

    Returns
    -------
    list of str

    Examples
    --------
    >>> isinstance(list_pretrained(), list)
    True
    """
    if not PRETRAINED_DIR.is_dir():
        return []
    return sorted(p.name[: -len(_SUFFIX)] for p in PRETRAINED_DIR.glob(f"*{_SUFFIX}") if p.is_file())


def pretrained_path(name: str) -> Path:
    """The checkpoint file of the shipped model ``name``.

    Raises
    ------
    KeyError
        No shipped model has that name (the message lists those that exist).
    """
    path = PRETRAINED_DIR / f"{name}{_SUFFIX}"
    if not path.is_file() or os.sep in name or "/" in name:
        raise KeyError(f"no pretrained model named {name!r}; shipped: {', '.join(list_pretrained()) or 'none'}")
    return path


def model_card_text(name: str) -> str:
    """The Markdown model card shipped beside ``name`` ('' when there is none)."""
    card = pretrained_path(name).with_suffix(".md")
    return card.read_text(encoding="utf-8") if card.is_file() else ""


def resolve(model) -> Path:
    """A checkpoint path from a path or a pretrained name.

    An existing file wins; otherwise a string without a path separator is
    looked up among :func:`list_pretrained`.

    Raises
    ------
    FileNotFoundError
        Neither a file nor a shipped name; the message lists the shipped names.

    Examples
    --------
    >>> resolve("no-such-model")
    Traceback (most recent call last):
    ...
    FileNotFoundError: checkpoint not found: no-such-model (not a file, and not one of the pretrained models: ...)
    """
    path = Path(model)
    if path.is_file():
        return path
    text = str(model)
    if "/" not in text and os.sep not in text and not path.suffix:
        try:
            return pretrained_path(text)
        except KeyError:
            pass
    names = ", ".join(list_pretrained()) or "none shipped"
    raise FileNotFoundError(f"checkpoint not found: {model} (not a file, and not one of the pretrained "
                            f"models: {names})")
