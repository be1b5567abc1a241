"""Damaged and degenerate inputs, made at run time from the real files of ../shared/data, and a
runner that puts each one through an entry point in a forked child under a time limit and a
memory cap.

Used by ``tests/test_fuzz_input.py`` (assertions) and ``benchmarks/bad_input.py`` (a table of
outcomes per entry point). Nothing here is copied into the repository: every case is written
into a temporary folder from the files of ``MMDL_SHARED_DATA`` (default ``../shared/data``).

Outcomes, per (case, entry point):

``clear``      an error of ours (``MMDLError``) or a CLI failure line that names the file and
               says what is wrong, or a result with a warning naming the damage;
``intact``     the damage did not change what was read (same shape, calibration, values or
               grain count as the undamaged file): nothing to say;
``declined``   the napari reader declined the file (napari's own reader is then used);
``upstream``   ``hs.load`` itself (HyperSpy's reader, before any code of this package runs) failed;
``unhelpful``  an error without the file name, with an empty reason, or a raw exception / traceback;
``silent``     a result that differs from the undamaged file's, or grains measured on bad
               values, without a word;
``hang``       over the time limit;
``memory``     over the memory cap (MemoryError, ENOMEM, killed).

Run as a script (``python tests/_bad_inputs.py OUT.json [--full] [--only ID,...]``) it writes the
outcomes as JSON; the parent process imports the heavy modules once and forks one child per case.
"""

from __future__ import annotations

import json
import os
import re
import resource
import shutil
import signal
import stat
import struct
import sys
import time
import traceback
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("MMDL_SHARED_DATA", ROOT.parent / "shared" / "data"))
RS = SHARED_DATA / "rosettasciio_dm_tiff"

ENTRIES = ("io", "napari", "analyze", "batch", "hyperspy")
ARRAY_ENTRIES = ("segment", "pipeline", "hyperspy_array")
OUTCOMES = ("clear", "intact", "declined", "upstream", "unhelpful", "silent", "hang", "memory")
CAP_BYTES = int(1.5 * 2**30)  # address space a case may add to the warmed interpreter
TIME_LIMIT = 90.0
DAMAGE_WORDS = ("truncat", "damag", "corrupt", "missing", "short", "inconsistent", "fewer", "nan", "inf",
                "constant", "not a regular file", "empty", "too small", "claims", "underflow", "not finite",
                "unit", "degenerate", "no finite", "non-finite", "declares", "extends past", "beyond")

# real sources (relative to SHARED_DATA) -> short names
SOURCES = {
    "fei16": "rosettasciio_dm_tiff/tiff/sem_FEI_Helios/FEI-Helios-Ebeam-16bits.tif",
    "zeiss1k": "rosettasciio_dm_tiff/tiff/sem_Zeiss/test_tiff_Zeiss_SEM_1k.tif",
    "ijstack": "rosettasciio_dm_tiff/tiff/test_loading_image_saved_with_imageJ_stack.tif",
    "dmstack_tif": "rosettasciio_dm_tiff/tiff/test_loading_image_saved_with_DM_stack.tif",
    "rgb_tif": "rosettasciio_dm_tiff/tiff/optical_Zeiss_AxioVision_RGB.tif",
    "nonsq_dm3": "ncempy_dm/dmTest_float32_nonSquare_diffPixelSize.dm3",
    "stack_dm4": "ncempy_dm/dmTest_3D_int16_64,65,66.dm4",
    "stack_dm3": "ncempy_dm/dmTest_3D_int16_64,65,66.dm3",
    "nonsq_dm4": "ncempy_dm/dmTest_float32_nonSquare_diffPixelSize.dm4",
    "haadf_dm3": "scifireaders_dm/SI-HAADF.dm3",
}
QUICK_FRACTIONS = (0.1, 0.5, 0.95)
FULL_FRACTIONS = (0.001, 0.01, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99)
GARBAGE_SUFFIXES = (".dm3", ".dm4", ".tif", ".tiff", ".emd", ".hspy", ".h5", ".mrc", ".ser", ".emi", ".blo",
                    ".sur", ".prz", ".png", ".jpg", ".bmp")


@dataclass
class Case:
    """One damaged input: a file made by ``make(folder)`` (or an array case), its undamaged source."""

    id: str
    kind: str  # "file" or "array"
    make: object = None  # folder -> Path (file cases) or () -> dict (array cases)
    source: str | None = None  # SOURCES key (or a generated control's id) to compare with
    damaged: bool = True
    quick: bool = False
    entries: tuple = ENTRIES
    note: str = ""
    expect: dict = field(default_factory=dict)


