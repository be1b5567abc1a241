"""THE per-frame analysis chain: every front end calls :func:`analyze_frame`.

The napari Grains widget, the HyperSpy methods (``s.segment_grains()``,
``s.grain_features()``, ``s.grain_statistics()``), ``mmdl analyze``, ``mmdl
batch``, the report and the demo all hand one 2-D frame, its
:class:`~hyperspy_mmdl.calibration.Calibration` and an
:class:`AnalysisParameters` to :func:`analyze_frame` and present the
:class:`FrameAnalysis` it returns. The same file therefore gives the same
numbers by every route, and a fix lands once.

The chain, in order:

1. **Unit policy.** The image axes are expressed in one readable length unit
   (:meth:`Calibration.readable`: nm, µm or mm by magnitude), or a unit the
   caller imposes (``unit=``: one unit for all the files of a run). Images
   without calibration stay in pixels and say so (:attr:`FrameAnalysis.notes`).
2. **Colour policy** (:mod:`hyperspy_mmdl.preprocess.color`): the BT.601
   luminance for the data bar, preprocessing and the models; the colour kept
   for segmentation.
0. **Values.** :func:`hyperspy_mmdl.validate.check_frame` refuses empty frames and
   frames too small to hold a grain; NaN/Inf pixels become invalid area (no grain
   includes them, the analysed area leaves them out, a warning and a note give
   their fraction); extreme float ranges are normalised in float64; a constant
   frame gives 0 grains with a warning and a note.
3. **Data bar and analysed area.** With ``data_bar=True`` (the default) the
   SEM information strip found by
   :func:`~hyperspy_mmdl.preprocess.databar.find_data_bar` is left out: only
   the rows above it are analysed (:attr:`FrameAnalysis.analysed_rows`), its
   rows get label 0, and every area-based number (area fraction, GBLD, ASTM G)
   uses the analysed area, which travels with the table
   (``table.attrs["image_area"]``).
4. **Preprocessing** of the analysed rows: ``denoise`` then ``normalize``
   (:mod:`hyperspy_mmdl.preprocess`), for segmentation only; the models see
   the luminance of the raw frame.
5. **Segment** (:func:`hyperspy_mmdl.grains.segment`), **measure**
   (:func:`~hyperspy_mmdl.grains.measure`, ImageJ-exact by default) and
   **summarize** (:func:`~hyperspy_mmdl.grains.summarize`) the analysed rows.
6. **Models**: a classifier's probabilities, a PCE model's prediction (with
   this frame's grain feature factors), an attention map.

:func:`measure_frame` is steps 3 and 5 without segmentation, for labels that
exist already (edited in napari, painted elsewhere, read from a batch).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, replace
from typing import Any, Iterator, Mapping

import numpy as np

from .calibration import PIXEL, Calibration
from .errors import CalibrationError, ImageError

__all__ = [
    "AnalysisParameters",
    "FrameAnalysis",
    "analyze_frame",
    "measure_frame",
    "iter_frames",
    "frame_calibration",
    "common_unit",
    "PREPROCESS_KEYS",
    "count_notes",
    "apply_models",
    "check_unit",
    "grain_feature_factors",
    "frames_feature_factors",
]

PREPROCESS_KEYS = ("data_bar", "denoise", "denoise_params", "normalize")
_NO_CALIBRATION = "no calibration: lengths in pixels"


@dataclass(frozen=True)
class AnalysisParameters:
    """Everything that changes the numbers of a frame's analysis.

    Parameters
    ----------
    method : str
        Segmentation method of :func:`hyperspy_mmdl.grains.segment`
        (``"auto"``, ``"boundary"``, ``"threshold"``, ``"learned"``).
    segment_params : dict
        Further keyword arguments of the segmentation, in physical units
        (``lines``, ``threshold``, ``smoothing="30 nm"``, ``boundary_width``,
        ``min_area="0.01 µm²"``, ``min_diameter``, ``exclude_border``, ``model``).
    convention : {"imagej", "skimage"}
        Measurement convention of :func:`hyperspy_mmdl.grains.measure`.
    data_bar : bool
        Leave the SEM data bar out of the analysed area (found automatically).
    denoise : str, optional
        Denoising method of :mod:`hyperspy_mmdl.preprocess.denoise` applied
        before segmentation, with ``denoise_params``.
    normalize : str, optional
        ``"minmax"``, ``"zscore"`` or ``"clahe"``, applied before segmentation.
    classify, predict_pce : str, optional
        Checkpoint (path or pretrained name) of a classifier / PCE model.
    composition, process : dict
        Composition and process fields for the PCE model.
    attention : str, optional
        Attention method of :func:`hyperspy_mmdl.explain.attention_map` for the
        model's map (``"gradcam"`` ...); None for no map.
    device : str
        Torch device of the models (does not change the numbers).

    Example
    -------
    >>> p = AnalysisParameters(method="boundary", segment_params={"lines": "dark"})
    >>> p.segment_kwargs()["lines"]
    'dark'
    """

    method: str = "auto"
    segment_params: Mapping = field(default_factory=dict)
    convention: str = "imagej"
    data_bar: bool = True
    denoise: str | None = None
    denoise_params: Mapping = field(default_factory=dict)
    normalize: str | None = None
    classify: Any = None
    predict_pce: Any = None
    composition: Mapping = field(default_factory=dict)
    process: Mapping = field(default_factory=dict)
    attention: str | None = None
    device: str = "auto"

    def __post_init__(self):
        from .grains.segment import METHODS

        if self.method not in METHODS:
            raise ValueError(f"method must be one of {', '.join(METHODS)}, got {self.method!r}")
        if self.convention not in ("imagej", "skimage"):
            raise ValueError(f"convention must be 'imagej' or 'skimage', got {self.convention!r}")
        for name in ("segment_params", "denoise_params", "composition", "process"):
            if not isinstance(getattr(self, name), Mapping):
                raise ValueError(f"{name}: expected a dict, got {type(getattr(self, name)).__name__}")
            object.__setattr__(self, name, dict(getattr(self, name)))
        bad = {"method", "calibration", "return_info", "data_bar"} & set(self.segment_params)
        if bad:
            raise ValueError(f"segment_params: {sorted(bad)} are set elsewhere (method=, data_bar=)")
        if self.normalize is not None:
            from .preprocess.normalize import METHODS as NORMS

            if self.normalize not in NORMS:
                raise ValueError(f"normalize must be one of {', '.join(NORMS)}, got {self.normalize!r}")
        if self.denoise is not None:
            from .preprocess.denoise import METHODS as DENOISERS

            if self.denoise not in DENOISERS:
                raise ValueError(f"denoise must be one of {', '.join(DENOISERS)}, got {self.denoise!r}")
        elif self.denoise_params:
            raise ValueError("denoise_params need a denoise method")
        if (self.composition or self.process) and self.predict_pce is None:
            raise ValueError("composition/process are only used with predict_pce (a PCE model)")

    def segment_kwargs(self) -> dict:
        """Keyword arguments of :func:`hyperspy_mmdl.grains.segment` (the data bar is the chain's)."""
        return dict(self.segment_params, method=self.method)

    @property
    def uses_models(self) -> bool:
        return self.classify is not None or self.predict_pce is not None

    @classmethod
    def from_segment_kwargs(cls, kwargs: Mapping | None = None, **fields) -> "AnalysisParameters":
        """From ``segment()``-style keywords (``method``, ``data_bar`` and the segmentation
        parameters) plus other fields (models, convention ...).

        Example
        -------
        >>> AnalysisParameters.from_segment_kwargs({"method": "threshold", "data_bar": False}).data_bar
        False
        """
        kw = dict(kwargs or {})
        kw.pop("return_info", None)
        method = kw.pop("method", fields.pop("method", "auto"))
        data_bar = kw.pop("data_bar", True) not in (False, None)
        return cls(method=method, segment_params=kw, data_bar=data_bar, **fields)

    def replace(self, **changes) -> "AnalysisParameters":
        """A copy with some fields changed."""
        return replace(self, **changes)


@dataclass
class FrameAnalysis:
    """What :func:`analyze_frame` (or :func:`measure_frame`) found in one frame.

    Attributes
    ----------
    labels : numpy.ndarray
        int32 grain labels of the whole frame (0 = boundary, background and the
        rows outside the analysed area).
    table : pandas.DataFrame
        One row per grain (:func:`hyperspy_mmdl.grains.measure`), lengths in
        :attr:`unit`; ``attrs["units"]`` per column, ``attrs["image_area"]`` the
        analysed area.
    summary : dict
        :func:`hyperspy_mmdl.grains.summarize` of the table (``units`` inside).
    calibration : Calibration
        The 2-D calibration the numbers are in (one unit on both axes).
    analysed_rows : int
        Rows ``[0, analysed_rows)`` were analysed; the data bar, if any, below.
    image : numpy.ndarray or None
        The frame's luminance (float32) as the models see it.
    method : str
        The segmentation method that ran (``"auto"`` says what it picked).
    segment_info : dict
        The segmenter's account of its parameters (pixels).
    data_bar : DataBar or None
        The data bar found.
    predictions : dict
        Flat model outputs: ``predicted_class``, ``predicted_class_probability``,
        ``p_<class>``, ``pce``, ``fusion_weight_<modality>``.
    probabilities : numpy.ndarray or None
        The classifier's class probabilities, in the order of ``class_names``.
    class_names : list of str or None
    prediction, prediction_unit
        A regressor's output (PCE, %) and its unit.
    attention : numpy.ndarray or None
        Attention map over the frame in [0, 1].
    notes : list of str
        What a person should know (no calibration, colour converted ...), once each.
    """

    labels: np.ndarray
    table: Any
    summary: dict
    calibration: Calibration
    analysed_rows: int
    image: np.ndarray | None = None
    method: str = ""
    segment_info: dict = field(default_factory=dict)
    data_bar: Any = None
    predictions: dict = field(default_factory=dict)
    probabilities: np.ndarray | None = None
    class_names: list | None = None
    prediction: float | None = None
    prediction_unit: str = ""
    attention: np.ndarray | None = None
    notes: list = field(default_factory=list)

    @property
    def unit(self) -> str:
        """The length unit of every number (``"px"`` without calibration)."""
        return self.calibration.unit

    @property
    def n_grains(self) -> int:
        return int(len(self.table))

    @property
    def analysed_area(self) -> float:
        """The analysed area in ``unit²``."""
        return float(self.table.attrs["image_area"])

    @property
    def predicted_class(self) -> str | None:
        return self.predictions.get("predicted_class")

    def row(self) -> dict:
        """One flat, JSON-friendly dict: grain count, summary numbers, method, unit, model outputs.

        Nested summary items (``units``) are left out: :meth:`row_units` gives
        the unit of each column.
        """
        out = {"n_grains": self.n_grains, "method": self.method, "analysed_rows": int(self.analysed_rows),
               "analysed_area": self.analysed_area}
        for k, v in self.summary.items():
            if k in ("units", "n_grains"):
                continue
            out[k] = _plain(v)
        out.update({k: _plain(v) for k, v in self.predictions.items()})
        return out

    def row_units(self) -> dict:
        """The unit of each column of :meth:`row` that has one (for headers: ``mean_ecd [µm]``)."""
        units = {k: v for k, v in (self.summary.get("units") or {}).items() if v}
        units["analysed_area"] = self.calibration.area_unit
        units["mean_ecd_um"] = "µm"
        if self.prediction_unit:
            units["pce"] = self.prediction_unit
        return units


def _plain(v):
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, (list, tuple, np.ndarray)):
        return json.dumps(np.asarray(v).tolist())
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    return str(v)


