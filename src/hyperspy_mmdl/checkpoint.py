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
    "check_checkpoint",
    "library_versions",
    "TASKS",
    "check_task",
    "register_runner",
    "runner",
]

FORMAT = "napari-mmdl-checkpoint"
FORMAT_VERSION = 1

TASKS = ("classify", "regress-pce", "segment", "denoise", "super-resolve")

#: What :meth:`ModelCard.validate` accepts. A card outside these limits describes no model this
#: package trains (or it was edited by hand or damaged), and using it would silently change the
#: predictions or allocate far more memory than the weights need.
NORMALIZATIONS = ("minmax", "zscore", "clahe", "none")
#: ``(smallest, largest)`` side of the model input in pixels: image-level models (a classifier, the
#: PCE regressor) see whole tiles and are trained at 32–1024 px; dense models (segmentation,
#: denoising, super-resolution) at patches of 4 px (a ×4 super-resolution model's low-resolution
#: patch) and more.
INPUT_SIDE = {"classify": (32, 1024), "regress-pce": (32, 1024), "segment": (4, 1024),
              "denoise": (4, 1024), "super-resolve": (4, 1024)}
#: Pixel sizes of micrographs, in metres: from aberration-corrected STEM (a few pm) to photographs
#: of macroscopic samples (a tenth of a millimetre and more).
PIXEL_SIZE_RANGE_M = (1e-12, 1e-2)
MAX_NUM_CLASSES = 10_000
MAX_SCALE_FACTOR = 8
#: A card's configuration integers (widths, depths, sizes) may not exceed the largest dimension of any
#: weight tensor in the file, the number of tensors, or this floor (image sizes, reductions ...).
CONFIG_INT_FLOOR = 1024

#: The function that applies a model of each task, installed by :mod:`hyperspy_mmdl.inference`.
_RUNNERS: dict = {}