# ----------------------------------------------------------------------------- making files
def _src(key: str) -> Path:
    return SHARED_DATA / SOURCES[key]


def _copy(key: str, folder: Path, name: str) -> Path:
    out = folder / name
    shutil.copyfile(_src(key), out)
    return out


def _truncated(key: str, keep, name: str):
    def make(folder: Path) -> Path:
        src = _src(key) if key in SOURCES else GENERATED[key](folder)
        data = src.read_bytes()
        n = keep(len(data))
        out = folder / name
        out.write_bytes(data[:n])
        return out
    return make


def _tiff_tag_patch(key: str, patches: dict, name: str, page: int = 0):
    """Set TIFF tags of page ``page`` to new values (LONG where the value needs it)."""
    def make(folder: Path) -> Path:
        import tifffile

        out = _copy(key, folder, name) if key in SOURCES else _gen_copy(key, folder, name)
        with tifffile.TiffFile(out) as tif:
            bo = tif.byteorder
            tags = tif.pages[page].tags
            where = {code: (tags[code].valueoffset, tags[code].dtype) for code in patches}
        with open(out, "r+b") as fh:
            for code, value in patches.items():
                off, dt = where[code]
                if value > 0xFFFF or int(dt) == 4:
                    fh.seek(off - 6)
                    fh.write(struct.pack(bo + "H", 4))
                    fh.seek(off)
                    fh.write(struct.pack(bo + "I", value))
                else:
                    fh.seek(off)
                    fh.write(struct.pack(bo + "H", value))
        return out
    return make


def _imagej_images_patch(key: str, images: int, name: str):
    def make(folder: Path) -> Path:
        out = _copy(key, folder, name) if key in SOURCES else _gen_copy(key, folder, name)
        data = bytearray(out.read_bytes())
        m = re.search(rb"images=(\d+)", data)
        new = f"images={images}".encode()
        old = m.group(0)
        if len(new) > len(old):  # keep the length: eat the following newline-separated key's padding
            raise ValueError("longer replacement")
        data[m.start():m.end()] = new + b" " * (len(old) - len(new))
        out.write_bytes(bytes(data))
        return out
    return make


def dm_dimension_offsets(path: Path):
    """``[(offset, etype, value)]`` of the ImageData Dimensions values of the largest image, and the endian."""
    from rsciio.digitalmicrograph._api import DigitalMicrographReader

    class Recorder(DigitalMicrographReader):
        def __init__(self, f):
            super().__init__(f)
            self.stack, self.found, self.name = [], [], None

        def parse_tags(self, ntags, group_name="root", group_dict=None):
            self.stack.append(group_name)
            try:
                return super().parse_tags(ntags, group_name, group_dict)
            finally:
                self.stack.pop()

        def read_simple_data(self, etype):
            pos = self.f.tell()
            value = super().read_simple_data(etype)
            if len(self.stack) >= 2 and self.stack[-1] == "Dimensions" and self.stack[-2] == "ImageData":
                self.found.append((len(self.found), pos, etype, value))
            return value

    with open(path, "rb") as fh:
        r = Recorder(fh)
        r.parse_file()
    # group the dimensions per image: consecutive runs; take the run with the largest product
    runs, run = [], []
    last = None
    for _, pos, et, v in r.found:
        if last is not None and pos - last > 64:
            runs.append(run)
            run = []
        run.append((pos, et, v))
        last = pos
    runs.append(run)
    best = max(reversed(runs), key=lambda rr: int(np.prod([v for _, _, v in rr])))  # the last: not a thumbnail
    return best, r.endian


def _dm_dims_patch(key: str, new_dims: dict, name: str):
    """Patch Dimensions values (index -> value) of the largest image of a DM file."""
    def make(folder: Path) -> Path:
        out = _copy(key, folder, name)
        dims, endian = dm_dimension_offsets(out)
        e = "<" if endian == "little" else ">"
        fmt = {2: "h", 3: "i", 4: "H", 5: "I", 11: "q", 12: "Q"}
        with open(out, "r+b") as fh:
            for i, value in new_dims.items():
                pos, et, _ = dims[i if i >= 0 else len(dims) + i]
                fh.seek(pos)
                fh.write(struct.pack(e + fmt[et], value))
        return out
    return make


