"""The output folder: its names and atomic writes (a temporary name, then :func:`os.replace`).

A write that fails because of the output folder itself (a full disk, a file system
turned read-only, a quota, a permission taken away) raises :class:`OutputWriteError`
naming the file, after removing its temporary file: the run cannot go on, and says so,
instead of recording the failure against the frame being written.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import threading
from pathlib import Path
from typing import Callable

MANIFEST = "manifest.json"
SHARDS = "shards"
LABELS = "labels"

#: errno values that mean "the output folder cannot take this write", with what to tell the user.
OUTPUT_ERRNOS = {
    errno.ENOSPC: "the disk is full",
    errno.EROFS: "the file system is read-only",
    errno.EDQUOT: "the disk quota is exceeded",
    errno.EFBIG: "the file is larger than the file system allows",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.EIO: "input/output error",
}


class OutputWriteError(OSError):
    """The batch output folder cannot be written (full, read-only, over quota, no permission).

    ``errno`` is the system's, ``filename`` the file that could not be written.

    Examples
    --------
    >>> import errno
    >>> str(OutputWriteError(errno.ENOSPC, "the disk is full", "/out/grains.csv"))
    "[Errno 28] the disk is full: '/out/grains.csv'"
    """


def output_errno(err: BaseException) -> int | None:
    """The errno of ``err`` when it says the output cannot be written (also from pyarrow's and
    zarr's wrapped messages), else None.

    Examples
    --------
    >>> import errno
    >>> output_errno(OSError(errno.ENOSPC, "No space left on device")) == errno.ENOSPC
    True
    >>> output_errno(ValueError("bad frame")) is None
    True
    """
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, OSError):
            if err.errno in OUTPUT_ERRNOS:
                return err.errno
            text = str(err)
            for code in OUTPUT_ERRNOS:
                if code not in (errno.EACCES, errno.EPERM, errno.EIO) and os.strerror(code) in text:
                    return code
        err = err.__cause__ or err.__context__
    return None


def as_output_error(err: BaseException, path) -> OutputWriteError:
    """``err`` (a failed write of ``path``) as an :class:`OutputWriteError` naming ``path``."""
    if isinstance(err, OutputWriteError):
        return err
    code = output_errno(err) or errno.EIO
    return OutputWriteError(code, f"cannot write the batch output: {OUTPUT_ERRNOS.get(code, os.strerror(code))}",
                            str(path))


def _unlink_quietly(path: Path) -> None:
    try:
        path.unlink(missing_ok=True)
    except OSError:  # a read-only file system: nothing can be removed, and nothing more is written
        pass


def _tmp_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp{os.getpid()}-{threading.get_ident()}")


def _atomic_write(path: Path, write: Callable):
    """``write(file)`` into a temporary file beside ``path``, flush to disk, rename over ``path``.

    Raises :class:`OutputWriteError` (the temporary file removed) when the output folder
    cannot take the write.
    """
    tmp = _tmp_path(path)
    try:
        with open(tmp, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        _unlink_quietly(tmp)
        if output_errno(err) is not None:
            raise as_output_error(err, path) from None
        raise


def _atomic_write_bytes(path: Path, data: bytes):
    _atomic_write(path, lambda fh: fh.write(data))


def _atomic_write_json(path: Path, obj):
    _atomic_write_bytes(path, json.dumps(obj, indent=1, sort_keys=False, default=str).encode("utf-8"))


def _remove_leftovers(out: Path, quiet: bool = False):
    """Temporary files of a killed or failed run (only called while holding the lock).

    ``quiet``: after a failed write, remove what can be removed and say nothing.
    """
    for folder in (out, out / SHARDS, out / LABELS):
        try:
            found = list(folder.glob(".*"))
        except OSError:
            if quiet:
                continue
            raise
        for p in found:
            if ".tmp" in p.name or p.name.startswith(".old"):
                if p.is_dir():
                    shutil.rmtree(p, ignore_errors=True)
                elif quiet:
                    _unlink_quietly(p)
                else:
                    p.unlink(missing_ok=True)
