"""Batch processing of micrograph files, stacks and folders: out of core, resumable, distributed.

:func:`run_batch` takes files, globs and folders, opens every stack lazily (HyperSpy
lazy signals through :func:`hyperspy_mmdl.io.load`, so a frame is read only when it is
processed) and runs, frame by frame, the same pipeline as the other front ends
(:func:`hyperspy_mmdl.pipeline.analyze_frame`): data bar, segment -> measure ->
summarize, then optionally classify and predict the PCE with checkpoints.

Every frame is one *item*. A worker reads its frame, computes, and writes the
item's result shards atomically into ``OUT/shards`` (a temporary name, then
:func:`os.replace`; the small JSON record is written last and marks the item as
finished). The final outputs are assembled from the shards, streaming, so memory
stays bounded whatever the number of frames:

``OUT/grains.parquet``, ``OUT/grains.csv``
    One row per grain: ``file``, ``frame``, ``label``, ``unit`` and the calibrated
    measurements of :func:`hyperspy_mmdl.grains.measure`.
``OUT/frames.parquet``, ``OUT/frames.csv``
    One row per frame: ``file``, ``frame``, ``status``, ``error``, ``n_grains``, the
    feature factors of :func:`hyperspy_mmdl.grains.summarize` (G, class ...) and the
    model outputs.
``OUT/labels/<name>.zspy``
    The grain labels of each input, with the input's calibration (zarr, one chunk
    per frame, readable by ``hs.load`` and by dask.distributed workers).
``OUT/manifest.json``
    Inputs with checksums, parameters, library versions, per-item status and error.

Resuming: an item is identified by the input's checksum, the frame index and a
hash of the parameters (segmentation method and parameters, measurement
convention, checkpoint checksums, composition/process, package version). A rerun
of the same command skips the items whose shards exist; failed items are
retried. Killing a run loses at most the items in flight.

Checksums (``checksum="quick"``, the default) hash the file size, the modification
time (ns) and the content of 1 MiB blocks at the start, the end and 8 evenly spaced
places; a directory store (``.zspy``) hashes every file's relative path, size and
modification time plus the content of its small metadata files. Any rewrite of the
file changes the checksum; a copy that does not keep the modification time
(``cp`` without ``-p``) is processed again. ``checksum="full"`` streams the whole
content through SHA-256 (content only, no times): slower for huge stacks
(≈ 1 s/GB here) but independent of copies.

Scale-out: ``workers=N`` starts a :class:`dask.distributed.LocalCluster` with N
single-threaded worker processes; ``scheduler="tcp://host:8786"`` uses an existing
cluster (its workers must see the input files and ``OUT`` at the same paths). Items
go to the workers through the same function, :func:`process_item`, as in the
in-process loop (``workers=None``). Models load once per worker process (the
per-process model cache of :func:`hyperspy_mmdl.inference.get_predictor`, keyed
by checkpoint path, modification time and device). Scripts that call
:func:`run_batch` with ``workers`` must guard their entry point with
``if __name__ == "__main__":`` (the worker processes are spawned).
"""

from __future__ import annotations

import dataclasses
import glob
import hashlib
import json
import os
import platform
import shutil
import threading
import time
import traceback
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np

from .calibration import PIXEL, Calibration

__all__ = [
    "BatchParameters",
    "BatchResult",
    "SUFFIXES",
    "find_inputs",
    "file_checksum",
    "process_frame",
    "process_item",
    "run_batch",
    "read_results",
    "OutputLockedError",
]

#: File suffixes picked up when a folder is given as input.
SUFFIXES = (".dm3", ".dm4", ".tif", ".tiff", ".hspy", ".zspy", ".emd", ".mrc", ".png", ".jpg", ".jpeg",
            ".bmp")
MANIFEST = "manifest.json"
CHECKSUM_NOTE = {
    "quick": "sha256 of size, mtime_ns and 1 MiB blocks at 10 places (directories: paths, sizes, mtimes "
             "and small files)",
    "full": "sha256 of the whole content (directories: relative paths and contents)",
}
SHARDS = "shards"
LABELS = "labels"
_MIB = 1 << 20
_GLOB_CHARS = set("*?[")


