"""Read and write calibrated micrographs (DM, TIFF, EMD, HSPY, ZSPY ... anything rosettasciio reads).

:func:`load` returns an :class:`Image`: the data in array order (frames first) and a
:class:`~hyperspy_mmdl.calibration.Calibration` with pint-normalised units.
Files are read with :func:`hyperspy.api.load`, which applies rosettasciio's
metadata mapping (instrument, beam energy, magnification).

Conventions
-----------
* **Several signals in one file** (DM files with an image and a plot, Olympus SIS
  TIFFs with an RGB preview and the raw data, multipage TIFFs): the images are
  kept, the first *calibrated* one is returned (else the first one) and a
  warning names the others; ``index=`` chooses any signal of the file by its
  position in ``hs.load``'s list.
* **Spectra and spectrum images** (a 1-D signal axis, or an energy axis such as
  ``eV``) are not micrographs: :class:`MicrographReadError` says what the file holds.
* **RGB(A)** (HyperSpy's structured ``rgb8``/``rgb16`` dtypes) becomes a plain
  ``(..., H, W, 3)`` array (:attr:`Image.rgb`; alpha dropped with a warning): the
  colour is kept, and the analysis applies the one colour policy of
  :mod:`hyperspy_mmdl.preprocess.color`.
* **Complex** data becomes its magnitude (float32) with a warning; **bool** becomes uint8.
* **Uncalibrated** images get pixel units (``"px"``) and a warning.
* The calibration comes from :meth:`Calibration.from_axes`, the one converter of
  every route: one readable length unit for both image axes (metres of SEM TIFFs
  become nm or µm; Å × nm DM images are converted).
* ``lazy=None`` means *auto*: lazy when the file is larger than :data:`LAZY_AUTO_BYTES`
  (stacks that would not comfortably fit in memory), eager otherwise. Formats or
  data rosettasciio cannot read lazily (PNG, JPEG, BMP, RGB DM) are read eagerly.

Reading defensively
-------------------
Before anything is allocated, :func:`load` compares what a file's header claims
with the file (:func:`check_header`): TIFF IFDs, strips and tags (including
ImageJ's declared number of frames), DM tag trees (dimensions × data type against
the data block and the file's end), MRC headers. A header that claims more pixels
than the file holds, zero pixels, or data past the end of the file is refused with
a :class:`ReadError` naming the file and the damage; so is an image larger than
the memory available when it is read eagerly, a ``.zspy`` store with missing
chunks, and anything that is not a regular file (FIFOs, devices). Lazy reads are
checked the same way at open time, and an error while a frame is read later is
re-raised as a :class:`ReadError` naming the file and the frames.
"""

from __future__ import annotations

import logging
import math
import os
import stat
import struct
import threading
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .calibration import PIXEL, Calibration, convert_length, normalize_unit
from .errors import CalibrationError, MMDLError, ReadError

__all__ = ["Image", "MicrographReadError", "load", "load_signal", "load_with_notes", "save", "LAZY_AUTO_BYTES", "check_file", "check_header",
           "check_zarr_complete", "memory_available"]

LAZY_AUTO_BYTES = 256 * 2**20
#: The reader's warning (after ``"<path>: "``) for a file without a spatial calibration.
NO_CALIBRATION = "no spatial calibration in the file; the image is in pixel units"
"""File size above which ``load(..., lazy=None)`` reads lazily."""

_ENERGY_UNITS = {"eV", "keV", "meV", "MeV"}
_SAVE_SUFFIXES = (".tif", ".tiff", ".hspy", ".zspy")


#: A file cannot be read as a micrograph (the name earlier versions used for :class:`ReadError`).
MicrographReadError = ReadError


@dataclass
class Image:
    """A micrograph (one image or a stack of frames) with its calibration.

    Attributes
    ----------
    data : numpy.ndarray or dask.array.Array
        Array order, frames first: ``(y, x)`` or ``(frames, y, x)``; colour images
        have a last channel axis of 3 (:attr:`rgb`).
    calibration : Calibration
        One entry per axis of ``data``; frame axes have ``navigate=True``.
    title : str
        The file's title (DM/HyperSpy title), else the file name without suffix.
    metadata : dict
        A small summary: ``original_format``, ``signal_type``, ``instrument``,
        ``beam_energy`` (kV), ``magnification``, ``acquisition_date``,
        ``acquisition_time``, ``signal_index`` and ``n_signals`` in the file, and
        ``conversion`` when the data was converted (RGB, complex, bool).
    path : Path
        The file read.
    """

    data: Any
    calibration: Calibration
    title: str
    metadata: dict = field(default_factory=dict)
    path: Path | None = None

    @property
    def rgb(self) -> bool:
        """True for colour data: one axis more than the calibration, R, G, B last."""
        return self.data.ndim == self.calibration.ndim + 1

    @property
    def is_stack(self) -> bool:
        return self.data.ndim - int(self.rgb) > 2

    @property
    def is_lazy(self) -> bool:
        return not isinstance(self.data, np.ndarray)


