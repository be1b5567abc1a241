"""``mmdl analyze``: the demo's chain on your own micrographs.

Each file (any format :func:`hyperspy_mmdl.io.load` reads, calibration kept;
stacks frame by frame) is segmented, measured and summarised; with ``--model``
every frame is also classified (or its PCE predicted) and its attention map
drawn. The report folder holds grains.csv, summary.csv/json, ecd_histogram.png,
one overlay PNG per frame and index.html.

Examples::

    mmdl analyze film.dm4 --out film-report
    mmdl analyze sem/*.tif --model ~/.local/share/napari-mmdl/models/grain.pt --out report
    mmdl analyze film.tif --model pce.pt --composition "etl=TiO2-c | TiO2-mp;perovskite_type=MAPbI" \
        --process "antisolvent=Chlorobenzene" --out report
    mmdl analyze film.tif --model perovskite-pce-ensemble --composition devices.csv:12 --out report
"""

from __future__ import annotations

import sys
from pathlib import Path


def register(subparsers) -> None:
    p = subparsers.add_parser("analyze", help="grains (and a model's classes and attention) of your files, "
                              "as a report folder", description=__doc__.split("\n\n")[1])
    p.add_argument("files", nargs="+", type=Path, metavar="FILE", help="micrographs (dm3, dm4, tif, hspy, ...)")
    p.add_argument("--model", default=None, help="classify or regress-pce checkpoint, or a shipped model's name "
                   "(optional)")
    p.add_argument("--composition", default=None, metavar="K=V;... | TABLE.csv[:ROW]",
                   help="with a regress-pce model: the device's composition fields, or a row of a device table")
    p.add_argument("--process", default=None, metavar="K=V;... | TABLE.csv[:ROW]",
                   help="with a regress-pce model: the device's process fields, or a row of a device table")
    p.add_argument("--out", type=Path, default=Path("mmdl-report"), help="report folder (default: mmdl-report)")
    p.add_argument("--method", default="auto", choices=["auto", "boundary", "threshold", "learned"],
                   help="segmentation method; 'learned': the shipped grain-boundary U-Net (default: auto)")
    p.add_argument("--lines", default="auto", choices=["auto", "dark", "bright", "edge"],
                   help="boundary method: polarity of the boundary lines (default: auto)")
    p.add_argument("--min-area", default=None, help="drop grains smaller than this, e.g. '0.01 µm²'")
    p.add_argument("--exclude-border", action="store_true", help="drop grains touching the image border")
    p.add_argument("--attention", default="gradcam", choices=["gradcam", "cbam", "external", "chunking", "none"],
                   help="attention method with --model (default: gradcam)")
    p.add_argument("--keep-data-bar", action="store_true",
                   help="analyse every row (by default the SEM data bar is left out of the analysed area)")
    p.add_argument("--unit", default=None, help="length unit of the tables (nm, µm, mm); default: by pixel size")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, mps")
    p.set_defaults(func=run)


def run(args) -> int:
    from hyperspy_mmdl import report
    from hyperspy_mmdl.pipeline import count_notes

    composition = device_fields(args.composition, "--composition")
    process = device_fields(args.process, "--process")
    if (composition or process) and not args.model:
        raise ValueError("--composition/--process need --model (a regress-pce checkpoint)")
    kw = {"method": args.method, "exclude_border": bool(args.exclude_border)}
    if args.method in ("auto", "boundary"):
        kw["lines"] = args.lines
    if args.min_area:
        kw["min_area"] = args.min_area
    if args.keep_data_bar:
        kw["data_bar"] = False
    results, failures, notes = report.analyze_files(
        args.files, model=args.model, device=args.device, segment_kwargs=kw,
        attention=None if args.attention == "none" else args.attention, log=print, unit=args.unit,
        composition=composition, process=process,
        progress=lambda line: print(line, file=sys.stderr, flush=True))
    # each frame's notes: what auto chose, doubtful results, what the PCE model did with the inputs ...
    notes = list(notes) + [(r.source, n) for r in results for n in r.analysis.notes]
    settings = ", ".join(f"{k.replace('_', ' ')} {'yes' if v is True else 'no' if v is False else v}"
                         for k, v in kw.items())
    text = [f"{len(args.files)} file(s), {len(results)} frame(s); segmentation: {settings}."]
    if args.model:
        text.append(f"Model: {args.model}.")
    text += [f"Note: {line}." for line in count_notes(notes)]
    text += [f"Failed: {why if why.startswith(f) else f'{f}: {why}'}" for f, why in failures]
    if results:
        paths = report.write_report(results, args.out, title="napari-mmdl analysis", notes=text)
        units = {r.unit for r in results}
        main_unit = next(iter(units - {"px"}), "px")
        print(f"wrote {args.out}/index.html ({len(paths)} files); tables in {main_unit}"
              + ("" if len(units) == 1 else "; frames without calibration in pixels: *_px files"))
    for line in count_notes(notes):
        print(f"note: {line}", file=sys.stderr)
    for f, why in failures:
        print(f"failed: {why if why.startswith(f) else f'{f}: {why}'}", file=sys.stderr)
    if failures:
        print(f"mmdl analyze: {len(failures)} of {len(args.files)} file(s) failed", file=sys.stderr)
        return 1
    return 0


def device_fields(text: str | None, what: str) -> dict:
    """A device's fields from ``KEY=VALUE;KEY=VALUE`` or a row of a device table, ``TABLE.csv[:ROW]``.

    ``ROW`` is the 0-based data row (default 0); every column of the row is
    passed (the model takes the ones it knows). Pairs are separated by ``,``
    or ``;``; a value may hold either (``a_ions=Cs; FA; MA``).

    Examples
    --------
    >>> device_fields("etl=TiO2-c | TiO2-mp;a_ions=Cs; FA,Perovskite_band_gap=1.6", "--composition")
    {'etl': 'TiO2-c | TiO2-mp', 'a_ions': 'Cs; FA', 'Perovskite_band_gap': 1.6}
    """
    from hyperspy_mmdl.cli.batch import _value

    if not text:
        return {}
    path, _, row = text.rpartition(":") if not Path(text).is_file() else (text, "", "")
    if path and Path(path).is_file() and (not row or row.isdigit()):
        from hyperspy_mmdl.tabular import read_table

        frame = read_table(path)
        i = int(row or 0)
        if not 0 <= i < len(frame):
            raise ValueError(f"{what}: {path} has {len(frame)} rows, no row {i}")
        cells = {str(k): (v.item() if hasattr(v, "item") else v) for k, v in frame.iloc[i].items()}
        return {k: v for k, v in cells.items() if not (isinstance(v, float) and v != v)}
    if Path(text).is_file():
        return device_fields(text + ":0", what)
    import re

    out: dict = {}
    # a pair ends at the ',' or ';' before the next KEY= (values may hold ';' mixtures or a comma)
    for part in re.split(r"[;,]\s*(?=[\w .\-/()\[\]]+=)", text):
        if not part.strip():
            continue
        if "=" not in part:
            raise ValueError(f"{what}: expected KEY=VALUE pairs (or TABLE.csv[:ROW]), got {part!r}")
        k, v = part.split("=", 1)
        out[k.strip()] = _value(v.strip())
    return out
