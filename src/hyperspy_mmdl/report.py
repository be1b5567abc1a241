"""The analysis chain of ``mmdl demo`` and ``mmdl analyze``, and the report folder it writes.

:func:`analyze_image` runs, on every frame of a calibrated micrograph, the
functions the other front ends call too: :func:`hyperspy_mmdl.grains.segment`,
:func:`~hyperspy_mmdl.grains.measure`, :func:`~hyperspy_mmdl.grains.summarize`,
and with a checkpoint :func:`hyperspy_mmdl.inference.classify` (or
:func:`~hyperspy_mmdl.inference.predict_pce`) and
:func:`hyperspy_mmdl.explain.attention_map`. :func:`write_report` turns the
results into a folder::

    grains.csv             one row per grain (source, frame, label, area, ecd, ...)
    summary.csv / .json    one row per frame: grain count, mean ECD, AR, GBLD, ASTM G, class, prediction
    ecd_histogram.png      ECD distribution of every frame
    attention_*.png        attention map over each frame (with a model)
    index.html             a page showing all of it

Nothing here imports Qt or napari.
"""

from __future__ import annotations

import html
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = ["FrameResult", "iter_frames", "analyze_image", "analyze_files", "predict_frame", "write_report"]


@dataclass
class FrameResult:
    """The analysis of one 2-D frame."""

    source: str
    frame: int | None
    image: np.ndarray
    calibration: object
    labels: np.ndarray
    table: object
    summary: dict
    method: str = ""
    probabilities: np.ndarray | None = None
    class_names: list | None = None
    prediction: float | None = None  # a regressor's output (PCE)
    prediction_unit: str = ""
    attention: np.ndarray | None = None
    truth: dict = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.source if self.frame is None else f"{self.source} frame {self.frame}"

    @property
    def slug(self) -> str:
        keep = "".join(c if c.isalnum() or c in "-_" else "_" for c in Path(self.source).stem)
        return keep if self.frame is None else f"{keep}_f{self.frame}"

    @property
    def predicted_class(self) -> str | None:
        if self.probabilities is None or not self.class_names:
            return None
        return str(self.class_names[int(np.argmax(self.probabilities))])


def iter_frames(data, calibration):
    """``(frame index or None, 2-D array, 2-D calibration)`` for an image or a stack.

    Stacks are flattened over their leading axes; RGB(A) images (last axis of
    3 or 4 with a 2-axis calibration) are averaged to grey.
    """
    data = np.asarray(data)
    cal = calibration.image
    if data.ndim == 3 and calibration.ndim == 2 and data.shape[-1] in (3, 4):
        data = data[..., :3].mean(-1)
    if data.ndim == 2:
        yield None, data, cal
        return
    frames = data.reshape((-1,) + data.shape[-2:])
    for i, f in enumerate(frames):
        yield i, f, cal