def check_task(card, task, use: str, source) -> None:
    """Raise :class:`~hyperspy_mmdl.errors.WrongTaskError` unless ``card.task`` is ``task``.

    Parameters
    ----------
    card : ModelCard
    task : str or tuple of str
        The task the caller needs (or the tasks it accepts).
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
    >>> check_task(ModelCard("unet_boundary", task="segment"), ("classify", "regress-pce"), "attention_map", "u.pt")
    Traceback (most recent call last):
    ...
    hyperspy_mmdl.errors.WrongTaskError: u.pt is a 'segment' model; attention_map needs a 'classify' or 'regress-pce' model
    """
    tasks = (task,) if isinstance(task, str) else tuple(task)
    if card.task not in tasks:
        name = source.name if isinstance(source, Path) else str(source)
        wanted = " or ".join(repr(t) for t in tasks)
        raise WrongTaskError(f"{name} is a {card.task!r} model; {use} needs a {wanted} model")


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

    def validate(self, source=None, *, task=None, use: str | None = None, state_dict: dict | None = None
                 ) -> "ModelCard":
        """Check that this card describes a model that can be applied as it says.

        Everything a user of the file relies on is checked before any model is built:
        the task the caller needs, the normalisation, the input size (channels 1 or 3,
        sides in :data:`INPUT_SIDE`), the pixel size (positive, finite, a length unit
        pint knows, within :data:`PIXEL_SIZE_RANGE_M`), the class names against the
        number of outputs, the architecture's sizes (``num_classes`` at most
        :data:`MAX_NUM_CLASSES`, ``in_chans`` 1 or 3, no configuration integer larger
        than anything in the weights, so building the model cannot allocate more than
        the file holds) and, with ``state_dict``, that every weight is finite.

        Parameters
        ----------
        source : str or Path, optional
            The model file, named in the messages.
        task : str or tuple of str, optional
            The task(s) the caller accepts.
        use : str, optional
            What the caller does, for the wrong-task message.
        state_dict : dict, optional
            The weights read from the file.

        Returns
        -------
        ModelCard
            ``self``.

        Raises
        ------
        CheckpointError
            Something is wrong; the message names the file and every problem found.
        WrongTaskError
            ``task`` is given and the card is of another task.

        Examples
        --------
        >>> card = ModelCard("vgg_grain", config={"num_classes": 3}, input_size=[1, 224, 224],
        ...                  pixel_size=0.05, pixel_unit="µm", class_names=["a", "b"])
        >>> card.validate("grain.pt")
        Traceback (most recent call last):
        ...
        hyperspy_mmdl.errors.CheckpointError: grain.pt: the model card does not fit the model: 2 class names (['a', 'b']) for a model with 3 outputs
        """
        where = str(source) if source is not None else f"<{self.architecture} model card>"
        if task is not None:
            check_task(self, task, use or f"a {task!r} call", Path(where) if source is not None else where)
        problems = _card_problems(self, state_dict)
        if problems:
            raise CheckpointError(f"{where}: the model card does not fit the model: " + "; ".join(problems))
        return self

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


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _config_ints(obj, prefix=""):
    """``(dotted key, value)`` of every integer in a (nested) configuration."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _config_ints(v, f"{prefix}{k}.")
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            yield from _config_ints(v, f"{prefix[:-1]}[{i}].")
    elif isinstance(obj, int) and not isinstance(obj, bool):
        yield prefix[:-1], obj


def _card_problems(card: "ModelCard", state_dict: dict | None) -> list[str]:
    """Every problem :meth:`ModelCard.validate` finds, as short sentences."""
    import math

    out: list[str] = []
    if card.normalization not in NORMALIZATIONS:
        out.append(f"normalization {card.normalization!r} is not one of {', '.join(NORMALIZATIONS)}")
    config = card.config
    if not isinstance(config, dict):
        return out + [f"config must be a dict, got {type(config).__name__}"]
    # --- architecture sizes, before anything is built
    n_out = config.get("num_classes")
    if n_out is not None and (not isinstance(n_out, int) or isinstance(n_out, bool)
                              or not 1 <= n_out <= MAX_NUM_CLASSES):
        out.append(f"config num_classes={n_out!r} is not a whole number from 1 to {MAX_NUM_CLASSES}")
        n_out = None
    chans = config.get("in_chans")
    if chans is not None and chans not in (1, 3):
        out.append(f"config in_chans={chans!r} (a model takes 1 (grey) or 3 (RGB) channels)")
    if state_dict is not None:
        shapes = [tuple(getattr(t, "shape", ())) for t in state_dict.values()]
        largest = max((max(s) for s in shapes if s), default=0)
        limit = max(largest, len(shapes), CONFIG_INT_FLOOR)
        big = [f"{k}={v}" for k, v in _config_ints(config) if v > limit and k != "num_classes"]
        if big:
            out.append(f"config {', '.join(big)} asks for more than the weights hold (largest tensor "
                       f"dimension {largest}): building it would allocate memory for weights the file does "
                       "not have")
    if n_out is None and "num_classes" not in config:
        try:
            from .models import model_entry

            n_out = int(model_entry(card.architecture)["num_classes"])
        except (ImportError, ValueError, KeyError):
            n_out = None
    # --- input size
    size = card.input_size
    if size:
        lo, hi = INPUT_SIDE[card.task]
        if len(size) != 3:
            out.append(f"input_size {list(size)} is not [channels, height, width]")
        else:
            c, h, w = size
            if c not in (1, 3):
                out.append(f"input_size has {c} channels (1 grey or 3 RGB)")
            elif chans is not None and chans in (1, 3) and c != chans:
                out.append(f"input_size has {c} channel(s) but config in_chans={chans}")
            if not (lo <= h <= hi and lo <= w <= hi):
                out.append(f"input size {h}×{w} px is outside {lo}–{hi} px for a {card.task!r} model "
                           "(the tile size the model was trained at)")
            fixed = config.get("img_size")
            if isinstance(fixed, int) and (h, w) != (fixed, fixed):
                out.append(f"input size {h}×{w} px but the architecture is built for {fixed}×{fixed} "
                           "(config img_size)")
    # --- pixel size and unit
    from .calibration import PIXEL, convert_length, is_length, normalize_unit

    unit = normalize_unit(card.pixel_unit)
    if unit != PIXEL and not is_length(unit):
        out.append(f"pixel_unit {card.pixel_unit!r} is not a length unit")
    ps = card.pixel_size
    if ps is not None:
        if not _is_number(ps) or not math.isfinite(ps) or ps <= 0:
            out.append(f"pixel_size {ps!r} is not a positive, finite number")
        elif unit != PIXEL and is_length(unit):
            metres = convert_length(float(ps), unit, "m")
            lo_m, hi_m = PIXEL_SIZE_RANGE_M
            if not lo_m <= metres <= hi_m:
                out.append(f"pixel size {ps:g} {unit} ({metres:.3g} m) is outside the range of micrographs "
                           f"({lo_m:g}–{hi_m:g} m per pixel)")
    # --- outputs
    names = card.class_names
    if names is not None:
        if not isinstance(names, list) or not all(isinstance(n, str) and n.strip() for n in names):
            out.append("class_names must be a list of non-empty strings")
        elif len(set(names)) != len(names):
            out.append(f"class_names {names} repeat a name")
        elif card.task == "classify" and n_out is not None and len(names) != n_out:
            out.append(f"{len(names)} class names ({names}) for a model with {n_out} outputs")
    for name in ("target_mean", "target_std", "input_mean", "input_std"):
        v = getattr(card, name)
        if v is not None and not math.isfinite(v):
            out.append(f"{name} is {v}")
    if card.scale_factor > MAX_SCALE_FACTOR:
        out.append(f"scale_factor {card.scale_factor} is larger than {MAX_SCALE_FACTOR}")
    # --- weights
    if state_dict is not None:
        out += _weight_problems(state_dict)
    return out


def _weight_problems(state_dict: dict) -> list[str]:
    """Weights that are not tensors, or floating-point tensors with NaN or infinite values."""
    import torch

    bad, not_tensors = [], []
    for key, t in state_dict.items():
        if not isinstance(t, torch.Tensor):
            not_tensors.append(key)
        elif (t.is_floating_point() or t.is_complex()) and t.numel() and not bool(torch.isfinite(t).all()):
            bad.append(f"{key} ({int((~torch.isfinite(t)).sum())} of {t.numel()})")
    out = []
    if not_tensors:
        out.append(f"weights {', '.join(not_tensors[:3])} are not tensors")
    if bad:
        more = f" and {len(bad) - 3} more" if len(bad) > 3 else ""
        out.append(f"weights with NaN or infinite values: {', '.join(bad[:3])}{more} (a diverged training "
                   "or a damaged file)")
    return out


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


def _umask() -> int:
    """The process's file-creation mask (read without changing it where the system allows)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # elsewhere: the classic read-by-setting (briefly process-wide)
    os.umask(mask)
    return mask


