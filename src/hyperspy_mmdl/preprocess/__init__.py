"""Image preprocessing before analysis: data-bar removal, normalisation, denoising, super-resolution.

Each module holds one family of operations on arrays (a 2-D image or a stack
``(..., H, W)``, plus a :class:`~hyperspy_mmdl.calibration.Calibration` where
sizes are physical); import them from their modules:

* :mod:`.databar` — ``find_data_bar``, ``remove_data_bar``, ``find_scale_bar``,
  ``offer_calibration`` (the calibration a data bar's scale bar or printed
  field of view implies, for the user to confirm);
* :mod:`.normalize` — ``clean_nonfinite``, ``minmax``, ``zscore``, ``clahe``,
  ``normalize``, ``histogram_figure`` (SPEC §3.2, [PSC] Fig. S3);
* :mod:`.denoise` — ``gaussian``, ``median``, ``nl_means``, ``estimate_sigma``,
  ``train_noise2void`` / ``Denoiser`` (self-supervised), ``denoise``;
* :mod:`.superres` — ``downsample``, ``bicubic``, ``train_superres`` /
  ``SuperResolver`` (SRCNN, RCAN-lite), ``super_resolve``, ``psnr``, ``ssim``,
  ``evaluate``, ``format_tables`` (SPEC §2.4, §3.3, [PSC] Tables S2–S3).

The HyperSpy front end is on the microstructure signal (``s.normalize``,
``s.denoise``, ``s.remove_data_bar``, ``s.super_resolve``), the napari one is
the "Preprocess" dock widget, the CLI one ``mmdl batch --remove-data-bar
--denoise ... --normalize ...``.
"""
