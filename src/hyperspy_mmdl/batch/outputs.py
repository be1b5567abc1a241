"""The final outputs, assembled from the shards (streaming, atomic), and read back.

``grains.parquet``/``.csv``, ``frames.parquet``/``.csv`` (``*_px`` for inputs in
pixels among calibrated ones) and ``labels/<name>.zspy``; :func:`read_results`
reads a finished output folder.
"""

from __future__ import annotations

import json
import os
import shutil
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from ..calibration import PIXEL, Calibration
from .inputs import _sha256_text
from .shards import _shard_paths
from .store import MANIFEST, SHARDS, _atomic_write_bytes, _tmp_path, output_errno


def _assemble(out: Path, plan: list[dict], items: list[dict], records: dict, shard_dir: Path,
              unit: str = PIXEL) -> dict:
    """Grain and frame tables in one unit (``unit``); frames in pixels, when the run has
    calibrated ones too, in tables of their own (``grains_px``, ``frames_px``)."""
    def in_pixels(item):
        rec = records.get(item["key"]) or {}
        return unit != PIXEL and rec.get("unit") == PIXEL

    main = [it for it in items if not in_pixels(it)]
    px = [it for it in items if in_pixels(it)]
    outputs = {"unit": unit}
    outputs.update(_assemble_grains(out, main, records, shard_dir, "grains"))
    outputs.update(_assemble_frames(out, main, records, "frames"))
    if px:
        outputs["pixel_unit_tables"] = sorted({it["file"] for it in px})
        outputs.update(_assemble_grains(out, px, records, shard_dir, "grains_px"))
        outputs.update(_assemble_frames(out, px, records, "frames_px"))
    else:
        for name in ("grains_px.parquet", "grains_px.csv", "frames_px.parquet", "frames_px.csv"):
            (out / name).unlink(missing_ok=True)  # left from an earlier run of other inputs
    outputs["labels"] = []
    for entry in plan:  # one input's labels that cannot be written do not cost the others theirs
        try:
            outputs["labels"] += _assemble_labels(out, [entry], items, records, shard_dir)
        except Exception as err:
            if output_errno(err) is not None:  # the output folder itself: the run stops
                raise
            entry["status"] = "error"
            entry["error"] = f"labels not written: {type(err).__name__}: {err}"
    return outputs


def _assemble_grains(out: Path, items, records, shard_dir: Path, name: str = "grains") -> dict:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq_path, csv_path = out / f"{name}.parquet", out / f"{name}.csv"
    pq_tmp, csv_tmp = _tmp_path(pq_path), _tmp_path(csv_path)
    writer = None
    schema = None
    n_rows = 0
    with open(csv_tmp, "wb") as csv_fh:
        for item in items:
            rec = records.get(item["key"])
            if rec is None or rec.get("status") != "ok":
                continue
            table = pq.read_table(_shard_paths(shard_dir, item["key"])["grains"])
            if table.num_rows == 0:
                continue
            table = table.replace_schema_metadata(None)
            if writer is None:
                schema = table.schema
                writer = pq.ParquetWriter(pq_tmp, schema)
            else:
                table = table.select(schema.names).cast(schema)
            writer.write_table(table)
            df = table.to_pandas()
            csv_fh.write(df.to_csv(index=False, header=n_rows == 0, lineterminator="\n").encode("utf-8"))
            n_rows += table.num_rows
    if writer is None:  # no grain anywhere: an empty table with the key columns
        schema = pa.schema([("file", pa.string()), ("frame", pa.int64()), ("label", pa.int64())])
        pq.write_table(schema.empty_table(), pq_tmp)
        with open(csv_tmp, "wb") as fh:
            fh.write(b"file,frame,label\n")
    else:
        writer.close()
    os.replace(pq_tmp, pq_path)
    os.replace(csv_tmp, csv_path)
    return {f"{name}_parquet": pq_path.name, f"{name}_csv": csv_path.name, f"n_{name}": n_rows}


def _assemble_frames(out: Path, items, records, name: str = "frames") -> dict:
    import pandas as pd

    from ..tables import with_unit_headers

    rows, units = [], {}
    for item in items:
        rec = records.get(item["key"]) or {}
        row = {"file": item["file"], "frame": item["frame"], "status": rec.get("status", "pending"),
               "error": rec.get("error")}
        row.update(rec.get("summary") or {})
        units.update(rec.get("summary_units") or {})
        rows.append(row)
    df = pd.DataFrame(rows)
    if df.empty:
        df = pd.DataFrame(columns=["file", "frame", "status", "error"])
    df = with_unit_headers(df, units)
    pq_path, csv_path = out / f"{name}.parquet", out / f"{name}.csv"
    tmp = _tmp_path(pq_path)
    df.to_parquet(tmp, index=False)
    os.replace(tmp, pq_path)
    _atomic_write_bytes(csv_path, df.to_csv(index=False, lineterminator="\n").encode("utf-8"))
    return {f"{name}_parquet": pq_path.name, f"{name}_csv": csv_path.name}


