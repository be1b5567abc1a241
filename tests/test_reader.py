"""napari reader and sample data: real DM/TIFF files, bad input, and a real viewer."""

from __future__ import annotations

import concurrent.futures

import numpy as np
import pytest
from _real_files import expected_image, observed, real_files

from hyperspy_mmdl.calibration import Calibration
from hyperspy_mmdl.io import MicrographReadError
from napari_mmdl._reader import get_reader

OBSERVED = observed()


def _napari_unit(unit: str) -> str:
    return Calibration((1.0,), (unit,)).to_napari()["units"][0]


@pytest.mark.parametrize("path", real_files())
def test_reader_real_file(path):
    from test_io import check_against_observed

    signals = OBSERVED[path]
    exp = expected_image(signals)
    reader = get_reader(str(path))
    if path.suffix.lower() in (".tif", ".tiff") and (exp is None or not exp.is_calibrated):
        assert reader is None  # napari's builtin TIFF reader takes uncalibrated TIFFs
        return
    assert callable(reader)
    if exp is None:
        with pytest.raises(MicrographReadError, match="not an image") as info:
            reader(str(path))
        assert path.name in str(info.value)
        return
    layers = reader(str(path))
    assert len(layers) == 1
    data, kwargs, kind = layers[0]
    assert kind == "image"
    # colour stays colour (an RGB layer: the channel axis has no scale)
    assert len(kwargs["scale"]) == len(kwargs["translate"]) == len(kwargs["units"]) == data.ndim - kwargs["rgb"]
    assert kwargs["axis_labels"][-2:] == ("y", "x")
    assert kwargs["name"]
    # same numbers as rosettasciio observed, in the layer's own units
    units = tuple(u.replace("um", "µm").replace("angstrom", "Å").replace("pixel", "px") for u in kwargs["units"])
    cal = Calibration(kwargs["scale"], units, kwargs["translate"])
    check_against_observed(path, data.shape[:-1] if kwargs["rgb"] else data.shape, cal)
    md = kwargs["metadata"]
    assert md["path"] == str(path) and "original_metadata" not in md
    assert len(md) < 20


def test_get_reader_ignores_other_files(tmp_path):
    assert get_reader(str(tmp_path / "x.png")) is None
    assert get_reader([str(tmp_path / "a.dm4"), str(tmp_path / "b.dm4")]) is None
    (tmp_path / "d.dm4").mkdir()
    assert get_reader(str(tmp_path / "d.dm4")) is None


def test_reader_bad_input(tmp_path, shared):
    from test_io import bad_inputs

    source = shared("ncempy_dm", "dmTest_3D_int16_64,65,66.dm4")
    for what, path in bad_inputs(tmp_path, source).items():
        def attempt(p=path):
            reader = get_reader(str(p))
            if reader is None:
                return None
            with pytest.raises(MicrographReadError) as info:
                reader(str(p))
            return str(info.value)

        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            msg = pool.submit(attempt).result(timeout=30)
        if path.is_dir():
            assert msg is None, what  # not a file
        else:  # a damaged TIFF is reported too, not handed to napari's builtin reader
            assert msg is not None and str(path) in msg, (what, msg)


def test_sample_data():
    from napari_mmdl._sample_data import sample_polycrystal, sample_polycrystal_stack

    (img, ikw, ikind), (lab, lkw, lkind) = sample_polycrystal()
    assert (ikind, lkind) == ("image", "labels")
    assert img.shape == lab.shape == (512, 512) and img.dtype == np.float32
    assert ikw["scale"] == (10.0, 10.0) and ikw["units"] == ("nm", "nm")
    assert lab.max() > 10 and (lab == 0).any()
    (stack, skw, _), (slab, _, _) = sample_polycrystal_stack()
    assert stack.shape == slab.shape == (5, 256, 256)
    assert skw["scale"] == (1.0, 10.0, 10.0) and skw["axis_labels"] == ("frame", "y", "x")
    assert not np.array_equal(stack[0], stack[1])


@pytest.mark.gui
def test_viewer_opens_dm4_stack(make_napari_viewer, shared):
    path = shared("ncempy_dm", "dmTest_3D_int16_64,65,66.dm4")
    viewer = make_napari_viewer()
    layers = viewer.open(str(path), plugin="napari-mmdl")
    assert len(layers) == 1
    layer = layers[0]
    assert layer.data.shape == (66, 65, 64)
    # nm × pm in the file: one readable unit for the image axes, as on every route
    np.testing.assert_allclose(layer.scale, (4.0, 3.0, 0.002))
    np.testing.assert_allclose(layer.translate, (0.0, 0.0, 0.0))
    assert tuple(str(u) for u in layer.units) == ("micrometer", "nanometer", "nanometer")
    assert tuple(layer.axis_labels) == ("z", "y", "x")
    assert layer.name == "image3D_int16_64,65,66"


