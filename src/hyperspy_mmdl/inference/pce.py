"""PSC-Fusion: power conversion efficiency from an SEM image, composition and process.

Composition and process values are encoded with the vocabularies stored in the
model card by :func:`hyperspy_mmdl.tabular.encode_record` (the encoders the
training table was encoded with); the regression target is de-standardised with
the card's ``target_mean`` and ``target_std``; branches the model was trained
without (``masked_modalities``) stay off.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

from ..calibration import Calibration
from ..tabular import encode_record, grain_feature_columns, grain_feature_values, vocabulary_fields
from .predictor import Predictor, default_batch, get_predictor, run_steps
from .prepare import prepare_frames
from .tiling import plan_tiles, tile_batches

__all__ = ["MODALITIES", "encode_tabular", "tabular_fields", "fusion_weights", "uses_grain_features",
           "model_inputs", "pce_notes", "predict_pce", "iter_predict_pce", "set_modality_mask"]

MODALITIES = ("image", "composition", "process")


def _vocabularies(card) -> dict:
    vocab = card.vocabularies if hasattr(card, "vocabularies") else dict(card).get("vocabularies")
    if not vocab or "composition" not in vocab or "process" not in vocab:
        raise ValueError("the model card has no composition/process vocabularies (not a PSC-Fusion model?)")
    return vocab


def tabular_fields(card) -> dict:
    """``{"composition": {field: [tokens]}, "process": {field: [tokens]}}`` of a PSC-Fusion card.

    Examples
    --------
    >>> from hyperspy_mmdl.checkpoint import ModelCard
    >>> card = ModelCard("psc_fusion", task="regress-pce",
    ...                  vocabularies={"composition": {"etl": ["TiO2"]}, "process": {"solvent": ["DMF"]}})
    >>> tabular_fields(card)["process"]
    {'solvent': ['DMF']}
    """
    return vocabulary_fields(_vocabularies(card))


def encode_tabular(card, composition=None, process=None, *, notes=None):
    """Encode composition and process values with a PSC-Fusion card's vocabularies.

    :func:`hyperspy_mmdl.tabular.encode_record` (the training table's
    encoders; same arguments, returns and errors) on ``card.vocabularies``.

    Examples
    --------
    >>> from hyperspy_mmdl.checkpoint import ModelCard
    >>> card = ModelCard("psc_fusion", task="regress-pce",
    ...                  vocabularies={"composition": {"etl": ["TiO2", "SnO2"]}, "process": {"solvent": ["DMF"]}})
    >>> [a.tolist() for a in encode_tabular(card, {"etl": "TiO2"}, {"solvent": "DMF"})]
    [[1.0, 0.0, 0.0], [1], []]
    """
    return encode_record(_vocabularies(card), composition, process, notes=notes)


def _masked(card) -> set:
    return set(card.masked_modalities)


def set_modality_mask(model, masked) -> None:
    """Switch a PSC-Fusion model's branches off with its own switch (``set_modality_mask`` or ``mask``).

    Parameters
    ----------
    model : torch.nn.Module
    masked : iterable of str
        Modalities to switch off (empty: all on).

    Raises
    ------
    ValueError
        ``masked`` is not empty and the model has no switch.

    Examples
    --------
    >>> class Net:
    ...     mask = set()
    >>> net = Net()
    >>> set_modality_mask(net, ["image"]); net.mask
    {'image'}
    """
    masked = set(masked)
    if hasattr(model, "set_modality_mask"):
        model.set_modality_mask(sorted(masked))
    elif hasattr(model, "mask"):
        model.mask = masked
    elif masked:
        raise ValueError(f"{type(model).__name__} cannot switch modalities off "
                         "(no set_modality_mask / mask)")


class _ModalityMask:
    """Switch PSC-Fusion branches off for a forward pass and restore the card's mask afterwards."""

    def __init__(self, pred: Predictor, masked: set):
        self.pred, self.masked = pred, set(masked)

    def _set(self, masked):
        set_modality_mask(self.pred.model, masked)

    def __enter__(self):
        self.pred.lock.acquire()
        self._set(self.masked)
        return self

    def __exit__(self, *exc):
        try:
            self._set(_masked(self.pred.card))
        finally:
            self.pred.lock.release()


