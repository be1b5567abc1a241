"""hyperspy_mmdl.io: real DM/TIFF files, bad input, conversions, save round trips, HyperSpy signal types."""

from __future__ import annotations

import concurrent.futures
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
from _real_files import expected_image, observed, real_files

from hyperspy_mmdl.calibration import Calibration, convert_length, normalize_unit
from hyperspy_mmdl.io import Image, MicrographReadError, load, load_signal, save

OBSERVED = observed()


def _load_quiet(path, **kwargs) -> Image:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load(path, **kwargs)


def _in_unit(value, unit_from, unit_to):
    a, b = normalize_unit(unit_from), normalize_unit(unit_to)
    return value if a == b else convert_length(value, a, b)


def check_against_observed(path, shape, cal):
    """Shape, scales, offsets and units equal rosettasciio's observation (units converted)."""
    signals = OBSERVED[path]
    exp = expected_image(signals)
    assert exp is not None
    assert tuple(shape) == exp.shape
    assert cal.ndim == len(exp.axes)
    for i, ax in enumerate(exp.axes):
        unit = normalize_unit(ax.get("units") or "")
        if unit == "px":
            assert cal.units[i] == "px", (i, cal)
            assert cal.scale[i] == pytest.approx(ax["scale"], rel=1e-6)
        else:
            assert _in_unit(cal.scale[i], cal.units[i], unit) == pytest.approx(ax["scale"], rel=1e-6)
            assert _in_unit(cal.offset[i], cal.units[i], unit) == pytest.approx(ax["offset"], rel=1e-6, abs=1e-12)
        assert cal.navigate[i] == (i < cal.ndim - 2)


@pytest.mark.parametrize("path", real_files())
def test_real_file(path):
    signals = OBSERVED.get(path)
    assert signals, f"{path} is not in the observed_rsciio-0.15.0_axes.csv table"
    if expected_image(signals) is None:
        with pytest.raises(MicrographReadError) as info:
            load(path)
        msg = str(info.value)
        assert path.name in msg and "not an image" in msg
        assert "spectrum" in msg or "1-D" in msg
        return
    img = _load_quiet(path)
    # colour stays colour: R, G, B on a last axis the calibration does not describe
    check_against_observed(path, img.data.shape[:-1] if img.rgb else img.data.shape, img.calibration)
    assert img.data.dtype.kind in "uif"
    assert not img.rgb or img.data.shape[-1] == 3
    assert img.title
    assert img.calibration.names[-2:] == ("y", "x")


def test_at_least_100_real_files():
    params = [p for p in real_files() if p.values[0] is not None]
    if not params:
        pytest.skip("real test data not available")
    assert len(params) >= 100


# ----------------------------------------------------------------------------- upstream assertions
def test_upstream_values(shared):
    d = shared("rosettasciio_dm_tiff")
    img = _load_quiet(d / "tiff" / "sem_FEI_Helios" / "FEI-Helios-Ebeam-8bits.tif")
    assert img.data.shape == (471, 512) and img.data.dtype == np.uint8
    assert img.calibration.pixel_size_in("µm") == pytest.approx((3.3724, 3.3724), rel=1e-5)
    assert img.metadata["beam_energy"] == pytest.approx(5.0)
    img = _load_quiet(d / "tiff" / "sem_Zeiss" / "test_tiff_Zeiss_SEM_1k.tif")
    assert img.calibration.pixel_size_in("µm") == pytest.approx((2.614514, 2.614514), rel=1e-6)
    assert img.metadata["instrument"] == "Merlin-61-08"
    img = _load_quiet(d / "tiff" / "sem_Zeiss" / "test_tiff_Zeiss_SEM_512pix.tif")
    assert img.calibration.pixel_size == pytest.approx((11.649976, 11.649976), rel=1e-6)
    img = _load_quiet(d / "tiff" / "sem_FEI_Helios" / "FEI-Helios-navcam.tif")
    assert img.calibration.pixel_size_in("mm")[1] == pytest.approx(0.2640, rel=1e-3)
    img = _load_quiet(d / "tiff" / "test_loading_image_saved_with_DM.tif")
    assert img.calibration.unit == "µm"
    assert img.calibration.offset == pytest.approx((128.19276, 139.66264), rel=1e-6)
    img = _load_quiet(d / "tiff" / "test_loading_image_saved_with_DM_stack.tif")
    cal = img.calibration
    assert img.data.shape == (2, 68, 68)
    assert cal.units == ("s", "µm", "µm") and cal.navigate == (True, False, False)
    assert cal.scale == pytest.approx((2.5, 1.68674, 0.16867), abs=1e-5)
    assert not cal.is_square
    img = _load_quiet(d / "tiff" / "test_dm_image_um_unit.dm3")
    assert img.calibration.units == ("µm", "µm")
    assert img.calibration.pixel_size == pytest.approx((0.16867, 0.16867), abs=1e-5)
    assert img.metadata["beam_energy"] == pytest.approx(200)