# ----------------------------------------------------------------------------- frames and units
def frame_calibration(calibration: Calibration | None, unit: str | None = None) -> Calibration:
    """The 2-D calibration the chain measures in: one readable length unit, or ``unit``.

    Parameters
    ----------
    calibration : Calibration or None
        Of the image or of the whole stack (its image axes are used); None: pixels.
    unit : str, optional
        Express lengths in this unit (one unit for all the files of a run);
        ignored for images in pixels.

    Example
    -------
    >>> frame_calibration(Calibration.from_pixel_size(1.5e-6, "mm")).describe()
    '1.5 nm/px'
    """
    if calibration is None:
        return Calibration.uncalibrated()
    cal = calibration.image.readable()
    if unit is not None and cal.is_calibrated and unit != PIXEL:
        cal = cal.to_unit(unit)
    return cal


def common_unit(calibrations) -> str:
    """One length unit for the tables of a run: the readable unit of the median pixel size
    of the calibrated images (``"px"`` when none is calibrated).

    Example
    -------
    >>> common_unit([Calibration.from_pixel_size(5, "nm"), Calibration.from_pixel_size(0.2, "µm"),
    ...              Calibration.from_pixel_size(0.3, "µm")])
    'µm'
    """
    from .calibration import convert_length, readable_unit

    sizes = []
    for c in calibrations:
        c = c.image.readable()
        if c.is_calibrated:
            sizes.append(convert_length(min(c.pixel_size), c.unit, "nm"))
    if not sizes:
        return PIXEL
    return readable_unit(float(np.median(sizes)), "nm")