def _garbage(suffix: str, n: int = 4096, fill: bytes | None = None, seed: int = 0):
    def make(folder: Path) -> Path:
        out = folder / f"garbage{suffix}"
        if fill is not None:
            out.write_bytes(fill * n)
        else:
            out.write_bytes(np.random.default_rng(seed).integers(0, 256, n, dtype=np.uint8).tobytes())
        return out
    return make


def _fifo(folder: Path) -> Path:
    out = folder / "pipe.tif"
    os.mkfifo(out)
    return out


def _device(folder: Path) -> Path:
    out = folder / "zero.dm3"
    os.symlink("/dev/zero", out)
    return out


def _zero_by_zero_tif(folder: Path) -> Path:
    return _tiff_tag_patch("fei16", {256: 0, 257: 0}, "zero_by_zero.tif")(folder)


# generated controls (written with the package's own writer from real data)
def _gen_stack300(folder: Path) -> Path:
    out = folder / "stack300.tif"
    if not out.exists():
        import tifffile

        base = tifffile.imread(_src("zeiss1k"))[:64, :64]
        data = np.stack([np.roll(base, 3 * i, axis=1) for i in range(300)]).astype(np.uint8)
        from hyperspy_mmdl.calibration import Calibration
        from hyperspy_mmdl.io import save

        save(out, data, Calibration.from_pixel_size(12.5, "nm").with_frames())
    return out


def _gen_zspy(folder: Path) -> Path:
    out = folder / "stack.zspy"
    if not out.exists():
        import hyperspy.api as hs
        import tifffile

        base = tifffile.imread(_src("zeiss1k"))[:128, :128]
        s = hs.signals.Signal2D(np.stack([base, base[::-1], base[:, ::-1]]))
        for ax in s.axes_manager.signal_axes:
            ax.scale, ax.units = 5.0, "nm"
        s.save(str(out), chunks=(1, 64, 64), overwrite=True)
    return out


GENERATED = {"stack300": _gen_stack300, "zspy": _gen_zspy}


def _gen_copy(key: str, folder: Path, name: str) -> Path:
    src = GENERATED[key](folder)
    out = folder / name
    shutil.copyfile(src, out)
    return out