def analyze_image(data, calibration, *, source: str = "image", model=None, device: str = "auto",
                  segment_kwargs: dict | None = None, attention: str | None = "gradcam",
                  truth: list[dict] | None = None, log=None) -> list[FrameResult]:
    """Segment, measure and summarise every frame; classify and explain it with ``model``.

    Parameters
    ----------
    data : array_like
        ``(H, W)``, ``(frames, H, W)`` or RGB.
    calibration : Calibration
    source : str
        Name for the tables (usually the file name).
    model : str, Path, Predictor or (module, card), optional
        A ``classify`` or ``regress-pce`` checkpoint; without one, grains only.
    device : str
    segment_kwargs : dict, optional
        Passed to :func:`hyperspy_mmdl.grains.segment` (default ``method="auto"``).
    attention : str or None
        Attention method of :func:`hyperspy_mmdl.explain.attention_map`; None for no maps.
    truth : list of dict, optional
        Known values per frame (the synthetic sample's), kept for the report.
    log : callable, optional
        ``log(message)`` for progress lines.
    """
    from hyperspy_mmdl.grains import measure, segment, summarize

    log = log or (lambda _msg: None)
    predictor = None
    if model is not None:
        from hyperspy_mmdl.inference import get_predictor

        predictor = get_predictor(model, device=device)
        if predictor.card.task not in ("classify", "regress-pce"):
            raise ValueError(f"{model}: a {predictor.card.task!r} model; analyze needs a classify or "
                             f"regress-pce checkpoint")
    results = []
    for k, (i, frame, cal) in enumerate(iter_frames(data, calibration)):
        labels, info = segment(frame, cal, return_info=True, **(segment_kwargs or {"method": "auto"}))
        table = measure(labels, cal)
        top = info.get("data_bar_top")
        area = None if top is None else top * labels.shape[1] * cal.pixel_area
        summary = summarize(table, cal, labels=labels, image_area=area)
        r = FrameResult(source, i, np.asarray(frame, np.float32), cal, labels, table, summary,
                        method=str(info.get("method", "")), truth=dict(truth[k]) if truth else {})
        if predictor is not None:
            predict_frame(r, predictor, device=device, attention=attention)
        log(f"{r.name}: {summary['n_grains']} grains, mean ECD {summary['mean_ecd']:.4g} {cal.unit}"
            + (f", class {r.predicted_class}" if r.predicted_class else "")
            + (f", {predictor.card.target_name or 'prediction'} {r.prediction:.3g} {r.prediction_unit}"
               if r.prediction is not None else ""))
        results.append(r)
    return results


def predict_frame(r: FrameResult, predictor, *, device: str = "auto", attention: str | None = "gradcam"):
    """Classify (or predict PCE for) an analysed frame and compute its attention map, in place."""
    from hyperspy_mmdl import explain, inference

    predictor = inference.get_predictor(predictor, device=device)
    card = predictor.card
    if card.task == "classify":
        r.probabilities = np.asarray(inference.classify(r.image, r.calibration, predictor, device=device))
        r.class_names = list(predictor.class_names)
    else:
        value, _weights = inference.predict_pce(r.image, r.calibration, predictor, device=device)
        r.prediction = float(np.ravel(value)[0])
        r.prediction_unit = card.target_unit or ""
    if attention:
        r.attention = np.asarray(explain.attention_map(r.image, r.calibration, predictor, attention,
                                                       device=device), np.float32)


def analyze_files(paths, *, model=None, device: str = "auto", segment_kwargs=None,
                  attention: str | None = "gradcam", log=None) -> list[FrameResult]:
    """:func:`analyze_image` on each file read by :func:`hyperspy_mmdl.io.load`."""
    from hyperspy_mmdl import io

    results = []
    for p in paths:
        img = io.load(p)
        if not img.calibration.is_calibrated and log:
            log(f"{p}: no calibration found; lengths are in pixels")
        results += analyze_image(np.asarray(img.data), img.calibration, source=Path(p).name, model=model,
                                 device=device, segment_kwargs=segment_kwargs, attention=attention, log=log)
    return results


# --------------------------------------------------------------------------- tables
def grain_table(results):
    """All grains of all frames in one DataFrame, with ``source`` and ``frame`` first."""
    import pandas as pd

    parts = []
    for r in results:
        t = r.table.copy()
        t.insert(0, "frame", -1 if r.frame is None else r.frame)
        t.insert(0, "source", r.source)
        parts.append(t)
    out = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    return out


