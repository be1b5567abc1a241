"""Items and their shards: one item = one frame of one input.

:func:`process_item` reads the item's frame, computes it and writes the item's
shards into ``OUT/shards`` (grains, labels, then the JSON record last: a record on
disk means a complete item). It is the function both executors run; dask.distributed
workers import it by reference (``hyperspy_mmdl.batch.shards.process_item``).
"""

from __future__ import annotations

import json
import time
import traceback
from pathlib import Path

import numpy as np

from .frames import read_frame
from .parameters import BatchParameters, process_frame
from .store import OutputWriteError, _atomic_write, _atomic_write_json


def _shard_paths(shard_dir: Path, key: str) -> dict[str, Path]:
    return {"record": shard_dir / f"{key}.json", "grains": shard_dir / f"{key}.grains.parquet",
            "labels": shard_dir / f"{key}.labels.npz"}


def _grains_frame(table, file: str, frame: int):
    """The frame's grain table with ``file`` and ``frame`` first and units in the headers."""
    from ..tables import with_unit_headers

    df = table.reset_index(drop=True)
    df.insert(0, "file", file)
    df.insert(1, "frame", int(frame))
    return with_unit_headers(df, table.attrs.get("units"))


def process_item(item: dict, params: dict, shard_dir: str) -> dict:
    """Compute one item (one frame of one input) and write its shards.

    A frame that cannot be read or computed is recorded (``status`` ``"error"``) and the
    batch goes on; only an output folder that cannot be written (full, read-only) raises,
    :class:`~hyperspy_mmdl.batch.store.OutputWriteError`, which stops the run.

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
              "error": None, "checksum": item.get("checksum")}
    try:
        p = BatchParameters(**params)
        image, cal = read_frame(item["path"], int(item["frame"]), item["checksum"])
        result = process_frame(image, cal, p, what=f"{item['file']} frame {int(item['frame'])}")
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
    except OutputWriteError:  # the output folder, not the frame: the run stops
        raise
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
