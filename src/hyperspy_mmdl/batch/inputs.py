"""Inputs of a batch: files, globs and folders found, fingerprinted and opened lazily.

:func:`find_inputs` expands what the user gives into input files; :func:`file_checksum`
identifies an input's content for resuming; :func:`_plan_input` opens one input lazily
(frames, shape, calibration) and :func:`_label_names` names its labels output.
"""

from __future__ import annotations

import glob
import hashlib
import os
from pathlib import Path
from typing import Iterable, Sequence

from ..calibration import Calibration
from .frames import _frames_view

#: File suffixes picked up when a folder is given as input.
SUFFIXES = (".dm3", ".dm4", ".tif", ".tiff", ".hspy", ".zspy", ".emd", ".mrc", ".png", ".jpg", ".jpeg",
            ".bmp")
CHECKSUM_NOTE = {
    "quick": "sha256 of size, mtime_ns and 1 MiB blocks at 10 places (directories: paths, sizes, mtimes "
             "and small files)",
    "full": "sha256 of the whole content (directories: relative paths and contents)",
}
_MIB = 1 << 20
_GLOB_CHARS = set("*?[")


def _sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


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
    from ..io import load

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
