"""Training recipes as data: one TOML preset per paper, plus napari-mmdl's own.

``load_recipe("vgg_grain")`` reads ``vgg_grain.toml`` from this folder (or any
TOML file given by path) and returns a nested dict with the sections
``data``, ``model_config``, ``init`` (a pre-trained starting point),
``optimizer``, ``schedule``, ``loss``, ``train`` and ``augment``.
:data:`DEFAULT_CLASSIFY` (``finetune``) is the classifier recipe used when none
is named; the papers' recipes are kept verbatim. Overrides use dotted keys, as on the command line::

    load_recipe("psc_fusion", ["train.epochs=5", "optimizer.lr=3e-4"])

Values are parsed as TOML (numbers, booleans, strings, lists); a bare word
that is not valid TOML is taken as a string.
"""

from __future__ import annotations

import copy
from pathlib import Path

try:  # Python >= 3.11
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10
    import tomli as tomllib

__all__ = ["RECIPE_DIR", "DEFAULT_CLASSIFY", "list_recipes", "load_recipe", "apply_overrides", "parse_value"]

RECIPE_DIR = Path(__file__).resolve().parent
#: the recipe of ``mmdl train --task classify`` and of the Train widget when none is named
DEFAULT_CLASSIFY = "finetune"
SECTIONS = ("data", "model_config", "init", "optimizer", "schedule", "loss", "train", "augment")


def list_recipes() -> list[str]:
    """Names of the bundled recipes."""
    return sorted(p.stem for p in RECIPE_DIR.glob("*.toml"))


def parse_value(text: str):
    """Parse one override value as TOML (``"3"`` -> 3, ``"[1, 2]"`` -> [1, 2], ``"adam"`` -> "adam")."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def apply_overrides(recipe: dict, overrides) -> dict:
    """Return a copy of ``recipe`` with ``"section.key=value"`` overrides applied.

    ``overrides`` is a list of such strings or a dict ``{"section.key": value}``.
    Unknown sections raise ``ValueError``; new keys inside a section are allowed.
    """
    out = copy.deepcopy(recipe)
    if not overrides:
        return out
    items = overrides.items() if isinstance(overrides, dict) else [_split(o) for o in overrides]
    for key, value in items:
        parts = key.split(".")
        if len(parts) == 1:
            out[parts[0]] = value
            continue
        if parts[0] not in SECTIONS:
            raise ValueError(f"recipe override {key!r}: unknown section {parts[0]!r} (one of {SECTIONS})")
        node = out.setdefault(parts[0], {})
        for p in parts[1:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = value
    return out


def _split(text: str):
    if "=" not in text:
        raise ValueError(f"recipe override {text!r} must look like section.key=value")
    key, value = text.split("=", 1)
    return key.strip(), parse_value(value.strip())


def load_recipe(name_or_path, overrides=None) -> dict:
    """Load a bundled recipe by name, or a TOML file by path, and apply overrides.

    Raises
    ------
    ValueError
        Unknown recipe name (the message lists the bundled ones) or invalid TOML
        (the message names the file).
    """
    path = Path(str(name_or_path))
    if path.suffix != ".toml" or not path.is_file():
        candidate = RECIPE_DIR / f"{name_or_path}.toml"
        if not candidate.is_file():
            raise ValueError(f"unknown recipe {name_or_path!r}; bundled recipes: {', '.join(list_recipes())}")
        path = candidate
    try:
        with open(path, "rb") as fh:
            recipe = tomllib.load(fh)
    except tomllib.TOMLDecodeError as err:
        raise ValueError(f"{path}: invalid recipe TOML: {err}") from None
    for section in SECTIONS:
        recipe.setdefault(section, {})
    recipe.setdefault("name", path.stem)
    recipe["source"] = str(path)
    return apply_overrides(recipe, overrides)
