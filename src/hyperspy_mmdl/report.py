"""The report of ``mmdl demo`` and ``mmdl analyze``: frames analysed by the pipeline, rendered.

:func:`analyze_image` and :func:`analyze_files` hand every frame to
:func:`hyperspy_mmdl.pipeline.analyze_frame` (the chain every route uses) and
keep where it came from; :func:`write_report` renders the results into a
folder, every table and plot in one unit (units in the column headers)::

    grains.csv             one row per grain (source, frame, label, area [unit²], ecd [unit], ...)
    summary.csv / .json    one row per frame: grain count, mean ECD, AR, GBLD, ASTM G, class, prediction
    *_px.csv, *_px.png     the same for frames without calibration, when others have one
    ecd_histogram.png      ECD distribution of every frame
    attention_*.png        attention map over each frame (with a model)
    index.html             a page showing all of it

Nothing here imports Qt or napari.
"""

from __future__ import annotations

import html
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import MMDLError, WrongTaskError
from .pipeline import AnalysisParameters, FrameAnalysis, analyze_frame, apply_models, common_unit, grains_text, iter_frames

__all__ = ["FrameResult", "analyze_image", "analyze_files", "predict_frame", "write_report"]


@dataclass
class FrameResult:
    """One analysed frame of a report: where it comes from and its
    :class:`~hyperspy_mmdl.pipeline.FrameAnalysis`."""

    source: str
    frame: int | None
    analysis: FrameAnalysis
    truth: dict = field(default_factory=dict)

    # the analysis, by the names the report uses
    labels = property(lambda self: self.analysis.labels)
    table = property(lambda self: self.analysis.table)
    summary = property(lambda self: self.analysis.summary)
    calibration = property(lambda self: self.analysis.calibration)
    image = property(lambda self: self.analysis.image)
    method = property(lambda self: self.analysis.method)
    probabilities = property(lambda self: self.analysis.probabilities)
    class_names = property(lambda self: self.analysis.class_names)
    prediction = property(lambda self: self.analysis.prediction)
    prediction_unit = property(lambda self: self.analysis.prediction_unit)
    attention = property(lambda self: self.analysis.attention)
    unit = property(lambda self: self.analysis.unit)

    @property
    def name(self) -> str:
        return self.source if self.frame is None else f"{self.source} frame {self.frame}"

    @property
    def slug(self) -> str:
        keep = "".join(c if c.isalnum() or c in "-_" else "_" for c in Path(self.source).stem)
        return keep if self.frame is None else f"{keep}_f{self.frame}"

    @property
    def predicted_class(self) -> str | None:
        return self.analysis.predicted_class


def analyze_image(data, calibration, *, source: str = "image", model=None, device: str = "auto",
                  segment_kwargs: dict | None = None, attention: str | None = "gradcam",
                  truth: list[dict] | None = None, log=None, params: AnalysisParameters | None = None,
                  unit: str | None = None, rgb: bool | None = None, on_frame=None, composition=None,
                  process=None) -> list[FrameResult]:
    """Every frame of an image or stack through :func:`hyperspy_mmdl.pipeline.analyze_frame`.

    Parameters
    ----------
    data : array_like
        ``(H, W)``, ``(frames, H, W)`` or colour (R, G, B last).
    calibration : Calibration
    source : str
        Name for the tables (usually the file name).
    model : str, Path or Predictor, optional
        A ``classify`` or ``regress-pce`` checkpoint; without one, grains only.
    device : str
    segment_kwargs : dict, optional
        ``method``, ``data_bar`` and the segmentation parameters (default ``method="auto"``).
    attention : str or None
        Attention method for the model's map; None for no maps.
    truth : list of dict, optional
        Known values per frame (the synthetic sample's), kept for the report.
    log : callable, optional
        ``log(message)`` for progress lines.
    params : AnalysisParameters, optional
        Instead of ``segment_kwargs``/``model``/``attention``.
    unit : str, optional
        Length unit of the results (one unit for all files of a report).
    rgb : bool, optional
        Whether ``data`` has a colour axis last (guessed by default).
    on_frame : callable, optional
        ``on_frame(result, seconds)`` after each frame (progress display).
    composition, process : dict, optional
        The device's fields for a ``regress-pce`` model.
    """
    log = log or (lambda _msg: None)
    if params is None:
        models = {}
        if model is not None:
            from hyperspy_mmdl.inference import get_predictor

            pred = get_predictor(model, device=device)
            if pred.card.task not in ("classify", "regress-pce"):
                raise WrongTaskError(f"{model}: a {pred.card.task!r} model; analyze needs a classify or "
                                     f"regress-pce checkpoint")
            key = "classify" if pred.card.task == "classify" else "predict_pce"
            models = {key: pred, "attention": attention, "device": device}
            if composition or process:
                models.update(composition=dict(composition or {}), process=dict(process or {}))
        params = AnalysisParameters.from_segment_kwargs(segment_kwargs, **models)
    results = []
    for k, (i, frame, cal) in enumerate(iter_frames(data, calibration, rgb=rgb)):
        t0 = time.perf_counter()
        fa = analyze_frame(frame, cal, params, unit=unit)
        seconds = time.perf_counter() - t0
        r = FrameResult(source, i, fa, truth=dict(truth[k]) if truth else {})
        s = fa.summary
        log(f"{r.name}: {grains_text(s['n_grains'])}, mean ECD {s['mean_ecd']:.4g} {fa.unit}"
            + (f", class {r.predicted_class}" if r.predicted_class else "")
            + (f", prediction {r.prediction:.3g} {r.prediction_unit}" if r.prediction is not None else ""))
        results.append(r)
        if on_frame is not None:
            on_frame(r, seconds)
    return results