def fusion_weights(attention: Mapping) -> "np.ndarray | None":
    """Per-modality fusion weights ``(B, 3)`` (image, composition, process) from a model's attention dict.

    PSC-Fusion's gates ``w_i = sigmoid(W_i v_i + b_i)`` (SPEC §1.1.5) are
    vectors (``gate="vector"``) or scalars per modality; vectors are averaged.

    Examples
    --------
    >>> [round(float(v), 2) for v in fusion_weights({"fusion_gates": np.ones((2, 3, 4)) * [[[0.1], [0.5], [0.9]]]})[0]]
    [0.1, 0.5, 0.9]
    """
    for key, value in attention.items():
        k = key.lower()
        if "fusion" in k or k in ("gates", "weights", "modality_weights"):
            v = value.float() if hasattr(value, "float") else value
            v = v.detach().cpu().numpy() if hasattr(v, "detach") else np.asarray(v, np.float32)
            if v.ndim >= 2 and v.shape[1] == len(MODALITIES):
                return v.reshape(v.shape[0], len(MODALITIES), -1).mean(-1)
    return None



def _pce_forward(pred: Predictor, x, comp, proc, numeric=None):
    """``(pce in target units (B,), fusion weights (B, 3))`` for one batch."""
    import torch

    b = x.shape[0]
    c = torch.from_numpy(comp).to(pred.device).reshape(1, -1).expand(b, -1)
    p = torch.from_numpy(proc).to(pred.device).reshape(1, -1).expand(b, -1)
    kwargs = {"return_attention": True}
    if numeric is not None:
        n = np.asarray(numeric, np.float32).reshape(-1, np.shape(numeric)[-1])
        kwargs["numeric"] = torch.from_numpy(np.broadcast_to(n, (b, n.shape[1])).copy()).to(pred.device)
    with torch.inference_mode(), pred.autocast():
        out = pred.model(x, c, p, **kwargs)
    att = {}
    if isinstance(out, (tuple, list)):
        out, att = out[0], (out[1] if len(out) > 1 and isinstance(out[1], Mapping) else {})
    pce = out.float().reshape(b, -1)[:, 0].cpu().numpy() * pred.card.target_std + pred.card.target_mean
    w = fusion_weights(att)
    if w is None:
        w = np.full((b, len(MODALITIES)), np.nan, np.float32)
    return pce.astype(np.float32), w.astype(np.float32)


def uses_grain_features(card) -> bool:
    """True when a PCE model takes grain feature factors (SPEC §3.1.7) among its numeric inputs.

    Examples
    --------
    >>> from hyperspy_mmdl.checkpoint import ModelCard
    >>> uses_grain_features(ModelCard("psc_fusion", task="regress-pce", vocabularies={
    ...     "numeric": ["Gr. Size"], "grain_features": {"Gr. Size": {"factor": "mean_ecd", "unit": "nm"}}}))
    True
    """
    return bool(grain_feature_columns(card.vocabularies or {}))


def model_inputs(card) -> list[str]:
    """The inputs a PCE model uses: ``image``, ``grain features``, ``composition``, ``process``.

    From the card (``extra["inputs"]``, written by training); for older files,
    derived from the vocabularies and the masked modalities.

    Examples
    --------
    >>> from hyperspy_mmdl.checkpoint import ModelCard
    >>> model_inputs(ModelCard("psc_fusion", task="regress-pce", masked_modalities=["image"],
    ...                        vocabularies={"composition": {"etl": ["TiO2"]}, "process": {"solvent": ["DMF"]}}))
    ['composition', 'process']
    """
    given = (card.extra or {}).get("inputs")
    if given:
        return [str(m) for m in given]
    from ..tabular import numeric_input_names

    off = set(card.masked_modalities)
    vocab = card.vocabularies or {}
    grains = grain_feature_columns(vocab)
    numeric = numeric_input_names(vocab)
    has = {"composition": bool(vocab.get("composition")) or bool(numeric["composition"]),
           "process": bool(vocab.get("process")) or any(c not in grains for c in numeric["process"])}
    out = [m for m in ("image",) if m not in off]
    if grains and "process" not in off:
        out.append("grain features")
    return out + [m for m in ("composition", "process") if m not in off and has[m]]


