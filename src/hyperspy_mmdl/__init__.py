"""hyperspy_mmdl: deep-learning microstructure analysis for HyperSpy.

The compute core works on plain arrays plus a :class:`~hyperspy_mmdl.calibration.Calibration`:

- :mod:`hyperspy_mmdl.io`          load any rosettasciio format into data + calibration
- :mod:`hyperspy_mmdl.synthetic`   synthetic polycrystal micrographs with ground-truth labels
- :mod:`hyperspy_mmdl.preprocess`  normalisation, data-bar removal, denoising, super-resolution
- :mod:`hyperspy_mmdl.grains`      segment, measure (ImageJ-exact), summarize
- :mod:`hyperspy_mmdl.models`      the source papers' architectures, a registry, cost counting
- :mod:`hyperspy_mmdl.train`       datasets, recipes, training loops, metrics, baselines
- :mod:`hyperspy_mmdl.checkpoint`  safe model files with model cards
- :mod:`hyperspy_mmdl.inference`   the one way to apply a model: device, predictor (loaded once),
                                   preparation, tiling, task heads
- :mod:`hyperspy_mmdl.tabular`     composition/process vocabularies and encoders
- :mod:`hyperspy_mmdl.explain`     Grad-CAM and the models' own attention maps
- :mod:`hyperspy_mmdl.batch`       stacks and folders, out of core, resumable, distributed

:mod:`hyperspy_mmdl.signals` registers the ``"microstructure"`` and ``"grain_labels"``
signal types with HyperSpy (see ``hyperspy_extension.yaml``). Importing this package
stays light: torch and hyperspy are imported by the modules that need them.

This module is also the composition root: it imports :mod:`hyperspy_mmdl.inference`,
which registers the runners of learned segmentation, denoising and super-resolution
(:func:`hyperspy_mmdl.checkpoint.register_runner`) that ``grains`` and ``preprocess``,
below it in the layers, call for their model-based methods.
"""

from . import inference as _inference  # noqa: F401  registers the model runners (see above)
from .calibration import Calibration

__version__ = "0.1.0"
__all__ = ["Calibration", "__version__"]
