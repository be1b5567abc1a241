"""Model files: weights plus a model card, loaded without unpickling code.

A checkpoint is one file written by :func:`torch.save` holding only plain
containers, strings and tensors::

    {"format": "napari-mmdl-checkpoint", "format_version": 1,
     "card": "<the model card as a JSON string>",
     "state_dict": {name: tensor, ...}}

:func:`load_checkpoint` reads it with ``torch.load(..., weights_only=True)``,
which refuses anything but tensors and primitive containers, so a model file
can never run code on load. The model is rebuilt from the card's architecture
name and config with :func:`hyperspy_mmdl.models.create` and the weights are
loaded strictly.

The model card (:class:`ModelCard`) records what a user of the file needs to
apply it correctly: the architecture and its config, the input size and
channels, the intensity normalisation, the pixel size the model was trained at,
the class names (classifiers) or target name and unit (regressors), the
composition/process vocabularies of PSC-Fusion, a summary of the training data,
the metrics measured on held-out data, the library versions and the date.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import tempfile
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from .errors import CheckpointError, MMDLError, WrongTaskError  # CheckpointError re-exported

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "CheckpointError",
    "ModelCard",
    "save_checkpoint",
    "load_checkpoint",
    "read_card",
    "library_versions",
    "TASKS",
    "check_task",
    "register_runner",
    "runner",
]

FORMAT = "napari-mmdl-checkpoint"
FORMAT_VERSION = 1

TASKS = ("classify", "regress-pce", "segment", "denoise", "super-resolve")

#: The function that applies a model of each task, installed by :mod:`hyperspy_mmdl.inference`.
_RUNNERS: dict = {}


def check_task(card, task: str, use: str, source) -> None:
    """Raise :class:`~hyperspy_mmdl.errors.WrongTaskError` unless ``card.task`` is ``task``.

    Parameters
    ----------
    card : ModelCard
    task : str
        The task the caller needs.
    use : str
        What the caller does, for the message.
    source : str or Path
        The model file (its name goes into the message) or a description.

    Examples
    --------
    >>> check_task(ModelCard("vgg_grain", task="classify"), "denoise", "denoise", Path("/m/grain.pt"))
    Traceback (most recent call last):
    ...
    hyperspy_mmdl.errors.WrongTaskError: grain.pt is a 'classify' model; denoise needs a 'denoise' model
    """
    if card.task != task:
        name = source.name if isinstance(source, Path) else str(source)
        raise WrongTaskError(f"{name} is a {card.task!r} model; {use} needs a {task!r} model")


def register_runner(task: str, fn) -> None:
    """Install the function that applies models of ``task`` (done by :mod:`hyperspy_mmdl.inference`).

    Lower layers that accept a model for one of their methods
    (``grains.segment(method="learned")``, ``preprocess.denoise.denoise(method="noise2void",
    model=...)``, ``preprocess.superres.super_resolve(model=...)``) cannot import the
    inference package, which sits above them; they call :func:`runner` instead.
    ``import hyperspy_mmdl`` imports :mod:`hyperspy_mmdl.inference`, which registers
    its runners, so they are always there.

    Parameters
    ----------
    task : str
        One of :data:`TASKS`, or ``"predictor"`` for
        :func:`hyperspy_mmdl.inference.get_predictor` itself (a model file loaded
        once per process, e.g. to read its card before running it).
    fn : callable
        The runner; its signature is the task's (see :mod:`hyperspy_mmdl.inference`).

    Examples
    --------
    >>> runner("denoise").__module__
    'hyperspy_mmdl.inference.restore'
    """
    if task not in TASKS + ("predictor",):
        raise ValueError(f"unknown task {task!r}; one of {TASKS} or 'predictor'")
    _RUNNERS[task] = fn


def runner(task: str):
    """The function registered for ``task`` with :func:`register_runner`.

    Raises
    ------
    MMDLError
        Nothing is registered for ``task``.

    Examples
    --------
    >>> runner("segment").__name__
    'predict_boundaries'
    """
    try:
        return _RUNNERS[task]
    except KeyError:
        raise MMDLError(f"no runner for {task!r} models is registered (hyperspy_mmdl.inference "
                        "registers them when hyperspy_mmdl is imported)") from None




@dataclass
class ModelCard:
    """What a checkpoint says about its model.

    Parameters
    ----------
    architecture : str
        Registry name for :func:`hyperspy_mmdl.models.create` (``"vgg_grain"``,
        ``"psc_fusion"``, ``"unet_boundary"`` ...).
    config : dict
        Keyword arguments for ``models.create(architecture, **config)``; holds
        ``num_classes`` and ``in_chans`` plus any architecture options.
    task : str
        ``"classify"``, ``"regress-pce"``, ``"segment"``, ``"denoise"`` (Noise2Void) or
        ``"super-resolve"`` (SRCNN, RCAN-lite).
    input_size : list of int
        ``[C, H, W]`` the model was trained on.
    normalization : str
        Per-image intensity normalisation applied before the model
        (``"minmax"``, ``"zscore"``, ``"clahe"``, ``"none"``).
    pixel_size : float or None
        Pixel size of the training images (after any resampling), in
        ``pixel_unit``; ``None`` when the training images were uncalibrated.
    pixel_unit : str
        Unit of ``pixel_size`` (``"px"`` when uncalibrated).
    class_names : list of str or None
        Names of the output classes in output order (classifiers).
    target_name, target_unit : str or None
        Name and unit of a regression target (``"PCE"``, ``"%"``).
    vocabularies : dict or None
        PSC-Fusion composition and process vocabularies:
        ``{"composition": {field: [tokens]}, "process": {field: [tokens]},
        "columns": {field: csv column}}``.
    target_mean, target_std : float
        Regressors: the model predicts ``(y − target_mean) / target_std``;
        inference returns ``output · target_std + target_mean`` (0 and 1 by default).
    masked_modalities : list of str
        PSC-Fusion branches switched off in training (``"image"``,
        ``"composition"``, ``"process"``); inference keeps them off.
    input_mean, input_std : float or None
        Dataset intensity statistics (Noise2Void): with ``normalization="zscore"``
        the input is ``(x − input_mean) / input_std`` instead of per image, and
        a restoration model's output is scaled back with them. ``None``: per image.
    scale_factor : int
        Output pixels per input pixel along each axis (super-resolution ×2, ×3,
        ×4; 1 for every other model).
    training_data : dict
        Summary of the data: path, number of samples per split/class, seed.
    metrics : dict
        Metrics on held-out data by the names of :mod:`hyperspy_mmdl.train.metrics`.
    recipe : dict
        The training recipe actually used (optimiser, schedule, epochs ...).
    extra : dict
        Anything else (JSON-serialisable).
    versions : dict
        Library versions; filled in by :func:`save_checkpoint` when empty.
    created : str
        ISO 8601 UTC time; filled in by :func:`save_checkpoint` when empty.

    Examples
    --------
    >>> card = ModelCard("psc_fusion", task="regress-pce", target_mean=15.0, target_std=2.5)
    >>> ModelCard.from_dict(card.to_dict()) == card
    True
    >>> ModelCard.from_dict({"architecture": "srcnn", "task": "super-resolve", "extra": {"factor": 3}}).scale_factor
    3
    """

    architecture: str
    config: dict = field(default_factory=dict)
    task: str = "classify"
    input_size: list = field(default_factory=list)
    normalization: str = "minmax"
    pixel_size: float | None = None
    pixel_unit: str = "px"
    class_names: list | None = None
    target_name: str | None = None
    target_unit: str | None = None
    vocabularies: dict | None = None
    target_mean: float = 0.0
    target_std: float = 1.0
    masked_modalities: list = field(default_factory=list)
    input_mean: float | None = None
    input_std: float | None = None
    scale_factor: int = 1
    training_data: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    recipe: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)
    versions: dict = field(default_factory=dict)
    created: str = ""

    def __post_init__(self):
        if not isinstance(self.architecture, str) or not self.architecture:
            raise ValueError("ModelCard.architecture must be a non-empty registry name")
        if self.task not in TASKS:
            raise ValueError(f"ModelCard.task must be one of {TASKS}, got {self.task!r}")
        self.input_size = [int(v) for v in self.input_size]
        self._adopt_legacy_extra()
        self.target_mean, self.target_std = float(self.target_mean), float(self.target_std)
        if not self.target_std > 0:
            raise ValueError(f"ModelCard.target_std must be > 0, got {self.target_std}")
        self.masked_modalities = [str(m) for m in self.masked_modalities or []]
        self.input_mean = None if self.input_mean is None else float(self.input_mean)
        self.input_std = None if self.input_std is None else float(self.input_std)
        if (self.input_mean is None) != (self.input_std is None):
            raise ValueError("ModelCard.input_mean and input_std are given together or not at all")
        if self.input_std is not None and not self.input_std > 0:
            raise ValueError(f"ModelCard.input_std must be > 0, got {self.input_std}")
        self.scale_factor = int(self.scale_factor)
        if self.scale_factor < 1:
            raise ValueError(f"ModelCard.scale_factor must be >= 1, got {self.scale_factor}")

    def _adopt_legacy_extra(self):
        """Move values that files written before these fields existed kept in ``extra`` to their fields."""
        extra = dict(self.extra or {})
        legacy = {"target_mean": "target_mean", "target_std": "target_std",
                  "masked_modalities": "masked_modalities"}
        if self.task == "denoise":
            legacy.update(mean="input_mean", std="input_std")
        if self.task == "super-resolve":
            legacy.update(factor="scale_factor")
        defaults = {f.name: (f.default_factory() if f.default_factory is not MISSING else f.default)
                    for f in fields(self)}
        for key, name in legacy.items():
            if key in extra and getattr(self, name) == defaults[name]:
                setattr(self, name, extra.pop(key))
        self.extra = extra

    @property
    def in_chans(self) -> int | None:
        """Number of input channels (from ``config`` or ``input_size``)."""
        if "in_chans" in self.config:
            return int(self.config["in_chans"])
        return int(self.input_size[0]) if self.input_size else None

    @property
    def numeric_inputs(self) -> list[str]:
        """Names of a PSC-Fusion model's numeric inputs (``vocabularies["numeric"]``; empty otherwise).

        Examples
        --------
        >>> ModelCard("psc_fusion", task="regress-pce", vocabularies={"numeric": ["gbld"]}).numeric_inputs
        ['gbld']
        """
        return [str(c) for c in (self.vocabularies or {}).get("numeric") or []]

    @property
    def num_classes(self) -> int | None:
        """Number of outputs of a classifier (``None`` for regressors)."""
        if self.class_names:
            return len(self.class_names)
        n = self.config.get("num_classes")
        return int(n) if n is not None else None

    def to_dict(self) -> dict:
        """The card as a plain, JSON-serialisable dict."""
        return _jsonable(asdict(self))

    def to_json(self) -> str:
        # keep insertion order: the order of the vocabularies' fields is the layout of the
        # composition/process encoding, so sorting the keys would scramble the model's inputs
        return json.dumps(self.to_dict(), ensure_ascii=False, sort_keys=False)

    @classmethod
    def from_dict(cls, data: dict) -> "ModelCard":
        """Build a card from a dict; unknown keys go to ``extra``."""
        if not isinstance(data, dict):
            raise ValueError(f"a model card must be a dict, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in known}
        unknown = {k: v for k, v in data.items() if k not in known}
        if unknown:
            kwargs["extra"] = {**dict(kwargs.get("extra") or {}), **unknown}
        if "architecture" not in kwargs:
            raise ValueError("a model card needs an 'architecture' (registry name)")
        return cls(**kwargs)


def _jsonable(obj: Any) -> Any:
    """Convert numpy scalars/arrays, tuples and paths to JSON types."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "tolist") and not isinstance(obj, (str, bytes)):  # numpy arrays / scalars
        return obj.tolist()
    if isinstance(obj, float) and (obj != obj or obj in (float("inf"), float("-inf"))):
        return None
    return obj