def _frame_count(images, channel_axis):
    arr = np.asarray(images)
    return arr.shape[:arr.ndim - (3 if channel_axis is not None else 2)]


def _numeric_inputs(card, record_values, grain_features, calibration, n_rows):
    """``(n_rows, n_numeric)`` numeric inputs (NaN = not given: the model uses its training mean)."""
    numeric_cols = card.numeric_inputs
    if not numeric_cols:
        return None
    values = np.broadcast_to(np.asarray(record_values, np.float32).reshape(1, -1),
                             (n_rows, len(numeric_cols))).copy()
    if grain_features is not None and _grains_usable(calibration):
        measured = grain_feature_values(card.vocabularies, grain_features)
        for col in grain_feature_columns(card.vocabularies or {}):
            j = numeric_cols.index(col)
            values[:, j] = measured[:, j]
    return values


def _grains_usable(calibration) -> bool:
    """Grain features of an uncalibrated image are in pixels: not comparable with a table's lengths."""
    return calibration is None or calibration.is_calibrated


def pce_notes(model, composition=None, process=None, *, image: bool = True, grain_features: bool = False,
              calibration=None, mask=()) -> list[str]:
    """What a person should know about a PCE prediction's inputs (the notes :func:`predict_pce` gives).

    Parameters
    ----------
    model : str, Path, Predictor or ModelCard
    composition, process : dict or pandas.Series, optional
    image : bool
        An SEM image is given.
    grain_features : bool
        The image's grain feature factors are given (the pipeline measures them).
    calibration : Calibration, optional
        Of the image; without a physical unit the grain features are not used.
    mask : sequence of str
        Modalities switched off on purpose (no note for those).

    Returns
    -------
    list of str

    Examples
    --------
    >>> from hyperspy_mmdl.checkpoint import ModelCard
    >>> card = ModelCard("psc_fusion", task="regress-pce", masked_modalities=["image"],
    ...                  vocabularies={"composition": {"etl": ["TiO2"]}, "process": {}})
    >>> pce_notes(card, {"etl": "TiO2"})
    ['PCE model: trained without SEM images, so the image is not used; inputs: composition']
    """
    card = model if hasattr(model, "numeric_inputs") else get_predictor(model).card
    masked, asked = _masked(card), set(mask)
    inputs = model_inputs(card)
    notes = []
    grains = grain_feature_columns(card.vocabularies or {})
    grains_used = bool(grains) and image and grain_features and "process" not in masked | asked
    if image and "image" in masked and "image" not in asked:
        notes.append("PCE model: trained without SEM images, so the image is not used"
                     + (" (its grains are)" if grains_used and _grains_usable(calibration) else "")
                     + f"; inputs: {', '.join(inputs)}")
    if grains_used and not _grains_usable(calibration):
        notes.append(f"PCE model: the image has no calibration, so its grain sizes (in pixels) are not used "
                     f"for {', '.join(grains)}")
    cells: list = []
    _, _, values = encode_tabular(card, composition, process, notes=cells)
    notes += [f"PCE model: {c}" for c in cells]
    if card.numeric_inputs:
        have = np.isfinite(values)
        if grains_used and _grains_usable(calibration):
            have |= np.isin(card.numeric_inputs, list(grains))
        missing = [c for c, ok in zip(card.numeric_inputs, have) if not ok]
        if missing:
            notes.append(f"PCE model: no value for {', '.join(missing)}: the training mean is used")
    return notes