def iter_frames(data, calibration: Calibration, *, rgb: bool | None = None) -> Iterator[tuple]:
    """``(frame index or None, frame, calibration)`` for an image or a stack.

    Parameters
    ----------
    data : array_like
        ``(H, W)``, ``(..., H, W)``, colour ``(..., H, W, 3|4)`` or structured RGB.
    calibration : Calibration
        Of ``data`` (one entry per non-channel axis).
    rgb : bool, optional
        Whether ``data`` has a channel axis last; by default it does when it has
        one axis more than ``calibration``.

    Yields
    ------
    tuple
        ``(None, frame, cal)`` for a single image, ``(i, frame, cal)`` for the
        i-th frame (navigation axes flattened) of a stack.
    """
    if rgb is None:
        rgb = np.ndim(data) == calibration.ndim + 1 and np.shape(data)[-1] in (3, 4)
    frame_nd = 3 if rgb else 2
    if np.ndim(data) == frame_nd:
        yield None, np.asarray(data), calibration
        return
    shape = np.shape(data)
    flat = data.reshape((-1,) + tuple(shape[-frame_nd:]))
    for i in range(flat.shape[0]):
        f = flat[i]
        if hasattr(f, "compute"):
            f = f.compute()
        yield i, np.asarray(f), calibration


