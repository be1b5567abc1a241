"""Sample data: synthetic polycrystal micrographs (calibrated) with their ground-truth labels."""

from __future__ import annotations


def _layers(sample, name: str) -> list[tuple]:
    kwargs = sample.calibration.to_napari()
    image_md = {"pixel_size": sample.calibration.pixel_size, "unit": sample.calibration.unit,
                "mean_ecd": sample.mean_ecd, "cv": sample.cv, "synthetic": True}
    image = (sample.image, dict(kwargs, name=name, metadata=image_md), "image")
    labels = (sample.labels, dict(kwargs, name=f"{name} ground truth", visible=False,
                                  metadata={"synthetic": True}), "labels")
    return [image, labels]


def sample_polycrystal() -> list[tuple]:
    """A 512×512 SEM-like polycrystal at 10 nm/px (mean ECD 250 nm) and its ground-truth labels."""
    from hyperspy_mmdl.synthetic import polycrystal

    return _layers(polycrystal(shape=(512, 512), pixel_size=10.0, unit="nm", mean_ecd=250.0, seed=0),
                   "synthetic polycrystal")


def sample_polycrystal_stack() -> list[tuple]:
    """A stack of 5 frames of 256×256 px at 10 nm/px, as one 3-D layer, and its labels."""
    from hyperspy_mmdl.synthetic import polycrystal

    return _layers(polycrystal(shape=(256, 256), pixel_size=10.0, unit="nm", mean_ecd=250.0,
                               n_frames=5, seed=0), "synthetic polycrystal stack")
