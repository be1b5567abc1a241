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

Inputs that are not micrographs are listed and the run goes on: unreadable files and
sub-folders, symbolic-link loops, broken links, FIFOs and other special files
(:func:`find_inputs`); model files are checked once before the first frame
(:meth:`BatchParameters.check_models`). A full disk or a file system turned read-only
stops the run with :class:`OutputWriteError` naming the file; the finished frames are
kept, the temporary files removed and the manifest says ``"failed"`` with the reason
(when it can still be written). A complete output on a read-only disk is read back
(:attr:`BatchResult.read_only`).

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
(``cp`` without ``-p``) is processed again. What the quick checksum cannot see: an
edit in place that keeps the size, changes only bytes outside the sampled blocks and
restores the modification time reuses the old results. ``checksum="full"`` streams the
whole content through SHA-256 (content only, no times): slower for huge stacks
(≈ 1 s/GB here) but independent of copies and of such edits. An input rewritten since
the last run has its old shards removed.

Scale-out: ``workers=N`` starts a :class:`dask.distributed.LocalCluster` with N
single-threaded worker processes; ``scheduler="tcp://host:8786"`` uses an existing
cluster (its workers must see the input files and ``OUT`` at the same paths). Items
go to the workers through the same function, :func:`process_item`, as in the
in-process loop (``workers=None``). Models load once per worker process (the
per-process model cache of :func:`hyperspy_mmdl.inference.get_predictor`, keyed
by checkpoint path, modification time and device). Scripts that call
:func:`run_batch` with ``workers`` must guard their entry point with
``if __name__ == "__main__":`` (the worker processes are spawned).

Modules (imports inside the package point down this list only):

:mod:`~hyperspy_mmdl.batch.run`
    :func:`run_batch`, :class:`BatchResult`: plan the items, run them, assemble, write the manifest.
:mod:`~hyperspy_mmdl.batch.lock`
    :class:`OutputLockedError`, :class:`OutputNotWritableError`: one run per output folder
    (an ``fcntl.flock``).
:mod:`~hyperspy_mmdl.batch.executor`
    the in-process loop or dask.distributed, the same item function.
:mod:`~hyperspy_mmdl.batch.outputs`
    the final tables and labels, assembled from the shards; :func:`read_results`.
:mod:`~hyperspy_mmdl.batch.shards`
    :func:`process_item`: one frame of one input computed and written as shards.
:mod:`~hyperspy_mmdl.batch.store`
    the output folder's names and atomic writes; :class:`OutputWriteError`.
:mod:`~hyperspy_mmdl.batch.parameters`
    :class:`BatchParameters`, :func:`process_frame`.
:mod:`~hyperspy_mmdl.batch.inputs`
    :data:`SUFFIXES`, :func:`find_inputs`, :func:`file_checksum`, inputs opened lazily.
:mod:`~hyperspy_mmdl.batch.frames`
    the per-process cache of opened inputs, :func:`read_frame`.

Everything is importable from :mod:`hyperspy_mmdl.batch` as before the split.
"""

from __future__ import annotations

# the public API
from .inputs import SUFFIXES, file_checksum, find_inputs
from .lock import OutputLockedError, OutputNotWritableError
from .outputs import read_results
from .parameters import BatchParameters, process_frame
from .run import BatchResult, run_batch
from .shards import process_item
from .store import OutputWriteError

# the rest of what this package held when it was one module, still importable from here
from .executor import _Executor, _Interrupted, _run_distributed, _run_local  # noqa: F401
from .frames import _OPEN, _OPEN_LOCK, _OPEN_MAX, _frames_view, _open, read_frame  # noqa: F401
from .inputs import (  # noqa: F401
    _GLOB_CHARS,
    _MIB,
    CHECKSUM_NOTE,
    _calibration_dict,
    _entry_calibration,
    _file_blocks_hash,
    _file_stream_hash,
    _is_store_dir,
    _label_names,
    _plan_input,
    _sha256_text,
)
from .lock import _OutputLock, _pid_alive  # noqa: F401
from .outputs import (  # noqa: F401
    _assemble,
    _assemble_frames,
    _assemble_grains,
    _assemble_labels,
    _load_labels,
)
from .parameters import _PREPROCESS_KEYS, _check_preprocess  # noqa: F401
from .run import _item_entry, _item_key, _run_locked, _versions  # noqa: F401
from .shards import _finished_record, _grains_frame, _shard_paths  # noqa: F401
from .store import (  # noqa: F401
    LABELS,
    MANIFEST,
    SHARDS,
    _atomic_write,
    _atomic_write_bytes,
    _atomic_write_json,
    _remove_leftovers,
    _tmp_path,
)

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
    "OutputNotWritableError",
    "OutputWriteError",
]