# ----------------------------------------------------------------------------- the chain
def _analysed_rows(grey: np.ndarray, params: AnalysisParameters):
    if not params.data_bar:
        return grey.shape[0], None
    from .preprocess.databar import find_data_bar

    bar = find_data_bar(grey)
    return (grey.shape[0], None) if bar is None else (bar.top, bar)


def _checked_frame(image) -> np.ndarray:
    a = np.asarray(image)
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[-1] not in (3, 4)):
        raise ValueError(f"expected one 2-D frame (grey or RGB), got an array of shape {a.shape}")
    if a.shape[0] == 0 or a.shape[1] == 0:
        raise ImageError(f"the frame is empty (shape {a.shape}): there is nothing to analyse")
    return a


MAX_PIXEL_ASPECT = 1.5
#: ASTM E112 grain size numbers by the planimetric and the intercept procedure estimate the same G
#: for grains that fill the plane; a larger difference gets a note (labels that are not such grains).
MAX_G_DISAGREEMENT = 1.0
"""Pixels longer than this one way than the other get a note (a scan or a calibration gone wrong)."""


def measure_frame(labels, calibration: Calibration | None = None, *, image=None,
                  analysed_rows: int | None = None, params: AnalysisParameters | None = None,
                  unit: str | None = None, invalid=None) -> FrameAnalysis:
    """Measure and summarise existing labels of one frame (steps 3 and 5 without segmenting).

    Parameters
    ----------
    labels : array_like of int
        ``(H, W)`` grain labels (0 = background).
    calibration : Calibration, optional
        Of the frame; pixels when omitted.
    image : array_like, optional
        The frame itself: its data bar is found (``params.data_bar``) when
        ``analysed_rows`` is not given.
    analysed_rows : int, optional
        Rows ``[0, analysed_rows)`` were analysed (as :func:`analyze_frame`
        reported); labels below are ignored.
    params : AnalysisParameters, optional
        ``convention`` and ``data_bar`` are used.
    unit : str, optional
        Length unit of the results (see :func:`frame_calibration`).
    invalid : array_like of bool, optional
        ``(H, W)`` pixels that hold no valid value (NaN/Inf, :func:`hyperspy_mmdl.validate.check_frame`):
        no grain includes them and they are left out of the analysed area.

    Returns
    -------
    FrameAnalysis
        Without model outputs.

    Example
    -------
    >>> lab = np.zeros((20, 20), np.int32); lab[2:8, 2:8] = 1; lab[10:18, 10:18] = 2
    >>> fa = measure_frame(lab, Calibration.from_pixel_size(10, "nm"))
    >>> fa.n_grains, fa.unit, fa.table["area"].tolist()
    (2, 'nm', [3600.0, 6400.0])
    """
    from .grains.measure import measure
    from .grains.summarize import summarize

    from .validate import check_labels, exclude_invalid

    params = params or AnalysisParameters()
    cal = frame_calibration(calibration, unit)
    lab = check_labels(labels)
    if invalid is not None:
        lab = exclude_invalid(lab, invalid)
    if lab.ndim != 2:
        raise ValueError(f"expected 2-D labels of one frame, got shape {lab.shape}")
    bar = None
    if analysed_rows is None:
        if image is not None:
            from .preprocess.color import split_colour

            grey, _ = split_colour(_checked_frame(image))
            if grey.shape != lab.shape:
                raise ValueError(f"labels {lab.shape} and image {grey.shape} differ in shape")
            analysed_rows, bar = _analysed_rows(grey, params)
        else:
            analysed_rows = lab.shape[0]
    analysed_rows = int(min(max(analysed_rows, 0), lab.shape[0]))
    lab = lab.astype(np.int32, copy=False)
    if analysed_rows < lab.shape[0] and lab[analysed_rows:].any():
        lab = lab.copy()
        lab[analysed_rows:] = 0
    # measured on the analysed rows: their area is the analysed area, grains at the data bar touch the edge
    table = measure(lab[:analysed_rows], cal, convention=params.convention)
    if invalid is not None and np.any(invalid):  # invalid pixels are not analysed area
        n_bad = int(np.count_nonzero(np.asarray(invalid, bool)[:analysed_rows]))
        table.attrs["image_area"] = float(table.attrs["image_area"]) - n_bad * cal.pixel_area
    summary = summarize(table, cal, labels=lab[:analysed_rows])
    notes = [] if cal.is_calibrated else [_NO_CALIBRATION]
    sy, sx = (abs(float(v)) for v in cal.scale[-2:])
    if cal.is_calibrated and min(sy, sx) > 0 and max(sy, sx) / min(sy, sx) > MAX_PIXEL_ASPECT:
        ratio = max(sy, sx) / min(sy, sx)
        notes.append(f"pixels are {ratio:.0f}× {'taller than wide' if sy > sx else 'wider than tall'} "
                     f"({sy:.4g} × {sx:.4g} {cal.units[-1]}, y × x): shapes and sizes follow them; "
                     "check the file's calibration")
    g_area, g_line = summary.get("astm_g_planimetric", np.nan), summary.get("astm_g_intercept", np.nan)
    if np.isfinite(g_area) and np.isfinite(g_line) and abs(g_area - g_line) > MAX_G_DISAGREEMENT:
        notes.append(f"ASTM G by the planimetric ({g_area:.2f}) and intercept ({g_line:.2f}) procedures differ "
                     f"by {abs(g_area - g_line):.1f}: the labels may not be grains filling the image (particles, "
                     "gaps, unsegmented regions); check the overlay")
    return FrameAnalysis(labels=lab, table=table, summary=summary, calibration=cal,
                         analysed_rows=analysed_rows, data_bar=bar, notes=notes)


