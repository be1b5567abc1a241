"""``mmdl batch``: process files, globs and folders of micrographs and stacks, resumably.

Examples
--------
::

    mmdl batch acquisitions/ --out results/
    mmdl batch "run1/*.dm4" film.zspy --out results/ --segment threshold -p split=true,min_area=0.01
    mmdl batch stacks/ --out results/ --classify grains.pt --workers 2
    mmdl batch sem/ --out results/ --predict-pce pce.pt \\
        --composition perovskite_type=FA-based,etl=SnO2 --process antisolvent=chlorobenzene
    mmdl batch big.zspy --out results/ --scheduler tcp://10.0.0.5:8786
    mmdl batch sem/ --out results/ --remove-data-bar --denoise nl_means --normalize clahe
    mmdl batch sem/ --out results/ --denoise gaussian --denoise-param sigma=20nm

Running the same command again resumes: finished frames are skipped. The exit
status is 0 when everything was processed, 1 when an input or a frame failed
(see ``OUT/manifest.json``), 2 when the run could not start or the output folder
could not be written, 130 when interrupted.
"""

from __future__ import annotations

import argparse
import json
import sys

#: What ``--checksum quick`` cannot see, said in ``mmdl batch --help`` and the README.
QUICK_CHECKSUM_LIMIT = (
    "Resuming recognises an input by a checksum. --checksum quick (the default) hashes the file size, "
    "the modification time and 1 MiB blocks at 10 places: an edit in place that keeps the size, changes "
    "no sampled block and restores the modification time (e.g. touch -d) is not seen, and the old "
    "results are reused. Use --checksum full (SHA-256 of the whole content) when files may be edited "
    "that way.")


def _value(text: str):
    """``"3"`` -> 3, ``"0.5"`` -> 0.5, ``"true"`` -> True, ``"[1,2]"`` -> [1, 2], else the string."""
    low = text.strip().lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("none", "null"):
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


def parse_pairs(text: str | None, what: str) -> dict:
    """Parse ``"k=v,k2=v2"`` into a dict (values as in :func:`_value`)."""
    out: dict = {}
    if not text:
        return out
    for part in text.split(","):
        if not part.strip():
            continue
        if "=" not in part:
            raise ValueError(f"{what}: expected KEY=VALUE pairs separated by commas, got {part!r}")
        k, v = part.split("=", 1)
        out[k.strip()] = _value(v)
    return out