# ---------------------------------------------------------------------------------------------
# parameters
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class BatchParameters:
    """What to compute for every frame; everything that changes the numbers.

    Parameters
    ----------
    segment : str
        Segmentation method of :func:`hyperspy_mmdl.grains.segment` (``"auto"`` ...).
    segment_params : dict
        Keyword arguments of the segmentation method.
    convention : str
        Measurement convention of :func:`hyperspy_mmdl.grains.measure`.
    classify : str or None
        Path of a classification checkpoint.
    predict_pce : str or None
        Path of a PCE (PSC-Fusion) checkpoint.
    composition, process : dict
        Composition and process fields given to the PCE model.
    device : str
        Torch device for the models (not part of the item identity).
    preprocess : dict
        Preprocessing, as in :class:`hyperspy_mmdl.pipeline.AnalysisParameters`
        (the same meaning on every route): ``data_bar`` (bool, default True:
        the SEM data bar is left out of the analysed area; ``remove_data_bar``
        is an older spelling of it), ``denoise`` (a method of
        :mod:`hyperspy_mmdl.preprocess.denoise`) with ``denoise_params``,
        ``normalize`` (``"minmax"``, ``"zscore"``, ``"clahe"``). Part of the item
        identity when not empty (a denoiser checkpoint by its checksum), so a
        rerun with other preprocessing recomputes.
    unit : str, optional
        Length unit of every table of the run; by default the readable unit of
        the median pixel size of the calibrated inputs
        (:func:`hyperspy_mmdl.pipeline.common_unit`). Inputs without calibration
        stay in pixels, in tables of their own (``*_px``).
    """

    segment: str = "auto"
    segment_params: dict = field(default_factory=dict)
    convention: str = "imagej"
    classify: str | None = None
    predict_pce: str | None = None
    composition: dict = field(default_factory=dict)
    process: dict = field(default_factory=dict)
    device: str = "cpu"
    preprocess: dict = field(default_factory=dict)
    unit: str | None = None

    def __post_init__(self):
        if not isinstance(self.segment, str) or not self.segment:
            raise ValueError(f"segment: expected a method name, got {self.segment!r}")
        for name in ("classify", "predict_pce"):
            value = getattr(self, name)
            if value is not None:
                path = Path(value)
                if not path.is_file():
                    raise FileNotFoundError(f"{name}: checkpoint {str(path)!r} does not exist")
                object.__setattr__(self, name, str(path.resolve()))
        if (self.composition or self.process) and self.predict_pce is None:
            raise ValueError("composition/process are only used with predict_pce (a PCE checkpoint)")
        _check_preprocess(self.preprocess)
        if "remove_data_bar" in self.preprocess:  # the older spelling of data_bar
            pre = dict(self.preprocess)
            pre["data_bar"] = bool(pre.pop("remove_data_bar")) or bool(pre.get("data_bar", True))
            object.__setattr__(self, "preprocess", pre)
        if self.preprocess.get("data_bar") is True and len(self.preprocess) == 1:
            object.__setattr__(self, "preprocess", {})  # the default: the same identity as no preprocessing
        from .pipeline import check_unit

        object.__setattr__(self, "unit", check_unit(self.unit))
        self.analysis()  # validates the segmentation and model parameters once, before any work
        for name in ("segment_params", "composition", "process", "preprocess"):
            value = getattr(self, name)
            if not isinstance(value, dict):
                raise ValueError(f"{name}: expected a dict, got {type(value).__name__}")
            try:
                json.dumps(value, sort_keys=True)
            except TypeError as err:
                raise ValueError(f"{name}: values must be JSON-serialisable ({err})") from None

    def to_dict(self) -> dict:
        return dict(segment=self.segment, segment_params=dict(self.segment_params),
                    convention=self.convention, classify=self.classify, predict_pce=self.predict_pce,
                    composition=dict(self.composition), process=dict(self.process), device=self.device,
                    preprocess=dict(self.preprocess), unit=self.unit)

    def analysis(self):
        """These parameters as the pipeline's :class:`~hyperspy_mmdl.pipeline.AnalysisParameters`."""
        from .pipeline import AnalysisParameters

        pre = self.preprocess
        return AnalysisParameters(method=self.segment, segment_params=dict(self.segment_params),
                                  convention=self.convention, data_bar=bool(pre.get("data_bar", True)),
                                  denoise=pre.get("denoise"), denoise_params=dict(pre.get("denoise_params") or {}),
                                  normalize=pre.get("normalize"), classify=self.classify,
                                  predict_pce=self.predict_pce, composition=dict(self.composition),
                                  process=dict(self.process), device=self.device)

    def identity(self) -> dict:
        """The parameters that identify a result (paths replaced by content checksums)."""
        from . import __version__

        d = self.to_dict()
        d.pop("device")
        for name in ("classify", "predict_pce"):
            if d[name] is not None:
                d[name] = {"path": d[name], "sha256": file_checksum(d[name], mode="full")}
        pre = d.pop("preprocess")
        if pre:  # absent when empty: runs without preprocessing keep their earlier identity
            pre = dict(pre)
            model = dict(pre.get("denoise_params") or {}).get("model")
            if model is not None:
                pre["denoise_params"] = {**pre["denoise_params"],
                                         "model": {"path": str(model), "sha256": file_checksum(model, mode="full")}}
            d["preprocess"] = pre
        if d.get("unit") is None:
            d.pop("unit", None)
        d["mmdl_version"] = __version__
        return d

    def hash(self) -> str:
        return _sha256_text(json.dumps(self.identity(), sort_keys=True))


