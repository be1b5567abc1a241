"""The run: :func:`run_batch` plans the items, runs them, assembles the outputs and writes the manifest."""

from __future__ import annotations

import dataclasses
import os
import platform
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

from ..calibration import PIXEL
from .executor import _Executor, _Interrupted
from .frames import _OPEN, _OPEN_LOCK
from .inputs import CHECKSUM_NOTE, _entry_calibration, _label_names, _plan_input, _sha256_text, find_inputs
from .lock import OutputLockedError, OutputNotWritableError, _OutputLock, writer_active
from .outputs import _assemble
from ..errors import CalibrationError
from .parameters import BatchParameters, check_input
from .shards import _finished_record, _shard_paths
from .store import (
    LABELS,
    MANIFEST,
    OUTPUT_ERRNOS,
    SHARDS,
    OutputWriteError,
    _atomic_write_json,
    _remove_leftovers,
    _unlink_quietly,
    output_errno,
)


@dataclass
class BatchResult:
    """What :func:`run_batch` returns.

    Attributes
    ----------
    out : Path
        The output folder.
    manifest : dict
        The run manifest (also written to ``OUT/manifest.json``).
    exit_code : int
        0 when every input and frame was processed, 1 when anything failed,
        130 when the run was cancelled.
    read_only : bool
        The output folder could not be written, and its results were already
        those of these inputs and parameters: nothing was done or written.
    """

    out: Path
    manifest: dict
    exit_code: int
    read_only: bool = False

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    @property
    def counts(self) -> dict:
        return self.manifest["counts"]

    def report_lines(self) -> list[str]:
        """What a person should read after the run: the unit of the tables, each failure with
        its reason, and each kind of note once, counted."""
        from ..pipeline import count_notes

        m = self.manifest
        lines = []
        if self.read_only:
            lines.append("  up to date: nothing to do (the output folder is read-only; nothing was written)")
        outputs = m.get("outputs") or {}
        unit = outputs.get("unit") or m.get("unit")
        if unit and (m.get("counts") or {}).get("frames", 1):  # no frame, no table to speak of
            lines.append(f"  tables in {unit}" + ("" if unit != PIXEL else " (pixels: no input is calibrated)"))
        if outputs.get("pixel_unit_tables"):
            n = len(outputs["pixel_unit_tables"])
            lines.append(f"  {n} file(s) without calibration: their grains are in grains_px.csv, "
                         f"frames_px.csv (pixels)")
        for entry in m.get("inputs", []):
            if entry.get("status") == "error" and entry.get("error"):
                error = str(entry["error"])
                lines.append(f"  failed: {error}" if error.startswith(entry["file"]) else
                             f"  failed: {entry['file']}: {error}")
        for e in m.get("items", []):
            if e.get("status") == "error":
                lines.append(f"  failed: {e['file']} frame {e['frame']}: {e.get('error')}")
        notes = [(e["file"], n) for e in m.get("inputs", []) for n in e.get("notes") or ()]
        notes += [(e["file"], n) for e in m.get("items", []) for n in e.get("notes") or ()]
        lines += [f"  {line}" for line in count_notes(notes)]
        return lines


