"""Apply trained models to micrographs: one predictor for every task.

Every function takes plain arrays (frames first, ``(H, W)`` or ``(N, H, W)``)
plus the :class:`~hyperspy_mmdl.calibration.Calibration` of the image axes and a
model given as a checkpoint path, a :class:`Predictor` or a ``(module, card)``
pair. The package is split by concern:

* :mod:`.device` — :func:`select_device`;
* :mod:`.predictor` — :class:`Predictor`, :func:`get_predictor` (load once per
  process: a cache keyed by path, modification time and device),
  :func:`run_steps`; a model used for another task than its card's raises
  :class:`~hyperspy_mmdl.errors.WrongTaskError`;
* :mod:`.prepare` — channels, resampling to the card's pixel size and the
  card's normalisation (both written once, in :mod:`hyperspy_mmdl.preprocess`);
* :mod:`.tiling` — tiles of the model's input size with feathered overlap;
* task heads: :mod:`.classify` (probabilities averaged over tiles),
  :mod:`.dense` (per-pixel maps, blended), :mod:`.pce` (PSC-Fusion),
  :mod:`.segment` (boundary U-Net for ``grains.segment(method="learned")``),
  :mod:`.restore` (Noise2Void denoising, super-resolution).

Tiles of all frames are pooled and run through the model in batches of
``batch_size``; on CUDA the forward pass runs under automatic mixed precision
(float16), elsewhere in float32.

The long-running functions exist in two forms: ``classify(...)`` returns the
result, ``iter_classify(...)`` is a generator that yields ``(done, total)``
progress pairs and returns the result (``result = yield from
iter_classify(...)``), which is what the napari widgets run in a worker thread
so that they can show progress and be cancelled between batches.

Importing this package registers the runners of the ``"segment"``, ``"denoise"``
and ``"super-resolve"`` tasks with :func:`hyperspy_mmdl.checkpoint.register_runner`,
through which the lower layers (``grains``, ``preprocess``) reach the predictor.

Example
-------
>>> from hyperspy_mmdl import inference
>>> probs = inference.classify(stack, calibration, "grain.pt")       # doctest: +SKIP
"""

from __future__ import annotations

from ..calibration import Calibration  # noqa: F401  (callers used inference.Calibration)
from ..checkpoint import register_runner
from .classify import classify, iter_classify
from .dense import iter_predict_dense, model_output_fn, predict_dense, sigmoid_output_fn
from .device import select_device
from .pce import (
    MODALITIES,
    encode_tabular,
    fusion_weights,
    uses_grain_features,
    iter_predict_pce,
    model_inputs,
    pce_notes,
    predict_pce,
    tabular_fields,
)
from .predictor import Predictor, clear_cache, default_batch, get_predictor, main_output, run_steps
from .prepare import normalize, prepare_frames, resample_to_pixel_size
from .restore import denoise, super_resolve
from .segment import predict_boundaries
from .tiling import feather_window, tile_starts

register_runner("segment", predict_boundaries)
register_runner("denoise", denoise)
register_runner("super-resolve", super_resolve)
register_runner("predictor", get_predictor)

__all__ = [
    "select_device",
    "Predictor",
    "get_predictor",
    "clear_cache",
    "normalize",
    "resample_to_pixel_size",
    "prepare_frames",
    "tile_starts",
    "feather_window",
    "classify",
    "iter_classify",
    "predict_dense",
    "iter_predict_dense",
    "model_output_fn",
    "sigmoid_output_fn",
    "predict_pce",
    "iter_predict_pce",
    "encode_tabular",
    "tabular_fields",
    "fusion_weights",
    "uses_grain_features",
    "model_inputs",
    "pce_notes",
    "MODALITIES",
    "run_steps",
    "default_batch",
    "main_output",
    "predict_boundaries",
    "denoise",
    "super_resolve",
]
