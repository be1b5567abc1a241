"""``mmdl analyze``: the demo's chain on your own micrographs.

Each file (any format :func:`hyperspy_mmdl.io.load` reads, calibration kept;
stacks frame by frame) is segmented, measured and summarised; with ``--model``
every frame is also classified (or its PCE predicted) and its attention map
drawn. The report folder holds grains.csv, summary.csv/json, ecd_histogram.png,
one overlay PNG per frame and index.html.

Examples::

    mmdl analyze film.dm4 --out film-report
    mmdl analyze sem/*.tif --model ~/.local/share/napari-mmdl/models/grain.pt --out report
"""

from __future__ import annotations

import sys
from pathlib import Path


def register(subparsers) -> None:
    p = subparsers.add_parser("analyze", help="grains (and a model's classes and attention) of your files, "
                              "as a report folder", description=__doc__.split("\n\n")[1])
    p.add_argument("files", nargs="+", type=Path, metavar="FILE", help="micrographs (dm3, dm4, tif, hspy, ...)")
    p.add_argument("--model", default=None, help="classify or regress-pce checkpoint (optional)")
    p.add_argument("--out", type=Path, default=Path("mmdl-report"), help="report folder (default: mmdl-report)")
    p.add_argument("--method", default="auto", choices=["auto", "boundary", "threshold"],
                   help="segmentation method (default: auto)")
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

    kw = {"method": args.method, "exclude_border": bool(args.exclude_border)}
    if args.method != "threshold":
        kw["lines"] = args.lines
    if args.min_area:
        kw["min_area"] = args.min_area
    if args.keep_data_bar:
        kw["data_bar"] = False
    results, failures, notes = report.analyze_files(
        args.files, model=args.model, device=args.device, segment_kwargs=kw,
        attention=None if args.attention == "none" else args.attention, log=print, unit=args.unit,
        progress=lambda line: print(line, file=sys.stderr, flush=True))
    text = [f"{len(args.files)} file(s), {len(results)} frame(s); segmentation {kw}."]
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