def test_multi_signal_picks_the_image(shared):
    path = shared("rosettasciio_dm_tiff", "digitalmicrograph", "2D", "multi_signal.dm3")
    with pytest.warns(UserWarning, match="holds 2 signals; using signal 0"):
        img = load(path)
    assert img.data.shape == (512, 512) and int(img.data.sum()) == 949490255
    assert img.title == "HAADF"
    assert img.calibration.pixel_size == pytest.approx((0.0177516, 0.0177516), rel=1e-5)
    assert img.metadata["n_signals"] == 2 and img.metadata["signal_index"] == 0
    assert img.metadata["beam_energy"] == pytest.approx(300)
    with pytest.raises(MicrographReadError, match="signal 1 holds a 1-D spectrum"):
        load(path, index=1)
    with pytest.raises(MicrographReadError, match="out of range"):
        load(path, index=5)


def test_olympus_prefers_calibrated_raw_data(shared):
    path = shared("rosettasciio_dm_tiff", "tiff", "olympus_SIS.tif")
    with pytest.warns(UserWarning, match="using signal 1"):
        img = load(path)
    assert img.data.dtype == np.uint16
    assert img.calibration.pixel_size_in("m")[0] == pytest.approx(2.3928e-11, rel=1e-6)
    rgb = _load_quiet(path, index=0)  # the colour preview: kept in colour (R, G, B last)
    assert rgb.rgb and rgb.data.dtype == np.uint8 and rgb.data.shape == (101, 112, 3)
    assert rgb.calibration.ndim == 2 and not rgb.is_stack


def test_ncempy_non_square_and_3d(shared):
    img = _load_quiet(shared("ncempy_dm", "dmTest_float32_nonSquare_diffPixelSize.dm4"))
    assert img.data.shape == (64, 128)
    assert img.calibration.units == ("nm", "nm")  # Å × nm in the file: one readable unit
    assert img.calibration.pixel_size == pytest.approx((0.2, 1.0))
    assert not img.calibration.is_square
    img = load(shared("ncempy_dm", "dmTest_3D_int16_64,65,66.dm4"), lazy=True)
    assert img.is_lazy and img.is_stack and img.data.shape == (66, 65, 64)
    assert img.calibration.scale == pytest.approx((4.0, 3.0, 0.002))  # nm × pm in the file: nm
    assert img.calibration.units == ("µm", "nm", "nm")
    assert img.calibration.navigate == (True, False, False)
    eager = _load_quiet(shared("ncempy_dm", "dmTest_3D_int16_64,65,66.dm4"), lazy=None)
    assert not eager.is_lazy  # small file: auto is eager
    np.testing.assert_array_equal(np.asarray(img.data[3]), eager.data[3])


def test_dtype_conversions(shared):
    d = shared("rosettasciio_dm_tiff", "digitalmicrograph", "2D")
    with pytest.warns(UserWarning, match="alpha channel is dropped"):
        rgba = load(d / "test-8.dm4", lazy=True)  # RGBA cannot be read lazily: read eagerly
    assert rgba.rgb and rgba.data.dtype == np.uint8 and rgba.data.shape == (2, 2, 3)
    assert "RGBA" in rgba.metadata["conversion"]
    with pytest.warns(UserWarning, match="magnitude"):
        cplx = load(d / "test-3.dm4")
    assert cplx.data.dtype == np.float32
    np.testing.assert_allclose(cplx.data.ravel(), np.arange(1, 5), rtol=1e-6)  # data 1..4 + 0j
    with pytest.warns(UserWarning, match="uint8"):
        b = load(d / "test-14.dm4")
    assert b.data.dtype == np.uint8 and set(np.unique(b.data)) <= {0, 1}
    with pytest.warns(UserWarning, match="pixel units"):
        u = load(d / "test-1.dm4")
    assert u.calibration.units == ("px", "px") and not u.calibration.is_calibrated
    np.testing.assert_array_equal(u.data.ravel(), [1, 2, 3, 4])