def analyze_frame(image, calibration: Calibration | None = None, params: AnalysisParameters | None = None,
                  *, unit: str | None = None, labels=None, what: str = "the frame") -> FrameAnalysis:
    """Run the whole chain on one frame (see the module docstring).

    Parameters
    ----------
    image : array_like
        One frame: ``(H, W)`` grey, ``(H, W, 3|4)`` colour or structured RGB; any
        real dtype.
    calibration : Calibration, optional
        Of the frame (or of its stack: the image axes are used); pixels when omitted.
    params : AnalysisParameters, optional
        What to compute; the defaults a user gets otherwise.
    unit : str, optional
        Length unit of the results (one unit for all files of a run).
    labels : array_like, optional
        Use these labels instead of segmenting (the models still run).
    what : str
        How warnings about the frame's values name it (``"film.dm4, frame (3,)"``).

    Returns
    -------
    FrameAnalysis

    Example
    -------
    >>> from hyperspy_mmdl.synthetic import polycrystal
    >>> s = polycrystal(shape=(128, 128), pixel_size=10, unit="nm", mean_ecd=250, seed=1)
    >>> fa = analyze_frame(s.image, s.calibration)
    >>> fa.unit, fa.n_grains > 10
    ('nm', True)
    """
    from .grains.segment import segment
    from .preprocess.color import split_colour
    from .validate import check_frame

    params = params or AnalysisParameters()
    frame = _checked_frame(image)
    checked = check_frame(frame, what=what)  # empty/tiny frames, NaN/Inf, extreme or constant values
    frame = checked.image
    cal = frame_calibration(calibration, unit)
    grey, rgb = split_colour(frame)
    rows, bar = _analysed_rows(grey, params)
    info: dict = {"method": "given labels"}
    if labels is None and checked.constant:
        labels, info = np.zeros(grey.shape[:2], np.int32), {"method": "none (constant image)"}
    if labels is None:
        seg = grey[:rows] if rgb is None else rgb[:rows]
        if params.denoise or params.normalize:
            seg = _preprocess(grey[:rows], cal, params)
        lab, info = segment(seg, cal, data_bar=False, return_info=True, **params.segment_kwargs())
        lab = np.asarray(lab, dtype=np.int32)
        if rows < frame.shape[0]:
            lab = np.concatenate([lab, np.zeros((frame.shape[0] - rows, lab.shape[1]), np.int32)])
        labels = lab
    result = measure_frame(labels, cal, analysed_rows=rows, params=params, unit=unit, invalid=checked.invalid)
    result.notes.extend(checked.notes)
    result.data_bar = bar
    result.method = str(info["method"])
    result.segment_info = info
    result.image = np.asarray(grey, dtype=np.float32)
    if bar is not None:
        result.notes.append(f"data bar found (rows {bar.top}–{bar.height - 1}): left out, the analysis covers "
                            f"rows 0–{bar.top - 1}")
    if rgb is not None:
        result.notes.append("colour image: segmented in colour, measured and modelled on its BT.601 luminance")
    if "auto" in info:
        result.notes.append(f"method 'auto' chose '{info['method']}': {info['auto'].get('reason', '')}")
    learned = info.get("learned", {})
    if learned.get("scale", 1.0) != 1.0:
        why = ("the zoom at which it was most certain (grains far from the size it was trained on)"
               if "certainty" in learned else "as asked (scale)")
        result.notes.append(f"the learned model ran on the image resampled by {learned['scale']:.2f}, {why}")
    result.notes.extend(info.get("quality", ()))
    if params.uses_models:
        apply_models(result, params)
    return result


