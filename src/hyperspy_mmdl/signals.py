"""HyperSpy signal classes: ``"microstructure"`` micrographs and ``"grain_labels"`` label images.

Every method here is a thin wrapper: it takes the frames and the calibration from
the signal, calls one compute function of the core (``grains``, ``inference``,
``preprocess`` ...) and puts the result back into a signal with the axes carried
over. Stacks are processed frame by frame with :meth:`~hyperspy.signal.BaseSignal.map`,
lazily for lazy signals.
"""

from __future__ import annotations

from hyperspy._signals.lazy import LazySignal
from hyperspy.signals import Signal2D

from .calibration import Calibration

__all__ = ["Microstructure", "LazyMicrostructure", "GrainLabels", "LazyGrainLabels"]


class Microstructure(Signal2D):
    """A micrograph of a material's microstructure (SEM, TEM, optical), one image or a stack.

    Load one with ``hs.load("film.dm4", signal_type="microstructure")`` or turn any
    ``Signal2D`` into one with ``s.set_signal_type("microstructure")``.
    """

    _signal_type = "microstructure"
    _alias_signal_types = ["micrograph", "SEM_micrograph"]
    _lazy = False

    @property
    def calibration(self) -> Calibration:
        """The :class:`~hyperspy_mmdl.calibration.Calibration` of the data array (array order)."""
        return Calibration.from_signal(self)

    # ------------------------------------------------------------------ models (inference)
    def classify(self, model, device="auto", batch_size=None, overlap=0.25, show_progressbar=None,
                 lazy_output=None):
        """Class probabilities of every frame with a trained classifier.

        Frames are resampled to the model's pixel size with this signal's
        calibration, normalised as in training, tiled when larger than the
        model input (tile probabilities averaged) and run in batches; see
        :func:`hyperspy_mmdl.inference.classify`.

        Parameters
        ----------
        model : str, Path or Predictor
            A checkpoint file (loaded once and cached) or a
            :class:`~hyperspy_mmdl.inference.Predictor`.
        device : str
            ``"auto"`` (CUDA, then MPS, then CPU), ``"cpu"``, ``"cuda"``, ``"mps"``.
        batch_size : int, optional
            Tiles per forward pass.
        overlap : float
            Tile overlap (fraction of the model input).
        show_progressbar : bool or None
            ``None`` follows HyperSpy's preference.
        lazy_output : bool or None
            Return a lazy signal (default: lazy for lazy signals). Lazy signals
            are processed block by block of frames.

        Returns
        -------
        Signal1D
            ``(navigation | n_classes)`` probabilities; the signal axis is named
            ``"class"`` and ``metadata.Signal.class_names`` lists the classes in
            axis order.
        """
        from . import inference
        from ._frames import apply_to_frames, make_signal, navigation_axes_dicts

        pred = inference.get_predictor(model, device=device)
        names = pred.class_names
        cal = self.calibration.image

        def fn(frames, show):
            return inference.classify(frames, cal, pred, batch_size=batch_size, overlap=overlap,
                                      show_progressbar=show)

        data = apply_to_frames(self, fn, (len(names),), show_progressbar=show_progressbar,
                               lazy_output=lazy_output)
        axes = navigation_axes_dicts(self) + [dict(name="class", size=len(names), units="")]
        out = make_signal(data, axes, kind="1d", title=f"Class probabilities of {self._title()}")
        out.metadata.set_item("Signal.quantity", "Probability")
        out.metadata.set_item("Signal.class_names", list(names))
        out.metadata.set_item("Model", _model_metadata(pred))
        return out

    def predict_pce(self, model, composition=None, process=None, device="auto", use_image=True,
                    grain_features=None, batch_size=None, overlap=0.25, show_progressbar=None,
                    lazy_output=None):
        """Power conversion efficiency (%) of the solar cell of every frame with PSC-Fusion.

        Parameters
        ----------
        model : str, Path or Predictor
            A PSC-Fusion checkpoint (task ``"regress-pce"``) or a shipped model's
            name (:func:`hyperspy_mmdl.models.list_pretrained`).
        composition, process : dict or pandas.Series
            The device's composition and process fields, by field name or by
            the training table's column names; a single table row can be
            given as either (its categories the model does not know count as
            unknown, as in training). Unknown categories of a dict of field
            names raise a ``ValueError`` listing the valid ones.
        device : str
            ``"auto"``, ``"cpu"``, ``"cuda"``, ``"mps"``.
        use_image : bool
            Use the image (default). ``False`` masks the image branch.
        grain_features : bool or None
            Analyse the grains of every frame (:func:`hyperspy_mmdl.pipeline.analyze_frame`,
            as every route does) and pass the SPEC §3.1.7 feature factors to the
            model. ``None`` (default): when the model takes grain features.
        batch_size, overlap, show_progressbar, lazy_output
            As in :meth:`classify`.

        Returns
        -------
        BaseSignal
            One PCE value per frame (navigation axes carried over);
            ``metadata.Signal.quantity`` is ``"PCE (%)"``,
            ``metadata.Fusion.weights`` is a signal ``(navigation | 3)`` of the
            mean fusion weight of each modality (``metadata.Fusion.modalities``)
            and ``metadata.Fusion.notes`` says what the model did with the
            inputs (an image a model trained without images leaves out, a
            value it filled in ...); each note is also a ``UserWarning``.

        Examples
        --------
        >>> row = devices.iloc[12]                                   # doctest: +SKIP
        >>> s.predict_pce("perovskite-pce-ensemble", composition=row, process=row).data  # doctest: +SKIP
        """
        import warnings

        from . import inference
        from ._frames import apply_to_frames, make_signal, navigation_axes_dicts

        pred = inference.get_predictor(model, device=device)
        if grain_features is None:
            grain_features = bool(use_image) and inference.uses_grain_features(pred.card)
        cal = self.calibration.image
        # validates the fields before any work, and says what the model will do with the inputs
        notes = inference.pce_notes(pred, composition, process, image=bool(use_image),
                                    grain_features=bool(grain_features), calibration=cal)
        for note in notes:
            warnings.warn(note, UserWarning, stacklevel=2)

        full_cal = self.calibration

        def fn(frames, show):
            import numpy as np

            from .pipeline import frames_feature_factors
            from .preprocess.color import split_colour

            feats = frames_feature_factors(frames, full_cal) if grain_features else None
            grey = np.stack([split_colour(f)[0] for f in frames]) if frames.ndim == 4 else frames
            pce, weights = inference.predict_pce(
                grey if use_image else None, cal, pred, composition=composition, process=process,
                n_frames=len(frames), grain_features=feats, batch_size=batch_size,
                overlap=overlap, show_progressbar=show, notes=[])
            return np.concatenate([np.asarray(pce).reshape(-1, 1), np.asarray(weights).reshape(len(frames), -1)],
                                  axis=1)

        data = apply_to_frames(self, fn, (1 + len(inference.MODALITIES),),
                               show_progressbar=show_progressbar, lazy_output=lazy_output,
                               colour="keep" if grain_features else "luminance")
        nav = navigation_axes_dicts(self)
        unit = pred.card.target_unit or "%"
        name = pred.card.target_name or "PCE"
        out = make_signal(data[..., 0], nav, kind="base", title=f"{name} of {self._title()}")
        out.metadata.set_item("Signal.quantity", f"{name} ({unit})")
        weights = make_signal(data[..., 1:], nav + [dict(name="modality", size=len(inference.MODALITIES))],
                              kind="1d", title="Fusion weights")
        out.metadata.set_item("Fusion.weights", weights)
        out.metadata.set_item("Fusion.modalities", list(inference.MODALITIES))
        out.metadata.set_item("Fusion.composition", _plain(composition))
        out.metadata.set_item("Fusion.process", _plain(process))
        out.metadata.set_item("Fusion.inputs", inference.model_inputs(pred.card))
        out.metadata.set_item("Fusion.notes", list(notes))
        out.metadata.set_item("Model", _model_metadata(pred))
        return out

    def attention_map(self, model, method="gradcam", target=None, device="auto", composition=None,
                      process=None, normalize=True, batch_size=None, overlap=0.25, show_progressbar=None,
                      lazy_output=None):
        """Where the model looks: Grad-CAM or the model's own attention, one map per frame.

        Parameters
        ----------
        model : str, Path or Predictor
            A checkpoint (classifier or PSC-Fusion).
        method : {"gradcam", "cbam", "external", "chunking"}
            See :func:`hyperspy_mmdl.explain.attention_map`.
        target : int or str, optional
            Grad-CAM class (index or name); by default each frame's predicted class.
        device : str
            ``"auto"``, ``"cpu"``, ``"cuda"``, ``"mps"``.
        composition, process : dict or pandas.Series, optional
            PSC-Fusion's tabular inputs, held fixed.
        normalize : bool
            Scale each frame's map to [0, 1] (default); ``False`` keeps the raw values.
        batch_size, overlap, show_progressbar, lazy_output
            As in :meth:`classify`.

        Returns
        -------
        Signal2D
            One map per frame with this signal's axes and calibration.
        """
        from . import explain, inference
        from ._frames import apply_to_frames, make_signal

        pred = inference.get_predictor(model, device=device)
        cal = self.calibration.image
        sig_shape = tuple(self.axes_manager._signal_shape_in_array)

        def fn(frames, show):
            return explain.attention_map(frames, cal, pred, method, target, batch_size=batch_size,
                                         overlap=overlap, composition=composition, process=process,
                                         normalize=normalize, show_progressbar=show)

        data = apply_to_frames(self, fn, sig_shape, show_progressbar=show_progressbar,
                               lazy_output=lazy_output)
        out = make_signal(data, self.axes_manager._get_axes_dicts(), kind="2d",
                          title=f"{method} of {self._title()}")
        out.metadata.set_item("Signal.quantity", f"{method} (normalised)" if normalize else method)
        out.metadata.set_item("Attention.method", method)
        out.metadata.set_item("Attention.target", "predicted class" if target is None else target)
        out.metadata.set_item("Model", _model_metadata(pred))
        return out

    # ------------------------------------------------------------------ preprocessing
    def _frames_result(self, fn, out_sig_shape=None, axes=None, title="", show_progressbar=None,
                       lazy_output=None):
        """Run ``fn(frames) -> frames`` on every frame (block-wise for lazy signals) into a new microstructure."""
        from ._frames import apply_to_frames, make_signal

        sig_shape = tuple(self.axes_manager._signal_shape_in_array)
        out_sig_shape = sig_shape if out_sig_shape is None else tuple(out_sig_shape)
        data = apply_to_frames(self, lambda frames, show: fn(frames), out_sig_shape,
                               show_progressbar=show_progressbar, lazy_output=lazy_output)
        axes = self.axes_manager._get_axes_dicts() if axes is None else axes
        out = make_signal(data, axes, kind="2d", title=title)
        out.metadata.set_item("Signal.quantity", self.metadata.get_item("Signal.quantity", ""))
        out.set_signal_type("microstructure")
        return out

    def normalize(self, method="minmax", show_progressbar=None, lazy_output=None, **params):
        """Intensity normalisation of every frame; see :mod:`hyperspy_mmdl.preprocess.normalize`.

        Parameters
        ----------
        method : {"minmax", "zscore", "clahe", "none"}
            NaN/±inf are always replaced first (median of the frame).
        show_progressbar, lazy_output
            As in :meth:`classify` (lazy for lazy signals).
        **params
            ``mean``/``std`` (dataset statistics for ``"zscore"``), ``kernel_size``,
            ``clip_limit``, ``nbins`` (``"clahe"``).

        Returns
        -------
        Microstructure
            float32, same axes; ``metadata.Preprocess.normalization`` records the method.
        """
        from .preprocess.normalize import METHODS, normalize

        if method not in METHODS:
            raise ValueError(f"unknown normalisation {method!r}; choose one of {', '.join(METHODS)}")
        out = self._frames_result(lambda f: normalize(f, method, **params),
                                  title=f"{self._title()} ({method})",
                                  show_progressbar=show_progressbar, lazy_output=lazy_output)
        out.metadata.set_item("Preprocess.normalization", {"method": method, **{k: str(v) for k, v in params.items()}})
        return out

    def denoise(self, method="nl_means", show_progressbar=None, lazy_output=None, **params):
        """Denoise every frame; see :mod:`hyperspy_mmdl.preprocess.denoise`.

        Parameters
        ----------
        method : {"gaussian", "median", "nl_means", "noise2void"}
            ``"noise2void"`` trains one self-supervised network on this signal's
            own frames (at most ``max_train_frames``, default 16, computed for
            a lazy signal) unless ``model=`` gives a trained
            :class:`~hyperspy_mmdl.preprocess.denoise.Denoiser` or its checkpoint.
        **params
            ``sigma`` (Gaussian; pixels or ``"20 nm"``), ``size`` (median),
            ``h``, ``patch_size``, ``patch_distance`` (NLM), ``steps``,
            ``patch_size``, ``batch_size`` ... (Noise2Void training).

        Returns
        -------
        Microstructure
            Same axes. To reuse a Noise2Void net on other signals, train it with
            :func:`~hyperspy_mmdl.preprocess.denoise.train_noise2void` and pass ``model=``.
        """
        import numpy as np

        from .preprocess import denoise as dn

        if method not in dn.METHODS:
            raise ValueError(f"unknown denoising method {method!r}; choose one of {', '.join(dn.METHODS)}")
        cal = self.calibration.image
        model = None
        if method == "noise2void":
            model = params.pop("model", None)
            max_frames = int(params.pop("max_train_frames", 16))
            if model is None:
                sig = tuple(self.axes_manager._signal_shape_in_array)
                data = self._data_aligned_with_axes.reshape((-1,) + sig)[:max_frames]
                model = dn.train_noise2void(np.asarray(data), **params)
            elif not isinstance(model, dn.Denoiser):
                model = dn.load_denoiser(model)
            fn = model
        else:
            fn = lambda f: dn.denoise(f, method, calibration=cal, **params)
        out = self._frames_result(fn, title=f"{self._title()} (denoised, {method})",
                                  show_progressbar=show_progressbar, lazy_output=lazy_output)
        out.metadata.set_item("Preprocess.denoise", {"method": method, **{k: str(v) for k, v in params.items()}})
        return out

    def remove_data_bar(self, mode="crop", scale_bar_length=None, field_of_view=None):
        """Crop (or blank) the SEM data bar; found on the first frame.

        Parameters
        ----------
        mode : {"crop", "mask"}
            ``"crop"`` drops the bar's rows; ``"mask"`` keeps the shape and sets
            them to NaN (float32).
        scale_bar_length : str, optional
            The length printed next to the bar's scale bar (``"1 µm"``). With it,
            an uncalibrated signal is calibrated from the scale bar's pixel length.
        field_of_view : str, optional
            The printed field-of-view width (``"42.7 µm"``), an alternative.

        Returns
        -------
        Microstructure
            ``metadata.Preprocess.data_bar`` holds the bar's rows; when the signal
            is uncalibrated and the bar has a scale bar,
            ``metadata.Preprocess.calibration_offer`` says what calibration it
            implies (pass ``scale_bar_length`` to apply it).
        """
        import numpy as np

        from .preprocess.databar import find_data_bar, offer_calibration

        if mode not in ("crop", "mask"):
            raise ValueError(f"mode must be 'crop' or 'mask', got {mode!r}")
        sig = tuple(self.axes_manager._signal_shape_in_array)
        first = np.asarray(self._data_aligned_with_axes.reshape((-1,) + sig)[0])
        bar = find_data_bar(first)
        if bar is None:
            out = self.deepcopy()
            out.metadata.set_item("Preprocess.data_bar", "none found")
            return out
        offer = None
        if not self.calibration.image.is_calibrated or scale_bar_length or field_of_view:
            offer = offer_calibration(first, scale_bar_length, field_of_view=field_of_view, bar=bar)
        if mode == "crop":
            out = self.isig[:, : bar.top]
        else:
            top = bar.top

            def blank(frames):
                f = np.array(frames, dtype=np.float32)
                f[:, top:] = np.nan
                return f

            out = self._frames_result(blank, title=self.metadata.General.title)
        out.metadata.set_item("Preprocess.data_bar", {"top": bar.top, "rows": [bar.top, bar.height],
                                                      "background": bar.background, "mode": mode})
        if offer is not None:
            if offer.calibration.is_calibrated:
                for ax in out.axes_manager.signal_axes:
                    ax.scale = offer.pixel_size
                    ax.units = offer.unit
                    ax.offset = 0.0
            out.metadata.set_item("Preprocess.calibration_offer", offer.explanation)
        return out

    def super_resolve(self, factor, model="bicubic", device="cpu", show_progressbar=None, lazy_output=None):
        """Upscale every frame by 2, 3 or 4; see :func:`hyperspy_mmdl.preprocess.superres.super_resolve`.

        Parameters
        ----------
        factor : {2, 3, 4}
        model : "bicubic", SuperResolver or path
            A model trained for ``factor`` (:func:`~hyperspy_mmdl.preprocess.superres.train_superres`)
            or its checkpoint.
        device : str
        show_progressbar, lazy_output
            As in :meth:`classify`.

        Returns
        -------
        Microstructure
            ``factor`` times more pixels per signal axis; the axes' scale is
            divided by ``factor`` (the image's edges stay where they were).
        """
        from .preprocess import superres as srm

        f = srm._factor(factor)
        resolver = srm._resolver(model, f)
        if resolver is None and model != "bicubic":
            raise ValueError(f"model must be 'bicubic', a SuperResolver or a checkpoint path, got {model!r}")
        sig = tuple(self.axes_manager._signal_shape_in_array)
        axes = []
        for d in self.axes_manager._get_axes_dicts():
            d = dict(d)
            if not d.get("navigate"):
                edge = d.get("offset", 0.0) - d.get("scale", 1.0) / 2
                d["size"] = d["size"] * f
                d["scale"] = d.get("scale", 1.0) / f
                d["offset"] = edge + d["scale"] / 2
            axes.append(d)

        def fn(frames):
            return srm.bicubic(frames, f) if resolver is None else resolver(frames, device=device)

        out = self._frames_result(fn, (sig[0] * f, sig[1] * f), axes,
                                  title=f"{self._title()} (×{f})",
                                  show_progressbar=show_progressbar, lazy_output=lazy_output)
        out.metadata.set_item("Preprocess.super_resolution",
                              {"factor": f, "model": "bicubic" if resolver is None else resolver.name})
        return out

    # ------------------------------------------------------------------ grains
    def _analysis_parameters(self, method="auto", convention="imagej", params=None):
        """The pipeline's parameters from this signal's method arguments (``data_bar`` included)."""
        from .pipeline import AnalysisParameters

        self._check_source()
        return AnalysisParameters.from_segment_kwargs(params, method=method, convention=convention)

    def _check_source(self):
        """Check the file this signal was read from as :func:`hyperspy_mmdl.io.load` does (header
        against file size, truncated stacks, missing chunks) before computing on its frames:
        ``hs.load`` reads some damaged files without a word. Done once per signal."""
        from pathlib import Path

        if getattr(self, "_mmdl_source_checked", False):
            return
        tp = self.tmp_parameters
        if tp.has_item("folder") and tp.has_item("filename"):
            path = Path(tp.folder) / f"{tp.filename}{tp.extension if tp.has_item('extension') else ''}"
            if path.exists():
                from .io import check_file

                check_file(path, lazy=bool(getattr(self, "_lazy", False)))
        self._mmdl_source_checked = True

    def _file_name(self) -> str:
        """How notes name this signal: its file (or title)."""
        tp = self.tmp_parameters
        if tp.has_item("filename"):
            return f"{tp.filename}{tp.extension if tp.has_item('extension') else ''}"
        return self.metadata.General.title or "the signal"

    def _source_name(self, idx=None) -> str:
        """How notes name a frame of this signal: its file (or title), and the frame of a stack."""
        name = self._file_name()
        if self.axes_manager.navigation_dimension == 0:
            return name
        return f"{name}, frame {tuple(int(i) for i in idx)}" if idx is not None else f"{name}, a frame"

    def _iter_frames(self):
        """``(index tuple, frame)`` of every frame, colour kept as ``(H, W, 3)``."""
        import numpy as np

        from .preprocess.color import as_channels

        self._check_source()
        data = self._data_aligned_with_axes
        nav = tuple(self.axes_manager._navigation_shape_in_array)
        for idx in np.ndindex(*nav) if nav else [()]:
            frame = data[idx]
            frame = np.asarray(frame.compute() if hasattr(frame, "compute") else frame)
            yield idx, (as_channels(frame) if frame.dtype.names is not None else frame)

    def segment_grains(self, method="auto", show_progressbar=None, num_workers=None, lazy_output=None,
                       **params):
        """Segment the grains of every frame with :func:`hyperspy_mmdl.pipeline.analyze_frame`.

        The same chain as napari, ``mmdl analyze`` and ``mmdl batch``: colour
        kept for segmentation, the SEM data bar left out (its rows get label 0;
        ``data_bar=False`` analyses every row).

        Parameters
        ----------
        method : {"auto", "boundary", "threshold", "learned"}
        show_progressbar, lazy_output
            As in :meth:`classify` (lazy for lazy signals). ``num_workers`` is
            accepted for compatibility with :meth:`~hyperspy.signal.BaseSignal.map`.
        **params
            Segmentation parameters in physical units (``smoothing="30 nm"``,
            ``min_area=0.01`` µm², ``boundary_width``, ``lines``, ``threshold``,
            ``exclude_border``, ``model`` ...) and ``data_bar``.

        Returns
        -------
        GrainLabels
            int32 labels (0 = boundary), same axes as this signal. For an eager
            result, ``metadata.Grains.method`` is the method actually used and
            ``metadata.Grains.notes`` what a person should know (what ``auto``
            chose, the data bar or text left out, doubtful results, with the
            frames they concern); doubtful results are also warned about
            (``UserWarning``). A lazy result records the asked-for method only.

        Example
        -------
        >>> labels = s.segment_grains()            # doctest: +SKIP
        >>> table = s.grain_features(labels)       # doctest: +SKIP
        """
        import numpy as np

        from ._frames import apply_to_frames, make_signal
        from .pipeline import analyze_frame

        import warnings

        ap = self._analysis_parameters(method, params=params)
        cal = self.calibration
        what = self._source_name()
        methods, notes, doubts = [], [], []

        def fn(frames, show):
            out = np.empty(frames.shape[:3], np.int32)
            for i, f in enumerate(frames):
                fa = analyze_frame(f, cal, ap, what=what)
                out[i] = fa.labels
                notes.extend((len(methods), n) for n in fa.notes)
                doubts.extend((len(methods), n) for n in fa.segment_info.get("quality", ()))
                methods.append(fa.method)
            return out

        sig = tuple(self.axes_manager._signal_shape_in_array)
        data = apply_to_frames(self, fn, sig, dtype=np.int32, show_progressbar=show_progressbar,
                               lazy_output=lazy_output, colour="keep")
        out = make_signal(data, self.axes_manager._get_axes_dicts(), kind="2d", title=f"Grains of {self._title()}")
        out.set_signal_type("grain_labels")
        out.metadata.set_item("Grains.method", methods[0] if len(set(methods)) == 1 else method)
        out.metadata.set_item("Grains.parameters", {k: str(v) for k, v in params.items()})
        if methods:  # computed now (not a lazy result)
            stack = bool(self._nav_shape())
            out.metadata.set_item("Grains.notes", frame_notes(notes, len(methods), stack=stack))
            for note in frame_notes(doubts, len(methods), stack=stack):  # "all 66 frames: ...", "frame 3: ..."
                warnings.warn(f"{self._file_name()}: {note}", UserWarning, stacklevel=2)
        return out

    def _nav_shape(self) -> tuple:
        return tuple(self.axes_manager._navigation_shape_in_array)

    def _title(self) -> str:
        """The signal's title, else its file's name (images read from JPEG/PNG/TIFF often have none)."""
        tp = self.tmp_parameters
        return (self.metadata.General.title or (tp.filename if tp.has_item("filename") else "")
                or "the signal")

    def _frame_analyses(self, labels=None, convention="imagej"):
        """``(index tuple, FrameAnalysis)`` of every frame: analysed, or measured from ``labels``."""
        import numpy as np

        from .pipeline import analyze_frame, measure_frame

        ap = self._analysis_parameters(convention=convention)
        cal = self.calibration
        lab = None
        if labels is not None:
            lab = labels.data if hasattr(labels, "axes_manager") else labels
            lab = np.asarray(lab.compute() if hasattr(lab, "compute") else lab)
            sig = tuple(self.axes_manager._signal_shape_in_array)
            if lab.shape[-2:] != sig:
                raise ValueError(f"labels of shape {lab.shape} do not match this signal's images {sig}")
        for idx, frame in self._iter_frames():
            if lab is None:
                yield idx, analyze_frame(frame, cal, ap, what=self._source_name(idx))
            else:
                yield idx, measure_frame(lab[idx], cal, image=frame, params=ap)

    def grain_features(self, labels=None, convention="imagej"):
        """Per-grain measurements (ImageJ-exact by default), by :func:`hyperspy_mmdl.pipeline.measure_frame`.

        Parameters
        ----------
        labels : GrainLabels or ndarray, optional
            Labels of this signal's frames; segmented with the defaults when omitted.
        convention : {"imagej", "skimage"}

        Returns
        -------
        pandas.DataFrame
            One row per grain, lengths in the readable unit of
            :attr:`calibration` (``attrs["units"]``); stacks get a ``frame``
            column (flat frame index) first and, for several navigation axes,
            one column per axis index.
        """
        import pandas as pd

        tables = []
        for i, (idx, fa) in enumerate(self._frame_analyses(labels, convention)):
            t = fa.table
            if idx:
                t.insert(0, "frame", i)
                if len(idx) > 1:
                    for k, v in enumerate(idx):
                        t.insert(1 + k, f"index{k}", v)
            tables.append(t)
        if len(tables) == 1:
            return tables[0]
        out = pd.concat(tables, ignore_index=True)
        out.attrs = dict(tables[0].attrs)
        out.attrs.pop("image_area", None)  # per frame: see grain_statistics' analysed_area
        return out

    def grain_statistics(self, labels=None):
        """Summary of the grains (SPEC §3.1.3–3.1.7 feature factors, ASTM E112 G, size class).

        Returns a dict for a single image and a DataFrame with one row per frame
        for stacks (``attrs["units"]``); see :func:`hyperspy_mmdl.grains.summarize`.
        The analysed area leaves out the SEM data bar, as on every route.
        """
        import pandas as pd

        rows, units = [], {}
        for i, (idx, fa) in enumerate(self._frame_analyses(labels)):
            if not idx:
                return dict(fa.summary, analysed_area=fa.analysed_area)
            units = fa.row_units()
            s = {k: v for k, v in fa.summary.items() if k != "units"}
            rows.append({"frame": i, **s, "analysed_area": fa.analysed_area})
        out = pd.DataFrame(rows)
        out.attrs["units"] = units
        return out