def _atomic_torch_save(obj, path: Path) -> None:
    """``torch.save`` to a temporary file beside ``path``, then :func:`os.replace`.

    The file gets the mode any new file of the user gets (``0o666`` less the umask):
    :func:`tempfile.mkstemp` creates it ``0o600``, which would keep a model saved into
    a shared group folder from the user's colleagues.
    """
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())
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
    """Read the model card of a checkpoint, validated (:meth:`ModelCard.validate`; the weights
    are read too, on CPU, and checked for NaN).

    Examples
    --------
    >>> read_card("grain-boundary-unet").task  # doctest: +SKIP
    'segment'
    """
    path = _resolve(path)
    payload = _read_payload(path)
    return _parse_card(path, payload["card"]).validate(path, state_dict=payload["state_dict"])


def check_checkpoint(path, task=None, use: str | None = None) -> ModelCard:
    """Everything :func:`load_checkpoint` checks, without building the model.

    For a caller that will apply a model many times elsewhere (a batch run on its
    workers) and wants a bad file refused once, up front: the file is read, its card
    validated against its weights (:meth:`ModelCard.validate`), the task checked and the
    architecture looked up in the registry.

    Parameters
    ----------
    path : str or Path
        The model file or a pretrained model's name.
    task : str or tuple of str, optional
        The task(s) the caller accepts.
    use : str, optional
        What the caller does, for the wrong-task message.

    Returns
    -------
    ModelCard

    Raises
    ------
    FileNotFoundError, CheckpointError, WrongTaskError

    Examples
    --------
    >>> check_checkpoint("seg.pt", task="classify", use="mmdl batch --classify")  # doctest: +SKIP
    Traceback (most recent call last):
    ...
    hyperspy_mmdl.errors.WrongTaskError: seg.pt is a 'segment' model; mmdl batch --classify needs a 'classify' model
    """
    path = _resolve(path)
    payload = _read_payload(path)
    card = _parse_card(path, payload["card"])
    card.validate(path, task=task, use=use, state_dict=payload["state_dict"])
    from hyperspy_mmdl import models

    if card.architecture not in models.list_models():
        raise CheckpointError(f"{path}: unknown architecture {card.architecture!r}; this napari-mmdl "
                              f"knows {', '.join(models.list_models())}")
    return card


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
        its model card is invalid (:meth:`ModelCard.validate`: class names, input
        size, pixel size and unit, architecture sizes, NaN weights) or its weights
        do not fit the architecture named in its card.
    WrongTaskError
        ``task`` is given and the file holds a model of another task.

    Examples
    --------
    >>> net, card = load_checkpoint("n2v.pt", task="denoise")  # doctest: +SKIP
    """
    path = _resolve(path)
    payload = _read_payload(path)
    card = _parse_card(path, payload["card"])
    card.validate(path, task=task, state_dict=payload["state_dict"])  # before anything is built
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