def _zspy_missing_chunk(folder: Path) -> Path:
    src = _gen_zspy(folder)
    out = folder / "missing_chunk.zspy"
    shutil.copytree(src, out)
    data = next(p for p in out.rglob("data") if p.is_dir())
    chunks = sorted(p for p in data.rglob("*") if p.is_file() and not p.name.startswith("."))
    chunks[len(chunks) // 2].unlink()
    return out


def _value_tif(kind: str):
    """Float TIFFs of real data with bad values (NaN, Inf, offsets, constant, degenerate shapes)."""
    def make(folder: Path) -> Path:
        import tifffile

        from hyperspy_mmdl.calibration import Calibration
        from hyperspy_mmdl.io import save

        base = tifffile.imread(_src("zeiss1k"))[:400, :400].astype(np.float64)
        rng = np.random.default_rng(7)
        data = _value_array(kind, base, rng)
        out = folder / f"values_{kind}.tif"
        save(out, data.astype(np.float32), Calibration.from_pixel_size(20, "nm"))
        return out
    return make


def _value_array(kind: str, base: np.ndarray, rng) -> np.ndarray:
    if kind == "nan10":
        out = base.copy()
        out[rng.random(base.shape) < 0.10] = np.nan
        return out
    if kind == "inf":
        out = base.copy()
        out[rng.random(base.shape) < 0.01] = np.inf
        return out
    if kind == "allnan":
        return np.full(base.shape, np.nan)
    if kind == "constant":
        return np.full(base.shape, 7.0)
    if kind == "offset1e10":
        return base + 1e10
    if kind == "scale1e300":
        return base * 1e300
    if kind == "1x256":
        return base[:1, :256]
    if kind == "3x300":
        return base[:3, :300]
    if kind == "2x2":
        return base[:2, :2]
    if kind == "1x1":
        return base[:1, :1]
    if kind == "0x0":
        return base[:0, :0]
    if kind == "0x5":
        return base[:0, :5]
    if kind == "clean":
        return base
    raise ValueError(kind)


VALUE_KINDS_FILE = ("nan10", "inf", "allnan", "constant", "1x256", "3x300", "2x2")
VALUE_KINDS_ARRAY = ("nan10", "inf", "allnan", "constant", "offset1e10", "scale1e300", "1x256", "3x300", "2x2",
                     "1x1", "0x0", "0x5", "tinypixel", "badunit")


def make_cases(full: bool = False) -> list[Case]:
    """Every case (``full``) or the representative sample of the default test run."""
    cases: list[Case] = []
    fractions = FULL_FRACTIONS if full else QUICK_FRACTIONS
    # controls: the undamaged files, to tell "intact" from "silent"
    for key in SOURCES:
        cases.append(Case(f"control-{key}", "file", lambda f, k=key: _copy(k, f, Path(SOURCES[k]).name),
                          source=key, damaged=False, quick=True))
    for key in GENERATED:
        cases.append(Case(f"control-{key}", "file", GENERATED[key], source=key, damaged=False, quick=True))
    cases.append(Case("control-values", "file", _value_tif("clean"), source="values", damaged=False, quick=True))
    # truncations
    for key in list(SOURCES) + ["stack300"]:
        suffix = Path(SOURCES[key]).suffix if key in SOURCES else ".tif"
        for fr in fractions:
            quick = fr == 0.5 or (fr == 0.95 and key in ("fei16", "ijstack", "stack_dm4"))
            cases.append(Case(f"trunc{fr:g}-{key}", "file",
                              _truncated(key, lambda n, fr=fr: max(1, int(n * fr)), f"trunc_{key}{suffix}"),
                              source=key, quick=quick))
        cases.append(Case(f"trunc-last-byte-{key}", "file", _truncated(key, lambda n: n - 1, f"cut1_{key}{suffix}"),
                          source=key, quick=key in ("fei16", "nonsq_dm3")))
    cases.append(Case("trunc-half-zspy-chunk", "file", _zspy_missing_chunk, source="zspy", quick=True))
    # patched headers
    cases += [
        Case("tiff-60000x60000-fei16", "file", _tiff_tag_patch("fei16", {256: 60000, 257: 60000}, "huge_fei.tif"),
             source="fei16", quick=True),
        Case("tiff-1e9-rows-zeiss", "file", _tiff_tag_patch("zeiss1k", {257: 10**9}, "tall_zeiss.tif"),
             source="zeiss1k", quick=True),
        Case("tiff-0x0-fei16", "file", _zero_by_zero_tif, source="fei16", quick=True),
        Case("tiff-width-1-fei16", "file", _tiff_tag_patch("fei16", {256: 1}, "thin_fei.tif"), source="fei16"),
        Case("ij-images-9-ijstack", "file", _imagej_images_patch("ijstack", 9, "ij_images9.tif"),
             source="ijstack", quick=True),
        Case("dm3-10x10-nonsq", "file", _dm_dims_patch("nonsq_dm3", {0: 10, 1: 10}, "dims10.dm3"),
             source="nonsq_dm3", quick=True),
        Case("dm4-1e6-frames", "file", _dm_dims_patch("stack_dm4", {-1: 10**6}, "frames1e6.dm4"),
             source="stack_dm4", quick=True),
        Case("dm3-60000x60000-nonsq", "file", _dm_dims_patch("nonsq_dm3", {0: 60000, 1: 60000}, "huge.dm3"),
             source="nonsq_dm3", quick=True),
        Case("dm3-frames-1e6", "file", _dm_dims_patch("stack_dm3", {-1: 10**6}, "frames1e6.dm3"),
             source="stack_dm3"),
        Case("dm4-0-rows", "file", _dm_dims_patch("nonsq_dm4", {0: 0}, "rows0.dm4"), source="nonsq_dm4"),
    ]
    # garbage under every extension
    for suffix in GARBAGE_SUFFIXES:
        cases.append(Case(f"garbage{suffix}", "file", _garbage(suffix), quick=suffix in (".tif", ".dm3", ".emi",
                                                                                         ".mrc")))
    cases.append(Case("nul-filled.mrc", "file", _garbage(".mrc", 1 << 16, fill=b"\0"), quick=True))
    cases.append(Case("nul-filled.dm4", "file", _garbage(".dm4", 1 << 12, fill=b"\0")))
    cases.append(Case("fifo.tif", "file", _fifo, quick=True))
    cases.append(Case("device.dm3", "file", _device, quick=True))
    # bad values in real-data files
    for kind in VALUE_KINDS_FILE:
        cases.append(Case(f"values-{kind}", "file", _value_tif(kind), source="values",
                          quick=kind in ("nan10", "constant", "1x256", "allnan")))
    # arrays given to segment / the pipeline / the HyperSpy methods
    for kind in VALUE_KINDS_ARRAY:
        cases.append(Case(f"array-{kind}", "array", kind, source="array-clean", entries=ARRAY_ENTRIES,
                          quick=kind in ("nan10", "inf", "allnan", "constant", "offset1e10", "scale1e300",
                                         "1x256", "0x0", "2x2", "tinypixel", "badunit")))
    cases.append(Case("control-array-clean", "array", "clean", source="array-clean", damaged=False,
                      entries=ARRAY_ENTRIES, quick=True))
    return cases if full else [c for c in cases if c.quick]


# ----------------------------------------------------------------------------- entry points
def _frames_of(data):
    if data.ndim <= 2 or (data.ndim == 3 and data.shape[-1] in (3, 4) and data.shape[0] > 4):
        return [data]
    flat = data.reshape((-1,) + tuple(data.shape[-2:]))
    return [flat[0], flat[flat.shape[0] - 1]] if flat.shape[0] > 1 else [flat[0]]


def _digest(arrays) -> str:
    import hashlib

    h = hashlib.sha1()
    for a in arrays:
        a = np.ascontiguousarray(np.asarray(a))
        h.update(str(a.shape).encode())
        h.update(a.tobytes()[: 1 << 22])
    return h.hexdigest()[:12]


def entry_io(path: Path, work: Path) -> dict:
    from hyperspy_mmdl.io import load

    img = load(path)
    res = {"shape": list(img.data.shape), "calibration": img.calibration.describe() if img.calibration.ndim >= 2
           else "", "calibrated": img.calibration.is_calibrated if img.calibration.ndim >= 2 else False,
           "digest": _digest([img.data])}
    lazy = load(path, lazy=True)
    frames = [np.asarray(f.compute() if hasattr(f, "compute") else f) for f in _frames_of(lazy.data)]
    res["lazy_shape"] = list(lazy.data.shape)
    res["lazy_digest"] = _digest(frames)
    return res


def entry_napari(path: Path, work: Path) -> dict:
    from napari_mmdl._reader import get_reader

    reader = get_reader(str(path))
    if reader is None:
        return {"declined": True}
    layers = reader(str(path))
    data, kw, _ = layers[0]
    frames = [np.asarray(f.compute() if hasattr(f, "compute") else f) for f in _frames_of(data)]
    return {"shape": list(data.shape), "scale": [float(s) for s in kw.get("scale", ())],
            "digest": _digest(frames)}


def entry_analyze(path: Path, work: Path) -> dict:
    import contextlib
    import io as _io

    from hyperspy_mmdl.cli import main

    out, err = _io.StringIO(), _io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(["analyze", str(path), "--out", str(work / "report")])
    grains = re.findall(r": (\d+) grains?\b", out.getvalue())
    return {"rc": rc, "stdout": out.getvalue()[-3000:], "stderr": err.getvalue()[-3000:],
            "n_grains": [int(g) for g in grains]}


def entry_batch(path: Path, work: Path) -> dict:
    import contextlib
    import io as _io

    from hyperspy_mmdl.cli import main

    out, err = _io.StringIO(), _io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(["batch", str(path), "--out", str(work / "batch")])
    res = {"rc": rc, "stdout": out.getvalue()[-3000:], "stderr": err.getvalue()[-3000:]}
    mf = work / "batch" / "manifest.json"
    if mf.is_file():
        m = json.loads(mf.read_text())
        items = m.get("items", [])
        res["items"] = [{k: it.get(k) for k in ("status", "error", "notes", "frame")} for it in items][:20]
        res["n_items"] = len(items)
        res["inputs"] = [{k: e.get(k) for k in ("status", "error", "notes", "shape")}
                         for e in m.get("inputs", m.get("plan", []))][:5]
        try:
            from hyperspy_mmdl.batch import read_results

            grains, frames, _ = read_results(work / "batch")
            res["n_grains"] = [int(v) for v in frames.get("n_grains", [])]
        except Exception as e:  # noqa: BLE001 - recorded: reading the outputs back failed
            res["read_back_error"] = f"{type(e).__name__}: {e}"
    return res


def entry_hyperspy(path: Path, work: Path) -> dict:
    import hyperspy.api as hs

    try:
        s = hs.load(str(path), signal_type="microstructure")
    except Exception as err:  # noqa: BLE001 - HyperSpy's own reader (rosettasciio), not this package
        return {"upstream": f"{type(err).__name__}: {err}"[:300]}
    if isinstance(s, list):
        s = [x for x in s if getattr(x, "_signal_type", "") == "microstructure"]
        if not s:
            return {"upstream": "hs.load returned no microstructure signal"}
        s = s[0]
    lab = s.segment_grains()
    data = np.asarray(lab.data)
    n = [int(np.unique(f[f > 0]).size) for f in (data.reshape((-1,) + data.shape[-2:]))][:5]
    return {"shape": list(s.data.shape), "n_grains": n}


FILE_ENTRY = {"io": entry_io, "napari": entry_napari, "analyze": entry_analyze, "batch": entry_batch,
              "hyperspy": entry_hyperspy}


def _array_case(kind: str):
    """``(image, calibration)`` of an array case."""
    from hyperspy_mmdl.calibration import Calibration
    from hyperspy_mmdl.synthetic import polycrystal

    s = polycrystal(shape=(192, 192), pixel_size=10, unit="nm", mean_ecd=250, seed=1)
    base = np.asarray(s.image, dtype=np.float64)
    rng = np.random.default_rng(5)
    if kind == "tinypixel":
        return base, ("pixel", 1e-300, "nm")
    if kind == "badunit":
        return base, ("pixel", 10.0, "furlong-ish")
    return _value_array(kind, base, rng), ("pixel", 10.0, "nm")


def _calibration(spec):
    from hyperspy_mmdl.calibration import Calibration

    _, size, unit = spec
    return Calibration.from_pixel_size(size, unit)


def entry_array(kind: str, entry: str) -> dict:
    image, spec = _array_case(kind)
    nonfinite = ~np.isfinite(image) if image.size else np.zeros(image.shape, bool)
    cal = _calibration(spec)
    if entry == "segment":
        from hyperspy_mmdl.grains.segment import segment

        labels = np.asarray(segment(image, cal))
        res = {}
    elif entry == "pipeline":
        from hyperspy_mmdl.pipeline import analyze_frame

        fa = analyze_frame(image, cal)
        labels = fa.labels
        res = {"notes": list(fa.notes), "areas_zero": bool(len(fa.table) and (fa.table["area"] == 0).all())}
    else:
        from hyperspy_mmdl.io import _signal

        sig = _signal(np.asarray(image), cal)
        labels = np.asarray(sig.segment_grains().data)
        res = {}
    res["n_grains"] = int(np.unique(labels[labels > 0]).size)
    res["grain_on_bad_pixel"] = bool(nonfinite.any() and (labels[nonfinite] > 0).any())
    return res


# ----------------------------------------------------------------------------- running one case
def _memory_text(text: str) -> bool:
    t = text.lower()
    return any(w in t for w in ("memoryerror", "unable to allocate", "cannot allocate memory", "bad_alloc",
                                "out of memory", "arraymemoryerror"))


def run_in_child(case: Case, entry: str, folder: Path, timeout: float = TIME_LIMIT, cap: int = CAP_BYTES) -> dict:
    """Fork; in the child set RLIMIT_AS (current size + ``cap``), build the input, run the entry point."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        os.close(r)
        out = {"entry": entry, "case": case.id}
        try:
            vm = _vmsize()
            resource.setrlimit(resource.RLIMIT_AS, (vm + cap, vm + cap))
            work = folder / f"work-{case.id}-{entry}"
            work.mkdir(parents=True, exist_ok=True)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                if case.kind == "file":
                    path = case.make(work)
                    out["path"] = str(path)
                    out["result"] = FILE_ENTRY[entry](path, work)
                else:
                    out["result"] = entry_array(case.make, entry)
            out["status"] = "ok"
        except BaseException as err:  # noqa: BLE001 - every failure is the observation
            out["status"] = "error"
            out["error_type"] = type(err).__name__
            out["error_mro"] = [c.__name__ for c in type(err).__mro__]
            out["message"] = str(err)[:2000]
            out["traceback"] = traceback.format_exc()[-2000:]
        finally:
            out["warnings"] = [str(x.message)[:500] for x in locals().get("caught", [])][:30]
            data = json.dumps(out, default=str).encode()
            os.write(w, data)
            os.close(w)
            os._exit(0)
    os.close(w)
    chunks = []
    t0 = time.monotonic()
    import select

    os.set_blocking(r, False)
    status = None
    while True:
        ready, _, _ = select.select([r], [], [], 0.2)
        if ready:
            try:
                b = os.read(r, 1 << 16)
            except BlockingIOError:
                b = None
            if b:
                chunks.append(b)
                continue
            if b == b"":
                break
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            try:
                while True:
                    b = os.read(r, 1 << 16)
                    if not b:
                        break
                    chunks.append(b)
            except BlockingIOError:
                pass
            break
        if time.monotonic() - t0 > timeout:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            os.close(r)
            return {"entry": entry, "case": case.id, "status": "hang", "seconds": timeout}
    os.close(r)
    if status is None:
        _, status = os.waitpid(pid, 0)
    try:
        out = json.loads(b"".join(chunks).decode())
    except ValueError:
        sig = os.WTERMSIG(status) if os.WIFSIGNALED(status) else None
        out = {"entry": entry, "case": case.id, "status": "killed", "signal": sig}
    out["seconds"] = round(time.monotonic() - t0, 2)
    return out


def _vmsize() -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    return 0


# ----------------------------------------------------------------------------- classification
def _names_file(text: str, path: str | None) -> bool:
    if not path:
        return True
    return path in text or Path(path).name in text


def _reason_after_name(text: str, path: str | None) -> str:
    if path and path in text:
        return text.split(path, 1)[1].strip(" :'\"")
    if path and Path(path).name in text:
        return text.split(Path(path).name, 1)[1].strip(" :'\"")
    return text


def _helpful(text: str, path: str | None) -> bool:
    reason = _reason_after_name(text, path)
    return _names_file(text, path) and len(re.findall(r"[A-Za-z]{2,}", reason)) >= 3 and "Traceback" not in text


def _damage_word(texts) -> bool:
    return any(any(w in t.lower() for w in DAMAGE_WORDS) for t in texts)


def classify(out: dict, control: dict | None, case: Case) -> str:
    """One of :data:`OUTCOMES` for a run (see the module docstring)."""
    st = out.get("status")
    if st == "hang":
        return "hang"
    if st == "killed":
        return "memory" if out.get("signal") in (9, None) else "unhelpful"
    text = " ".join([out.get("message", ""), out.get("traceback", "")[-300:] if st == "error" else ""])
    if st == "error":
        if _memory_text(out.get("error_type", "") + " " + out.get("message", "")):
            return "memory"
        ours = "MMDLError" in out.get("error_mro", []) or out.get("error_type") in ("ValueError",) and case.kind == "array"
        return "clear" if ours and _helpful(out.get("message", ""), out.get("path")) else "unhelpful"
    res = out.get("result", {})
    path = out.get("path")
    warns = out.get("warnings", [])
    entry = out["entry"]
    if entry in ("analyze", "batch"):
        streams = res.get("stdout", "") + res.get("stderr", "")
        if _memory_text(streams):
            return "memory"
        if "Traceback" in streams:
            return "unhelpful"
        failed_items = [it for it in res.get("items", []) if it.get("status") == "error"]
        failed = res.get("rc") not in (0, None) or failed_items
        if entry == "batch" and res.get("read_back_error"):
            return "clear" if _helpful(res["read_back_error"], path) else "unhelpful"
        if failed:
            errs = [it.get("error") or "" for it in failed_items] + [e.get("error") or "" for e in
                                                                      res.get("inputs", []) if e.get("error")]
            lines = [ln for ln in res.get("stderr", "").splitlines()
                     if ln.startswith("failed:") or "error:" in ln]  # not the "N of M file(s) failed" tally
            msgs = errs or lines
            if not msgs:
                return "unhelpful"
            if any(_memory_text(m) for m in msgs):
                return "memory"
            return "clear" if all(_helpful(m, path) for m in msgs) else "unhelpful"
        notes = [n for it in res.get("items", []) for n in (it.get("notes") or [])]
        texts = [res.get("stderr", "")] + notes + warns
    else:
        texts = warns + list(res.get("notes", []))
    if res.get("declined"):
        return "declined"
    if res.get("upstream"):
        return "memory" if _memory_text(res["upstream"]) else "upstream"
    warned = _damage_word([t for t in texts if case.kind == "array" or _names_file(t, path)
                           or entry in ("analyze", "batch")])
    if case.kind == "array":
        bad_grains = res.get("grain_on_bad_pixel") or res.get("areas_zero")
        if warned and not bad_grains:
            return "clear"
        ref = (control or {}).get("result", {})
        if not case.damaged:
            return "intact"
        if case.make in ("offset1e10", "scale1e300") and ref.get("n_grains") and not bad_grains:
            return "intact" if abs(res.get("n_grains", 0) - ref["n_grains"]) <= 0.1 * ref["n_grains"] else "silent"
        return "silent"
    if warned and case.damaged:
        return "clear"
    if case.id.startswith("values-") and entry in ("io", "napari"):
        return "intact"  # reading bad values is right: they are judged where the analysis starts
    if control is not None and control.get("status") == "ok":
        ref = control.get("result", {})
        keys = {"io": ("shape", "calibration", "digest", "lazy_shape", "lazy_digest"),
                "napari": ("shape", "scale", "digest", "declined"), "analyze": ("n_grains",),
                "batch": ("n_grains",), "hyperspy": ("shape", "n_grains")}[entry]
        if all(res.get(k) == ref.get(k) for k in keys):
            return "intact"
    return "silent" if case.damaged else "intact"


def reclassify(records: list[dict]) -> list[dict]:
    """Outcomes computed again (after a change of :func:`classify`) from stored records."""
    every = {c.id: c for c in make_cases(full=True)}
    controls = {(every[r["case"]].source, r["entry"]): r for r in records if not r.get("damaged", True)}
    for r in records:
        case = every[r["case"]]
        r["outcome"] = classify(r, controls.get((case.source, r["entry"])), case)
    return records


def run_all(cases: list[Case], folder: Path, entries=None, log=None) -> list[dict]:
    """Every (case, entry) in forked children; controls first; each record gets its ``outcome``."""
    log = log or (lambda _m: None)
    controls = {}
    records = []
    ordered = sorted(cases, key=lambda c: c.damaged)
    for case in ordered:
        for entry in case.entries:
            if entries and entry not in entries:
                continue
            out = run_in_child(case, entry, folder)
            if not case.damaged:
                controls[(case.source, entry)] = out
            ctrl = controls.get((case.source, entry))
            out["outcome"] = classify(out, ctrl, case)
            out["damaged"] = case.damaged
            records.append(out)
            log(f"{case.id:34s} {entry:15s} {out['outcome']:9s} {out.get('seconds', '')}s "
                f"{(out.get('message') or '')[:100]}")
    return records


def _preimport():
    import hyperspy.api  # noqa: F401
    import napari_mmdl._reader  # noqa: F401
    import rsciio.digitalmicrograph._api  # noqa: F401
    import tifffile  # noqa: F401

    import hyperspy_mmdl.batch  # noqa: F401
    import hyperspy_mmdl.cli  # noqa: F401
    import hyperspy_mmdl.cli.analyze  # noqa: F401
    import hyperspy_mmdl.cli.batch  # noqa: F401
    import hyperspy_mmdl.grains.segment  # noqa: F401
    import hyperspy_mmdl.io  # noqa: F401
    import hyperspy_mmdl.pipeline  # noqa: F401
    import hyperspy_mmdl.report  # noqa: F401
    import hyperspy_mmdl.signals  # noqa: F401


def main(argv=None) -> int:
    import argparse
    import tempfile

    p = argparse.ArgumentParser()
    p.add_argument("out")
    p.add_argument("--full", action="store_true")
    p.add_argument("--only", default="")
    p.add_argument("--entries", default="")
    p.add_argument("--verbose", action="store_true")
    p.add_argument("--plan", default="", help="JSON file: {case id: [entry, ...]}; no controls are run")
    a = p.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    _preimport()
    cases = make_cases(full=a.full)
    if a.only:
        want = set(a.only.split(","))
        picked = [c for c in cases if c.id in want]
        sources = {c.source for c in picked}
        cases = picked + [c for c in cases if not c.damaged and c.source in sources]
    entries = tuple(a.entries.split(",")) if a.entries else None
    if a.plan:
        plan = json.loads(Path(a.plan).read_text())
        every = {c.id: c for c in make_cases(full=True)}
        cases = []
        for cid, ents in plan.items():
            c = every[cid]
            c.entries = tuple(ents)
            cases.append(c)
    with tempfile.TemporaryDirectory(prefix="mmdl-bad-") as tmp:
        records = run_all(cases, Path(tmp), entries,
                          log=(lambda m: print(m, file=sys.stderr, flush=True)) if a.verbose else None)
    Path(a.out).write_text(json.dumps(records, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "tests"))
    sys.exit(main())