def frame_notes(notes, n_frames: int, *, stack: bool) -> list[str]:
    """Each note once, saying which frames of a stack it concerns.

    Parameters
    ----------
    notes : iterable of (frame number, note)
    n_frames : int
    stack : bool
        False: the notes of a single image, listed as they are.

    Example
    -------
    >>> frame_notes([(0, "a"), (1, "a"), (1, "b")], 2, stack=True)
    ['all 2 frames: a', 'frame 1: b']
    """
    frames: dict[str, list] = {}
    for i, note in notes:
        frames.setdefault(str(note), [])
        if i not in frames[str(note)]:
            frames[str(note)].append(i)
    if not stack:
        return list(frames)
    out = []
    for note, idx in frames.items():
        if len(idx) == n_frames and n_frames > 1:
            out.append(f"all {n_frames} frames: {note}")
        elif len(idx) == 1:
            out.append(f"frame {idx[0]}: {note}")
        else:
            shown = ", ".join(map(str, idx[:10])) + (", ..." if len(idx) > 10 else "")
            out.append(f"{len(idx)} frames ({shown}): {note}")
    return out


def _model_metadata(pred) -> dict:
    """What a result signal records about the model that produced it."""
    card = pred.card
    return {"architecture": card.architecture, "task": card.task,
            "file": str(pred.path) if pred.path else "", "device": str(pred.device),
            "pixel_size": card.pixel_size if card.pixel_size is not None else "",
            "pixel_unit": card.pixel_unit, "normalization": card.normalization}


def _plain(values) -> dict:
    """A dict or pandas row as a plain dict of strings (for metadata)."""
    if values is None:
        return {}
    items = values.items() if hasattr(values, "items") else dict(values).items()
    return {str(k): str(v) for k, v in items}


class LazyMicrostructure(LazySignal, Microstructure):
    """Lazy twin of :class:`Microstructure` (data in dask, computed frame by frame)."""

    _lazy = True


class GrainLabels(Signal2D):
    """Integer grain label images (0 = background or boundary), one per frame."""

    _signal_type = "grain_labels"
    _alias_signal_types = []
    _lazy = False

    @property
    def calibration(self) -> Calibration:
        return Calibration.from_signal(self)


class LazyGrainLabels(LazySignal, GrainLabels):
    """Lazy twin of :class:`GrainLabels`."""

    _lazy = True
