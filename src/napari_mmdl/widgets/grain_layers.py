"""Grain results on napari layers: frames of a layer through the pipeline, and back onto a Labels layer.

The Grains and Set Scale widgets share these steps, so a stack, an edited
Labels layer and a Labels layer painted elsewhere are measured the same way:

* :func:`segment_frames` runs :func:`hyperspy_mmdl.pipeline.analyze_frame` on
  every frame of an image (``pipeline.iter_frames``), :func:`measure_frames`
  runs :func:`hyperspy_mmdl.pipeline.measure_frame` on every frame of a label
  image against its image; both are generators that yield ``(done, total)``
  after each frame (a worker's progress, stopped between frames by Cancel) and
  return a :class:`GrainResult`;
* the size and circularity ranges (:func:`hyperspy_mmdl.grains.select.select_grains`)
  leave grains out of the table and the summary, as ImageJ's *Analyze Particles*;
* :func:`publish` puts the result on a Labels layer: ``features`` (one row per
  grain, ``index`` = the label value as napari expects, ``frame`` for stacks)
  and ``metadata`` (units, per-frame summary, analysed rows, the source image,
  the parameters), from which it can be measured again after a Set Scale.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

#: per-frame summary columns shown and written (``FrameAnalysis.row()`` keys)
SUMMARY_COLUMNS = ("frame", "n_grains", "mean_ecd", "sd_ecd", "median_ecd", "mean_aspect_ratio", "area_fraction",
                   "gbld", "astm_g_planimetric", "astm_g_intercept", "grain_size_class", "method", "analysed_rows")


@dataclass
class GrainResult:
    """The grains of an image or of every frame of a stack.

    Attributes
    ----------
    labels : numpy.ndarray
        int32 labels, shaped as the image's frames (``(H, W)`` or ``(..., H, W)``).
    table : pandas.DataFrame
        One row per grain (``frame`` first for stacks), ``attrs["units"]``.
    summary : pandas.DataFrame
        One row per frame (:data:`SUMMARY_COLUMNS` and the rest of
        ``FrameAnalysis.row()``), ``attrs["units"]``.
    frames : list of FrameAnalysis
    stack : bool
    left_out : int
        Grains outside the size / circularity ranges.
    """

    labels: np.ndarray
    table: object
    summary: object
    frames: list
    stack: bool
    left_out: int = 0
    notes: list = field(default_factory=list)

    @property
    def n_grains(self) -> int:
        return int(len(self.table))

    @property
    def analysed_rows(self):
        """Analysed rows per frame (one int for a single image)."""
        rows = [int(f.analysed_rows) for f in self.frames]
        return rows if self.stack else rows[0]


# ----------------------------------------------------------------------------- selection
def selection(size=None, circularity=None, pixel_units: bool = False) -> dict:
    """The size / circularity ranges as stored with a result (checked now: a bad range raises here)."""
    from hyperspy_mmdl.grains.select import parse_range

    return {"size": parse_range(size, "size"), "circularity": parse_range(circularity, "circularity"),
            "pixel_units": bool(pixel_units)}


def in_pixels(sel: dict | None, calibration) -> dict | None:
    """The same selection with the size range in pixels (it then survives a Set Scale)."""
    if sel is None or sel.get("pixel_units"):
        return sel
    lo, hi = sel["size"]
    area = calibration.pixel_area
    return dict(sel, size=(lo / area, hi / area), pixel_units=True)


def _select(fa, sel: dict | None, params):
    """``fa`` measured again without the grains outside the ranges (``(fa, n_left_out)``)."""
    if sel is None or len(fa.table) == 0:
        return fa, 0
    from hyperspy_mmdl.grains.select import keep_labels, select_grains
    from hyperspy_mmdl.pipeline import measure_frame

    keep = select_grains(fa.table, sel["size"], sel["circularity"], pixel_units=sel["pixel_units"])
    if keep.all():
        return fa, 0
    kept = measure_frame(keep_labels(fa.labels, fa.table["label"].to_numpy()[keep]), fa.calibration,
                         analysed_rows=fa.analysed_rows, params=params)
    kept.method, kept.segment_info, kept.data_bar = fa.method, fa.segment_info, fa.data_bar
    kept.notes = list(fa.notes)
    return kept, int((~keep).sum())


# ----------------------------------------------------------------------------- frames
def n_frames(data, rgb: bool) -> int:
    shape = np.shape(data)
    lead = shape[:-3] if rgb else shape[:-2]
    return int(np.prod(lead)) if lead else 1


def segment_frames(data, calibration, params, *, rgb: bool = False, sel: dict | None = None):
    """Segment and measure every frame of ``data`` (a generator: yields ``(done, total)``,
    returns a :class:`GrainResult` with labels unique over the stack)."""
    from hyperspy_mmdl.pipeline import analyze_frame, iter_frames

    total = n_frames(data, rgb)
    done, left = [], 0
    for _, frame, cal in iter_frames(data, calibration, rgb=rgb):
        fa, n_out = _select(analyze_frame(frame, cal, params), sel, params)
        left += n_out
        done.append(fa)
        yield len(done), total
    return collect(done, data_shape(data, rgb), renumber=True, left_out=left)


def data_shape(data, rgb: bool) -> tuple:
    shape = tuple(np.shape(data))
    return shape[:-1] if rgb else shape


def measure_frames(labels, calibration, params, *, image=None, rgb: bool = False, analysed_rows=None,
                   sel: dict | None = None):
    """Measure every frame of a label image (a generator like :func:`segment_frames`).

    ``image`` (same frames, or one frame for all) finds each frame's data bar
    when ``analysed_rows`` (one int, or one per frame) is not given.
    """
    from hyperspy_mmdl.pipeline import measure_frame

    lab = np.asarray(labels)
    frames = lab.reshape((-1,) + lab.shape[-2:])
    total = frames.shape[0]
    images = None
    if image is not None:
        img = image
        single = np.ndim(img) == (3 if rgb else 2)
        images = (lambda k: np.asarray(img)) if single else (
            lambda k: np.asarray(img.reshape((-1,) + tuple(np.shape(img)[-(3 if rgb else 2):]))[k]))
    rows = analysed_rows
    if rows is not None and not isinstance(rows, (list, tuple)):
        rows = [int(rows)] * total
    done, left = [], 0
    for k in range(total):
        im = images(k) if images is not None and rows is None else None
        fa = measure_frame(frames[k], calibration, image=im, params=params,
                           analysed_rows=None if rows is None else rows[k])
        fa, n_out = _select(fa, sel, params)
        left += n_out
        done.append(fa)
        yield k + 1, total
    return collect(done, lab.shape, renumber=False, left_out=left)


def collect(frames: list, shape: tuple, *, renumber: bool, left_out: int = 0) -> GrainResult:
    """One :class:`GrainResult` from the frames' analyses (stack: labels offset to be unique
    when ``renumber``, a ``frame`` column)."""
    import pandas as pd

    stack = len(shape) > 2
    labels, tables, rows = [], [], []
    offset = 0
    for k, fa in enumerate(frames):
        lab = np.asarray(fa.labels, dtype=np.int32)
        t = fa.table.copy()
        if renumber and stack and offset:
            lab = np.where(lab > 0, lab + offset, 0).astype(np.int32)
            t["label"] = t["label"] + offset
        if renumber and stack:
            offset = max(offset, int(lab.max(initial=0)))
        if stack:
            t.insert(0, "frame", k)
        labels.append(lab)
        tables.append(t)
        rows.append(dict(frame=k, **fa.row()))
    units = dict(frames[0].table.attrs.get("units") or {}) if frames else {}
    table = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()
    if stack:
        units["frame"] = ""
    table.attrs["units"] = units
    if frames:
        table.attrs["pixel_size"] = frames[0].table.attrs.get("pixel_size")
    summary = pd.DataFrame(rows)
    summary = summary[[c for c in SUMMARY_COLUMNS if c in summary.columns]
                      + [c for c in summary.columns if c not in SUMMARY_COLUMNS]]
    summary.attrs["units"] = frames[0].row_units() if frames else {}
    data = np.stack(labels).reshape(shape) if stack else labels[0]
    notes = sorted({n for fa in frames for n in fa.notes})
    return GrainResult(labels=data, table=table, summary=summary, frames=list(frames), stack=stack,
                       left_out=left_out, notes=notes)


# ----------------------------------------------------------------------------- layers
def publish(layer, result: GrainResult, *, source=None, params=None, sel: dict | None = None) -> None:
    """Put ``result`` on a Labels layer: metadata first, then ``features`` (whose event tells
    the widgets showing it)."""
    table = result.table.reset_index(drop=True).copy()
    units = dict(result.table.attrs.get("units") or {})
    table.insert(0, "index", table["label"].to_numpy() if len(table) else np.zeros(0, np.int64))
    md = layer.metadata
    md["grain_units"] = units
    md["grain_summary"] = result.summary
    md["grain_pixel_size"] = result.table.attrs.get("pixel_size")
    md["grain_frame_summaries"] = [fa.summary for fa in result.frames]
    md["analysed_rows"] = result.analysed_rows
    md["grain_stack"] = result.stack
    md["grain_notes"] = list(result.notes)
    md["grain_left_out"] = int(result.left_out)
    if source is not None:
        md["source"] = source
    if params is not None:
        md["analysis_parameters"] = params
    if sel is not None:
        md["grain_selection"] = sel
    layer.features = table


def has_grains(layer) -> bool:
    """True when a Labels layer carries a grain table published here."""
    return "grain_units" in getattr(layer, "metadata", {})


def source_image(viewer, layer):
    """The image layer a Labels layer was measured against (by name), or None."""
    name = layer.metadata.get("source")
    if viewer is None or name is None or name not in viewer.layers:
        return None
    return viewer.layers[name]


def _world_factors(viewer, layer) -> np.ndarray:
    """World units per layer unit along the layer's axes: napari expresses world coordinates in the
    viewer's common units (``dims.units``) when the layers' units are consistent."""
    n = layer.ndim
    units = getattr(getattr(viewer, "dims", None), "units", None)
    if units is None or getattr(layer, "units", None) is None:
        return np.ones(n)
    out = []
    for lu, wu in zip(tuple(layer.units), tuple(units)[-n:]):
        try:
            out.append(float((1 * lu).to(wu).magnitude))
        except Exception:  # noqa: BLE001 - pint: pixels and lengths do not convert
            out.append(1.0)
    return np.asarray(out, dtype=float)


def world_to_data(viewer, layer, world) -> np.ndarray:
    """Data coordinates of a world position of the viewer (its units), for ``layer``."""
    world = np.asarray(world, dtype=float)[-layer.ndim:]
    world = np.concatenate([np.zeros(layer.ndim - len(world)), world])
    return np.asarray(layer.world_to_data(world / _world_factors(viewer, layer)), dtype=float)


def data_to_world(viewer, layer, data) -> np.ndarray:
    """The viewer's world position (its units) of data coordinates of ``layer``."""
    return np.asarray(layer.data_to_world(tuple(data)), dtype=float) * _world_factors(viewer, layer)