def _emit(notes, sink):
    """Notes to the caller's list, or as warnings when the caller gave none."""
    seen = []
    for n in notes:
        if n not in seen:
            seen.append(n)
    if sink is not None:
        sink.extend(n for n in seen if n not in sink)
        return
    import warnings

    for n in seen:
        warnings.warn(n, UserWarning, stacklevel=4)


def iter_predict_pce(images, calibration, model, *, composition=None, process=None, n_frames=None,
                     grain_features=False, mask=(), device="auto", batch_size=None, overlap=0.25, tile=True,
                     channel_axis=None, resample=True, amp=None, notes=None):
    """Generator form of :func:`predict_pce` (yields ``(done, total)``).

    Examples
    --------
    >>> pce, weights = run_steps(iter_predict_pce(stack, cal, "pce.pt", composition=row))  # doctest: +SKIP
    """
    pred = get_predictor(model, device=device, amp=amp)
    pred.require_task("regress-pce", "predict_pce (a PCE regressor, PSC-Fusion)")
    comp, proc, record_numeric = encode_tabular(pred.card, composition, process)
    bad = [m for m in mask if m not in MODALITIES]
    if bad:
        raise ValueError(f"mask: unknown modality {bad}; one of {MODALITIES}")
    masked = _masked(pred.card) | set(mask)
    if grain_features is True:
        raise TypeError("grain_features: pass the frames' feature factors, (n_frames, 6) in µm, as "
                        "hyperspy_mmdl.pipeline.grain_feature_factors computes them from the analysis")
    if grain_features is False:
        grain_features = None
    if grain_features is not None:
        from ..grains.summarize import FEATURE_FACTORS

        if not uses_grain_features(pred.card):
            raise ValueError(f"this model was not trained with grain features: its numeric inputs are "
                             f"{pred.card.numeric_inputs or 'none'}, not grain feature factors "
                             f"{list(FEATURE_FACTORS)}")
        grain_features = np.asarray(grain_features, np.float32).reshape(-1, len(FEATURE_FACTORS))
        if images is None:
            raise ValueError("grain_features need images")
    said = pce_notes(pred.card, composition, process, image=images is not None,
                     grain_features=grain_features is not None, calibration=calibration, mask=mask)
    if images is None or "image" in masked:
        # no image term: one value per distinct numeric input (per frame with measured grains)
        shape = None
        if images is not None:
            shape = _frame_count(images, channel_axis)
        elif n_frames is not None:
            shape = (int(n_frames),)
        if grain_features is not None and len(grain_features) != int(np.prod(shape or (1,))):
            raise ValueError(f"grain_features: {len(grain_features)} rows for {int(np.prod(shape or (1,)))} frames")
        rows = 1 if grain_features is None else len(grain_features)
        numeric = _numeric_inputs(pred.card, record_numeric, grain_features, calibration, rows)
        masked.add("image")
        x = pred.to_tensor(np.zeros((rows, pred.in_chans, 1, 1), np.float32))
        yield 0, 1
        with _ModalityMask(pred, masked):
            pce, w = _pce_forward(pred, x, comp, proc, numeric)
        _emit(said, notes)
        yield 1, 1
        if not shape:
            return float(pce[0]), w[0]
        return (np.broadcast_to(pce, (int(np.prod(shape)),)).reshape(shape).astype(np.float32),
                np.broadcast_to(w, (int(np.prod(shape)), w.shape[1])).reshape(shape + w.shape[1:]).copy())
    frames, (lead, _) = prepare_frames(images, calibration, pred, channel_axis=channel_axis,
                                       resample=resample)
    if grain_features is not None and len(grain_features) != len(frames):
        raise ValueError(f"grain_features: {len(grain_features)} rows for {len(frames)} frames")
    numeric = _numeric_inputs(pred.card, record_numeric, grain_features, calibration, len(frames))
    tshape = pred.tile_shape if tile else None
    padded, tiles = plan_tiles(frames, tshape, overlap)
    bs = default_batch(pred, batch_size)
    sums = np.zeros(len(frames), np.float64)
    wsums = np.zeros((len(frames), len(MODALITIES)), np.float64)
    counts = np.zeros(len(frames), np.int64)
    done = 0
    yield done, len(tiles)
    for chunk, batch in tile_batches(padded, tiles, tshape, bs):
        num = None if numeric is None else numeric[[t.frame for t in chunk]]
        with _ModalityMask(pred, masked):
            pce, w = _pce_forward(pred, pred.to_tensor(batch), comp, proc, num)
        for t, v, wv in zip(chunk, pce, w):
            sums[t.frame] += v
            wsums[t.frame] += wv
            counts[t.frame] += 1
        done += len(chunk)
        yield done, len(tiles)
    _emit(said, notes)
    pce = (sums / counts).astype(np.float32).reshape(lead)
    weights = (wsums / counts[:, None]).astype(np.float32).reshape(lead + (len(MODALITIES),))
    return pce, weights