def predict_frame(r: FrameResult, predictor, *, device: str = "auto", attention: str | None = "gradcam"):
    """Classify (or predict PCE for) an analysed frame and compute its attention map, in place."""
    from hyperspy_mmdl.inference import get_predictor

    pred = get_predictor(predictor, device=device)
    key = "classify" if pred.card.task == "classify" else "predict_pce"
    apply_models(r.analysis, AnalysisParameters(**{key: pred}, attention=attention, device=device))


def analyze_files(paths, *, model=None, device: str = "auto", segment_kwargs=None,
                  attention: str | None = "gradcam", log=None, unit: str | None = None, progress=None,
                  composition=None, process=None):
    """:func:`analyze_image` on each file read by :func:`hyperspy_mmdl.io.load`, in one unit.

    A file that cannot be read or analysed is recorded and the others go on.
    ``progress(line)``, when given, receives one line per frame (the CLI writes
    them to stderr)::

        [3/12] film.dm4 frame 2: 412 grains (1.8 s)

    Returns
    -------
    results : list of FrameResult
    failures : list of (file, reason)
    notes : list of (file, note)
        What a person should know, per file (no calibration, several signals ...),
        for :func:`hyperspy_mmdl.pipeline.count_notes`.
    """
    import warnings

    from hyperspy_mmdl import io

    log = log or (lambda _msg: None)
    paths = list(paths)
    failures, notes, images = [], [], []
    for j, p in enumerate(paths, 1):
        try:
            img, said = io.load_with_notes(p)
            notes += [(str(p), text) for text in said]
            images.append((j, p, img))
        except Exception as err:  # noqa: BLE001 - recorded per file; the others go on
            failures.append((str(p), _reason(err)))
    if unit is None:
        unit = common_unit(img.calibration for _, _, img in images)
    results = []

    def frame_done(j):
        if progress is None:
            return None
        return lambda r, seconds: progress(f"[{j}/{len(paths)}] {r.name}: {grains_text(r.summary['n_grains'])} "
                                           f"({seconds:.1f} s)")

    for j, p, img in images:
        try:
            with warnings.catch_warnings(record=True) as caught:  # the chain's warnings (NaN pixels ...) as notes
                warnings.simplefilter("always")
                results += analyze_image(np.asarray(img.data), img.calibration, source=Path(p).name, model=model,
                                         device=device, segment_kwargs=segment_kwargs, attention=attention,
                                         log=log, unit=unit, rgb=img.rgb, on_frame=frame_done(j),
                                         composition=composition, process=process)
            notes += [(str(p), str(w.message)) for w in caught if issubclass(w.category, UserWarning)]
        except Exception as err:  # noqa: BLE001
            failures.append((str(p), _reason(err)))
    return results, failures, notes


def _reason(err: Exception) -> str:
    return str(err) if isinstance(err, MMDLError) else f"{type(err).__name__}: {err}"


# --------------------------------------------------------------------------- tables
def grain_table(results):
    """All grains of all frames in one DataFrame, ``source`` and ``frame`` first, ``attrs["units"]``."""
    import pandas as pd

    parts = []
    for r in results:
        t = r.table.copy()
        t.insert(0, "frame", -1 if r.frame is None else r.frame)
        t.insert(0, "source", r.source)
        parts.append(t)
    out = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    if results:
        out.attrs["units"] = dict(results[0].table.attrs.get("units") or {})
    return out