def image_data(layer):
    """The full-resolution data of an image layer."""
    return layer.data[0] if getattr(layer, "multiscale", False) else layer.data


def file_source(layer):
    """``(path, image shape)`` of the file an image layer was read from, or None."""
    path = getattr(getattr(layer, "source", None), "path", None)
    return (str(path), tuple(data_shape(image_data(layer), bool(layer.rgb))[-2:])) if path else None


def file_calibration(layer=None, *, source=None):
    """The calibration the file behind an uncalibrated image layer holds, or None.

    napari's own reader opens TIFFs without their pixel size; when the layer was
    read from a file (``layer.source.path``) that :func:`hyperspy_mmdl.io.load`
    reads with a calibration and the same image size, that calibration is
    returned so that the widgets can offer it. Any failure to read gives None.
    ``source``: :func:`file_source` of the layer, taken earlier (the read, which
    imports the readers, may then run in a worker thread).
    """
    source = file_source(layer) if source is None else source
    if source is None:
        return None
    import warnings

    from hyperspy_mmdl import io

    path, shape = source
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            img = io.load(path, lazy=True)
    except Exception:  # noqa: BLE001 - not a file we read: nothing to offer
        return None
    frame = tuple(img.data.shape[-3:-1] if img.rgb else img.data.shape[-2:])
    cal = img.calibration
    return cal.image if cal.is_calibrated and frame == tuple(shape) else None


def remeasure(layer, calibration, *, image=None, rgb: bool = False, sel: dict | None = None, params=None):
    """Measure a published Labels layer again (same analysed rows, stored parameters and
    selection unless given) and publish the result; returns it."""
    params = params if params is not None else layer.metadata.get("analysis_parameters")
    sel = sel if sel is not None else layer.metadata.get("grain_selection")
    rows = layer.metadata.get("analysed_rows")
    gen = measure_frames(np.asarray(layer.data), calibration, params, image=image, rgb=rgb,
                         analysed_rows=rows, sel=sel)
    result = run_to_end(gen)
    publish(layer, result, params=params, sel=sel)
    return result


def run_to_end(gen):
    """The return value of a generator that yields progress."""
    while True:
        try:
            next(gen)
        except StopIteration as stop:
            return stop.value