def predict_pce(images, calibration, model, *, composition=None, process=None, n_frames=None,
                grain_features=False, mask=(), device="auto", batch_size=None, overlap=0.25, tile=True,
                channel_axis=None, resample=True, amp=None, show_progressbar=False, notes=None):
    """Power conversion efficiency predicted by PSC-Fusion from an SEM image, composition and process.

    Parameters
    ----------
    images : array_like or None
        ``(H, W)`` or ``(N, H, W)`` SEM frames; ``None`` runs the model with
        its image branch switched off (composition and process only). A model
        trained without images that is given images leaves the image out (and
        uses its grains, when it takes grain features): one value per frame,
        with a note.
    calibration : Calibration or None
        Calibration of the images (resampling to the model's pixel size; grain
        features of an uncalibrated image are not used).
    model : str, Path, Predictor or (module, card)
        A PSC-Fusion checkpoint (card task ``"regress-pce"``) or the name of a
        shipped model.
    composition, process : dict or pandas.Series, optional
        See :func:`encode_tabular`; unknown categories raise ``ValueError``
        naming the valid ones. Numeric inputs (band gap ...) are given by
        their column names; a missing one takes the training mean (a note).
    n_frames : int, optional
        With ``images=None``: return this many (identical) values.
    grain_features : array_like, optional
        ``(n_frames, 6)`` SPEC §3.1.7 feature factors of the frames (lengths in
        µm), for models trained with grain features (a grain-size column, say);
        the pipeline computes them (:func:`hyperspy_mmdl.pipeline.grain_feature_factors`).
    mask : sequence of str
        Modalities to switch off (``"image"``, ``"composition"``,
        ``"process"``), for ablations; the model's own training mask always applies.
    device, batch_size, overlap, tile, channel_axis, resample, amp, show_progressbar
        As in :func:`classify`. Large frames are tiled and the tile
        predictions averaged.
    notes : list, optional
        What a person should know about the inputs (image not used, a value
        imputed ...) is appended here; without a list, each is a ``UserWarning``.

    Returns
    -------
    pce : ndarray of float32 (or float for one image)
        In the card's target unit (%), de-standardised with the training
        target mean and SD from the card.
    fusion_weights : ndarray of float32, shape (..., 3)
        Mean fusion gate of the image, composition and process branches.

    Raises
    ------
    WrongTaskError
        The model is not a PCE regressor (``"regress-pce"``).

    Examples
    --------
    >>> pce, weights = predict_pce(image, cal, "pce.pt", composition={"etl": "TiO2"},
    ...                            process={"solvent": "DMF"})   # doctest: +SKIP
    """
    return run_steps(iter_predict_pce(images, calibration, model, composition=composition, process=process,
                                      n_frames=n_frames, grain_features=grain_features, mask=mask,
                                      device=device,
                                      batch_size=batch_size, overlap=overlap, tile=tile,
                                      channel_axis=channel_axis, resample=resample, amp=amp, notes=notes),
                     show_progressbar, desc="PCE")