_PREPROCESS_KEYS = ("data_bar", "remove_data_bar", "denoise", "denoise_params", "normalize")


def _check_preprocess(pre: dict) -> None:
    """Validate a :class:`BatchParameters` ``preprocess`` dict (clear errors before any work)."""
    if not isinstance(pre, dict):
        raise ValueError(f"preprocess: expected a dict, got {type(pre).__name__}")
    unknown = set(pre) - set(_PREPROCESS_KEYS)
    if unknown:
        raise ValueError(f"preprocess: unknown keys {sorted(unknown)}; use {', '.join(_PREPROCESS_KEYS)}")
    from .preprocess.denoise import METHODS as DENOISERS
    from .preprocess.normalize import METHODS as NORMALIZATIONS

    if pre.get("normalize") not in (None, *NORMALIZATIONS):
        raise ValueError(f"preprocess: normalize must be one of {', '.join(NORMALIZATIONS)}, "
                         f"got {pre['normalize']!r}")
    if pre.get("denoise") not in (None, *DENOISERS):
        raise ValueError(f"preprocess: denoise must be one of {', '.join(DENOISERS)}, got {pre['denoise']!r}")
    params = pre.get("denoise_params") or {}
    if params and not pre.get("denoise"):
        raise ValueError("preprocess: denoise_params need a denoise method")
    model = params.get("model")
    if model is not None and not Path(model).is_file():
        raise FileNotFoundError(f"preprocess: denoiser checkpoint {str(model)!r} does not exist")


def _sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# ---------------------------------------------------------------------------------------------
# inputs and checksums
# ---------------------------------------------------------------------------------------------
def _is_store_dir(path: Path) -> bool:
    return path.is_dir() and path.suffix.lower() == ".zspy"