def library_versions() -> dict:
    """Versions of the libraries a model file depends on."""
    import platform

    import numpy
    import torch

    from hyperspy_mmdl import __version__

    return {
        "napari-mmdl": __version__,
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "python": platform.python_version(),
    }


def save_checkpoint(path, model, card) -> Path:
    """Write ``model``'s weights and its model card to one file, atomically.

    Parameters
    ----------
    path : str or Path
        Output file (``.pt`` by convention). Parent folders are created.
    model : torch.nn.Module
        The trained model; only its ``state_dict`` is stored.
    card : ModelCard or dict
        The model card. ``versions`` and ``created`` are filled in when empty.

    Returns
    -------
    Path
        The written file.

    Notes
    -----
    The file is written to a temporary file in the same folder and moved into
    place with :func:`os.replace`, so an interrupted save never leaves a
    truncated checkpoint behind.
    """

    path = Path(path)
    if not isinstance(card, ModelCard):
        card = ModelCard.from_dict(dict(card))
    if not card.versions:
        card.versions = library_versions()
    if not card.created:
        card.created = _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "card": card.to_json(),
        "state_dict": state,
    }
    _atomic_torch_save(payload, path)
    return path


def _atomic_torch_save(obj, path: Path) -> None:
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(obj, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def _resolve(model) -> Path:
    """A checkpoint file from a path or a pretrained model's name (:mod:`hyperspy_mmdl.models.pretrained`)."""
    from hyperspy_mmdl.models.pretrained import resolve

    return resolve(model)


def _read_payload(path: Path, map_location="cpu") -> dict:
    import pickle

    import torch

    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        raise CheckpointError(
            f"{path}: refused to load: the file holds Python objects other than tensors and "
            f"plain containers (not a napari-mmdl checkpoint, or an unsafe one): {err}"
        ) from None
    except Exception as err:  # a corrupt zip/pickle stream raises many kinds of errors
        raise CheckpointError(
            f"{path}: not a readable PyTorch file (corrupt or truncated?): "
            f"{type(err).__name__}: {err}"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(
            f"{path}: not a napari-mmdl checkpoint (no '{FORMAT}' header; a bare state_dict or "
            f"another tool's file?)"
        )
    version = payload.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format version {version!r} is newer than this napari-mmdl "
            f"understands ({FORMAT_VERSION}); update napari-mmdl"
        )
    if not isinstance(payload.get("card"), str) or not isinstance(payload.get("state_dict"), dict):
        raise CheckpointError(f"{path}: checkpoint is missing its model card or weights")
    return payload


def _parse_card(path: Path, text: str) -> ModelCard:
    try:
        return ModelCard.from_dict(json.loads(text))
    except (json.JSONDecodeError, TypeError, ValueError) as err:
        raise CheckpointError(f"{path}: the model card is invalid: {err}") from None


def read_card(path) -> ModelCard:
    """Read only the model card of a checkpoint (the weights are loaded too, on CPU)."""
    path = _resolve(path)
    return _parse_card(path, _read_payload(path)["card"])


def _build(architecture: str, config: dict):
    """``models.create(architecture, **config)``; the boundary U-Net also without the registry."""
    from hyperspy_mmdl import models

    create = getattr(models, "create", None)
    if architecture == "unet_boundary":
        names = set(models.list_models()) if hasattr(models, "list_models") else set()
        if create is None or architecture not in names:
            from hyperspy_mmdl.models.unet import unet_boundary

            return unet_boundary(**config)
    if create is None:
        raise ImportError("hyperspy_mmdl.models has no create() registry")
    return create(architecture, **config)


def load_checkpoint(path, device="cpu", model=None, task: str | None = None):
    """Load a checkpoint written by :func:`save_checkpoint`.

    Parameters
    ----------
    path : str or Path
        The model file, or the name of a pretrained model
        (:func:`hyperspy_mmdl.models.list_pretrained`).
    device : str or torch.device
        Where to put the model (``"cpu"``, ``"cuda"``, ``"mps"``).
    model : torch.nn.Module, optional
        Load the weights into this module instead of building one from the
        card with :func:`hyperspy_mmdl.models.create`.
    task : str, optional
        The task the caller needs; a file of another task raises
        :class:`~hyperspy_mmdl.errors.WrongTaskError` before any weights are loaded.

    Returns
    -------
    model : torch.nn.Module
        The model in eval mode on ``device``.
    card : ModelCard
        Its model card.

    Raises
    ------
    FileNotFoundError
        The file does not exist.
    CheckpointError
        The file is corrupt, not a napari-mmdl checkpoint, holds pickled code,
        or its weights do not fit the architecture named in its card.
    WrongTaskError
        ``task`` is given and the file holds a model of another task.

    Examples
    --------
    >>> net, card = load_checkpoint("n2v.pt", task="denoise")  # doctest: +SKIP
    """
    path = _resolve(path)
    payload = _read_payload(path)
    card = _parse_card(path, payload["card"])
    if task is not None:
        check_task(card, task, f"a {task!r} call", path)
    if model is None:
        config = dict(card.config)
        try:
            model = _build(card.architecture, config)
        except (KeyError, ValueError, TypeError, AttributeError, ImportError) as err:
            raise CheckpointError(
                f"{path}: cannot build architecture {card.architecture!r} with config {config}: {err}"
            ) from None
    try:
        model.load_state_dict(payload["state_dict"], strict=True)
    except RuntimeError as err:
        raise CheckpointError(
            f"{path}: weights do not match architecture {card.architecture!r}: {err}"
        ) from None
    model.to(device)
    model.eval()
    return model, card