def _load_labels(path: str) -> np.ndarray:
    with np.load(path) as npz:
        return npz["labels"]


def _assemble_labels(out: Path, plan, items, records, shard_dir: Path) -> list[str]:
    """One ``.zspy`` per input (lazy: read one shard per chunk, written chunk by chunk)."""
    import dask
    import dask.array as da
    from hyperspy.signals import LazySignal2D

    by_path: dict[str, list[dict]] = {}
    for item in items:
        by_path.setdefault(item["path"], []).append(item)
    written = []
    for entry in plan:
        if entry["status"] == "error" or not entry.get("labels"):
            entry["labels"] = None  # no store is written for it: the manifest must not name one
            continue
        fshape = tuple(entry["frame_shape"])
        mine = by_path.get(entry["path"], [])
        final = out / entry["labels"]
        sig_path = out / SHARDS / f"assembled-{final.name}.sig"
        sig = _sha256_text(json.dumps([entry["calibration"], entry["shape"]] + [
            [it["key"], (records.get(it["key"]) or {}).get("status")] for it in mine]))
        if final.is_dir() and sig_path.is_file() and sig_path.read_text() == sig:
            written.append(entry["labels"])  # unchanged since the last assembly
            continue
        blocks = []
        for item in mine:
            rec = records.get(item["key"])
            if rec is not None and rec.get("status") == "ok":
                p = str(_shard_paths(shard_dir, item["key"])["labels"])
                blocks.append(da.from_delayed(dask.delayed(_load_labels)(p), shape=fshape, dtype=np.int32))
            else:
                blocks.append(da.zeros(fshape, dtype=np.int32, chunks=fshape))
        data = da.stack(blocks)
        cal = Calibration(**{k: tuple(v) for k, v in entry["calibration"].items()})
        shape = tuple(entry["shape"])
        if len(shape) == 2:
            data = data[0]
        else:
            data = data.reshape(shape[:-2] + fshape)
        s = LazySignal2D(data, axes=cal.to_axes(data.shape))
        s.set_signal_type("grain_labels")
        name = Path(entry["file"]).name
        if len(name.encode("utf-8")) > 120:  # the title names the store's zarr group: keep it short
            name = Path(entry["labels"]).stem
        s.metadata.General.title = f"grain labels of {name}"
        s.metadata.set_item("General.original_filename", Path(entry["file"]).name)
        tmp = final.with_name(f".tmp{os.getpid()}-{final.name}")
        if tmp.exists():
            shutil.rmtree(tmp)
        with dask.config.set(scheduler="threads"), warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # zarr 2's NestedDirectoryStore notice
            s.save(tmp, overwrite=True, show_progressbar=False, chunks=(1,) * (data.ndim - 2) + fshape)
        old = None
        if final.exists():
            old = final.with_name(f".old{os.getpid()}-{final.name}")
            os.replace(final, old)
        os.replace(tmp, final)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        _atomic_write_bytes(sig_path, sig.encode())
        written.append(entry["labels"])
    return written


def read_results(out: str | os.PathLike, *, pixels: bool = False) -> tuple[Any, Any, dict]:
    """Read a batch output folder: ``(grains DataFrame, frames DataFrame, manifest dict)``.

    Column names are plain (``area``), their units in ``attrs["units"]`` (the
    files carry them in the headers, ``area [µm²]``). ``pixels=True`` reads the
    tables of the inputs without calibration (``grains_px``, ``frames_px``) of a
    run that also had calibrated ones.

    The label stores (``labels/*.zspy``) are checked for missing chunks
    (:func:`hyperspy_mmdl.io.check_zarr_complete`): a deleted chunk would read as
    zeros, so it raises :class:`~hyperspy_mmdl.errors.ReadError` naming the store.
    """
    from ..io import check_zarr_complete
    from ..tables import read_table

    out = Path(out)
    manifest = json.loads((out / MANIFEST).read_text(encoding="utf-8"))
    for name in (manifest.get("outputs") or {}).get("labels") or ():
        check_zarr_complete(out / name)
    suffix = "_px" if pixels else ""
    return (read_table(out / f"grains{suffix}.parquet"), read_table(out / f"frames{suffix}.parquet"),
            manifest)