# ----------------------------------------------------------------------------- bad input
def _run_with_timeout(fn, *args, timeout=30):
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(fn, *args).result(timeout=timeout)


def bad_inputs(tmp_path, source):
    raw = source.read_bytes()
    cases = {}
    for n in (0, 4, 16, 100, 1000, len(raw) // 3, len(raw) // 2, len(raw) * 9 // 10):
        p = tmp_path / f"truncated_{n}.dm4"
        p.write_bytes(raw[:n])
        cases[f"truncated at {n}"] = p
    (tmp_path / "text.dm4").write_text("this is not a DigitalMicrograph file\n")
    cases["text renamed .dm4"] = tmp_path / "text.dm4"
    cases["missing"] = tmp_path / "missing.dm4"
    (tmp_path / "folder.dm4").mkdir()
    cases["directory"] = tmp_path / "folder.dm4"
    (tmp_path / "garbage.tif").write_bytes(b"II*\x00" + b"\x07" * 64)
    cases["garbage tif"] = tmp_path / "garbage.tif"
    return cases


def test_bad_input_one_clear_error(tmp_path, shared):
    source = shared("ncempy_dm", "dmTest_3D_int16_64,65,66.dm4")
    for what, path in bad_inputs(tmp_path, source).items():
        def attempt(p=path):
            with pytest.raises(MicrographReadError) as info:
                load(p)
            return str(info.value)
        msg = _run_with_timeout(attempt)
        assert str(path) in msg, (what, msg)
        assert "\n" not in msg


# ----------------------------------------------------------------------------- save round trips
@pytest.mark.parametrize("suffix", [".tif", ".hspy", ".zspy"])
def test_save_round_trip(tmp_path, suffix):
    rng = np.random.default_rng(0)
    data = rng.random((3, 20, 30))  # float64 -> written as float32
    cal = Calibration((2.0, 12.5, 12.5), ("s", "nm", "nm"), offset=(0.0, 100.0, 50.0))
    path = save(tmp_path / f"stack{suffix}", data, cal, title="stack", metadata={"seed": 0})
    img = _load_quiet(path)
    assert img.data.dtype == np.float32 and img.data.shape == (3, 20, 30)
    np.testing.assert_allclose(img.data, data.astype(np.float32))
    assert img.calibration.units[1:] == ("nm", "nm")
    assert img.calibration.pixel_size == pytest.approx((12.5, 12.5))
    assert img.calibration.navigate == (True, False, False)
    assert img.calibration.units[0] == "s" and img.calibration.scale[0] == 2.0
    assert img.calibration.offset == pytest.approx((0.0, 100.0, 50.0))


def test_save_non_square_tif(tmp_path):
    data = np.arange(12 * 16, dtype=np.uint16).reshape(12, 16)
    cal = Calibration.from_pixel_size((0.5, 0.25), "µm")
    img = _load_quiet(save(tmp_path / "ns.tif", data, cal))
    assert img.calibration.pixel_size_in("µm") == pytest.approx((0.5, 0.25))
    np.testing.assert_array_equal(img.data, data)


def test_save_rejects_unknown_suffix(tmp_path):
    with pytest.raises(ValueError, match="cannot save as '.png'"):
        save(tmp_path / "x.png", np.zeros((2, 2)), None)


# ----------------------------------------------------------------------------- HyperSpy
def test_hyperspy_signal_types(tmp_path, shared, capsys):
    import hyperspy.api as hs

    from hyperspy_mmdl.signals import LazyMicrostructure, Microstructure

    path = shared("ncempy_dm", "dmTest_3D_int16_64,65,66.dm4")
    s = hs.load(path, signal_type="microstructure")
    assert type(s) is Microstructure
    assert s.calibration.scale == pytest.approx((4.0, 3.0, 0.002))  # nm × pm: nm, as io.load
    assert s.calibration.units == load(path).calibration.units
    lazy = hs.load(path, signal_type="microstructure", lazy=True)
    assert type(lazy) is LazyMicrostructure
    plain = hs.load(path)
    plain.set_signal_type("microstructure")
    assert type(plain) is Microstructure
    hs.print_known_signal_types()
    out = capsys.readouterr().out
    assert "microstructure" in out and "grain_labels" in out

    s = load_signal(path)
    assert type(s) is Microstructure and s.axes_manager.navigation_shape == (66,)
    assert s.axes_manager.signal_axes[0].units == "nm" and s.axes_manager.signal_axes[1].scale == 3.0
    assert s.metadata.General.title == "image3D_int16_64,65,66"
    assert type(load_signal(path, lazy=True)) is LazyMicrostructure


@pytest.mark.parametrize("shape", [(20, 30), (3, 20, 30)])
def test_emd_ncem(tmp_path, shape):
    import hyperspy.api as hs

    data = np.arange(np.prod(shape), dtype=np.float32).reshape(shape)
    s = hs.signals.Signal2D(data)
    for ax, (scale, unit) in zip(s.axes_manager._axes[::-1], [(0.25, "nm"), (0.5, "nm"), (2.0, "s")]):
        ax.scale, ax.units = scale, unit
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        s.save(tmp_path / "x.emd")
    img = _load_quiet(tmp_path / "x.emd")
    np.testing.assert_array_equal(img.data, data)
    assert img.calibration.pixel_size == (0.5, 0.25) and img.calibration.unit == "nm"
    if len(shape) == 3:  # NCEM EMD stacks come back as 3-D signals: the first axis is the frame axis
        assert img.calibration.navigate == (True, False, False)
        assert img.calibration.units[0] == "s" and img.calibration.scale[0] == 2.0



def test_calibration_from_undefined_axes(shared):
    import hyperspy.api as hs

    path = shared("rosettasciio_dm_tiff", "tiff", "test_loading_image_saved_with_imageJ_no_scale.tif")
    cal = hs.load(path, signal_type="microstructure").calibration
    assert cal.units == ("px", "px") and not cal.is_calibrated
    cal = Calibration.from_axes([dict(name="<undefined>", index_in_array=0, units=None, navigate=True),
                                 dict(name=None, index_in_array=1), dict(name="x", index_in_array=2, units="nm")])
    # one image axis without a unit: the image is in pixels (no half calibration)
    assert cal.names == ("frame", "y", "x") and cal.units == ("px", "px", "px")


def test_lazy_stacks(shared, monkeypatch):
    import hyperspy_mmdl.io as mmdl_io

    path = shared("rosettasciio_dm_tiff", "tiff", "sem_Zeiss", "ZEISS_SEM_multipage.tif")
    lazy = load(path, lazy=True)
    assert lazy.is_lazy and lazy.data.shape == (2, 1536, 2048)
    assert lazy.calibration.pixel_size == pytest.approx((12.326225, 12.326225)) and lazy.calibration.unit == "nm"
    eager = load(path)
    np.testing.assert_array_equal(np.asarray(lazy.data[1]), eager.data[1])
    monkeypatch.setattr(mmdl_io, "LAZY_AUTO_BYTES", 1024)  # auto: lazy above the size limit
    assert load(path, lazy=None).is_lazy
    s = load_signal(path, lazy=None)
    assert s._lazy and s.axes_manager.navigation_shape == (2,)


# DM data-type keys of rosettasciio's generated test files -> numpy dtype after io.load
# (upstream generate_dm_testing_files.py; complex -> float32 magnitude, bool -> uint8)
_DM_KEYS = {1: np.int16, 2: np.float32, 3: np.float32, 5: np.float32, 6: np.uint8, 7: np.int32, 9: np.int8,
            10: np.uint16, 11: np.uint32, 12: np.float64, 13: np.float32, 14: np.uint8, 27: np.float32,
            28: np.float32}


@pytest.mark.parametrize("dim", ["2D", "3D"])
def test_dm_dtype_table(shared, dim):
    folder = shared("rosettasciio_dm_tiff", "digitalmicrograph", dim)
    n = 0
    for key, dtype in _DM_KEYS.items():
        for suffix in (".dm3", ".dm4"):
            path = folder / f"test-{key}{suffix}"
            if not path.exists():  # 27 and 28 exist as dm4 only
                continue
            img = _load_quiet(path)
            assert img.data.dtype == dtype, path
            expected = np.arange(1, img.data.size + 1).reshape(img.data.shape)
            if key == 14:
                expected = np.ones_like(expected)  # bool ramp: all True
            if key not in (27, 28):  # packed FFTs hold another layout
                np.testing.assert_allclose(img.data, expected, err_msg=str(path))
            n += 1
    assert n == 26


# ----------------------------------------------------------------------------- reading defensively
def test_headers_checked_before_allocating(tmp_path, shared, monkeypatch):
    """What a header claims is compared with the file (and the memory) before any pixel is read."""
    import struct
    import sys

    import tifffile

    import hyperspy_mmdl.io as mmdl_io

    sys.path.insert(0, str(Path(__file__).parent))
    from _bad_inputs import _dm_dims_patch

    fei = shared("rosettasciio_dm_tiff", "tiff", "sem_FEI_Helios", "FEI-Helios-Ebeam-16bits.tif")
    huge = tmp_path / "huge.tif"
    huge.write_bytes(fei.read_bytes())
    with tifffile.TiffFile(huge) as tif:
        offs = [tif.pages[0].tags[c].valueoffset for c in (256, 257)]
    with open(huge, "r+b") as fh:
        for off in offs:
            fh.seek(off)
            fh.write(struct.pack("<H", 60000))
    for lazy in (False, True):
        with pytest.raises(MicrographReadError, match=r"claims 60000×60000 pixels .* hold 482304 bytes"):
            load(huge, lazy=lazy)
    cut = tmp_path / "cut.tif"
    cut.write_bytes(fei.read_bytes()[:-1])
    with pytest.raises(MicrographReadError, match=r"truncated .* FEI metadata .* 1 bytes are missing; the calibration"):
        load(cut)
    # DM: dimensions patched to 10×10, a 66-frame stack patched to 10⁶ frames
    dims10 = _dm_dims_patch("nonsq_dm3", {0: 10, 1: 10}, "dims10.dm3")(tmp_path)
    with pytest.raises(MicrographReadError, match=r"claims dimensions 10×10 \(100 values\) but its data block holds"):
        load(dims10, lazy=True)
    frames = _dm_dims_patch("stack_dm4", {-1: 10**6}, "frames.dm4")(tmp_path)
    with pytest.raises(MicrographReadError, match=r"64×65×1000000 .* holds 274560 values"):
        load(frames, lazy=True)
    # an ImageJ stack cut inside its second frame
    ij = shared("rosettasciio_dm_tiff", "tiff", "test_loading_image_saved_with_imageJ_stack.tif")
    cut_ij = tmp_path / "ij.tif"
    cut_ij.write_bytes(ij.read_bytes()[: 76494 + 18496 + 9000])
    with pytest.raises(MicrographReadError, match="truncated"):
        load(cut_ij, lazy=True)
    # a NUL-filled MRC, a FIFO
    mrc = tmp_path / "nul.mrc"
    mrc.write_bytes(bytes(4096))
    with pytest.raises(MicrographReadError, match=r"claims a 0×0×0 image"):
        load(mrc)
    fifo = tmp_path / "pipe.dm4"
    os.mkfifo(fifo)
    with pytest.raises(MicrographReadError, match=r"not a regular file \(a FIFO"):
        _run_with_timeout(lambda: load(fifo))
    # memory: an eager read larger than what is available is refused, a lazy one is fine
    stack = shared("ncempy_dm", "dmTest_3D_int16_64,65,66.dm4")  # 66 frames of 8320 bytes
    monkeypatch.setattr(mmdl_io, "memory_available", lambda: 100_000)
    with pytest.raises(MicrographReadError, match="needs 536 KiB|needs 549120 bytes|read it lazily"):
        load(stack)
    assert load(stack, lazy=True).is_lazy


def test_late_read_errors_name_the_file_and_frames(tmp_path, shared):
    """A file damaged after a lazy open: computing a frame raises a ReadError naming it."""
    src = shared("ncempy_dm", "dmTest_3D_int16_64,65,66.dm4")
    path = tmp_path / "stack.dm4"
    path.write_bytes(src.read_bytes())
    img = load(path, lazy=True)
    np.testing.assert_array_equal(np.asarray(img.data[65]), load(src).data[65])  # guarded reads are exact
    path.write_bytes(src.read_bytes()[:100_000])  # truncated after opening
    with pytest.raises(MicrographReadError) as info:
        np.asarray(img.data[65])
    assert str(path) in str(info.value) and "frame" in str(info.value)


def test_missing_zarr_chunk_refused(tmp_path):
    data = np.arange(3 * 32 * 32, dtype=np.uint16).reshape(3, 32, 32)
    store = save(tmp_path / "s.zspy", data, Calibration.from_pixel_size(5, "nm").with_frames())
    assert load(store).data.shape == (3, 32, 32)
    chunk = sorted(p for p in store.rglob("*") if p.is_file() and p.name[0].isdigit())[-1]
    chunk.unlink()
    with pytest.raises(MicrographReadError, match=r"chunks of .* are missing .* read as 0"):
        load(store, lazy=True)