def _wrap(text: str, width: int = 88) -> list[str]:
    import textwrap

    return textwrap.wrap(text, width)


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "batch",
        help="process files, globs and folders (stacks frame by frame); resumable",
        description="Process files, globs and folders of micrographs and stacks (frame by frame, lazily):\n"
        "segment, measure, summarize, optionally classify and predict PCE. Outputs in --out:\n"
        "grains.parquet/.csv, frames.parquet/.csv, labels/*.zspy, manifest.json.\n"
        "Rerun the same command to resume. Inputs that cannot be read (unreadable sub-folders,\n"
        "symbolic-link loops, FIFOs, damaged files) are listed and the run goes on. Exit status:\n"
        "0 all processed, 1 something failed, 2 could not run or the output folder could not be\n"
        "written (full or read-only disk: the finished frames are kept), 130 interrupted.",
        epilog="examples:\n" + __doc__.split("::\n\n")[1].split("\n\nRunning")[0]
        + "\n\nresuming and --checksum:\n  " + "\n  ".join(_wrap(QUICK_CHECKSUM_LIMIT)),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="files (dm3, dm4, tif, hspy, zspy, ...), glob patterns or folders")
    p.add_argument("--out", "-o", required=True, metavar="DIR", help="output folder (rerun to resume)")
    p.add_argument("--segment", default="auto", metavar="METHOD", help="segmentation method (default: auto)")
    p.add_argument("--param", "-p", action="append", default=[], metavar="KEY=VALUE",
                   help="segmentation parameter; repeat or separate with commas "
                        "(e.g. -p split=true,min_area=0.01)")
    p.add_argument("--convention", default="imagej", help="measurement convention (default: imagej)")
    p.add_argument("--classify", metavar="CKPT", help="classification checkpoint")
    p.add_argument("--predict-pce", metavar="CKPT", help="PCE (PSC-Fusion) checkpoint or shipped model name")
    p.add_argument("--composition", metavar="K=V,... | TABLE.csv[:ROW]",
                   help="composition fields for --predict-pce (';' between pairs when a value has a comma), "
                        "or a row of a device table")
    p.add_argument("--process", metavar="K=V,... | TABLE.csv[:ROW]",
                   help="process fields for --predict-pce, or a row of a device table")
    p.add_argument("--device", default="cpu", help="torch device for the models (cpu, cuda, mps)")
    pre = p.add_argument_group("preprocessing (before segmentation; data bar, then denoise, then normalise)")
    pre.add_argument("--keep-data-bar", action="store_true",
                     help="analyse every row: do not leave the SEM data bar out of the analysed area")
    pre.add_argument("--remove-data-bar", action="store_true",
                     help="leave the SEM data bar out (the default; kept for older scripts)")
    pre.add_argument("--denoise", choices=("gaussian", "median", "nl_means", "noise2void"),
                     help="denoise the image that is segmented")
    pre.add_argument("--denoise-param", action="append", default=[], metavar="KEY=VALUE",
                     help="denoising parameter (sigma=1.5, size=3, h=0.05, model=n2v.pt, steps=300); repeatable")
    pre.add_argument("--normalize", choices=("minmax", "zscore", "clahe"),
                     help="normalise the image that is segmented")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--workers", type=int, metavar="N",
                       help="run on a local dask.distributed cluster with N worker processes")
    group.add_argument("--scheduler", metavar="ADDRESS",
                       help="run on an existing dask.distributed cluster (e.g. tcp://host:8786)")
    p.add_argument("--checksum", choices=("quick", "full"), default="quick",
                   help="input fingerprint for resuming: quick (size, mtime, sampled blocks; misses an "
                        "in-place edit of unsampled bytes with the mtime restored, see below) or full "
                        "(SHA-256 of the whole content)")
    p.add_argument("--unit", default=None, metavar="UNIT",
                   help="length unit of every table (nm, µm, mm); default: by the inputs' pixel sizes")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args) -> int:
    from hyperspy_mmdl.batch import run_batch

    segment_params: dict = {}
    for text in args.param:
        segment_params.update(parse_pairs(text, "--param"))
    from hyperspy_mmdl.cli.analyze import device_fields

    composition = device_fields(args.composition, "--composition")
    process = device_fields(args.process, "--process")
    if (composition or process) and not args.predict_pce:
        raise ValueError("--composition/--process need --predict-pce CKPT")
    preprocess: dict = {}
    if args.keep_data_bar and args.remove_data_bar:
        raise ValueError("--keep-data-bar and --remove-data-bar contradict each other")
    if args.keep_data_bar:
        preprocess["data_bar"] = False
    if args.denoise:
        preprocess["denoise"] = args.denoise
        denoise_params: dict = {}
        for text in args.denoise_param:
            denoise_params.update(parse_pairs(text, "--denoise-param"))
        if denoise_params:
            preprocess["denoise_params"] = denoise_params
    elif args.denoise_param:
        raise ValueError("--denoise-param needs --denoise METHOD")
    if args.normalize:
        preprocess["normalize"] = args.normalize
    result = run_batch(
        args.inputs, args.out, segment=args.segment, segment_params=segment_params,
        convention=args.convention, classify=args.classify, predict_pce=args.predict_pce,
        composition=composition, process=process, device=args.device, preprocess=preprocess,
        unit=args.unit, workers=args.workers,
        scheduler=args.scheduler, checksum=args.checksum, progress=not args.no_progress,
        command=["mmdl", "batch"] + sys.argv[2:] if sys.argv[1:2] == ["batch"] else None,
    )
    c = result.counts
    if result.read_only:
        print(f"mmdl batch: up to date: {c['done']} frame(s) done, {c['error']} failed, {c['failed_inputs']} "
              f"input(s) failed, as recorded in {result.out} (read-only: nothing was written)",
              file=sys.stderr)
    else:
        print(f"mmdl batch: {c['done']} frame(s) processed ({c['resumed']} resumed), {c['error']} failed, "
              f"{c['failed_inputs']} input(s) failed; outputs in {result.out}", file=sys.stderr)
    for line in result.report_lines():
        print(line, file=sys.stderr)
    return result.exit_code