def _preprocess(grey: np.ndarray, cal: Calibration, params: AnalysisParameters) -> np.ndarray:
    """``denoise`` then ``normalize`` of the analysed rows (luminance), for segmentation."""
    out = grey
    if params.denoise:
        from .preprocess.denoise import denoise

        out = denoise(out, params.denoise, calibration=cal, **dict(params.denoise_params))
    if params.normalize:
        from .preprocess.normalize import normalize

        out = normalize(out, params.normalize)
    return np.asarray(out)


def frames_feature_factors(frames, calibration: Calibration | None = None,
                           params: AnalysisParameters | None = None, unit: str = "µm") -> np.ndarray:
    """``(n_frames, 6)`` feature factors of frames ``(n, H, W[, 3])``, each analysed by
    :func:`analyze_frame` (the PCE models' grain inputs)."""
    return np.stack([grain_feature_factors(analyze_frame(f, calibration, params), unit) for f in frames])


def grain_feature_factors(result: FrameAnalysis, unit: str = "µm") -> np.ndarray:
    """The SPEC §3.1.3 feature factors of an analysed frame, lengths in ``unit`` (the PCE
    models' grain inputs), in the order of :data:`hyperspy_mmdl.grains.summarize.FEATURE_FACTORS`.

    Example
    -------
    >>> lab = np.zeros((20, 20), np.int32); lab[2:8, 2:8] = 1
    >>> grain_feature_factors(measure_frame(lab, Calibration.from_pixel_size(100, "nm"))).shape
    (6,)
    """
    from .calibration import convert_length
    from .grains.summarize import FEATURE_FACTORS

    s = result.summary
    u = result.unit
    f = 1.0 if u == PIXEL or u == unit else convert_length(1.0, u, unit)
    scale = {"mean_ecd": f, "mean_major_axis": f, "sd_ecd": f, "gbld": 1.0 / f}
    return np.array([float(s[k]) * scale.get(k, 1.0) for k in FEATURE_FACTORS], dtype=np.float32)


