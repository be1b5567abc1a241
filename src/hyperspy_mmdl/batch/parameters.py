"""What a batch computes for every frame: :class:`BatchParameters` and :func:`process_frame`.

The parameters are everything that changes the numbers; their :meth:`~BatchParameters.hash`
is part of every item's identity. :func:`process_frame` runs one frame through
:func:`hyperspy_mmdl.pipeline.analyze_frame` with them (shared with the HyperSpy and
napari front ends).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..calibration import Calibration
from .inputs import _sha256_text, file_checksum


@dataclass(frozen=True)
class BatchParameters:
    """What to compute for every frame; everything that changes the numbers.

    Parameters
    ----------
    segment : str
        Segmentation method of :func:`hyperspy_mmdl.grains.segment` (``"auto"`` ...).
    segment_params : dict
        Keyword arguments of the segmentation method.
    convention : str
        Measurement convention of :func:`hyperspy_mmdl.grains.measure`.
    classify : str or None
        Path of a classification checkpoint.
    predict_pce : str or None
        Path of a PCE (PSC-Fusion) checkpoint.
    composition, process : dict
        Composition and process fields given to the PCE model.
    device : str
        Torch device for the models (not part of the item identity).
    preprocess : dict
        Preprocessing, as in :class:`hyperspy_mmdl.pipeline.AnalysisParameters`
        (the same meaning on every route): ``data_bar`` (bool, default True:
        the SEM data bar is left out of the analysed area; ``remove_data_bar``
        is an older spelling of it), ``denoise`` (a method of
        :mod:`hyperspy_mmdl.preprocess.denoise`) with ``denoise_params``,
        ``normalize`` (``"minmax"``, ``"zscore"``, ``"clahe"``). Part of the item
        identity when not empty (a denoiser checkpoint by its checksum), so a
        rerun with other preprocessing recomputes.
    unit : str, optional
        Length unit of every table of the run; by default the readable unit of
        the median pixel size of the calibrated inputs
        (:func:`hyperspy_mmdl.pipeline.common_unit`). Inputs without calibration
        stay in pixels, in tables of their own (``*_px``).
    """

    segment: str = "auto"
    segment_params: dict = field(default_factory=dict)
    convention: str = "imagej"
    classify: str | None = None
    predict_pce: str | None = None
    composition: dict = field(default_factory=dict)
    process: dict = field(default_factory=dict)
    device: str = "cpu"
    preprocess: dict = field(default_factory=dict)
    unit: str | None = None

    def __post_init__(self):
        if not isinstance(self.segment, str) or not self.segment:
            raise ValueError(f"segment: expected a method name, got {self.segment!r}")
        for name in ("classify", "predict_pce"):
            value = getattr(self, name)
            if value is not None:
                from ..models.pretrained import resolve  # a shipped model's name works too

                try:
                    path = resolve(value)
                except FileNotFoundError:
                    raise FileNotFoundError(f"{name}: checkpoint {str(value)!r} does not exist") from None
                object.__setattr__(self, name, str(path.resolve()))
        if (self.composition or self.process) and self.predict_pce is None:
            raise ValueError("composition/process are only used with predict_pce (a PCE checkpoint)")
        _check_preprocess(self.preprocess)
        if "remove_data_bar" in self.preprocess:  # the older spelling of data_bar
            pre = dict(self.preprocess)
            pre["data_bar"] = bool(pre.pop("remove_data_bar")) or bool(pre.get("data_bar", True))
            object.__setattr__(self, "preprocess", pre)
        if self.preprocess.get("data_bar") is True and len(self.preprocess) == 1:
            object.__setattr__(self, "preprocess", {})  # the default: the same identity as no preprocessing
        from ..pipeline import check_unit

        object.__setattr__(self, "unit", check_unit(self.unit))
        self.analysis()  # validates the segmentation and model parameters once, before any work
        for name in ("segment_params", "composition", "process", "preprocess"):
            value = getattr(self, name)
            if not isinstance(value, dict):
                raise ValueError(f"{name}: expected a dict, got {type(value).__name__}")
            try:
                json.dumps(value, sort_keys=True)
            except TypeError as err:
                raise ValueError(f"{name}: values must be JSON-serialisable ({err})") from None

    def check_models(self) -> dict:
        """Refuse, once and before any frame is read, a model file that cannot do what the run asks.

        Every checkpoint the parameters name (classifier, PCE model, denoiser, learned
        segmentation) is read and validated with
        :func:`hyperspy_mmdl.checkpoint.check_checkpoint` against the task it is used
        for, so a wrong or damaged file is one clear error instead of the same error
        for every frame.

        Returns
        -------
        dict
            ``{path: ModelCard}`` of the models applied to the frames' pixels (classifier,
            PCE model), for the per-input checks of :func:`check_input`.

        Raises
        ------
        CheckpointError, WrongTaskError
            The message names the file and the problem.
        """
        from ..checkpoint import check_checkpoint

        uses = [(self.classify, "classify", "batch --classify"),
                (self.predict_pce, "regress-pce", "batch --predict-pce")]
        denoiser = (self.preprocess.get("denoise_params") or {}).get("model")
        if denoiser is not None:
            uses.append((denoiser, "denoise", "batch --denoise"))
        segmenter = self.segment_params.get("model") if self.segment == "learned" else None
        if segmenter is not None and isinstance(segmenter, (str, Path)):
            uses.append((segmenter, "segment", "batch --segment learned"))
        cards = {}
        for path, task, use in uses:
            if path is not None:
                card = check_checkpoint(path, task=task, use=use)
                if task in ("classify", "regress-pce"):
                    cards[str(path)] = card
        return cards

    def to_dict(self) -> dict:
        return dict(segment=self.segment, segment_params=dict(self.segment_params),
                    convention=self.convention, classify=self.classify, predict_pce=self.predict_pce,
                    composition=dict(self.composition), process=dict(self.process), device=self.device,
                    preprocess=dict(self.preprocess), unit=self.unit)

    def analysis(self):
        """These parameters as the pipeline's :class:`~hyperspy_mmdl.pipeline.AnalysisParameters`."""
        from ..pipeline import AnalysisParameters

        pre = self.preprocess
        return AnalysisParameters(method=self.segment, segment_params=dict(self.segment_params),
                                  convention=self.convention, data_bar=bool(pre.get("data_bar", True)),
                                  denoise=pre.get("denoise"), denoise_params=dict(pre.get("denoise_params") or {}),
                                  normalize=pre.get("normalize"), classify=self.classify,
                                  predict_pce=self.predict_pce, composition=dict(self.composition),
                                  process=dict(self.process), device=self.device)

    def identity(self) -> dict:
        """The parameters that identify a result (paths replaced by content checksums)."""
        from .. import __version__

        d = self.to_dict()
        d.pop("device")
        for name in ("classify", "predict_pce"):
            if d[name] is not None:
                d[name] = {"path": d[name], "sha256": file_checksum(d[name], mode="full")}
        pre = d.pop("preprocess")
        if pre:  # absent when empty: runs without preprocessing keep their earlier identity
            pre = dict(pre)
            model = dict(pre.get("denoise_params") or {}).get("model")
            if model is not None:
                pre["denoise_params"] = {**pre["denoise_params"],
                                         "model": {"path": str(model), "sha256": file_checksum(model, mode="full")}}
            d["preprocess"] = pre
        if d.get("unit") is None:
            d.pop("unit", None)
        d["mmdl_version"] = __version__
        return d

    def hash(self) -> str:
        return _sha256_text(json.dumps(self.identity(), sort_keys=True))