def _versions() -> dict:
    from importlib import metadata

    from .. import __version__

    out = {"napari-mmdl": __version__, "python": platform.python_version()}
    for name in ("numpy", "scipy", "scikit-image", "pandas", "pyarrow", "hyperspy", "rosettasciio", "dask",
                 "distributed", "zarr", "torch"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


def _item_key(checksum: str, frame: int, params_hash: str) -> str:
    return _sha256_text(f"{checksum}|{frame}|{params_hash}")[:40]


def run_batch(
    inputs: Iterable[str | os.PathLike] | str | os.PathLike,
    out: str | os.PathLike,
    *,
    segment: str = "auto",
    segment_params: dict | None = None,
    convention: str = "imagej",
    classify: str | os.PathLike | None = None,
    predict_pce: str | os.PathLike | None = None,
    composition: dict | None = None,
    process: dict | None = None,
    device: str = "cpu",
    preprocess: dict | None = None,
    unit: str | None = None,
    workers: int | None = None,
    scheduler: str | None = None,
    checksum: str = "quick",
    progress: bool = True,
    cancel: threading.Event | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    command: Sequence[str] | None = None,
) -> BatchResult:
    """Process files, globs and folders frame by frame; write tables, labels and a manifest.

    Parameters
    ----------
    inputs : path, glob or folder, or a list of them
        See :func:`find_inputs`.
    out : path
        Output folder (created). Rerunning with the same folder resumes.
    segment, segment_params, convention, classify, predict_pce, composition, process, device, preprocess, unit
        See :class:`BatchParameters`.
    workers : int, optional
        Run on a local dask.distributed cluster with this many worker processes.
        ``None`` (default) runs in this process.
    scheduler : str, optional
        Address of an existing dask.distributed scheduler (``"tcp://host:8786"``).
    checksum : {"quick", "full"}
        How inputs are fingerprinted for resuming (see :mod:`hyperspy_mmdl.batch`).
    progress : bool
        Show a tqdm progress bar.
    cancel : threading.Event, optional
        Set it to stop after the items in flight (the GUI's Cancel button).
    on_progress : callable, optional
        Called as ``on_progress(done, total)`` after every item.
    command : sequence of str, optional
        The command line, recorded in the manifest.

    Returns
    -------
    BatchResult
        The manifest and the exit code (0: all processed; 1: something failed;
        130: cancelled).

    Raises
    ------
    KeyboardInterrupt
        Re-raised after the manifest is written when the run is interrupted.
    CheckpointError, WrongTaskError
        A model file is unusable or of the wrong task (checked once, before any frame).
    OutputLockedError
        Another run is writing to ``out``.
    OutputNotWritableError
        ``out`` cannot be written and its results are not those of these inputs
        and parameters (when they are, the result says so: ``read_only``).
    OutputWriteError
        ``out`` could not take a write during the run (a full disk, a file system
        turned read-only): the run stopped, the finished frames are kept, the
        temporary files removed and the manifest says ``"failed"`` with the reason
        (when it can still be written).

    Notes
    -----
    Inputs that cannot be processed (unreadable files or sub-folders, symbolic-link
    loops, FIFOs and other special files, files that are not micrographs) are listed in
    the manifest and the report, and the run goes on with the others.
    """
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    inputs = list(inputs)
    if not inputs:
        raise ValueError("no inputs given")
    params = BatchParameters(segment=segment, segment_params=dict(segment_params or {}),
                             convention=convention,
                             classify=None if classify is None else os.fspath(classify),
                             predict_pce=None if predict_pce is None else os.fspath(predict_pce),
                             composition=dict(composition or {}), process=dict(process or {}),
                             device=device, preprocess=dict(preprocess or {}), unit=unit)
    executor = _Executor(workers, scheduler)  # validates the arguments
    if checksum not in ("quick", "full"):
        raise ValueError(f"checksum must be 'quick' or 'full', got {checksum!r}")
    cards = params.check_models()  # a model file that cannot do the job is refused once, before any frame
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    lock = _OutputLock(out)
    try:
        lock.__enter__()
    except OutputNotWritableError as err:
        try:
            return _read_only_result(inputs, out, params, checksum, command, err, cards)
        finally:
            with _OPEN_LOCK:
                _OPEN.clear()
    try:
        (out / SHARDS).mkdir(exist_ok=True)
        (out / LABELS).mkdir(exist_ok=True)
        _remove_leftovers(out)
        return _run_locked(inputs, out, params, executor, checksum, progress, cancel, on_progress,
                           command, cards)
    finally:
        lock.__exit__(None, None, None)
        with _OPEN_LOCK:  # let go of the inputs opened in this process (h5py/zarr handles)
            _OPEN.clear()


@dataclass
class _Plan:
    """What a run is to do: the manifest so far, the inputs, the items and those already done."""

    manifest: dict
    plan: list
    items: list
    params: BatchParameters
    params_hash: str
    records: dict
    todo: list


def _plan_run(inputs, out: Path, params: BatchParameters, checksum: str, command, cards: dict) -> _Plan:
    """Find and open the inputs, name the items, and find the finished ones (reads only).

    An input whose frames the models cannot take (:func:`check_input`) is reported as
    failed, once, instead of every frame failing the same way."""
    shard_dir = out / SHARDS
    files, missing = find_inputs(inputs, exclude=out)
    if not files and not missing:
        raise ValueError(f"no input files in {[os.fspath(i) for i in inputs]} (the output folder "
                         f"{str(out)!r} and what it contains are never inputs)")
    started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    manifest: dict = {
        "format": "napari-mmdl batch manifest 1",
        "command": list(command) if command is not None else None,
        "started": started,
        "finished": None,
        "state": "running",
        "out": str(out.resolve()),
        "parameters": None,
        "checksum_note": CHECKSUM_NOTE[checksum],
        "parameters_hash": None,
        "checksum_mode": checksum,
        "executor": None,
        "versions": _versions(),
        "inputs": [],
        "items": [],
        "counts": {},
        "outputs": {},
    }
    for text, reason in missing:
        manifest["inputs"].append({"file": text, "path": None, "status": "error",
                                   "error": f"{text}: {reason}", "n_frames": 0})

    label_names = _label_names(files)
    items: list[dict] = []
    plan = []
    for path, name in zip(files, label_names):
        entry = _plan_input(path, checksum)
        if entry["status"] != "error" and cards:
            try:
                check_input(entry["frame_shape"], _entry_calibration(entry).image, cards)
            except CalibrationError as err:
                entry.update(status="error", error=f"{entry['file']}: {err}", n_frames=0)
            except (ValueError, TypeError, IndexError):
                pass  # an unusual calibration: the frames themselves will say what is wrong
        entry["labels"] = f"{LABELS}/{name}.zspy" if entry["status"] != "error" else None
        manifest["inputs"].append(entry)
        plan.append(entry)
    if params.unit is None:  # one unit for every table of the run
        from ..pipeline import common_unit

        params = dataclasses.replace(params, unit=common_unit(
            _entry_calibration(e) for e in plan if e["status"] != "error"))
    params_hash = params.hash()
    manifest["parameters"] = params.identity() | {"device": params.device}
    manifest["parameters_hash"] = params_hash
    manifest["unit"] = params.unit
    for entry in plan:
        for frame in range(entry["n_frames"]):
            items.append({"path": entry["path"], "file": entry["file"], "checksum": entry["checksum"],
                          "frame": frame, "key": _item_key(entry["checksum"], frame, params_hash)})

    records: dict[str, dict] = {}
    todo = []
    for item in items:
        rec = _finished_record(shard_dir, item["key"])
        if rec is not None:
            rec["resumed"] = True
            records[item["key"]] = rec
        else:
            todo.append(item)
    return _Plan(manifest, plan, items, params, params_hash, records, todo)


def _read_manifest(out: Path) -> dict:
    import json

    try:
        m = json.loads((out / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return m if isinstance(m, dict) else {}


def _read_only_result(inputs, out: Path, params: BatchParameters, checksum: str, command,
                      err: OSError, cards: dict) -> BatchResult:
    """``out`` cannot be written: fine when its results already are those of this run."""
    if writer_active(out):
        raise OutputLockedError(f"{out}: another batch run is writing here; wait for it to finish") from None
    p = _plan_run(inputs, out, params, checksum, command, cards)
    done = _read_manifest(out)
    keys = [it["key"] for it in p.items]
    same = (done.get("state") == "finished" and done.get("parameters_hash") == p.params_hash
            and [e.get("key") for e in done.get("items", [])] == keys
            and [e.get("file") for e in done.get("inputs", [])] == [e["file"] for e in p.manifest["inputs"]]
            and all((out / f).is_file() for f in ("frames.parquet", "grains.parquet")))
    if same:
        c = done.get("counts") or {}
        failed = int(c.get("error", 0)) + int(c.get("failed_inputs", 0))
        return BatchResult(out=out, manifest=done, exit_code=1 if failed else 0, read_only=True)
    why = ("it has no finished run" if not done else
           f"{len(p.todo)} of {len(p.items)} frame(s) are not done" if p.todo else
           "its results are of other inputs or parameters")
    raise OutputNotWritableError(err.errno, f"cannot write the output folder ({os.strerror(err.errno)}), and "
                                 f"{why}", str(out)) from None


def _stale_shards(previous: dict, plan: list) -> list[str]:
    """Keys of the previous run's items whose input has been rewritten since (same path, other content)."""
    now = {e["path"]: e.get("checksum") for e in plan if e.get("path") and e.get("checksum")}
    files = {e["file"] for e in previous.get("inputs", [])
             if e.get("path") in now and e.get("checksum") and e["checksum"] != now[e["path"]]}
    return [e["key"] for e in previous.get("items", []) if e.get("file") in files and e.get("key")]


def _run_locked(inputs, out: Path, params: BatchParameters, executor, checksum, progress, cancel,
                on_progress, command, cards: dict) -> BatchResult:
    shard_dir = out / SHARDS
    p = _plan_run(inputs, out, params, checksum, command, cards)
    manifest, plan, items, params, records, todo = p.manifest, p.plan, p.items, p.params, p.records, p.todo
    params_hash = p.params_hash
    # an input rewritten since the last run: its old results can never be used again
    stale = _stale_shards(_read_manifest(out), plan)
    for key in stale:
        for path in _shard_paths(shard_dir, key).values():
            _unlink_quietly(path)
    if stale:
        manifest["removed_shards"] = len(stale)

    manifest_path = out / MANIFEST

    def write_manifest(state: str):
        manifest["state"] = state
        manifest["items"] = [_item_entry(it, records.get(it["key"])) for it in items]
        counts = {"inputs": len(manifest["inputs"]), "frames": len(items), "done": 0, "resumed": 0,
                  "error": 0, "pending": 0}
        for e in manifest["items"]:
            counts[e["status"]] = counts.get(e["status"], 0) + 1
            counts["resumed"] += bool(e.get("resumed"))
        counts["failed_inputs"] = sum(1 for e in manifest["inputs"] if e["status"] == "error")
        manifest["counts"] = counts
        _atomic_write_json(manifest_path, manifest)

    from tqdm.auto import tqdm

    bar = tqdm(total=len(items), initial=len(items) - len(todo), unit="frame", desc="mmdl batch",
               disable=not progress, dynamic_ncols=True)
    state = {"done": len(items) - len(todo)}
    try:
        return _execute(out, manifest, plan, items, params, params_hash, records, todo, executor, bar, cancel,
                        on_progress, write_manifest, state)
    except OSError as err:
        code = output_errno(err)
        if code is None:
            raise
        bar.close()
        raise _failed(out, manifest, write_manifest, err, code, state["done"], len(items)) from None


def _failed(out: Path, manifest: dict, write_manifest, err: OSError, code: int, done: int, total: int):
    """The output folder could not take a write: clean up, say so in the manifest, return the error."""
    _remove_leftovers(out, quiet=True)  # temporary files of this run (best effort on a read-only disk)
    path = getattr(err, "filename", None) or str(out)
    what = OUTPUT_ERRNOS.get(code, os.strerror(code))
    manifest["error"] = f"{path}: {what}"
    manifest["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    try:
        write_manifest("failed")
        said = "manifest.json says 'failed'"
    except OSError:
        said = "manifest.json could not be updated either (it still says 'running')"
    return OutputWriteError(code, f"cannot write the batch output: {what}. The run stopped with {done} of "
                            f"{total} frame(s) done (kept: rerun the same command once the disk can be "
                            f"written); {said}", str(path))


def _execute(out, manifest, plan, items, params, params_hash, records, todo, executor, bar, cancel,
             on_progress, write_manifest, state) -> BatchResult:
    shard_dir = out / SHARDS
    write_manifest("running")
    done = state["done"]
    interrupted = False
    last_write = time.monotonic()
    try:
        with executor as ex:
            manifest["executor"] = ex.description
            for record in ex.map(todo, params.to_dict(), str(shard_dir), cancel):
                records[record["key"]] = record
                done += 1
                state["done"] = done
                bar.update(1)
                if on_progress is not None:
                    on_progress(done, len(items))
                if time.monotonic() - last_write > 2.0:
                    write_manifest("running")
                    last_write = time.monotonic()
    except (KeyboardInterrupt, _Interrupted) as err:
        interrupted = True
        bar.close()
        manifest["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        write_manifest("interrupted")
        if isinstance(err, KeyboardInterrupt):
            raise
        return BatchResult(out=out, manifest=manifest, exit_code=130)
    finally:
        if not interrupted:
            bar.close()

    # every item is finished: assemble the outputs from the shards
    for entry in plan:
        if entry["status"] == "error":
            continue
        keys = [_item_key(entry["checksum"], f, params_hash) for f in range(entry["n_frames"])]
        statuses = [records.get(k, {}).get("status") for k in keys]
        n_bad = sum(s != "ok" for s in statuses)
        entry["status"] = "ok" if n_bad == 0 else ("error" if n_bad == len(keys) else "partial")
        if n_bad:
            entry["error"] = f"{entry['file']}: {n_bad} of {len(keys)} frame(s) failed"
    manifest["outputs"] = _assemble(out, plan, items, records, shard_dir, params.unit)
    manifest["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    write_manifest("finished")
    failed = manifest["counts"]["error"] + manifest["counts"]["failed_inputs"]
    return BatchResult(out=out, manifest=manifest, exit_code=1 if failed else 0)


def _item_entry(item: dict, record: dict | None) -> dict:
    e = {"file": item["file"], "frame": item["frame"], "key": item["key"]}
    if record is not None and record.get("notes"):
        e["notes"] = list(record["notes"])
    if record is None:
        e["status"] = "pending"
    elif record.get("status") == "ok":
        e["status"] = "done"
        e["seconds"] = record.get("seconds")
        if record.get("resumed"):
            e["resumed"] = True
    else:
        e["status"] = "error"
        e["error"] = record.get("error")
    return e