# ----------------------------------------------------------------------------- reading
@contextmanager
def _quiet_hyperspy():
    """Silence HyperSpy's and rosettasciio's log lines (errors become MicrographReadError,
    missing calibration a warning of :func:`load`)."""
    loggers = [logging.getLogger(name) for name in ("hyperspy", "rsciio")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def _check_path(path: Path) -> None:
    try:
        st = path.stat()
    except FileNotFoundError:
        raise MicrographReadError(f"{path}: no such file") from None
    except OSError as err:
        raise MicrographReadError(f"{path}: cannot access the file ({err.strerror or err})") from None
    if stat.S_ISDIR(st.st_mode):
        if path.suffix.lower() == ".zspy":
            return
        raise MicrographReadError(f"{path}: is a directory, not a micrograph file")
    if not stat.S_ISREG(st.st_mode):
        kind = ("a FIFO (named pipe)" if stat.S_ISFIFO(st.st_mode) else "a character device"
                if stat.S_ISCHR(st.st_mode) else "a block device" if stat.S_ISBLK(st.st_mode)
                else "a socket" if stat.S_ISSOCK(st.st_mode) else "a special file")
        raise MicrographReadError(f"{path}: not a regular file ({kind}); micrographs are read from files")
    if st.st_size == 0:
        raise MicrographReadError(f"{path}: the file is empty (0 bytes)")


# ----------------------------------------------------------------------------- header checks
#: Share of the available memory an eager read may take.
MEMORY_SHARE = 0.8
#: Largest plausible decompression ratio of a compressed TIFF strip (deflate's limit is about 1032).
MAX_COMPRESSION = 2000


def memory_available() -> int:
    """Bytes this process may still allocate: the smaller of the system's available memory
    (``MemAvailable``) and what the address-space limit (``RLIMIT_AS``) leaves.

    Example
    -------
    >>> memory_available() > 0
    True
    """
    avail = None
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    avail = int(line.split()[1]) * 1024
                    break
    except OSError:
        pass
    if avail is None:
        try:
            avail = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            avail = 1 << 62
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_AS)
        if soft != resource.RLIM_INFINITY:
            used = 0
            with open("/proc/self/status", encoding="ascii") as fh:
                for line in fh:
                    if line.startswith("VmSize:"):
                        used = int(line.split()[1]) * 1024
            avail = min(avail, max(0, soft - used))
    except (ImportError, OSError, ValueError):
        pass
    return int(avail)


def _gib(n: float) -> str:
    return f"{n / 2**30:.3g} GiB" if n >= 2**30 else f"{n / 2**20:.3g} MiB" if n >= 2**20 else f"{int(n)} bytes"


def _check_memory(path: Path, nbytes: int, what: str, lazy: bool) -> None:
    """An eager read must fit in memory; a lazy one frame by frame (``what`` is then one frame)."""
    avail = memory_available()
    if nbytes > MEMORY_SHARE * avail:
        how = ("even one frame does not fit" if lazy else "read it lazily (lazy=True, or mmdl batch) or on a "
               "machine with more memory")
        raise ReadError(f"{path}: {what} needs {_gib(nbytes)} of memory, more than the {_gib(avail)} "
                        f"available; {how}")


def check_file(path, *, lazy: bool = False) -> None:
    """Everything :func:`load` checks before reading: the path is a regular file (or a ``.zspy``
    store), not empty, and its header is consistent with it (:func:`check_header`).

    Raises
    ------
    ReadError
        Naming the file and the problem.
    """
    path = Path(path)
    _check_path(path)
    check_header(path, lazy=lazy)