def summary_rows(results) -> list[dict]:
    """One flat dict per frame (JSON-friendly)."""
    rows = []
    for r in results:
        s = r.summary
        row = {"source": r.source, "frame": -1 if r.frame is None else r.frame, "method": r.method,
               "pixel_size": float(r.calibration.pixel_size[1]), "unit": r.calibration.unit}
        for k, v in s.items():
            if k == "units":
                continue
            row[k] = _plain(v)
        for k, v in (s.get("units") or {}).items():
            row[f"unit_{k}"] = v
        if r.probabilities is not None:
            row["predicted_class"] = r.predicted_class
            for name, p in zip(r.class_names, r.probabilities):
                row[f"p_{name}"] = float(p)
        if r.prediction is not None:
            row["prediction"] = r.prediction
            row["prediction_unit"] = r.prediction_unit
        for k, v in r.truth.items():
            row[f"true_{k}"] = _plain(v)
        rows.append(row)
    return rows


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
    units = {r.calibration.unit for r in results}
    unit = units.pop() if len(units) == 1 else ""
    all_ecd = np.concatenate([np.asarray(r.table["ecd"], float) for r in results if len(r.table)] or [[]])
    bins = np.histogram_bin_edges(all_ecd, bins=30) if all_ecd.size else 10
    for k, r in enumerate(results):
        if not len(r.table):
            continue
        colour = f"C{k % 10}"
        ax.hist(r.table["ecd"], bins=bins, alpha=0.55, color=colour,
                label=f"{r.name}: n={r.summary['n_grains']}, mean {r.summary['mean_ecd']:.3g}")
        ax.axvline(r.summary["mean_ecd"], color=colour, lw=1.2)
    ax.set_xlabel(f"equivalent circular diameter ({unit})" if unit else "ECD")
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
    ax.set_xlabel(r.calibration.unit, fontsize=8)
    ax.tick_params(labelsize=7)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, format="png")
    return path


# --------------------------------------------------------------------------- report
def write_report(results, out, *, title: str = "napari-mmdl report", notes: list[str] | None = None,
                 extra: dict | None = None, images: dict | None = None) -> dict:
    """Write the report folder (see the module docstring); returns ``{name: path}``.

    ``notes`` are paragraphs shown on the page, ``extra`` a dict written into
    ``summary.json`` (e.g. training metrics), ``images`` more PNGs to show
    (``{caption: path}``, e.g. the loss curve).
    """
    import pandas as pd

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if not results:
        raise ValueError("nothing to report: no frames were analysed")
    paths = {}
    grains = grain_table(results)
    grains.to_csv(out / "grains.csv", index=False)
    paths["grains.csv"] = out / "grains.csv"
    rows = summary_rows(results)
    pd.DataFrame(rows).to_csv(out / "summary.csv", index=False)
    paths["summary.csv"] = out / "summary.csv"
    doc = {"title": title, "frames": rows, **({"extra": extra} if extra else {})}
    (out / "summary.json").write_text(json.dumps(doc, indent=1, ensure_ascii=False, default=_plain),
                                      encoding="utf-8")
    paths["summary.json"] = out / "summary.json"
    paths["ecd_histogram.png"] = ecd_histogram(results, out / "ecd_histogram.png")
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
    (out / "index.html").write_text(_html(title, rows, overlays, notes or [], extra_imgs), encoding="utf-8")
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


def _html(title, rows, overlays, notes, extra_imgs) -> str:
    cols = [(k, lab) for k, lab in _COLUMNS if any(k in r and r[k] is not None for r in rows)]
    unit = rows[0].get("unit", "") if rows else ""
    head = "".join(f"<th>{html.escape(lab)}</th>" for _, lab in cols)
    body = "".join("<tr>" + "".join(f"<td>{_fmt(r.get(k))}</td>" for k, _ in cols) + "</tr>" for r in rows)
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
<h2>Summary (lengths in {html.escape(unit)})</h2>
<table><tr>{head}</tr>{body}</table>
<p>Files: <a href="grains.csv">grains.csv</a> (one row per grain), <a href="summary.csv">summary.csv</a>,
<a href="summary.json">summary.json</a>.</p>
<h2>Grain size distribution</h2>
<figure><img src="ecd_histogram.png" alt="ECD histogram"><figcaption>ECD histogram</figcaption></figure>
{more}
<h2>Frames</h2>
{figs}
</body></html>
"""
