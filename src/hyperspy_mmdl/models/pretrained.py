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

__all__ = ["PRETRAINED_DIR", "CHECKPOINT_SUFFIXES", "list_pretrained", "pretrained_path", "model_card_text",
           "resolve", "models_folder", "user_models", "trained_models"]

#: The folder of the shipped checkpoints.
PRETRAINED_DIR = Path(__file__).resolve().parents[1] / "pretrained"

_SUFFIX = ".pt"

#: file suffixes of model files in the user's models folder
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt")


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


def models_folder() -> Path:
    """The user's models folder: where ``mmdl train`` and the Train widget save, and the pickers look.

    ``<user data dir>/napari-mmdl/models`` (``platformdirs.user_data_dir``), or the
    folder named by the environment variable ``MMDL_MODELS_DIR`` (tests, shared
    installations). The folder may not exist yet.

    Returns
    -------
    Path

    Examples
    --------
    >>> models_folder().name
    'models'
    """
    env = os.environ.get("MMDL_MODELS_DIR")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_data_dir("napari-mmdl")) / "models"


def user_models(folder=None) -> list[Path]:
    """Model files in the user's models folder (or ``folder``), sorted by name.

    Training states kept beside a model for ``--resume`` (``*.state.pt``) are not listed.

    Examples
    --------
    >>> import tempfile
    >>> user_models(tempfile.mkdtemp())
    []
    """
    folder = models_folder() if folder is None else Path(folder)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in CHECKPOINT_SUFFIXES
                  and not p.name.endswith(".state.pt"))  # training states (`--resume`) are not models


def trained_models(folder=None) -> list[tuple[str, Path, bool]]:
    """Every trained model a user can apply: the shipped ones first, then the models folder.

    Returns
    -------
    list of (name, path, pretrained)
        ``name`` is the pretrained name (usable wherever a checkpoint path is)
        or the file name; ``pretrained`` tells which list it came from.

    Examples
    --------
    >>> all(isinstance(p, Path) for _, p, _ in trained_models())
    True
    """
    out = [(name, pretrained_path(name), True) for name in list_pretrained()]
    out += [(p.name, p, False) for p in user_models(folder)]
    return out
