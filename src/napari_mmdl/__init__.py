"""napari-mmdl: microstructure analysis with deep learning, as a napari plugin.

Everything napari loads at start-up is the manifest (``napari.yaml``); readers,
writers and widgets import their modules (and torch/hyperspy) only when used.
The computations live in :mod:`hyperspy_mmdl`; this package only turns them into
layers and dock widgets.
"""

__version__ = "0.1.0"