def check_input(frame_shape, calibration: Calibration, cards: dict) -> None:
    """Raise :class:`~hyperspy_mmdl.errors.CalibrationError` when an input's frames cannot be
    brought to a model's pixel size (:func:`hyperspy_mmdl.inference.prepare.check_resampling`):
    the input is then reported once instead of every frame failing the same way.

    Examples
    --------
    >>> from hyperspy_mmdl.checkpoint import ModelCard
    >>> card = ModelCard("vgg_grain", input_size=[1, 224, 224], pixel_size=0.05, pixel_unit="nm")
    >>> check_input((512, 512), Calibration.from_pixel_size(5.0, "nm"), {"tem.pt": card})
    Traceback (most recent call last):
    ...
    hyperspy_mmdl.errors.CalibrationError: tem.pt: resampling the 512×512 px frame from 5 nm/px to the model's 0.05 nm/px (×100 per axis) would make it 51200×51200 px (9.8 GiB per channel); check the image's calibration and the model card's pixel size
    """
    from ..inference.prepare import check_resampling

    for path, card in cards.items():
        check_resampling(tuple(frame_shape), calibration, card, Path(path).name)


_PREPROCESS_KEYS = ("data_bar", "remove_data_bar", "denoise", "denoise_params", "normalize")


def _check_preprocess(pre: dict) -> None:
    """Validate a :class:`BatchParameters` ``preprocess`` dict (clear errors before any work)."""
    if not isinstance(pre, dict):
        raise ValueError(f"preprocess: expected a dict, got {type(pre).__name__}")
    unknown = set(pre) - set(_PREPROCESS_KEYS)
    if unknown:
        raise ValueError(f"preprocess: unknown keys {sorted(unknown)}; use {', '.join(_PREPROCESS_KEYS)}")
    from ..preprocess.denoise import METHODS as DENOISERS
    from ..preprocess.normalize import METHODS as NORMALIZATIONS

    if pre.get("normalize") not in (None, *NORMALIZATIONS):
        raise ValueError(f"preprocess: normalize must be one of {', '.join(NORMALIZATIONS)}, "
                         f"got {pre['normalize']!r}")
    if pre.get("denoise") not in (None, *DENOISERS):
        raise ValueError(f"preprocess: denoise must be one of {', '.join(DENOISERS)}, got {pre['denoise']!r}")
    params = pre.get("denoise_params") or {}
    if params and not pre.get("denoise"):
        raise ValueError("preprocess: denoise_params need a denoise method")
    model = params.get("model")
    if model is not None and not Path(model).is_file():
        raise FileNotFoundError(f"preprocess: denoiser checkpoint {str(model)!r} does not exist")


def process_frame(image: np.ndarray, calibration: Calibration, params: BatchParameters | None = None, *,
                  what: str = "the frame"):
    """One frame through :func:`hyperspy_mmdl.pipeline.analyze_frame` with a batch's parameters.

    ``what`` names the frame in errors and notes about its values (``"film.dm4 frame 3"``).
    Returns the :class:`~hyperspy_mmdl.pipeline.FrameAnalysis` (labels, table, summary, model outputs).
    """
    from ..pipeline import analyze_frame

    params = params or BatchParameters()
    return analyze_frame(image, calibration, params.analysis(), unit=params.unit, what=what)