def summary_rows(results) -> list[dict]:
    """One flat dict per frame (JSON-friendly); units: :func:`summary_units`."""
    rows = []
    for r in results:
        row = {"source": r.source, "frame": -1 if r.frame is None else r.frame,
               "pixel_size": float(r.calibration.pixel_size[1])}
        row.update(r.analysis.row())
        if r.prediction is not None:
            row["prediction"] = r.prediction
        for k, v in r.truth.items():
            row[f"true_{k}"] = _plain(v)
        rows.append(row)
    return rows


def summary_units(results) -> dict:
    """The unit of each column of :func:`summary_rows` (the frames share one unit)."""
    units = {}
    for r in results:
        units.update(r.analysis.row_units())
        units["pixel_size"] = r.unit
        if r.prediction_unit:
            units["prediction"] = r.prediction_unit
        for k in r.truth:
            if k in units:
                units[f"true_{k}"] = units[k]
    return units


def _plain(v):
    if isinstance(v, (np.floating, float)):
        return None if not math.isfinite(float(v)) else float(v)
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, np.bool_):
        return bool(v)
    return v


# --------------------------------------------------------------------------- figures
def _figure(figsize):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, dpi=100)
    FigureCanvasAgg(fig)
    return fig


def ecd_histogram(results, path) -> Path:
    """ECD histograms of all frames (one colour per frame) with each mean marked."""
    fig = _figure((6.0, 3.6))
    ax = fig.add_subplot(111)
    units = {r.unit for r in results}
    if len(units) > 1:
        raise ValueError(f"one histogram, one unit: the frames are in {sorted(units)}")
    unit = units.pop() if units else ""
    all_ecd = np.concatenate([np.asarray(r.table["ecd"], float) for r in results if len(r.table)] or [[]])
    bins = np.histogram_bin_edges(all_ecd, bins=30) if all_ecd.size else 10
    for k, r in enumerate(results):
        if not len(r.table):
            continue
        colour = f"C{k % 10}"
        ax.hist(r.table["ecd"], bins=bins, alpha=0.55, color=colour,
                label=f"{r.name}: n={r.summary['n_grains']}, mean {r.summary['mean_ecd']:.3g}")
        ax.axvline(r.summary["mean_ecd"], color=colour, lw=1.2)
    ax.set_xlabel(f"equivalent circular diameter ({unit})" + (" — no calibration" if unit == "px" else ""))
    ax.set_ylabel("grains")
    ax.legend(fontsize=7)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, format="png")
    return path


def attention_overlay(r: FrameResult, path) -> Path:
    """The frame in grey with its attention map over it (inferno, half transparent), else its grain outlines."""
    from skimage.segmentation import find_boundaries

    h, w = r.image.shape
    fig = _figure((4.2 * w / max(h, w) + 0.8, 4.2 * h / max(h, w) + 0.6))
    ax = fig.add_subplot(111)
    sy, sx = r.calibration.pixel_size
    extent = (0, w * sx, h * sy, 0)
    ax.imshow(r.image, cmap="gray", extent=extent)
    if r.attention is None:  # grains only: their outlines
        edges = find_boundaries(r.labels, mode="inner")
        ax.imshow(np.ma.masked_where(~edges, edges), cmap="autumn", alpha=0.6, extent=extent,
                  interpolation="nearest")
    else:
        im = ax.imshow(r.attention, cmap="inferno", alpha=0.5, vmin=0, vmax=1, extent=extent)
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.02, label="attention")
    title = r.name
    if r.predicted_class:
        title += f": {r.predicted_class} ({float(np.max(r.probabilities)):.0%})"
    ax.set_title(title, fontsize=8)
    ax.set_xlabel(r.unit, fontsize=8)
    ax.tick_params(labelsize=7)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, format="png")
    return path


