"""Inputs of a batch: files, globs and folders found, fingerprinted and opened lazily.

:func:`find_inputs` expands what the user gives into input files; :func:`file_checksum`
identifies an input's content for resuming; :func:`_plan_input` opens one input lazily
(frames, shape, calibration) and :func:`_label_names` names its labels output.
"""

from __future__ import annotations

import errno
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


def _problem(p: Path) -> str | None:
    """Why ``p`` (found or given) cannot be an input, or None: symbolic-link loops, broken links,
    FIFOs, sockets and devices are reported instead of being opened (a FIFO would block the run)."""
    import stat

    try:
        st = os.stat(p)
    except OSError as err:
        if err.errno == errno.ELOOP:
            return "a symbolic link loop (the link points back to itself)"
        if os.path.islink(p):
            return f"a broken symbolic link (to {os.readlink(p)!r})"
        return f"cannot be read: {err.strerror}"
    if stat.S_ISREG(st.st_mode) or (stat.S_ISDIR(st.st_mode) and p.suffix.lower() == ".zspy"):
        return None
    kind = ("a FIFO (named pipe)" if stat.S_ISFIFO(st.st_mode) else "a socket" if stat.S_ISSOCK(st.st_mode)
            else "a device" if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode) else "a folder"
            if stat.S_ISDIR(st.st_mode) else "not a regular file")
    return f"not a regular file: {kind}"


def find_inputs(inputs: Iterable[str | os.PathLike], *, exclude: str | os.PathLike | None = None
                ) -> tuple[list[Path], list[tuple[str, str]]]:
    """Expand files, globs and folders into an ordered list of input files.

    Parameters
    ----------
    inputs : iterable of str or path
        Files (any format :func:`hyperspy_mmdl.io.load` reads), glob patterns
        (``"run1/*.dm4"``, ``"**"`` recurses) and folders (searched recursively for
        :data:`SUFFIXES`, following links to folders; a ``.zspy`` folder is one input).
    exclude : path, optional
        A folder whose content is never an input (the output folder).

    Returns
    -------
    files : list of Path
        Existing inputs, in the order given (folders and globs sorted), without
        duplicates.
    missing : list of (str, str)
        What could not be an input, with the reason: patterns that match nothing,
        missing paths, and, met while scanning folders, sub-folders that cannot be
        read, symbolic-link loops, broken links and special files (FIFOs, sockets,
        devices) with a micrograph suffix. A batch run lists them and goes on.

    Examples
    --------
    >>> import tempfile
    >>> d = Path(tempfile.mkdtemp())
    >>> (d / "a.tif").write_bytes(b"")
    0
    >>> os.symlink("loop.tif", d / "loop.tif")
    >>> files, problems = find_inputs([d])
    >>> [f.name for f in files], [(Path(t).name, why) for t, why in problems]
    (['a.tif'], [('loop.tif', 'a symbolic link loop (the link points back to itself)')])
    """
    excl = Path(exclude).resolve() if exclude is not None else None

    def excluded(rp: Path) -> bool:
        return excl is not None and (rp == excl or excl in rp.parents)

    files: list[Path] = []
    missing: list[tuple[str, str]] = []
    seen: set[Path] = set()

    def add(p: Path, text: str | None = None):
        try:
            rp = p.resolve()
        except (OSError, RuntimeError):  # a symbolic-link loop
            rp = None
        if rp is not None and excluded(rp):
            return
        why = _problem(p)
        if why is not None:
            missing.append((text or str(p), why))
        elif rp not in seen:
            seen.add(rp)
            files.append(p)

    def walk(folder: Path) -> tuple[list[Path], int]:
        found, n_problems = [], 0

        def unreadable(err: OSError):
            nonlocal n_problems
            n_problems += 1
            missing.append((err.filename or str(folder), f"cannot read this folder: {err.strerror}"))

        visited = set()
        for root, dirs, names in os.walk(folder, onerror=unreadable, followlinks=True):
            root_p = Path(root)
            real_root = os.path.realpath(root)
            try:
                st = os.stat(root_p)
                visited.add((st.st_dev, st.st_ino))
            except OSError:
                pass
            keep = []
            for d in sorted(dirs):
                if d.startswith("."):
                    continue
                p = root_p / d
                if os.path.islink(p):
                    target = os.path.realpath(p)
                    if real_root == target or real_root.startswith(target.rstrip(os.sep) + os.sep):
                        n_problems += 1
                        missing.append((str(p), "a symbolic link loop (a link to a folder that contains "
                                                "it); not followed"))
                        continue
                if d.lower().endswith(".zspy"):
                    found.append(p)
                    continue
                try:
                    st = os.stat(p)
                except OSError:
                    continue
                if (st.st_dev, st.st_ino) not in visited:  # else already scanned by another path
                    keep.append(d)
            dirs[:] = keep
            found.extend(root_p / n for n in names
                         if not n.startswith(".") and Path(n).suffix.lower() in SUFFIXES)
        return sorted(found), n_problems

    for item in inputs:
        text = os.fspath(item)
        if _GLOB_CHARS & set(text):
            matches = sorted(Path(m) for m in glob.glob(text, recursive=True))
            matches = [m for m in matches if not m.is_dir() or _is_store_dir(m)]
            if not matches:
                missing.append((text, "no file matches this pattern"))
            for m in matches:
                add(m)
            continue
        p = Path(text)
        if os.path.lexists(p) and not p.is_dir():
            add(p, text)
        elif _is_store_dir(p):
            add(p, text)
        elif p.is_dir():
            found, n_problems = walk(p)
            if not found and not n_problems:
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


#: Longest labels name (UTF-8 bytes) kept as it is: ``labels/<name>.zspy`` and the temporary and
#: zarr names built from it must stay far below the file systems' 255-byte limit.
_NAME_BYTES = 96


def _label_names(files: Sequence[Path]) -> list[str]:
    """The name of each input's labels store (``labels/<name>.zspy``): the input's stem, unique;
    a stem longer than 96 bytes is cut and a hash of the whole path added.

    Examples
    --------
    >>> names = _label_names([Path("a/film.tif"), Path("b/film.tif"), Path("x" * 240 + ".tif")])
    >>> names[0], names[1].startswith("film-"), len(names[2].encode()) <= 96 + 9
    ('film', True, True)
    """
    names, used = [], set()
    for p in files:
        stem = p.name[: -len(p.suffix)] if p.suffix else p.name
        digest = hashlib.sha256(str(p.resolve()).encode()).hexdigest()[:8]
        name = stem
        if len(stem.encode("utf-8")) > _NAME_BYTES:
            name = f"{stem.encode('utf-8')[:_NAME_BYTES].decode('utf-8', 'ignore')}-{digest}"
        if name in used:
            name = f"{name}-{digest}"
        used.add(name)
        names.append(name)
    return names


def _plan_input(path: Path, checksum_mode: str) -> dict:
    """Open one input lazily: checksum, shape, dtype, calibration; errors recorded."""
    from ..io import load_with_notes

    entry: dict = {"file": str(path), "path": str(path.resolve()), "status": "pending", "error": None}
    try:
        entry["checksum"] = file_checksum(path, checksum_mode)
        entry["size_bytes"] = (sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
                               if path.is_dir() else path.stat().st_size)
        img, notes = load_with_notes(path, lazy=True)  # said once, in the run's summary
        if notes:
            entry["notes"] = notes
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
