"""Image preprocessing before analysis: data-bar removal, normalisation, denoising, super-resolution.

Each module holds one operation on arrays; import it from its module, e.g.
``from hyperspy_mmdl.preprocess.databar import find_data_bar``.
"""