def find_inputs(inputs: Iterable[str | os.PathLike], *, exclude: str | os.PathLike | None = None
                ) -> tuple[list[Path], list[tuple[str, str]]]:
    """Expand files, globs and folders into an ordered list of input files.

    Parameters
    ----------
    inputs : iterable of str or path
        Files (any format :func:`hyperspy_mmdl.io.load` reads), glob patterns
        (``"run1/*.dm4"``, ``"**"`` recurses) and folders (searched recursively for
        :data:`SUFFIXES`; a ``.zspy`` folder is one input).
    exclude : path, optional
        A folder whose content is never an input (the output folder).

    Returns
    -------
    files : list of Path
        Existing inputs, in the order given (folders and globs sorted), without
        duplicates.
    missing : list of (str, str)
        Inputs that matched nothing, with the reason.
    """
    excl = Path(exclude).resolve() if exclude is not None else None

    def excluded(p: Path) -> bool:
        if excl is None:
            return False
        rp = p.resolve()
        return rp == excl or excl in rp.parents

    files: list[Path] = []
    missing: list[tuple[str, str]] = []
    seen: set[Path] = set()

    def add(p: Path):
        rp = p.resolve()
        if rp not in seen and not excluded(p):
            seen.add(rp)
            files.append(p)

    def walk(folder: Path) -> list[Path]:
        found = []
        for root, dirs, names in os.walk(folder):
            root_p = Path(root)
            keep = []
            for d in sorted(dirs):
                if d.startswith("."):
                    continue
                if d.lower().endswith(".zspy"):
                    found.append(root_p / d)
                else:
                    keep.append(d)
            dirs[:] = keep
            found.extend(root_p / n for n in names
                         if not n.startswith(".") and Path(n).suffix.lower() in SUFFIXES)
        return sorted(found)

    for item in inputs:
        text = os.fspath(item)
        if _GLOB_CHARS & set(text):
            matches = sorted(Path(m) for m in glob.glob(text, recursive=True))
            matches = [m for m in matches if m.is_file() or _is_store_dir(m)]
            if not matches:
                missing.append((text, "no file matches this pattern"))
            for m in matches:
                add(m)
            continue
        p = Path(text)
        if _is_store_dir(p) or p.is_file():
            add(p)
        elif p.is_dir():
            found = walk(p)
            if not found:
                missing.append((text, f"folder has no micrograph files ({', '.join(SUFFIXES)})"))
            for m in found:
                add(m)
        else:
            missing.append((text, "no such file or folder"))
    return files, missing


def _file_blocks_hash(h, path: Path, size: int):
    """Feed 1 MiB blocks at the start, the end and 8 evenly spaced offsets."""
    with open(path, "rb") as fh:
        if size <= 10 * _MIB:
            h.update(fh.read())
            return
        offsets = [0, size - _MIB] + [int(size * k / 9) for k in range(1, 9)]
        for off in sorted(set(offsets)):
            fh.seek(off)
            h.update(off.to_bytes(8, "little"))
            h.update(fh.read(_MIB))


def _file_stream_hash(h, path: Path):
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(8 * _MIB), b""):
            h.update(block)


def file_checksum(path: str | os.PathLike, mode: str = "quick") -> str:
    """Checksum of an input file or directory store, as used to match results on resume.

    Parameters
    ----------
    path : str or path
        A file, or a directory store such as ``.zspy``.
    mode : {"quick", "full"}
        ``"quick"``: SHA-256 of the size, modification time (ns) and 1 MiB blocks at
        10 places (whole content below 10 MiB); for a directory, of every file's
        relative path, size and modification time plus the content of files under
        64 KiB (zarr metadata). ``"full"``: SHA-256 of the whole content (and the
        relative paths of a directory), without times.

    Returns
    -------
    str
        ``"quick:<hex>"`` or ``"sha256:<hex>"``.
    """
    if mode not in ("quick", "full"):
        raise ValueError(f"checksum mode must be 'quick' or 'full', got {mode!r}")
    path = Path(path)
    h = hashlib.sha256()
    if path.is_dir():
        entries = sorted(p for p in path.rglob("*") if p.is_file())
        for p in entries:
            rel = p.relative_to(path).as_posix()
            st = p.stat()
            h.update(rel.encode("utf-8") + b"\0")
            if mode == "full":
                _file_stream_hash(h, p)
            else:
                h.update(f"{st.st_size}:{st.st_mtime_ns}".encode())
                if st.st_size <= 65536:
                    h.update(p.read_bytes())
    else:
        st = path.stat()
        if mode == "full":
            _file_stream_hash(h, path)
        else:
            h.update(f"{st.st_size}:{st.st_mtime_ns}".encode())
            _file_blocks_hash(h, path, st.st_size)
    return ("sha256:" if mode == "full" else "quick:") + h.hexdigest()


# ---------------------------------------------------------------------------------------------
# per-frame compute (shared with the HyperSpy and napari front ends)
# ---------------------------------------------------------------------------------------------
def process_frame(image: np.ndarray, calibration: Calibration, params: BatchParameters | None = None):
    """One frame through :func:`hyperspy_mmdl.pipeline.analyze_frame` with a batch's parameters.

    Returns the :class:`~hyperspy_mmdl.pipeline.FrameAnalysis` (labels, table, summary, model outputs).
    """
    from .pipeline import analyze_frame

    params = params or BatchParameters()
    return analyze_frame(image, calibration, params.analysis(), unit=params.unit)