# --------------------------------------------------------------------------- report
def write_report(results, out, *, title: str = "napari-mmdl report", notes: list[str] | None = None,
                 extra: dict | None = None, images: dict | None = None) -> dict:
    """Write the report folder (see the module docstring); returns ``{name: path}``.

    Every table and plot has one unit (in its headers and axis labels). Frames
    without calibration, when there are calibrated ones too, get tables and a
    histogram of their own in pixels (``grains_px.csv``, ``summary_px.csv``,
    ``ecd_histogram_px.png``). ``notes`` are paragraphs shown on the page,
    ``extra`` a dict written into ``summary.json`` (e.g. training metrics),
    ``images`` more PNGs to show (``{caption: path}``, e.g. the loss curve).
    """
    import pandas as pd

    from .tables import write_table

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if not results:
        raise ValueError("nothing to report: no frames were analysed")
    groups = {}
    for r in results:
        groups.setdefault(r.unit == "px", []).append(r)
    if len(groups) == 1:
        groups = {False: results}
    paths, sections, doc_frames = {}, [], []
    for px, group in sorted(groups.items()):
        sfx = "_px" if px and len(groups) > 1 else ""
        unit = group[0].unit
        paths[f"grains{sfx}.csv"] = write_table(grain_table(group), out / f"grains{sfx}.csv")
        rows = summary_rows(group)
        units = summary_units(group)
        paths[f"summary{sfx}.csv"] = write_table(pd.DataFrame(rows), out / f"summary{sfx}.csv", units)
        doc_frames += [dict(r, units=units) for r in rows]
        paths[f"ecd_histogram{sfx}.png"] = ecd_histogram(group, out / f"ecd_histogram{sfx}.png")
        sections.append((unit, sfx, rows, units))
    doc = {"title": title, "frames": doc_frames, **({"extra": extra} if extra else {})}
    (out / "summary.json").write_text(json.dumps(doc, indent=1, ensure_ascii=False, default=_plain),
                                      encoding="utf-8")
    paths["summary.json"] = out / "summary.json"
    overlays = []
    for r in results:
        name = f"attention_{r.slug}.png" if r.attention is not None else f"grains_{r.slug}.png"
        paths[name] = attention_overlay(r, out / name)
        overlays.append((r, name))
    extra_imgs = []
    for caption, p in (images or {}).items():
        p = Path(p)
        if p.is_file():
            extra_imgs.append((caption, Path(p).resolve().relative_to(out.resolve()).as_posix()
                               if p.resolve().is_relative_to(out.resolve()) else str(p)))
    (out / "index.html").write_text(_html(title, sections, overlays, notes or [], extra_imgs), encoding="utf-8")
    paths["index.html"] = out / "index.html"
    return paths


_COLUMNS = (("source", "file"), ("frame", "frame"), ("n_grains", "grains"), ("mean_ecd", "mean ECD"),
            ("sd_ecd", "SD ECD"), ("true_mean_ecd", "true mean ECD"), ("mean_aspect_ratio", "mean AR"),
            ("gbld", "GBLD"), ("astm_g_planimetric", "ASTM G"), ("grain_size_class", "class (measured)"),
            ("true_class", "class (true)"), ("predicted_class", "class (model)"), ("prediction", "prediction"))


def _fmt(v):
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.4g}"
    return html.escape(str(v))


def _html(title, sections, overlays, notes, extra_imgs) -> str:
    tables = []
    for unit, sfx, rows, units in sections:
        cols = [(k, lab) for k, lab in _COLUMNS if any(k in r and r[k] is not None for r in rows)]
        head = "".join(f"<th>{html.escape(lab)}" + (f" [{html.escape(units[k])}]" if units.get(k) else "")
                       + "</th>" for k, lab in cols)
        body = "".join("<tr>" + "".join(f"<td>{_fmt(r.get(k))}</td>" for k, _ in cols) + "</tr>" for r in rows)
        what = f"lengths in {unit}" if unit != "px" else "no calibration: lengths in pixels"
        tables.append(
            f"<h2>Summary ({html.escape(what)})</h2>\n<table><tr>{head}</tr>{body}</table>\n"
            f'<p>Files: <a href="grains{sfx}.csv">grains{sfx}.csv</a> (one row per grain), '
            f'<a href="summary{sfx}.csv">summary{sfx}.csv</a>, <a href="summary.json">summary.json</a>. '
            f"Units are in the column headers.</p>\n"
            f'<figure><img src="ecd_histogram{sfx}.png" alt="ECD histogram"><figcaption>ECD histogram '
            f"({html.escape(unit)})</figcaption></figure>")
    summary = "\n".join(tables)
    figs = "".join(
        f'<figure><img src="{html.escape(name)}" alt="{html.escape(r.name)}"><figcaption>'
        f"{html.escape(r.name)}</figcaption></figure>" for r, name in overlays)
    more = "".join(f'<figure><img src="{html.escape(src)}" alt="{html.escape(cap)}"><figcaption>'
                   f"{html.escape(cap)}</figcaption></figure>" for cap, src in extra_imgs)
    para = "".join(f"<p>{html.escape(n)}</p>" for n in notes)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: sans-serif; margin: 2em; max-width: 1200px; }}
table {{ border-collapse: collapse; font-size: 0.9em; }}
td, th {{ border: 1px solid #bbb; padding: 0.25em 0.6em; text-align: right; }}
figure {{ display: inline-block; margin: 0.5em; vertical-align: top; }}
figure img {{ max-width: 520px; }}
</style></head><body>
<h1>{html.escape(title)}</h1>
{para}
{summary}
{more}
<h2>Frames</h2>
{figs}
</body></html>
"""