def check_header(path, *, lazy: bool = False) -> None:
    """Compare what a file's header claims with the file itself, before any pixel is read.

    TIFF (:func:`_check_tiff`), DM3/DM4 (:func:`_check_dm`) and MRC (:func:`_check_mrc`)
    headers are read directly; ``.zspy`` stores are checked for missing chunks. Other
    formats pass (rosettasciio's own checks apply).

    Parameters
    ----------
    path : str or Path
    lazy : bool
        The data will be read lazily: only one frame has to fit in memory.

    Raises
    ------
    ReadError
        The header claims more (or fewer) pixels than the file holds, zero pixels,
        data or tags past the end of the file, an image larger than the memory
        available, or missing chunks; the message names the file and the damage.

    Example
    -------
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "x.mrc"; _ = p.write_bytes(bytes(2048))
    >>> try:
    ...     check_header(p)
    ... except ReadError as err:
    ...     print(str(err).split(": ", 1)[1][:40])
    the MRC header claims a 0×0×0 image (the
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".zspy":
        check_zarr_complete(path)
        return
    if not path.is_file():
        return
    size = path.stat().st_size
    if suffix in (".tif", ".tiff"):
        _check_tiff(path, size, lazy)
    elif suffix in (".dm3", ".dm4"):
        _check_dm(path, size, lazy)
    elif suffix == ".mrc":
        _check_mrc(path, size, lazy)


_TIFF_TYPE_SIZE = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8, 13: 4, 16: 8, 17: 8,
                   18: 8}
_TIFF_TYPE_FMT = {1: "B", 3: "H", 4: "I", 6: "b", 8: "h", 9: "i", 13: "I", 16: "Q", 17: "q", 18: "Q"}
_TIFF_TAG_NAMES = {256: "ImageWidth", 257: "ImageLength", 258: "BitsPerSample", 259: "Compression",
                   270: "ImageDescription", 273: "StripOffsets", 277: "SamplesPerPixel", 279: "StripByteCounts",
                   282: "XResolution", 283: "YResolution", 296: "ResolutionUnit", 322: "TileWidth",
                   323: "TileLength", 324: "TileOffsets", 325: "TileByteCounts", 34682: "FEI metadata (FEI_HELIOS)",
                   34680: "FEI metadata (FEI_SFEG)", 34118: "Zeiss SEM metadata (CZ_SEM)",
                   50838: "ImageJ metadata byte counts", 50839: "ImageJ metadata", 33560: "Olympus SIS metadata",
                   65000: "DigitalMicrograph metadata"}
_MAX_IFDS = 1_000_000


def _tiff_ifds(fh, path: Path, size: int) -> list[dict]:
    """Walk the IFD chain of a TIFF without reading pixels: ``[{code: (type, count, value bytes or
    None, offset of the value)}]``; refuses loops, IFDs and tag values past the end of the file."""
    head = fh.read(16)
    if head[:2] not in (b"II", b"MM"):
        raise ReadError(f"{path}: not a TIFF file (the first bytes are not a TIFF byte-order mark)")
    bo = "<" if head[:2] == b"II" else ">"
    if len(head) < 8:
        raise ReadError(f"{path}: truncated: the TIFF header is incomplete ({size} bytes)")
    magic = struct.unpack(bo + "H", head[2:4])[0]
    if magic == 42:
        big, first = False, struct.unpack(bo + "I", head[4:8])[0]
        cfmt, csize, efmt, esize, nfmt, nsize, inline = "H", 2, "HHI4s", 12, "I", 4, 4
    elif magic == 43 and len(head) >= 16:
        big, first = True, struct.unpack(bo + "Q", head[8:16])[0]
        cfmt, csize, efmt, esize, nfmt, nsize, inline = "Q", 8, "HHQ8s", 20, "Q", 8, 8
    else:
        raise ReadError(f"{path}: not a TIFF file (byte-order mark followed by {magic}, not 42 or 43)")
    ifds, seen, offset = [], set(), first
    while offset:
        if offset in seen:
            raise ReadError(f"{path}: damaged TIFF: its chain of images loops back to offset {offset}")
        seen.add(offset)
        if offset + csize > size:
            raise ReadError(f"{path}: truncated: TIFF image {len(ifds)} starts at byte {offset}, past the end of "
                            f"the {size}-byte file")
        fh.seek(offset)
        count = struct.unpack(bo + cfmt, fh.read(csize))[0]
        end = offset + csize + count * esize + nsize
        if count == 0 or count > 4096 or end > size:
            what = "has no tags" if count == 0 else f"claims {count} tags"
            if end > size and count <= 4096:
                raise ReadError(f"{path}: truncated: the tag directory of TIFF image {len(ifds)} ends at byte "
                                f"{end}, past the end of the {size}-byte file")
            raise ReadError(f"{path}: damaged TIFF: the tag directory of image {len(ifds)} {what}")
        raw = fh.read(count * esize + nsize)
        tags = {}
        for k in range(count):
            code, typ, n, val = struct.unpack(bo + efmt, raw[k * esize:(k + 1) * esize])
            item = _TIFF_TYPE_SIZE.get(typ)
            if item is None:
                continue  # an unknown type: readers skip the tag
            nbytes = n * item
            if nbytes <= inline:
                tags[code] = (typ, n, val[:nbytes], None)
            else:
                voff = struct.unpack(bo + ("Q" if big else "I"), val)[0]
                if voff + nbytes > size:
                    name = _TIFF_TAG_NAMES.get(code, f"tag {code}")
                    raise ReadError(
                        f"{path}: truncated or damaged: the TIFF tag {name} of image {len(ifds)} ({nbytes} bytes at "
                        f"offset {voff}) extends past the end of the {size}-byte file, "
                        f"{voff + nbytes - size} bytes are missing"
                        + ("; the calibration it holds is lost" if code in (34682, 34680, 34118, 50839, 65000, 270)
                           else ""))
                tags[code] = (typ, n, None, voff)
        tags["_bo"] = bo
        ifds.append(tags)
        if len(ifds) > _MAX_IFDS:
            raise ReadError(f"{path}: damaged TIFF: more than {_MAX_IFDS} images in the chain")
        offset = struct.unpack(bo + nfmt, raw[count * esize:])[0]
    return ifds


def _tiff_values(fh, tags: dict, code: int, limit: int = 1 << 20):
    if code not in tags:
        return None
    typ, n, inline, voff = tags[code]
    fmt = _TIFF_TYPE_FMT.get(typ)
    if fmt is None or n > limit:
        return None
    item = _TIFF_TYPE_SIZE[typ]
    if inline is None:
        fh.seek(voff)
        inline = fh.read(n * item)
    return list(struct.unpack(tags["_bo"] + fmt * n, inline[: n * item]))


def _check_tiff(path: Path, size: int, lazy: bool) -> None:
    """TIFF: every IFD, tag value and strip inside the file; strips that hold the pixels the
    header claims; ImageJ's declared frames present; the image fits in memory."""
    with open(path, "rb") as fh:
        ifds = _tiff_ifds(fh, path, size)
        total, frame_max = 0, 0
        for i, tags in enumerate(ifds):
            w = (_tiff_values(fh, tags, 256) or [None])[0]
            h = (_tiff_values(fh, tags, 257) or [None])[0]
            where = f"TIFF image {i}" if len(ifds) > 1 else "the TIFF image"
            if w is None or h is None:
                raise ReadError(f"{path}: damaged TIFF: {where} has no "
                                f"{'ImageWidth' if w is None else 'ImageLength'} tag")
            if w == 0 or h == 0:
                raise ReadError(f"{path}: damaged TIFF: the header of {where} claims {w}×{h} pixels "
                                f"(an empty image)")
            bps = _tiff_values(fh, tags, 258) or [1]
            spp = (_tiff_values(fh, tags, 277) or [1])[0] or 1
            compression = (_tiff_values(fh, tags, 259) or [1])[0]
            tiled = 324 in tags
            offsets = _tiff_values(fh, tags, 324 if tiled else 273, limit=1 << 24)
            counts = _tiff_values(fh, tags, 325 if tiled else 279, limit=1 << 24)
            expected = w * h * spp * max(bps) // 8 or w * h * spp
            if offsets is None or counts is None:
                raise ReadError(f"{path}: damaged TIFF: {where} has no "
                                f"{'tile' if tiled else 'strip'} offsets or byte counts")
            if len(offsets) != len(counts):
                raise ReadError(f"{path}: damaged TIFF: {where} has {len(offsets)} strip offsets but "
                                f"{len(counts)} byte counts")
            stored = 0
            for off, cnt in zip(offsets, counts):
                if off + cnt > size:
                    lost = sum(max(0, min(c, o + c - size)) for o, c in zip(offsets, counts))
                    raise ReadError(f"{path}: truncated: the pixel data of {where} ({w}×{h}) extends past the end "
                                    f"of the {size}-byte file; {lost} of {sum(counts)} bytes are missing")
                stored += cnt
            if compression in (1, None) and stored < expected:
                raise ReadError(f"{path}: inconsistent TIFF header: {where} claims {w}×{h} pixels × {spp} "
                                f"sample(s) of {max(bps)} bits ({expected} bytes) but its "
                                f"{'tiles' if tiled else 'strips'} hold {stored} bytes")
            if compression not in (1, None) and expected > MAX_COMPRESSION * max(stored, 1) and expected > 2**28:
                raise ReadError(f"{path}: implausible TIFF header: {where} claims {w}×{h} pixels "
                                f"({_gib(expected)}) stored in {stored} compressed bytes")
            total += expected
            frame_max = max(frame_max, expected)
        # ImageJ stacks: the frames the description declares are stored one after the other
        desc = tags0_desc = None
        if 270 in ifds[0]:
            typ, n, inline, voff = ifds[0][270]
            if n < 1 << 20:
                if inline is None:
                    fh.seek(voff)
                    inline = fh.read(n)
                tags0_desc = inline.decode("latin-1", errors="replace")
        desc = tags0_desc or ""
        if desc.startswith("ImageJ="):
            import re

            m = re.search(r"^images=(\d+)\s*$", desc, re.M)
            if m:
                images = int(m.group(1))
                t0 = ifds[0]
                w = _tiff_values(fh, t0, 256)[0]
                h = _tiff_values(fh, t0, 257)[0]
                spp = (_tiff_values(fh, t0, 277) or [1])[0] or 1
                bps = max(_tiff_values(fh, t0, 258) or [8])
                compression = (_tiff_values(fh, t0, 259) or [1])[0]
                frame = w * h * spp * bps // 8
                first = (_tiff_values(fh, t0, 273, limit=1 << 24) or [0])[0]
                if images > len(ifds) and compression in (1, None):
                    held = max(0, (size - first) // frame) if frame else 0
                    if first + images * frame > size:
                        raise ReadError(
                            f"{path}: truncated ImageJ stack: its header declares {images} frames of {w}×{h} "
                            f"({frame} bytes each) but the file holds {min(held, images)} complete frame(s)")
                    total = max(total, images * frame)
                elif images > len(ifds):
                    raise ReadError(f"{path}: truncated ImageJ stack: its header declares {images} frames but the "
                                    f"file holds {len(ifds)}")
    _check_memory(path, frame_max if lazy else total, "one frame" if lazy else f"the image ({len(ifds)} page(s))",
                  lazy)


def _check_dm(path: Path, size: int, lazy: bool) -> None:
    """DM3/DM4: the tag tree parses to its end; each image's dimensions × data type match its
    data block, which lies inside the file; the image fits in memory."""
    from rsciio.digitalmicrograph._api import DigitalMicrographReader, ImageObject

    with open(path, "rb") as fh, _quiet_hyperspy():
        dm = DigitalMicrographReader(fh)
        try:
            dm.parse_file()
        except NotImplementedError as err:
            raise ReadError(f"{path}: not a DM3/DM4 file or an unsupported version ({err})") from None
        except Exception as err:  # noqa: BLE001 - struct errors, EOF, wrong delimiters: the tree is damaged
            at = fh.tell()
            kind = "truncated" if at >= size or "unpack" in str(err) else "damaged"
            where = (f"it needs more than the file's {size} bytes" if at >= size
                     else f"stopped near byte {at} of {size}")
            raise ReadError(f"{path}: {kind}: the DigitalMicrograph tag tree cannot be read to its end "
                            f"({where}: {type(err).__name__}: {err})") from None
        try:
            images = dm.get_image_dictionaries() or []
        except Exception as err:  # noqa: BLE001
            raise ReadError(f"{path}: damaged DigitalMicrograph tags ({type(err).__name__}: {err})") from None
        total = 0
        frame_max = 0
        for k, imdict in enumerate(images):
            try:
                im = ImageObject(imdict, fh)
                shape = tuple(int(v) for v in im.shape)
                data = im.imdict.ImageData.Data
                dtype = np.dtype(im.dtype) if im.dtype != "not_implemented" else None
                declared = int(im.size)
            except Exception as err:  # noqa: BLE001 - missing ImageData tags, unknown data types
                raise ReadError(f"{path}: damaged DigitalMicrograph image {k}: its ImageData tags cannot be "
                                f"used ({type(err).__name__}: {err})") from None
            if dtype is None or not isinstance(data, dict):
                continue
            n = math.prod(shape) if shape else 0
            if n == 0:
                raise ReadError(f"{path}: damaged DigitalMicrograph header: image {k} claims dimensions "
                                f"{'×'.join(map(str, shape[::-1])) or 'none'} (no pixels)")
            packed = im.imdict.ImageData.DataType in (27, 28)
            if not packed and n != declared:
                raise ReadError(f"{path}: inconsistent DigitalMicrograph header: image {k} claims dimensions "
                                f"{'×'.join(map(str, shape[::-1]))} ({n} values) but its data block holds "
                                f"{declared} values")
            end = int(data.get("offset", 0)) + int(data.get("size_bytes", declared * dtype.itemsize))
            if end > size:
                raise ReadError(f"{path}: truncated: the pixel data of DigitalMicrograph image {k} "
                                f"({'×'.join(map(str, shape[::-1]))}) ends at byte {end}, past the end of the "
                                f"{size}-byte file")
            nbytes = n * dtype.itemsize
            total += nbytes
            frame_max = max(frame_max, nbytes // (shape[0] if len(shape) > 2 else 1))
    _check_memory(path, frame_max if lazy else total, "one frame" if lazy else "the image", lazy)


_MRC_MODES = {0: 1, 1: 2, 2: 4, 3: 4, 4: 8, 6: 2, 12: 2, 16: 3, 101: 1}


def _check_mrc(path: Path, size: int, lazy: bool) -> None:
    """MRC: a 1024-byte header with positive dimensions, a known mode, and data that fits the file."""
    with open(path, "rb") as fh:
        head = fh.read(1024)
    if len(head) < 1024:
        raise ReadError(f"{path}: truncated: an MRC file starts with a 1024-byte header, the file has {size} bytes")
    for bo in ("<", ">"):
        nx, ny, nz, mode = struct.unpack(bo + "4i", head[:16])
        if mode in _MRC_MODES and 0 <= nx < 2**24 and 0 <= ny < 2**24 and 0 <= nz < 2**30:
            break
    else:
        raise ReadError(f"{path}: damaged MRC header: data mode {mode} and dimensions {nx}×{ny}×{nz} are not "
                        f"those of an MRC file")
    if nx == 0 or ny == 0 or nz == 0:
        raise ReadError(f"{path}: the MRC header claims a {nx}×{ny}×{nz} image (the header is blank or damaged): "
                        f"there are no pixels to read")
    nsymbt = struct.unpack(bo + "i", head[92:96])[0]
    item = _MRC_MODES[mode]
    nbytes = nx * ny * nz * item
    if nsymbt < 0 or 1024 + nsymbt + nbytes > size:
        raise ReadError(f"{path}: truncated or inconsistent MRC file: the header claims {nx}×{ny}×{nz} values of "
                        f"{item} byte(s) ({1024 + max(nsymbt, 0) + nbytes} bytes with the headers) but the file has "
                        f"{size} bytes")
    _check_memory(path, nx * ny * item if lazy else nbytes, "one frame" if lazy else "the image", lazy)


def check_zarr_complete(path) -> None:
    """A ``.zspy`` store holds every chunk of its data arrays (a deleted chunk would read as zeros).

    Raises
    ------
    ReadError
        Naming the store, the array and how many chunks are missing.

    Example
    -------
    >>> import tempfile, pathlib, zarr
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "s.zspy"
    >>> z = zarr.open_array(str(p / "data"), mode="w", shape=(4, 4), chunks=(2, 2), dtype="u1"); z[:] = 1
    >>> check_zarr_complete(p)  # complete: says nothing
    """
    path = Path(path)
    if not path.is_dir():
        return
    try:
        import zarr
    except ImportError:  # pragma: no cover - zarr comes with rosettasciio's zspy support
        return
    import re

    for meta in sorted(path.rglob(".zarray")):
        try:
            arr = zarr.open_array(str(meta.parent), mode="r")
            expected = int(arr.nchunks)
            # count the chunk files (flat "0.1.2" or nested "0/1/2" keys): zarr 2's own count
            # (nchunks_initialized) sees only the top level of nested stores
            key = re.compile(r"^\d+(?:[./]\d+)*$")
            present = sum(1 for p in meta.parent.rglob("*") if p.is_file() and not p.name.startswith(".")
                          and key.match(p.relative_to(meta.parent).as_posix())
                          and len(re.split(r"[./]", p.relative_to(meta.parent).as_posix())) == max(arr.ndim, 1))
        except Exception as err:  # noqa: BLE001 - unreadable array metadata
            raise ReadError(f"{path}: damaged zarr store: the array {meta.parent.relative_to(path)} cannot be "
                            f"opened ({type(err).__name__}: {err})") from None
        if present < expected and arr.size > 0 and (meta.parent.name == "data" or arr.size > 64):
            raise ReadError(f"{path}: damaged zarr store: {expected - present} of {expected} chunks of "
                            f"{meta.parent.relative_to(path)} are missing (deleted or never written); "
                            f"their pixels would read as {arr.fill_value}")


#: Formats rosettasciio reads eagerly only (its image reader has no lazy mode).
EAGER_ONLY = (".png", ".jpg", ".jpeg", ".bmp", ".gif")


def _read_signals(path: Path, lazy: bool) -> list:
    import hyperspy.api as hs

    if lazy and path.suffix.lower() in EAGER_ONLY:
        lazy = False
    with _quiet_hyperspy(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            out = hs.load(str(path), lazy=lazy)
        except MemoryError:
            raise ReadError(f"{path}: the image does not fit in the memory available "
                            f"({_gib(memory_available())}); read it lazily (lazy=True)") from None
        except Exception as err:  # noqa: BLE001 - any reader failure becomes one clear error
            if lazy:  # some readers or data (RGB DM) have no lazy mode: an eager read may work
                return _read_signals(path, lazy=False)
            kind = type(err).__name__
            text = str(err).strip() or "no detail given"
            raise ReadError(
                f"{path}: cannot read the file ({kind}: {text}); it is truncated, corrupt or not "
                f"in a format rosettasciio reads") from None
    out = out if isinstance(out, list) else [out]
    if not out:
        raise ReadError(f"{path}: no signal found in the file: it is damaged, truncated or not a "
                        f"{path.suffix.lower() or 'known'} file rosettasciio reads")
    return out


def _frames_text(block_id, chunks, frame_axes: int) -> str:
    if frame_axes <= 0:
        return "the image data"
    parts = []
    for ax in range(frame_axes):
        start = sum(chunks[ax][: block_id[ax]])
        stop = start + chunks[ax][block_id[ax]]
        parts.append(str(start) if stop - start == 1 else f"{start}-{stop - 1}")
    return ("frame " if all("-" not in p for p in parts) else "frames ") + ", ".join(parts)


def _guard_lazy(data, path: Path, frame_axes: int):
    """The lazy array ``data`` whose blocks, when read, re-raise any error as a :class:`ReadError`
    naming the file and the frames (a file changed or damaged after it was opened, an I/O error)."""
    import dask
    import dask.array as da
    from dask.optimization import cull

    src = data
    state: dict = {}
    lock = threading.Lock()

    def read(block_id=None):
        key = (src.name,) + tuple(block_id)
        try:
            with lock:
                if "dsk" not in state:
                    state["dsk"] = dict(src.__dask_graph__())
                dsk = state["dsk"]
            sub, _ = cull(dsk, [key])
            return np.asarray(dask.get(sub, key))
        except MMDLError:
            raise
        except Exception as err:  # noqa: BLE001 - named here, once, for every front end
            where = _frames_text(block_id, src.chunks, frame_axes)
            text = str(err).strip() or "no detail given"
            raise ReadError(f"{path}: cannot read {where} ({type(err).__name__}: {text}); the file is "
                            f"truncated, damaged or changed since it was opened") from None

    return da.map_blocks(read, chunks=src.chunks, dtype=src.dtype, meta=np.empty((0,) * src.ndim, src.dtype),
                         name=f"mmdl-read-{src.name}")


def _describe(signal) -> str:
    """What a non-image signal is, in words (for error messages)."""
    am = signal.axes_manager
    st = signal.metadata.get_item("Signal.signal_type", "") or ""
    kind = f" ({st})" if st else ""
    units = [normalize_unit(ax.units) if isinstance(ax.units, str) else PIXEL for ax in am._axes]
    if am.signal_dimension == 1:
        if am.navigation_dimension == 0 or all(ax.size == 1 for ax in am.navigation_axes):
            return f"a 1-D spectrum{kind} of {am.signal_shape[0]} channels, not an image"
        nav = "×".join(str(n) for n in am.navigation_shape[::-1])
        return f"a spectrum image{kind} ({nav} positions × {am.signal_shape[0]} channels), not an image"
    if any(u in _ENERGY_UNITS for u in units):
        return f"a spectrum image{kind} (an energy axis in {', '.join(sorted(set(units) & _ENERGY_UNITS))}), not an image"
    if am.signal_dimension == 0:
        return "a 0-D signal (single values), not an image"
    if am.signal_dimension > 2:
        return f"a {am.signal_dimension}-D signal, not an image"
    if am.navigation_dimension > 1:
        return (f"a {am.navigation_dimension}-D grid of images (e.g. 4D-STEM), not an image "
                f"or a stack of frames")
    return f"a {am.signal_dimension}-D signal of shape {tuple(signal.data.shape)}, not an image"


def _is_image(signal) -> bool:
    am = signal.axes_manager
    # NCEM EMD (and some HDF5) stacks come back as 3-D signals: the first axis is then the frame axis
    stack_as_signal = am.signal_dimension == 3 and am.navigation_dimension == 0
    if not stack_as_signal and (am.signal_dimension != 2 or am.navigation_dimension > 1):
        return False
    for ax in am._axes:
        u = ax.units if isinstance(ax.units, str) else ""
        if normalize_unit(u) in _ENERGY_UNITS:
            return False
    return True


def _convert(data, path: Path, notes: list[str]):
    """Structured RGB(A) -> ``(..., 3)`` channels (the colour is kept: see
    :mod:`hyperspy_mmdl.preprocess.color`), complex -> magnitude float32, bool -> uint8."""
    from .preprocess.color import as_channels

    dt = data.dtype
    if dt.names is not None:  # structured RGB(A): fields R, G, B[, A]
        if not all(c in dt.names for c in ("R", "G", "B")):
            raise ReadError(f"{path}: unsupported structured dtype {dt}")
        # colour has no lazy mode here; synchronous: this may run inside a dask.distributed task
        arr = np.asarray(data) if isinstance(data, np.ndarray) else data.compute(scheduler="synchronous")
        if "A" in dt.names:
            notes.append("RGBA: the alpha channel is dropped")
        return as_channels(arr)
    if np.issubdtype(dt, np.complexfloating):
        notes.append("complex data: its magnitude (float32) is used")
        return abs(data).astype(np.float32)
    if dt == bool:
        notes.append("boolean data converted to uint8 (0/1)")
        return data.astype(np.uint8)
    return data


def _small_metadata(signal, path: Path, index: int, n_signals: int) -> dict:
    md = signal.metadata
    out = {"original_format": path.suffix.lower().lstrip(".") or "zspy",
           "signal_type": md.get_item("Signal.signal_type", "") or "",
           "signal_index": index, "n_signals": n_signals}
    for mic in ("SEM", "TEM"):
        base = f"Acquisition_instrument.{mic}"
        if md.has_item(base):
            out["microscope_type"] = mic
            for key, item in (("instrument", "microscope"), ("beam_energy", "beam_energy"),
                              ("magnification", "magnification"), ("acquisition_mode", "acquisition_mode")):
                v = md.get_item(f"{base}.{item}")
                if v is not None:
                    out[key] = v if isinstance(v, (str, int, float)) else str(v)
    for key in ("date", "time"):
        v = md.get_item(f"General.{key}")
        if v is not None:
            out[f"acquisition_{key}"] = str(v)
    return out


def _auto_lazy(path: Path) -> bool:
    if path.is_dir():
        size = sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    else:
        size = path.stat().st_size
    return size > LAZY_AUTO_BYTES


def load(path, *, lazy: bool | None = False, index: int | None = None) -> Image:
    """Read a micrograph (or a stack of frames) with its calibration.

    Parameters
    ----------
    path : str or Path
        Any file rosettasciio reads (dm3, dm4, tif/tiff, emd, hspy, zspy, mrc, ...).
    lazy : bool or None
        Read the data lazily as a dask array (frames are read when computed).
        ``None``: lazy when the file is larger than :data:`LAZY_AUTO_BYTES`.
    index : int, optional
        Which signal of a file holding several (position in ``hs.load``'s list).
        By default the first calibrated image, else the first image.

    Returns
    -------
    Image

    Raises
    ------
    MicrographReadError
        The path is missing, a directory, empty, truncated, not a readable
        format, or holds no image (spectra, spectrum images); the message names
        the file and what it holds.
    """
    path = Path(path)
    _check_path(path)
    if lazy is None:
        lazy = _auto_lazy(path)
    check_header(path, lazy=bool(lazy))
    signals = _read_signals(path, bool(lazy))
    n = len(signals)
    if index is not None:
        if not -n <= index < n:
            raise MicrographReadError(f"{path}: index={index} is out of range; the file holds {n} signal(s)")
        index = index % n
        if not _is_image(signals[index]):
            raise MicrographReadError(f"{path}: signal {index} holds {_describe(signals[index])}")
    else:
        images = [i for i, s in enumerate(signals) if _is_image(s)]
        if not images:
            what = "; ".join(d for d in (_describe(s) for s in signals) if d) or "no image"
            raise MicrographReadError(f"{path}: holds {what}")
        calibrated = [i for i in images if Calibration.from_signal(signals[i]).is_calibrated]
        index = (calibrated or images)[0]
        if n > 1:
            others = ", ".join(f"{i}: {_label(s)}" for i, s in enumerate(signals) if i != index)
            warnings.warn(f"{path}: the file holds {n} signals; using signal {index} "
                          f"({_label(signals[index])}); others: {others} (choose with index=)",
                          UserWarning, stacklevel=2)
    signal = signals[index]
    try:
        cal = Calibration.from_signal(signal)
    except CalibrationError as err:
        raise ReadError(f"{path}: {err}") from None
    shape = tuple(int(n) for n in signal.data.shape)
    if not shape or min(shape) == 0:
        raise MicrographReadError(f"{path}: holds an empty image (shape {shape}): the file is damaged or "
                                  f"its header claims no pixels")
    raw = signal.data
    if not isinstance(raw, np.ndarray) and hasattr(raw, "chunks"):
        frame_axes = raw.ndim - 2 - int(raw.dtype.names is None and cal.ndim == raw.ndim - 1)
        raw = _guard_lazy(raw, path, max(0, frame_axes))
    notes: list[str] = []
    data = _convert(raw, path, notes)
    for note in notes:
        warnings.warn(f"{path}: {note}", UserWarning, stacklevel=2)
    if not cal.is_calibrated:
        warnings.warn(f"{path}: {NO_CALIBRATION}", UserWarning, stacklevel=2)
    title = signal.metadata.get_item("General.title", "") or ""
    title = str(title).strip() or (path.name[: -len(path.suffix)] if path.suffix else path.name)
    md = _small_metadata(signal, path, index, n)
    if notes:
        md["conversion"] = "; ".join(notes)
    return Image(data=data, calibration=cal, title=title, metadata=md, path=path)


def load_with_notes(path, *, lazy: bool | None = False, index: int | None = None) -> tuple[Image, list[str]]:
    """:func:`load`, with the reader's warnings returned as notes instead of raised.

    For front ends that report notes per file (``mmdl analyze``, ``mmdl batch``):
    each note loses the path it starts with (the report names the file), and the
    missing-calibration warning is left out, since every analysed frame says it
    ("no calibration: lengths in pixels").

    Example
    -------
    >>> img, notes = load_with_notes("film.tif")       # doctest: +SKIP
    >>> notes                                          # doctest: +SKIP
    ['2 images in the file; read the first calibrated one ...']
    """
    path = Path(path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        img = load(path, lazy=lazy, index=index)
    notes = []
    for w in caught:
        if not issubclass(w.category, UserWarning):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
            continue
        text = str(w.message)
        for prefix in (f"{path}: ", f"{path.resolve()}: "):
            if text.startswith(prefix):
                text = text[len(prefix):]
                break
        if text != NO_CALIBRATION:
            notes.append(text)
    return img, notes


def _label(signal) -> str:
    title = signal.metadata.get_item("General.title", "") or "untitled"
    shape = "×".join(str(k) for k in signal.data.shape)
    kind = "image" if _is_image(signal) else ("spectrum" if signal.axes_manager.signal_dimension == 1
                                              else f"{signal.axes_manager.signal_dimension}-D signal")
    return f"{title!r} {kind} {shape}"


def load_signal(path, lazy: bool | None = False, index: int | None = None):
    """Read a micrograph as a ``"microstructure"`` HyperSpy signal.

    Same conventions as :func:`load`; a lazy read gives a lazy signal. The same
    as ``hs.load(path, signal_type="microstructure")`` for files with one image.
    """
    img = load(path, lazy=lazy, index=index)
    return to_signal(img)


def _signal(data, calibration: Calibration, signal_type: str = "microstructure"):
    """A (lazy) HyperSpy Signal2D of ``signal_type`` with the axes of ``calibration``.

    Colour ``(..., H, W, 3)`` data becomes HyperSpy's structured ``rgb8``/``rgb16``.
    """
    from hyperspy.signals import Signal2D

    lazy = not isinstance(data, np.ndarray)
    if data.ndim == calibration.ndim + 1:  # colour: R, G, B last
        dt = np.dtype([(c, data.dtype) for c in "RGB"])
        arr = np.asarray(data) if not lazy else data.compute(scheduler="synchronous")
        data = np.ascontiguousarray(arr).view(dt)[..., 0]
        lazy = False
    s = Signal2D(data, axes=calibration.to_axes(data.shape))
    if lazy:
        s = s.as_lazy()
    s.set_signal_type(signal_type)
    return s


def to_signal(img: Image):
    """An :class:`Image` as a (lazy) ``"microstructure"`` signal with its axes and title."""
    s = _signal(img.data, img.calibration)
    s.metadata.General.title = img.title
    if img.path is not None:
        s.metadata.General.original_filename = img.path.name
    return s


# ----------------------------------------------------------------------------- writing
def save(path, data, calibration: Calibration | None = None, *, title: str = "",
         metadata: dict | None = None, overwrite: bool = True) -> Path:
    """Write a micrograph with its calibration (``.tif``/``.tiff``, ``.hspy``, ``.zspy``).

    TIFFs are written by rosettasciio's TIFF writer, which stores scale, units
    and offsets so :func:`load` reads them back; float64 is written as float32.

    Parameters
    ----------
    path : str or Path
        Output file; the suffix selects the format.
    data : array_like
        ``(y, x)`` or ``(frames, y, x)``.
    calibration : Calibration, optional
        Defaults to pixel units.
    title : str
        Stored as the signal title.
    metadata : dict, optional
        Small scalar items stored under ``metadata.General.mmdl`` (HyperSpy formats).
    overwrite : bool
        Replace an existing file.

    Returns
    -------
    Path
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in _SAVE_SUFFIXES:
        raise ValueError(f"{path}: cannot save as {suffix or 'no suffix'!r}; use one of {_SAVE_SUFFIXES}")
    arr = data
    if arr.dtype == np.float64:
        arr = arr.astype(np.float32)
    if arr.dtype == bool:
        arr = arr.astype(np.uint8)
    if calibration is None:
        calibration = Calibration.uncalibrated(arr.ndim)
    if calibration.ndim not in (arr.ndim, arr.ndim - 1):  # (colour data: R, G, B last)
        raise ValueError(f"{path}: a {calibration.ndim}-axis calibration for data of shape {arr.shape}")
    s = _signal(arr, calibration)
    s.metadata.General.title = title or path.stem
    if metadata and suffix != ".tif" and suffix != ".tiff":
        clean = {str(k): v for k, v in metadata.items() if isinstance(v, (str, int, float, bool))}
        s.metadata.set_item("General.mmdl", clean)
    path.parent.mkdir(parents=True, exist_ok=True)
    with _quiet_hyperspy(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        s.save(str(path), overwrite=overwrite)
    return path