def apply_models(result: FrameAnalysis, params: AnalysisParameters) -> None:
    """Classifier, PCE model and attention map of one analysed frame, in place.

    :func:`analyze_frame` calls it when ``params`` name a model; call it on a
    :class:`FrameAnalysis` to add a model's outputs later (the demo trains its
    classifier after measuring).
    """
    from . import inference

    image, cal = result.image, result.calibration
    out = result.predictions
    attention_pred = None
    if params.classify is not None:
        pred = inference.get_predictor(params.classify, device=params.device)
        probs = np.asarray(inference.classify(image, cal, pred, device=params.device),
                           dtype=np.float64).reshape(-1)
        names = [str(n) for n in pred.class_names]
        best = int(np.argmax(probs))
        result.probabilities, result.class_names = probs, names
        out["predicted_class"] = names[best] if best < len(names) else str(best)
        out["predicted_class_probability"] = float(probs[best])
        for name, p in zip(names, probs):
            out[f"p_{name}"] = float(p)
        attention_pred = pred
    if params.predict_pce is not None:
        pred = inference.get_predictor(params.predict_pce, device=params.device)
        feats = grain_feature_factors(result)[None] if inference.uses_grain_features(pred.card) else None
        pce, weights = inference.predict_pce(image, cal, pred, composition=dict(params.composition),
                                             process=dict(params.process), grain_features=feats,
                                             device=params.device, notes=result.notes)
        result.prediction = float(np.asarray(pce, dtype=np.float64).reshape(-1)[0])
        result.prediction_unit = pred.card.target_unit or ""
        out["pce"] = result.prediction
        if weights is not None:
            for name, w in zip(inference.MODALITIES, np.asarray(weights, dtype=np.float64).reshape(-1)):
                out[f"fusion_weight_{name}"] = float(w)
        if "image" not in pred.card.masked_modalities:  # a model that does not see images has no image map
            attention_pred = attention_pred or pred
    if params.attention and attention_pred is not None:
        from . import explain

        kw = {}
        if attention_pred.card.task == "regress-pce":
            kw = dict(composition=dict(params.composition), process=dict(params.process))
        result.attention = np.asarray(explain.attention_map(image, cal, attention_pred, params.attention,
                                                            device=params.device, **kw), np.float32)


def count_notes(pairs) -> list[str]:
    """Each kind of note once, with the files it concerns (named when there are at most ``NAMED_FILES``).

    Parameters
    ----------
    pairs : iterable of (file, note)
        ``file`` may be a path; notes name its base name.

    Example
    -------
    >>> count_notes([("in/a.tif", "no calibration: lengths in pixels"), ("b.tif", "no calibration: lengths in pixels"),
    ...              ("b.tif", "only 1 grain found")])
    ['2 files (a.tif, b.tif): no calibration: lengths in pixels', 'b.tif: only 1 grain found']
    """
    from pathlib import PurePath

    files: dict[str, dict] = {}
    for f, note in pairs:
        files.setdefault(str(note), {})[str(f)] = None
    out = []
    for note, v in files.items():
        names = [PurePath(f).name or f for f in v]
        if len(names) == 1:
            out.append(f"{names[0]}: {note}")
        elif len(names) <= NAMED_FILES:
            out.append(f"{len(names)} files ({', '.join(names)}): {note}")
        else:
            out.append(f"{len(names)} files: {note}")
    return out


NAMED_FILES = 3


def grains_text(n: int) -> str:
    """``"1 grain"``, ``"412 grains"``: a grain count as a person writes it.

    Example
    -------
    >>> grains_text(1), grains_text(0)
    ('1 grain', '0 grains')
    """
    return f"{n} grain" if n == 1 else f"{n} grains"


def check_unit(unit: str | None) -> str | None:
    """Validate a unit imposed on a run (a length, or None)."""
    if unit is None:
        return None
    from .calibration import is_length, normalize_unit

    u = normalize_unit(unit)
    if u != PIXEL and not is_length(u):
        raise CalibrationError(f"{unit!r} is not a length unit")
    return u
