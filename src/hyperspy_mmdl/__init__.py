"""hyperspy_mmdl: deep-learning microstructure analysis for HyperSpy.

The compute core works on plain arrays plus a :class:`~hyperspy_mmdl.calibration.Calibration`:

- :mod:`hyperspy_mmdl.io`          load any rosettasciio format into data + calibration
- :mod:`hyperspy_mmdl.synthetic`   synthetic polycrystal micrographs with ground-truth labels
- :mod:`hyperspy_mmdl.preprocess`  normalisation, data-bar removal, denoising, super-resolution
- :mod:`hyperspy_mmdl.grains`      segment, measure (ImageJ-exact), summarize
- :mod:`hyperspy_mmdl.models`      the source papers' architectures, a registry, cost counting
- :mod:`hyperspy_mmdl.train`       datasets, recipes, training loops, metrics, baselines
- :mod:`hyperspy_mmdl.checkpoint`  safe model files with model cards
- :mod:`hyperspy_mmdl.inference`   device choice, batching, tiling, predictors
- :mod:`hyperspy_mmdl.explain`     Grad-CAM and the models' own attention maps
- :mod:`hyperspy_mmdl.batch`       stacks and folders, out of core, resumable, distributed

:mod:`hyperspy_mmdl.signals` registers the ``"microstructure"`` and ``"grain_labels"``
signal types with HyperSpy (see ``hyperspy_extension.yaml``). Importing this package
stays light: torch and hyperspy are imported by the modules that need them.
"""

from .calibration import Calibration
from . import inference as _inference  # noqa: E402,F401  the composition root: registers the model runners

__version__ = "0.1.0"
__all__ = ["Calibration", "__version__"]