# ---------------------------------------------------------------------------------------------
# reading frames lazily (once-per-process cache of opened stacks)
# ---------------------------------------------------------------------------------------------
_OPEN: dict[tuple, Any] = {}
_OPEN_LOCK = threading.Lock()
_OPEN_MAX = 4


def _open(path: str, checksum: str):
    """The lazily opened input (``io.load(..., lazy=True)``), cached per process."""
    key = (path, checksum)
    with _OPEN_LOCK:
        img = _OPEN.get(key)
        if img is None:
            from .io import load

            img = load(path, lazy=True)
            while len(_OPEN) >= _OPEN_MAX:
                _OPEN.pop(next(iter(_OPEN)))
            _OPEN[key] = img
        return img


def _frames_view(data, rgb: bool = False):
    """``data`` as ``(n_frames, y, x[, 3])`` (navigation axes flattened), still lazy."""
    nd = 3 if rgb else 2
    if data.ndim == nd:
        return data[None]
    if data.ndim < nd:
        raise ValueError(f"not an image: the data has shape {tuple(data.shape)}")
    return data.reshape((-1,) + tuple(data.shape[-nd:]))


def read_frame(path: str | os.PathLike, frame: int, checksum: str = "") -> tuple[np.ndarray, Calibration]:
    """Read one frame of an input lazily (only that frame's bytes are read).

    Returns the frame (numpy) and the calibration of the whole input.
    """
    img = _open(os.fspath(path), checksum)
    frames = _frames_view(img.data, img.rgb)
    if not 0 <= frame < frames.shape[0]:
        raise IndexError(f"{path}: frame {frame} out of range (the input has {frames.shape[0]})")
    block = frames[frame]
    if hasattr(block, "compute"):
        block = block.compute(scheduler="synchronous")
    return np.asarray(block), img.calibration


# ---------------------------------------------------------------------------------------------
# shards: one item = one frame of one input
# ---------------------------------------------------------------------------------------------
def _tmp_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp{os.getpid()}-{threading.get_ident()}")


