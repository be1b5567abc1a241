"""The output folder: its names and atomic writes (a temporary name, then :func:`os.replace`)."""

from __future__ import annotations

import json
import os
import shutil
import threading
from pathlib import Path
from typing import Callable

MANIFEST = "manifest.json"
SHARDS = "shards"
LABELS = "labels"


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


def _remove_leftovers(out: Path):
    """Temporary files of a killed run (only called while holding the lock)."""
    for folder in (out, out / SHARDS, out / LABELS):
        for p in folder.glob(".*"):
            if ".tmp" in p.name or p.name.startswith(".old"):
                if p.is_dir():
                    shutil.rmtree(p, ignore_errors=True)
                else:
                    p.unlink(missing_ok=True)
