"""Training and evaluation: datasets, recipes, loops, metrics, classical baselines, U-Net segmenter.

Modules (import what you need; this package imports nothing heavy):

- :mod:`~hyperspy_mmdl.train.recipes`     one TOML preset per paper (``load_recipe``)
- :mod:`~hyperspy_mmdl.train.datasets`    micrograph folders, grain-size classes, segmentation pairs
- :mod:`~hyperspy_mmdl.train.tabular`     PCE tables: vocabularies, encodings, PSC-Fusion dataset
- :mod:`~hyperspy_mmdl.train.transforms`  normalisations and augmentations
- :mod:`~hyperspy_mmdl.train.splits`      stratified splits and k-fold CV (seed 2024)
- :mod:`~hyperspy_mmdl.train.losses`      focal loss, BCE+Dice, loss factory
- :mod:`~hyperspy_mmdl.train.optim`       optimisers, warm-up + cosine schedule
- :mod:`~hyperspy_mmdl.train.loop`        ``fit`` (early stopping, clipping, AMP, resume, callbacks), ``predict``
- :mod:`~hyperspy_mmdl.train.tasks`       end-to-end: ``train_classifier``, ``train_pce``, ``cross_validate_pce``,
  ``train_segmenter``, ``evaluate_checkpoint``
- :mod:`~hyperspy_mmdl.train.metrics`     MAE/RMSE/R²/R, accuracy, macro P/R/F1, κ, top-k, ROC/PR, Wilcoxon
- :mod:`~hyperspy_mmdl.train.plots`       parity, confusion matrix, ROC/PR, loss-curve PNGs
- :mod:`~hyperspy_mmdl.train.baselines`   MLP, SVR, LightGBM, RF, KNN (SPEC §2.2) with 10-fold CV

Learned segmentation is applied by :mod:`hyperspy_mmdl.grains.learned` through the
inference predictor (:mod:`hyperspy_mmdl.inference.segment`).
"""