def _atomic_write(path: Path, write: Callable):
    """``write(file)`` into a temporary file beside ``path``, flush to disk, rename over ``path``."""
    tmp = _tmp_path(path)
    try:
        with open(tmp, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _atomic_write_bytes(path: Path, data: bytes):
    _atomic_write(path, lambda fh: fh.write(data))


def _atomic_write_json(path: Path, obj):
    _atomic_write_bytes(path, json.dumps(obj, indent=1, sort_keys=False, default=str).encode("utf-8"))


def _shard_paths(shard_dir: Path, key: str) -> dict[str, Path]:
    return {"record": shard_dir / f"{key}.json", "grains": shard_dir / f"{key}.grains.parquet",
            "labels": shard_dir / f"{key}.labels.npz"}


def _grains_frame(table, file: str, frame: int):
    """The frame's grain table with ``file`` and ``frame`` first and units in the headers."""
    from .tables import with_unit_headers

    df = table.reset_index(drop=True)
    df.insert(0, "file", file)
    df.insert(1, "frame", int(frame))
    return with_unit_headers(df, table.attrs.get("units"))


def process_item(item: dict, params: dict, shard_dir: str) -> dict:
    """Compute one item (one frame of one input) and write its shards; never raises.

    Parameters
    ----------
    item : dict
        ``path``, ``file`` (as shown in the tables), ``checksum``, ``frame`` and ``key``.
    params : dict
        :meth:`BatchParameters.to_dict`.
    shard_dir : str
        Where the shards go.

    Returns
    -------
    dict
        The item's record (also written as ``<key>.json``): ``status`` ``"ok"`` or
        ``"error"``, ``error``, ``seconds`` and the frame's summary row.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    t0 = time.perf_counter()
    shard_dir = Path(shard_dir)
    paths = _shard_paths(shard_dir, item["key"])
    record = {"key": item["key"], "file": item["file"], "frame": int(item["frame"]), "status": "ok",
              "error": None}
    try:
        p = BatchParameters(**params)
        image, cal = read_frame(item["path"], int(item["frame"]), item["checksum"])
        result = process_frame(image, cal, p)
        grains = _grains_frame(result.table, item["file"], item["frame"])
        # data first, the record last: a record on disk means a complete item
        _atomic_write(paths["grains"], lambda fh: pq.write_table(
            pa.Table.from_pandas(grains, preserve_index=False), fh))
        _atomic_write(paths["labels"], lambda fh: np.savez_compressed(fh, labels=result.labels))
        record["summary"] = result.row()
        record["summary_units"] = result.row_units()
        record["unit"] = result.unit
        if result.notes:
            record["notes"] = list(result.notes)
        record["labels_shape"] = list(result.labels.shape)
    except Exception as err:  # recorded, the batch goes on
        record["status"] = "error"
        record["error"] = f"{type(err).__name__}: {err}"
        record["traceback"] = traceback.format_exc(limit=6)
    record["seconds"] = round(time.perf_counter() - t0, 4)
    _atomic_write_json(paths["record"], record)
    return record


def _finished_record(shard_dir: Path, key: str) -> dict | None:
    paths = _shard_paths(shard_dir, key)
    try:
        record = json.loads(paths["record"].read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if record.get("status") != "ok":
        return None
    if not (paths["grains"].is_file() and paths["labels"].is_file()):
        return None
    return record


# ---------------------------------------------------------------------------------------------
# executors: in-process loop or dask.distributed, same item function
# ---------------------------------------------------------------------------------------------
class _Interrupted(Exception):
    pass


def _run_local(items, func, params, shard_dir, cancel) -> Iterator[dict]:
    for item in items:
        if cancel is not None and cancel.is_set():
            raise _Interrupted()
        yield func(item, params, shard_dir)


def _run_distributed(items, func, params, shard_dir, cancel, client) -> Iterator[dict]:
    from distributed import as_completed

    nthreads = max(1, sum(client.nthreads().values()))
    window = 2 * nthreads
    pending = iter(items)
    ac = as_completed()
    in_flight = 0

    def submit_next() -> bool:
        try:
            item = next(pending)
        except StopIteration:
            return False
        ac.add(client.submit(func, item, params, shard_dir, key=f"mmdl-batch-{item['key']}", pure=False))
        return True

    try:
        for _ in range(window):
            if not submit_next():
                break
            in_flight += 1
        while in_flight:
            if cancel is not None and cancel.is_set():
                raise _Interrupted()
            future = next(ac)
            in_flight -= 1
            try:
                record = future.result()
            except Exception as err:  # the worker died or the task could not run
                record = {"key": future.key.removeprefix("mmdl-batch-"), "status": "error",
                          "error": f"{type(err).__name__}: {err}"}
            yield record
            if submit_next():
                in_flight += 1
    finally:
        for f in list(ac.futures):
            f.cancel()


class _Executor:
    """Context manager giving ``map(items)`` through the chosen back end."""

    def __init__(self, workers: int | None, scheduler: str | None):
        if workers is not None and scheduler is not None:
            raise ValueError("give either workers or scheduler, not both")
        if workers is not None and int(workers) < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self.workers = None if workers is None else int(workers)
        self.scheduler = scheduler
        self.client = None
        self.cluster = None

    def __enter__(self):
        if self.scheduler is not None or self.workers is not None:
            from distributed import Client, LocalCluster

            if self.scheduler is not None:
                self.client = Client(self.scheduler)
            else:
                self.cluster = LocalCluster(n_workers=self.workers, threads_per_worker=1, processes=True,
                                            dashboard_address=None)
                self.client = Client(self.cluster)
        return self

    def __exit__(self, *exc):
        if self.client is not None:
            self.client.close()
        if self.cluster is not None:
            self.cluster.close()
        return False

    @property
    def description(self) -> str:
        if self.scheduler is not None:
            return f"dask.distributed scheduler {self.scheduler}"
        if self.workers is not None:
            return f"dask.distributed LocalCluster, {self.workers} worker process(es)"
        return "in-process"

    def map(self, items, params, shard_dir, cancel=None) -> Iterator[dict]:
        if self.client is None:
            return _run_local(items, process_item, params, shard_dir, cancel)
        return _run_distributed(items, process_item, params, shard_dir, cancel, self.client)


# ---------------------------------------------------------------------------------------------
# the run
# ---------------------------------------------------------------------------------------------
class OutputLockedError(OSError):
    """Another batch run is writing to the same output folder."""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class _OutputLock:
    """``OUT/.mmdl-batch.lock``: one run per output folder; a lock left by a killed run is taken over."""

    def __init__(self, out: Path):
        self.path = out / ".mmdl-batch.lock"

    def __enter__(self):
        import socket

        me = f"{os.getpid()} {socket.gethostname()}"
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                try:
                    pid, host = self.path.read_text().split()[:2]
                    pid = int(pid)
                except (OSError, ValueError):
                    pid, host = 0, ""
                if host and host != socket.gethostname():
                    raise OutputLockedError(
                        f"{self.path.parent}: locked by a batch run on {host} (pid {pid}); remove "
                        f"{self.path} if that run is gone") from None
                if pid and _pid_alive(pid):
                    raise OutputLockedError(f"{self.path.parent}: another batch run (pid {pid}) is writing "
                                            "here; wait for it to finish") from None
                self.path.unlink(missing_ok=True)  # stale: the run was killed
                continue
            with os.fdopen(fd, "w") as fh:
                fh.write(me)
            return self
        raise OutputLockedError(f"{self.path.parent}: could not take the lock {self.path}")

    def __exit__(self, *exc):
        self.path.unlink(missing_ok=True)
        return False


def _remove_leftovers(out: Path):
    """Temporary files of a killed run (only called while holding the lock)."""
    for folder in (out, out / SHARDS, out / LABELS):
        for p in folder.glob(".*"):
            if ".tmp" in p.name or p.name.startswith(".old"):
                if p.is_dir():
                    shutil.rmtree(p, ignore_errors=True)
                else:
                    p.unlink(missing_ok=True)


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
    """

    out: Path
    manifest: dict
    exit_code: int

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    @property
    def counts(self) -> dict:
        return self.manifest["counts"]

    def report_lines(self) -> list[str]:
        """What a person should read after the run: the unit of the tables, each failure with
        its reason, and each kind of note once, counted."""
        from .pipeline import count_notes

        m = self.manifest
        lines = []
        outputs = m.get("outputs") or {}
        unit = outputs.get("unit") or m.get("unit")
        if unit:
            lines.append(f"  tables in {unit}" + ("" if unit != PIXEL else " (pixels: no input is calibrated)"))
        if outputs.get("pixel_unit_tables"):
            n = len(outputs["pixel_unit_tables"])
            lines.append(f"  {n} file(s) without calibration: their grains are in grains_px.csv, "
                         f"frames_px.csv (pixels)")
        for entry in m.get("inputs", []):
            if entry.get("status") == "error" and entry.get("error"):
                lines.append(f"  failed: {entry['file']}: {entry['error']}")
        for e in m.get("items", []):
            if e.get("status") == "error":
                lines.append(f"  failed: {e['file']} frame {e['frame']}: {e.get('error')}")
        notes = [(e["file"], n) for e in m.get("items", []) for n in e.get("notes") or ()]
        lines += [f"  {line}" for line in count_notes(notes)]
        return lines


def _versions() -> dict:
    from importlib import metadata

    from . import __version__

    out = {"napari-mmdl": __version__, "python": platform.python_version()}
    for name in ("numpy", "scipy", "scikit-image", "pandas", "pyarrow", "hyperspy", "rosettasciio", "dask",
                 "distributed", "zarr", "torch"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


def _calibration_dict(cal: Calibration) -> dict:
    return dict(scale=list(cal.scale), units=list(cal.units), offset=list(cal.offset), names=list(cal.names),
                navigate=list(cal.navigate))


def _entry_calibration(entry: dict) -> Calibration:
    return Calibration(**{k: tuple(v) for k, v in entry["calibration"].items()})


def _label_names(files: Sequence[Path]) -> list[str]:
    names, used = [], set()
    for p in files:
        stem = p.name[: -len(p.suffix)] if p.suffix else p.name
        name = stem
        if name in used:
            name = f"{stem}-{hashlib.sha256(str(p.resolve()).encode()).hexdigest()[:8]}"
        used.add(name)
        names.append(name)
    return names


def _plan_input(path: Path, checksum_mode: str) -> dict:
    """Open one input lazily: checksum, shape, dtype, calibration; errors recorded."""
    from .io import load

    entry: dict = {"file": str(path), "path": str(path.resolve()), "status": "pending", "error": None}
    try:
        entry["checksum"] = file_checksum(path, checksum_mode)
        entry["size_bytes"] = (sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
                               if path.is_dir() else path.stat().st_size)
        img = load(path, lazy=True)
        frames = _frames_view(img.data, img.rgb)
        entry["rgb"] = bool(img.rgb)
        # the labels' shape: a colour input's channel axis is not part of it
        entry["shape"] = [int(n) for n in (img.data.shape[:-1] if img.rgb else img.data.shape)]
        entry["dtype"] = str(img.data.dtype)
        entry["n_frames"] = int(frames.shape[0])
        entry["frame_shape"] = [int(n) for n in frames.shape[1:3]]
        entry["calibration"] = _calibration_dict(img.calibration)
    except Exception as err:
        entry["status"] = "error"
        entry["error"] = f"{type(err).__name__}: {err}"
        entry["n_frames"] = 0
    return entry


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
        How inputs are fingerprinted for resuming (see the module docstring).
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
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / SHARDS).mkdir(exist_ok=True)
    (out / LABELS).mkdir(exist_ok=True)
    with _OutputLock(out):
        _remove_leftovers(out)
        try:
            return _run_locked(inputs, out, params, executor, checksum, progress, cancel, on_progress,
                               command)
        finally:
            with _OPEN_LOCK:  # let go of the inputs opened in this process (h5py/zarr handles)
                _OPEN.clear()


def _run_locked(inputs, out: Path, params: BatchParameters, executor, checksum, progress, cancel,
                on_progress, command) -> BatchResult:
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
        entry["labels"] = f"{LABELS}/{name}.zspy" if entry["status"] != "error" else None
        manifest["inputs"].append(entry)
        plan.append(entry)
    if params.unit is None:  # one unit for every table of the run
        from .pipeline import common_unit

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

    write_manifest("running")
    from tqdm.auto import tqdm

    bar = tqdm(total=len(items), initial=len(items) - len(todo), unit="frame", desc="mmdl batch",
               disable=not progress, dynamic_ncols=True)
    done = len(items) - len(todo)
    interrupted = False
    last_write = time.monotonic()
    try:
        with executor as ex:
            manifest["executor"] = ex.description
            for record in ex.map(todo, params.to_dict(), str(shard_dir), cancel):
                records[record["key"]] = record
                done += 1
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
            entry["error"] = f"{n_bad} of {len(keys)} frame(s) failed"
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


# ---------------------------------------------------------------------------------------------
# assembly of the final outputs (streaming, atomic)
# ---------------------------------------------------------------------------------------------
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
    outputs["labels"] = _assemble_labels(out, plan, items, records, shard_dir)
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

    from .tables import with_unit_headers

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
        s.metadata.General.title = f"grain labels of {Path(entry['file']).name}"
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


# ---------------------------------------------------------------------------------------------
# reading results back
# ---------------------------------------------------------------------------------------------
def read_results(out: str | os.PathLike, *, pixels: bool = False) -> tuple[Any, Any, dict]:
    """Read a batch output folder: ``(grains DataFrame, frames DataFrame, manifest dict)``.

    Column names are plain (``area``), their units in ``attrs["units"]`` (the
    files carry them in the headers, ``area [µm²]``). ``pixels=True`` reads the
    tables of the inputs without calibration (``grains_px``, ``frames_px``) of a
    run that also had calibrated ones.
    """
    from .tables import read_table

    out = Path(out)
    manifest = json.loads((out / MANIFEST).read_text(encoding="utf-8"))
    suffix = "_px" if pixels else ""
    return (read_table(out / f"grains{suffix}.parquet"), read_table(out / f"frames{suffix}.parquet"),
            manifest)