@pytest.mark.gui
def test_viewer_opens_dm_tiff_with_offsets(make_napari_viewer, shared):
    path = shared("rosettasciio_dm_tiff", "tiff", "test_loading_image_saved_with_DM.tif")
    viewer = make_napari_viewer()
    layer = viewer.open(str(path), plugin="napari-mmdl")[0]
    np.testing.assert_allclose(layer.scale, (0.16867469, 0.16867469), rtol=1e-6)
    np.testing.assert_allclose(layer.translate, (128.19276, 139.66264), rtol=1e-6)
    assert tuple(str(u) for u in layer.units) == ("micrometer", "micrometer")


def test_uncalibrated_tiff_left_to_napari_quietly(shared, recwarn):
    path = shared("rosettasciio_dm_tiff", "tiff", "test_loading_image_saved_with_imageJ_no_scale.tif")
    assert get_reader(str(path)) is None
    assert not [w for w in recwarn if "pixel units" in str(w.message)]
    calibrated = shared("rosettasciio_dm_tiff", "tiff", "olympus_SIS.tif")
    reader = get_reader(str(calibrated))
    with pytest.warns(UserWarning, match="holds 2 signals"):  # the probe's warning, when read
        data, kwargs, _ = reader(str(calibrated))[0]
    assert data.dtype == np.uint16 and kwargs["metadata"]["signal_index"] == 1


def test_plugin_start_up_stays_light():
    """napari reads the manifest and imports the reader, writers and widgets' modules without torch or
    HyperSpy (they load when a file is opened or a widget runs)."""
    import subprocess
    import sys

    code = (
        "import sys, npe2\n"
        "pm = npe2.PluginManager.instance(); pm.discover()\n"
        "m = pm.get_manifest('napari-mmdl')\n"
        "assert {w.display_name for w in m.contributions.widgets} >= "
        "{'Grains', 'Classify', 'Predict PCE', 'Attention', 'Train', 'Batch', 'Preprocess'}\n"
        "import napari_mmdl._reader, napari_mmdl._writer, napari_mmdl._sample_data\n"
        "import napari_mmdl.widgets.grains, napari_mmdl.widgets.train, napari_mmdl.widgets.classify\n"
        "heavy = sorted(m for m in ('torch', 'hyperspy', 'hyperspy.api', 'dask.distributed') if m in sys.modules)\n"
        "print(heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_tiff_probe_reads_no_pixels(shared, monkeypatch):
    """get_reader's probe of a TIFF opens it lazily (metadata only); reading gives the pixels."""
    import napari_mmdl._reader as reader_mod

    path = shared("rosettasciio_dm_tiff", "tiff", "sem_FEI_Helios", "FEI-Helios-Ebeam-16bits.tif")
    calls = []
    real = reader_mod._load
    monkeypatch.setattr(reader_mod, "_load", lambda p, lazy=None: calls.append(lazy) or real(p, lazy=lazy))
    reader = get_reader(str(path))
    assert reader is not None and calls == [True]  # one probe, lazy
    data, kwargs, _ = reader(str(path))[0]
    assert isinstance(data, np.ndarray) and data.shape == (471, 512)  # small: read eagerly on reading
    assert kwargs["metadata"]["unit"] == "µm"


def test_damaged_tiff_reported_not_handed_on(tmp_path, shared):
    """A truncated calibrated TIFF, a TIFF claiming 60000×60000 pixels and a FIFO named .tif:
    the reader says what is wrong instead of letting napari's builtin reader try."""
    import os
    import struct

    import tifffile

    src = shared("rosettasciio_dm_tiff", "tiff", "sem_FEI_Helios", "FEI-Helios-Ebeam-16bits.tif")
    cut = tmp_path / "cut.tif"
    cut.write_bytes(src.read_bytes()[:-1])
    huge = tmp_path / "huge.tif"
    huge.write_bytes(src.read_bytes())
    with tifffile.TiffFile(huge) as tif:
        offs = [tif.pages[0].tags[c].valueoffset for c in (256, 257)]
    with open(huge, "r+b") as fh:
        for off in offs:
            fh.seek(off)
            fh.write(struct.pack("<H", 60000))
    fifo = tmp_path / "pipe.tif"
    os.mkfifo(fifo)
    for path, words in ((cut, "truncated"), (huge, "60000×60000"), (fifo, "not a regular file")):
        reader = get_reader(str(path))
        assert reader is not None, path
        with pytest.raises(MicrographReadError, match=words) as info:
            reader(str(path))
        assert str(path) in str(info.value)
