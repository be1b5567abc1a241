"""Dock widgets of napari-mmdl (one module per widget; imported only when napari opens one)."""
