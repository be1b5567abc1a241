"""Batch runner: outputs equal frame-by-frame calls; resume after kill; corrupt inputs; 2 workers.

The generated stack is 200 calibrated 64×64 frames, written as hspy, zspy and
multi-page TIFF; the real DM stacks come from ../shared/data.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hyperspy_mmdl.batch import (
    BatchParameters,
    file_checksum,
    find_inputs,
    process_frame,
    read_results,
    run_batch,
)
from hyperspy_mmdl.calibration import Calibration  # noqa: E402
from hyperspy_mmdl.cli import main as mmdl_main  # noqa: E402
from hyperspy_mmdl.grains.measure import measure
from hyperspy_mmdl.grains.segment import segment
from hyperspy_mmdl.grains.summarize import summarize
from hyperspy_mmdl.pipeline import frame_calibration

N_FRAMES = 200
SHAPE = (64, 64)
PIXEL = 10.0  # nm
DM_STACKS = [("ncempy_dm", "dmTest_3D_int16_64,65,66.dm4"),
             ("rosettasciio_dm_tiff", "digitalmicrograph", "test_stackbuilder_imagestack.dm3")]


def _write(path: Path, data: np.ndarray, cal: Calibration, **kwargs) -> Path:
    import hyperspy.api as hs

    s = hs.signals.Signal2D(data, axes=cal.to_axes(data.shape))
    s.metadata.General.title = path.stem
    s.save(path, overwrite=True, **kwargs)
    return path


def _labels(path: Path) -> np.ndarray:
    import hyperspy.api as hs

    return np.asarray(hs.load(path).data)


def _env() -> dict:
    env = dict(os.environ)
    src = str(Path(__file__).resolve().parents[1] / "src")
    env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    return env


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """The generated stack, its calibration and the files it is written to."""
    from hyperspy_mmdl.synthetic import polycrystal

    sample = polycrystal(shape=SHAPE, n_frames=N_FRAMES, pixel_size=PIXEL, unit="nm", mean_ecd=120.0,
                         noise=0.08, seed=7)
    data = np.asarray(sample.image, dtype=np.float32)
    assert data.shape == (N_FRAMES,) + SHAPE
    cal = sample.calibration if sample.calibration.ndim == 3 else sample.calibration.with_frames()
    folder = tmp_path_factory.mktemp("stack")
    files = {
        "hspy": _write(folder / "stack.hspy", data, cal),
        "zspy": _write(folder / "stack.zspy", data, cal, chunks=(1,) + SHAPE),
        "tif": _write(folder / "stack.tif", data, cal),
    }
    return data, cal, files


@pytest.fixture(scope="module")
def reference(stack):
    """Frame-by-frame calls of segment -> measure -> summarize on the generated stack."""
    data, cal, _ = stack
    fcal = cal.image
    labels, tables, summaries = [], [], []
    for frame in data:
        lab = np.asarray(segment(frame, fcal, method="auto"))
        table = measure(lab, fcal, convention="imagej")
        labels.append(lab)
        tables.append(table)
        summaries.append(summarize(table, fcal, labels=lab))
    return labels, tables, summaries


@pytest.fixture(scope="module")
def zspy_run(stack, tmp_path_factory):
    """One uninterrupted CLI run on the zspy stack (in this process)."""
    _, _, files = stack
    out = tmp_path_factory.mktemp("ref") / "out"
    rc = mmdl_main(["batch", str(files["zspy"]), "--out", str(out), "--no-progress"])
    assert rc == 0
    return out


def _check_against_reference(out: Path, file: str, reference, n_frames=N_FRAMES):
    labels, tables, summaries = reference
    grains, frames, manifest = read_results(out)
    g = grains[grains["file"] == file]
    f = frames[frames["file"] == file].set_index("frame")
    assert sorted(f.index) == list(range(n_frames))
    assert (f["status"] == "ok").all()
    entry = next(e for e in manifest["inputs"] if e["file"] == file)
    lab_out = _labels(out / entry["labels"])
    assert lab_out.shape == (n_frames,) + SHAPE
    for i in range(n_frames):
        np.testing.assert_array_equal(lab_out[i], labels[i])
        got = g[g["frame"] == i].drop(columns=["file", "frame"]).reset_index(drop=True)
        want = pd.DataFrame(tables[i]).reset_index(drop=True)
        pd.testing.assert_frame_equal(got[list(want.columns)], want, check_dtype=False, check_exact=True)
        assert f.loc[i, "n_grains"] == len(want)
        for key, value in summaries[i].items():
            if isinstance(value, (int, float, str, bool, np.generic)):
                assert f.loc[i, key] == value or (pd.isna(value) and pd.isna(f.loc[i, key])), (i, key)
    assert g.attrs["units"]["ecd"] == "nm" and g.attrs["units"]["area"] == "nm²"  # units in the headers


def test_zspy_equals_frame_by_frame_calls(stack, reference, zspy_run):
    _, _, files = stack
    _check_against_reference(zspy_run, str(files["zspy"]), reference)
    # the label images carry the calibration
    import hyperspy.api as hs

    s = hs.load(zspy_run / "labels" / "stack.zspy")
    assert s.metadata.Signal.signal_type == "grain_labels"
    assert [ax.scale for ax in s.axes_manager.signal_axes] == [PIXEL, PIXEL]
    assert [ax.units for ax in s.axes_manager.signal_axes] == ["nm", "nm"]
    assert s.axes_manager.navigation_shape == (N_FRAMES,)


def test_hspy_and_tiff_equal_zspy(stack, reference, zspy_run, tmp_path):
    _, _, files = stack
    out = tmp_path / "out"
    result = run_batch([files["hspy"], files["tif"]], out, progress=False)
    assert result.exit_code == 0, result.manifest["inputs"]
    grains, frames, _ = read_results(out)
    zg, zf, _ = read_results(zspy_run)
    for key in ("hspy", "tif"):
        g = grains[grains["file"] == str(files[key])].drop(columns="file").reset_index(drop=True)
        pd.testing.assert_frame_equal(g, zg.drop(columns="file"), check_exact=True)
        f = frames[frames["file"] == str(files[key])].drop(columns="file").reset_index(drop=True)
        pd.testing.assert_frame_equal(f, zf.drop(columns="file"), check_exact=True)
    names = sorted(p.name for p in (out / "labels").iterdir())
    assert len(names) == 2 and names[0].startswith("stack")
    for name in names:
        np.testing.assert_array_equal(_labels(out / "labels" / name),
                                      _labels(zspy_run / "labels" / "stack.zspy"))


def test_real_dm_stacks_equal_frame_by_frame_calls(shared, tmp_path):
    from hyperspy_mmdl.io import load

    paths = [shared(*parts) for parts in DM_STACKS]
    out = tmp_path / "out"
    result = run_batch(paths, out, progress=False)
    grains, frames, manifest = read_results(out)
    for path in paths:
        img = load(path)
        data = np.asarray(img.data)
        assert data.ndim == 3
        cal = frame_calibration(img.calibration)
        f = frames[frames["file"] == str(path)].set_index("frame")
        assert len(f) == data.shape[0]
        entry = next(e for e in manifest["inputs"] if e["file"] == str(path))
        lab_out = _labels(out / entry["labels"]) if entry["labels"] else None
        for i, frame in enumerate(data):
            try:
                want = process_frame(frame, img.calibration, BatchParameters())
            except Exception as err:  # the batch must record the same failure
                assert f.loc[i, "status"] == "error"
                assert type(err).__name__ in f.loc[i, "error"]
                continue
            assert f.loc[i, "status"] == "ok", f.loc[i, "error"]
            np.testing.assert_array_equal(lab_out[i], want.labels)
            got = grains[(grains["file"] == str(path)) & (grains["frame"] == i)]
            got = got.drop(columns=["file", "frame"]).reset_index(drop=True)
            pd.testing.assert_frame_equal(got, pd.DataFrame(want.table).reset_index(drop=True),
                                          check_dtype=False, check_exact=True)
            assert frames.attrs["units"]["mean_ecd"] == cal.unit
    ok = (frames["status"] == "ok").all()
    assert result.exit_code == (0 if ok else 1)


def _count_records(out: Path) -> int:
    shards = out / "shards"
    return sum(1 for p in shards.glob("*.json")) if shards.is_dir() else 0


def _default_sigint():
    # a suite started in the background by a non-interactive shell (`make test &`) runs with
    # SIGINT ignored, and children inherit that (Python then installs no KeyboardInterrupt
    # handler): give the run the terminal's default, as a user's Ctrl-C finds it
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _start_and_stop(cmd, out: Path, at_least: int, sig) -> int:
    proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            preexec_fn=_default_sigint)
    deadline = time.monotonic() + 90
    seen = []
    while proc.poll() is None and time.monotonic() < deadline:
        seen.append(_count_records(out))
        if seen[-1] >= at_least:
            break
        time.sleep(0.005)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    if proc.returncode == 0:  # it finished before the signal: say what the polling saw
        print(f"records seen while waiting for {at_least}: {sorted(set(seen))[-20:]}; stderr: "
              f"{err.decode(errors='replace')[-2000:]}")
    return proc.returncode


def test_killed_run_resumes_to_identical_output(stack, zspy_run, tmp_path):
    _, _, files = stack
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "hyperspy_mmdl.cli", "batch", str(files["zspy"]), "--out", str(out),
           "--no-progress"]
    rc = _start_and_stop(cmd, out, 10, signal.SIGKILL)
    assert rc == -signal.SIGKILL
    n_killed = _count_records(out)
    assert 10 <= n_killed < N_FRAMES, "the run finished before it could be killed"
    assert not (out / "grains.parquet").exists()

    rc = _start_and_stop(cmd, out, n_killed + 10, signal.SIGINT)
    assert rc == 130
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["state"] == "interrupted"
    assert manifest["counts"]["resumed"] == n_killed
    n_interrupted = manifest["counts"]["done"]
    assert n_killed + 10 <= n_interrupted < N_FRAMES

    done = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["state"] == "finished"
    assert manifest["counts"]["resumed"] == n_interrupted
    assert manifest["counts"]["done"] == N_FRAMES
    for name in ("grains.csv", "frames.csv"):
        assert (out / name).read_bytes() == (zspy_run / name).read_bytes(), name
    for name in ("grains.parquet", "frames.parquet"):
        pd.testing.assert_frame_equal(pd.read_parquet(out / name), pd.read_parquet(zspy_run / name),
                                      check_exact=True)
    np.testing.assert_array_equal(_labels(out / "labels" / "stack.zspy"),
                                  _labels(zspy_run / "labels" / "stack.zspy"))


@pytest.fixture
def small_stack(stack, tmp_path):
    data, cal, _ = stack
    return _write(tmp_path / "small.zspy", data[:12], cal, chunks=(1,) + SHAPE)


def test_corrupt_file_and_frame_are_recorded(small_stack, tmp_path, capsys):
    folder = small_stack.parent
    (folder / "bad.dm4").write_bytes(b"not a DigitalMicrograph file" * 50)
    # a zspy stack with one frame's chunk overwritten with garbage
    broken = folder / "broken.zspy"
    import shutil

    shutil.copytree(small_stack, broken)
    (bad_chunk,) = broken.glob("Experiments/*/data/3/0/0")  # zarr nested chunk of frame 3
    bad_chunk.write_bytes(b"\x00garbage" * 10)

    out = tmp_path / "out"
    rc = mmdl_main(["batch", str(folder), "--out", str(out), "--no-progress"])
    assert rc == 1
    assert "bad.dm4" in capsys.readouterr().err
    grains, frames, manifest = read_results(out)
    inputs = {Path(e["file"]).name: e for e in manifest["inputs"]}
    assert inputs["bad.dm4"]["status"] == "error" and "bad.dm4" in inputs["bad.dm4"]["error"]
    assert inputs["small.zspy"]["status"] == "ok"
    assert inputs["broken.zspy"]["status"] == "partial"
    items = [e for e in manifest["items"] if e["file"] == str(broken)]
    assert [e["frame"] for e in items if e["status"] == "error"] == [3]
    assert manifest["counts"]["done"] == 23 and manifest["counts"]["error"] == 1
    # the good frames of the broken stack equal those of the intact one
    ok = grains[grains["file"] == str(small_stack)].drop(columns="file").reset_index(drop=True)
    br = grains[grains["file"] == str(broken)].drop(columns="file").reset_index(drop=True)
    pd.testing.assert_frame_equal(br, ok[ok["frame"] != 3].reset_index(drop=True), check_exact=True)
    lab = _labels(out / "labels" / "broken.zspy")
    assert not lab[3].any() and lab[2].any()

    # a rerun retries the failed frame only, and still fails
    result = run_batch([folder], out, progress=False)
    assert result.exit_code == 1
    assert result.counts["resumed"] == 23


def test_two_workers_equal_in_process(small_stack, tmp_path):
    one = run_batch([small_stack], tmp_path / "one", progress=False)
    two = run_batch([small_stack], tmp_path / "two", workers=2, progress=False)
    assert one.exit_code == two.exit_code == 0
    assert "2 worker" in two.manifest["executor"]
    for name in ("grains.csv", "frames.csv"):
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes()
    np.testing.assert_array_equal(_labels(tmp_path / "one" / "labels" / "small.zspy"),
                                  _labels(tmp_path / "two" / "labels" / "small.zspy"))


def test_resume_keys_on_parameters_and_content(small_stack, tmp_path):
    out = tmp_path / "out"
    first = run_batch([small_stack], out, progress=False)
    assert first.counts["done"] == 12 and first.counts["resumed"] == 0
    again = run_batch([small_stack], out, progress=False)
    assert again.counts["resumed"] == 12
    other = run_batch([small_stack], out, checksum="full", progress=False)
    assert other.counts["resumed"] == 0  # a different checksum mode is a different fingerprint
    rc = mmdl_main(["batch", str(small_stack), "--out", str(out), "--segment", "threshold",
                    "-p", "split=false,threshold=otsu", "--no-progress"])
    assert rc == 0
    m = json.loads((out / "manifest.json").read_text())
    assert m["counts"]["resumed"] == 0  # other parameters, other results
    assert m["parameters"]["segment"] == "threshold"
    assert m["parameters"]["segment_params"] == {"split": False, "threshold": "otsu"}
    # the manifest records inputs, checksums, parameters and versions
    m = again.manifest
    assert m["inputs"][0]["checksum"].startswith("quick:")
    assert m["command"] is None and m["state"] == "finished"
    assert m["parameters"]["segment"] == "auto" and "hyperspy" in m["versions"]
    assert m["inputs"][0]["calibration"]["units"] == ["px", "nm", "nm"]


def test_checksums(tmp_path):
    big = tmp_path / "big.bin"
    rng = np.random.default_rng(0)
    big.write_bytes(rng.integers(0, 256, 12 << 20, dtype=np.uint8).tobytes())
    q, f = file_checksum(big), file_checksum(big, "full")
    assert q.startswith("quick:") and f.startswith("sha256:")
    import hashlib

    assert f == "sha256:" + hashlib.sha256(big.read_bytes()).hexdigest()
    # a same-size edit with the time restored: the full checksum sees it; the quick one when sampled
    st = big.stat()
    with open(big, "r+b") as fh:
        fh.seek(0)
        fh.write(b"\xff\x00\xff")
    os.utime(big, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert file_checksum(big, "full") != f
    assert file_checksum(big) != q
    # touching changes the quick checksum only
    f2 = file_checksum(big, "full")
    os.utime(big, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert file_checksum(big, "full") == f2
    with pytest.raises(ValueError, match="quick"):
        file_checksum(big, "md5")


def test_find_inputs_files_globs_folders(stack, tmp_path):
    _, _, files = stack
    folder = files["hspy"].parent
    found, missing = find_inputs([folder])
    assert [p.name for p in found] == ["stack.hspy", "stack.tif", "stack.zspy"]
    found, missing = find_inputs([str(folder / "*.hspy"), files["hspy"], tmp_path / "nope.dm4",
                                  str(tmp_path / "*.dm3")])
    assert [p.name for p in found] == ["stack.hspy"]
    assert [m[0] for m in missing] == [str(tmp_path / "nope.dm4"), str(tmp_path / "*.dm3")]
    # the output folder inside an input folder is never an input
    found, _ = find_inputs([folder], exclude=folder)
    assert found == []


def test_frame_calibration_unifies_units():
    cal = Calibration(scale=(4.0, 3.0, 2.0), units=("µm", "nm", "pm"))
    fc = frame_calibration(cal)
    assert fc.units == ("nm", "nm")
    assert fc.pixel_size == pytest.approx((3.0, 0.002))


def test_bad_arguments(tmp_path):
    with pytest.raises(FileNotFoundError, match="classify"):
        BatchParameters(classify=str(tmp_path / "missing.pt"))
    with pytest.raises(ValueError, match="predict_pce"):
        BatchParameters(composition={"etl": "SnO2"})
    with pytest.raises(ValueError, match="workers"):
        run_batch([tmp_path], tmp_path / "o", workers=0)
    assert mmdl_main(["batch", str(tmp_path / "none.dm4"), "--out", str(tmp_path / "o2"),
                      "--no-progress"]) == 1


@pytest.mark.gui
def test_batch_widget_runs_and_summarizes(small_stack, tmp_path, qtbot):
    from napari_mmdl.widgets.batch import BatchWidget

    w = BatchWidget()
    qtbot.addWidget(w.native)
    w.folder.value = small_stack.parent
    w.out.value = tmp_path / "out"
    assert w.run_kwargs()["inputs"] == [str(small_stack.parent)]
    w.run_button.clicked.emit()  # same as a click
    assert w.wait(timeout=120)
    assert w.result is not None and w.result.exit_code == 0, w.error
    assert w.progress.value == w.progress.max == 12
    assert "12 done" in w.summary.value and w.status.value == "finished"
    assert (tmp_path / "out" / "grains.parquet").is_file()
    # a second run resumes everything; cancelling an idle widget is harmless
    w.start()
    assert w.wait(timeout=120)
    assert "(12 resumed)" in w.summary.value
    fresh = BatchWidget()
    qtbot.addWidget(fresh.native)
    fresh.start()
    assert fresh.status.value == "error: choose input files or an input folder"
    fresh.folder.value = small_stack.parent
    fresh.out.value = tmp_path / "elsewhere"
    fresh.out.line_edit.value = ""  # the user clears the field: not the current folder
    fresh.start()
    assert fresh.status.value == "error: choose an output folder"
    assert not (tmp_path / "elsewhere").exists()


@pytest.mark.gui
def test_batch_widget_cancel(stack, tmp_path, qtbot):
    from napari_mmdl.widgets.batch import BatchWidget

    _, _, files = stack
    w = BatchWidget()
    qtbot.addWidget(w.native)
    w.inputs.value = [files["zspy"]]
    w.out.value = tmp_path / "out"
    w.start()
    w.cancel()
    assert w.wait(timeout=120)
    assert w.result.exit_code == 130 and w.status.value == "cancelled"
    assert w.result.manifest["state"] == "interrupted"
    assert w.result.counts["pending"] > 0


def test_one_run_per_output_folder_and_leftovers(small_stack, tmp_path):
    from hyperspy_mmdl.batch import OutputLockedError

    out = tmp_path / "out"
    out.mkdir()
    lock = out / ".mmdl-batch.lock"
    import socket

    from hyperspy_mmdl.batch.lock import _OutputLock

    live = _OutputLock(out).__enter__()  # a live run holds it
    try:
        with pytest.raises(OutputLockedError, match="another batch run"):
            run_batch([small_stack], out, progress=False)
    finally:
        live.__exit__(None, None, None)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    lock.write_text(f"{dead} {socket.gethostname()}")  # left by a killed run: taken over
    leftover = out / "shards" / ".abc.json.tmp123-4"
    leftover.parent.mkdir(exist_ok=True)
    leftover.write_text("{")
    before = file_checksum(small_stack, "full")
    result = run_batch([small_stack], out, progress=False)
    assert result.exit_code == 0 and not lock.exists() and not leftover.exists()
    assert file_checksum(small_stack, "full") == before  # inputs are never modified
    stamp = (out / "labels" / "small.zspy").stat().st_mtime_ns
    again = run_batch([small_stack], out, progress=False)
    assert again.counts["resumed"] == 12
    assert (out / "labels" / "small.zspy").stat().st_mtime_ns == stamp  # unchanged: not rewritten


def test_hyperspy_script_gets_the_cli_numbers(stack, zspy_run):
    """A HyperSpy script (lazy load, ``map`` frame by frame) reproduces ``mmdl batch``."""
    import hyperspy.api as hs

    _, _, files = stack
    s = hs.load(files["zspy"], lazy=True, signal_type="microstructure")
    assert type(s).__name__ == "LazyMicrostructure"
    cal = s.calibration.image
    labels = s.map(segment, calibration=cal, method="auto", inplace=False, output_dtype=np.int32,
                   show_progressbar=False)
    labels.compute(show_progressbar=False)
    grains, frames, _ = read_results(zspy_run)
    np.testing.assert_array_equal(labels.data, _labels(zspy_run / "labels" / "stack.zspy"))
    for i in range(0, N_FRAMES, 7):
        table = measure(labels.data[i], cal)
        got = grains[grains["frame"] == i].drop(columns=["file", "frame"]).reset_index(drop=True)
        pd.testing.assert_frame_equal(got, pd.DataFrame(table).reset_index(drop=True), check_dtype=False,
                                      check_exact=True)
        summary = summarize(table, cal, labels=labels.data[i])
        row = frames[frames["frame"] == i].iloc[0]
        for key, value in summary.items():
            if isinstance(value, (float, int)) and not isinstance(value, bool):
                assert row[key] == value or (np.isnan(value) and np.isnan(row[key])), key


def test_classify_and_predict_pce_per_frame(small_stack, tmp_path, monkeypatch):
    """Model outputs per frame equal direct inference calls; each model file loads once."""
    import torch
    from test_inference import COMP, PROC, VOCAB, TinyClassifier, TinyFusion, card

    from hyperspy_mmdl import checkpoint, inference
    from hyperspy_mmdl.checkpoint import save_checkpoint
    from hyperspy_mmdl.models import registry

    # the run checks every model file once before it starts, architecture included: register the
    # tiny test models for the length of this test
    monkeypatch.setitem(registry._REGISTRY, "tiny", {"fn": TinyClassifier, "input_size": (1, 32, 32),
                                                     "num_classes": 3})
    monkeypatch.setitem(registry._REGISTRY, "tiny_fusion", {"fn": TinyFusion, "input_size": (1, 32, 32),
                                                            "num_classes": 1})
    torch.manual_seed(3)
    cls_path = save_checkpoint(tmp_path / "cls.pt", TinyClassifier(), card())
    pce_card = card(architecture="tiny_fusion", task="regress-pce", class_names=None, target_name="PCE",
                    target_unit="%", vocabularies=VOCAB, extra={"target_mean": 15.0, "target_std": 2.0})
    pce_path = save_checkpoint(tmp_path / "pce.pt", TinyFusion(), pce_card)
    loads = []
    real = checkpoint.load_checkpoint

    def load(path, device="cpu", model=None):  # the tiny test models are not in the registry
        tiny = {"pce.pt": TinyFusion, "cls.pt": TinyClassifier}.get(Path(path).name)
        if tiny is None:  # method 'auto' may apply the shipped grain-boundary model to some frames
            return real(path, device=device, model=model)
        loads.append(str(path))
        return real(path, device=device, model=tiny())

    monkeypatch.setattr(checkpoint, "load_checkpoint", load)
    inference.clear_cache()
    out = tmp_path / "out"
    result = run_batch([small_stack], out, classify=cls_path, predict_pce=pce_path, composition=COMP,
                       process=PROC, progress=False)
    assert result.exit_code == 0, [i.get("error") for i in result.manifest["items"] if i.get("status") == "error"]
    assert sorted(loads) == sorted([str(cls_path.resolve()), str(pce_path.resolve())])
    _, frames, manifest = read_results(out)
    assert manifest["parameters"]["classify"]["sha256"].startswith("sha256:")
    assert manifest["parameters"]["composition"] == COMP
    import hyperspy.api as hs

    s = hs.load(small_stack)
    cal = Calibration.from_signal(s).image
    probs = inference.classify(s.data, cal, cls_path, device="cpu")
    pce, weights = inference.predict_pce(s.data, cal, pce_path, composition=COMP, process=PROC,
                                         device="cpu")
    names = ["small", "medium", "large"]
    np.testing.assert_allclose(frames[[f"p_{n}" for n in names]].to_numpy(), probs, rtol=1e-5)
    assert list(frames["predicted_class"]) == [names[i] for i in probs.argmax(1)]
    np.testing.assert_allclose(frames["pce"].to_numpy(), pce, rtol=1e-5)
    np.testing.assert_allclose(frames[[f"fusion_weight_{m}" for m in inference.MODALITIES]].to_numpy(),
                               weights, rtol=1e-5)
    # other composition: other parameters, nothing resumed
    again = run_batch([small_stack], out, classify=cls_path, predict_pce=pce_path,
                      composition={**COMP, "etl": "TiO2"}, process=PROC, progress=False)
    assert again.counts["resumed"] == 0 and again.exit_code == 0


def test_hyperspy_grain_methods_get_the_cli_numbers(stack, zspy_run):
    """``s.segment_grains()``, ``s.grain_features()``, ``s.grain_statistics()`` equal ``mmdl batch``."""
    import hyperspy.api as hs

    from hyperspy_mmdl.signals import Microstructure

    assert hasattr(Microstructure, "grain_statistics")
    _, _, files = stack
    s = hs.load(files["zspy"], lazy=True, signal_type="microstructure")
    labels = s.segment_grains(method="auto", show_progressbar=False)
    table = s.grain_features(labels)
    stats = s.grain_statistics(labels)
    grains, frames, _ = read_results(zspy_run)
    np.testing.assert_array_equal(np.asarray(labels.data), _labels(zspy_run / "labels" / "stack.zspy"))
    got = grains.drop(columns=["file"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(got, table[list(got.columns)].reset_index(drop=True), check_dtype=False,
                                  check_exact=True)
    for key in stats.columns:
        if key in frames.columns and pd.api.types.is_numeric_dtype(stats[key]):
            np.testing.assert_array_equal(frames[key].to_numpy(dtype=float), stats[key].to_numpy(dtype=float),
                                          err_msg=key)


def test_reader_warnings_are_said_once_in_the_summary(shared, tmp_path, recwarn):
    path = shared("rosettasciio_dm_tiff", "digitalmicrograph", "2D", "multi_signal.dm3")
    result = run_batch([path], tmp_path / "out", progress=False, segment="boundary")
    assert result.exit_code == 0
    assert not [w for w in recwarn if "holds 2 signals" in str(w.message)]   # no raw warning ...
    lines = result.report_lines()                                            # ... but a line in the summary
    assert sum("multi_signal.dm3: the file holds 2 signals; using signal 0" in line for line in lines) == 1
    assert result.manifest["inputs"][0]["notes"][0].startswith("the file holds 2 signals")
