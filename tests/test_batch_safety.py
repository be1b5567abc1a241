"""Batch edges: what a scanned folder holds besides micrographs, the disks a run writes to, the lock.

Folders with symbolic-link loops, FIFOs, unreadable sub-folders and 240-character
names; an output on a file system that is read-only, fills up or turns read-only
mid-run (a small tmpfs in a private mount namespace, ``unshare``; skipped with the
reason where the system does not allow one); an input rewritten between runs; a
model of the wrong task; and the output lock raced by processes, with and without a
stale lock in place.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from hyperspy_mmdl.batch import OutputLockedError, find_inputs, read_results, run_batch
from hyperspy_mmdl.batch.lock import LOCK_NAME, _OutputLock, writer_active
from hyperspy_mmdl.cli import main as mmdl_main
from hyperspy_mmdl.errors import CheckpointError, WrongTaskError

ROOT = Path(__file__).resolve().parents[1]
SHAPE = (64, 64)


def _write(path: Path, n_frames: int, seed: int = 0) -> Path:
    import hyperspy.api as hs

    from hyperspy_mmdl.synthetic import polycrystal

    sample = polycrystal(shape=SHAPE, n_frames=n_frames, pixel_size=10.0, unit="nm", mean_ecd=120.0,
                         noise=0.08, seed=seed)
    data = np.asarray(sample.image, dtype=np.float32)
    cal = sample.calibration if sample.calibration.ndim == data.ndim else sample.calibration.with_frames()
    s = hs.signals.Signal2D(data, axes=cal.to_axes(data.shape))
    s.save(path, overwrite=True)
    return path


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("data")
    return {"one": _write(folder / "one.tif", 1), "three": _write(folder / "three.tif", 3, seed=1),
            "twenty": _write(folder / "twenty.tif", 20, seed=2)}


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT / "src") + os.pathsep + env.get("PYTHONPATH", "")
    env["OMP_NUM_THREADS"] = "1"
    return env


def _python(code: str, prefix: list[str] | None = None, timeout: float = 300) -> dict:
    """Run ``code`` in a fresh Python (under ``prefix``); it prints one JSON object last."""
    proc = subprocess.run([*(prefix or []), sys.executable, "-c", textwrap.dedent(code)], env=_env(),
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _mount_namespace() -> list[str]:
    """A prefix running a command in a private mount namespace where it may mount a tmpfs."""
    exe = shutil.which("unshare")
    if exe is None:
        pytest.skip("needs unshare (util-linux) for a private mount namespace")
    prefix = [exe, "-m"] if os.geteuid() == 0 else [exe, "-rm"]
    probe = subprocess.run(prefix + ["sh", "-c", "d=$(mktemp -d) && mount -t tmpfs -o size=64k tmpfs $d && "
                                     "mount -o remount,ro $d && umount $d && rmdir $d"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"no private mount namespace here (unshare: {probe.stderr.decode().strip()[:200]})")
    return prefix


def _tmp_files(out: Path) -> list[str]:
    return sorted(str(p.relative_to(out)) for p in out.rglob("*") if ".tmp" in p.name or p.name.startswith(".old"))


# --------------------------------------------------------------------------- what a folder holds
def _problem_folder(base: Path, one: Path) -> Path:
    d = base / "in"
    d.mkdir()
    shutil.copy(one, d / "good.tif")
    os.symlink("loop.tif", d / "loop.tif")          # a link to itself
    (d / "sub").mkdir()
    shutil.copy(one, d / "sub" / "b.tif")
    os.symlink("..", d / "sub" / "up")               # a link to the folder containing it
    os.symlink("gone.tif", d / "dangling.tif")       # a broken link
    os.mkfifo(d / "pipe.tif")                        # opening it would wait for a writer for ever
    return d


def test_loops_fifos_and_broken_links_are_listed_and_the_run_goes_on(data, tmp_path, capsys):
    d = _problem_folder(tmp_path, data["one"])
    opened = threading.Event()

    def unblock():  # if anything opens the FIFO for reading, free it (and the test fails below)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not done.is_set():
            try:
                fd = os.open(d / "pipe.tif", os.O_WRONLY | os.O_NONBLOCK)
                opened.set()
                os.close(fd)
            except OSError:
                pass
            time.sleep(0.2)

    done = threading.Event()
    watchdog = threading.Thread(target=unblock, daemon=True)
    watchdog.start()
    try:
        files, problems = find_inputs([d])
        out = tmp_path / "out"
        rc = mmdl_main(["batch", str(d), "--out", str(out), "--no-progress"])
    finally:
        done.set()
        watchdog.join()
    assert not opened.is_set(), "the FIFO was opened"
    assert sorted(f.name for f in files) == ["b.tif", "good.tif"]
    reasons = {Path(t).name: why for t, why in problems}
    assert reasons == {
        "loop.tif": "a symbolic link loop (the link points back to itself)",
        "up": "a symbolic link loop (a link to a folder that contains it); not followed",
        "dangling.tif": "a broken symbolic link (to 'gone.tif')",
        "pipe.tif": "not a regular file: a FIFO (named pipe)",
    }
    # the run processed the two micrographs and lists the rest, once each
    assert rc == 1
    err = capsys.readouterr().err
    for name in ("loop.tif", "up", "dangling.tif", "pipe.tif"):
        assert sum(name in line for line in err.splitlines() if "failed:" in line) == 1, (name, err)
    _, frames, manifest = read_results(out)
    assert sorted(Path(f).name for f in frames["file"]) == ["b.tif", "good.tif"]
    assert (frames["status"] == "ok").all()
    assert manifest["state"] == "finished" and manifest["counts"]["failed_inputs"] == 4


def test_unreadable_sub_folder_is_listed(data, tmp_path):
    d = tmp_path / "in"
    (d / "locked").mkdir(parents=True)
    shutil.copy(data["one"], d / "good.tif")
    shutil.copy(data["one"], d / "locked" / "x.tif")
    os.chmod(d / "locked", 0)
    prefix = None
    if os.geteuid() == 0:  # root reads everything: run without that power
        if shutil.which("setpriv") is None:
            pytest.skip("running as root, and no setpriv to drop CAP_DAC_OVERRIDE")
        prefix = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search"]
    try:
        got = _python(f"""
            import json
            from hyperspy_mmdl.batch import run_batch
            r = run_batch([{str(d)!r}], {str(tmp_path / 'out')!r}, progress=False)
            print(json.dumps({{"rc": r.exit_code, "inputs": r.manifest["inputs"], "lines": r.report_lines()}}))
        """, prefix)
    finally:
        os.chmod(d / "locked", 0o755)
    by_name = {Path(e["file"]).name: e for e in got["inputs"]}
    assert by_name["good.tif"]["status"] == "ok"
    assert "cannot read this folder: Permission denied" in by_name["locked"]["error"]
    assert got["rc"] == 1
    assert any("locked: cannot read this folder" in line for line in got["lines"])


def test_long_input_name_is_processed(data, tmp_path):
    name = "g" * 236 + ".tif"  # 240 characters: valid on Linux (255 bytes)
    src = tmp_path / "in" / name
    src.parent.mkdir()
    shutil.copy(data["three"], src)
    out = tmp_path / "out"
    result = run_batch([src], out, progress=False)
    assert result.exit_code == 0 and result.manifest["state"] == "finished"
    (entry,) = result.manifest["inputs"]
    label_name = Path(entry["labels"]).name
    assert len(label_name.encode()) < 120 and label_name.startswith("g" * 90)
    import hyperspy.api as hs

    s = hs.load(out / entry["labels"])
    assert s.data.shape == (3,) + SHAPE and s.data.max() > 0
    assert s.metadata.General.original_filename == name
    assert not _tmp_files(out)
    again = run_batch([src], out, progress=False)
    assert again.counts["resumed"] == 3


def test_rewritten_input_leaves_no_old_shards(data, tmp_path):
    src = tmp_path / "a.tif"
    shutil.copy(data["three"], src)
    out = tmp_path / "out"
    first = run_batch([src], out, progress=False)
    assert len(list((out / "shards").glob("*.json"))) == 3
    shutil.copy(data["one"], src)  # rewritten: other content, one frame
    second = run_batch([src], out, progress=False)
    assert second.exit_code == 0 and second.manifest["removed_shards"] == 3
    records = list((out / "shards").glob("*.json"))
    assert [r.stem for r in records] == [second.manifest["items"][0]["key"]]
    old_keys = {e["key"] for e in first.manifest["items"]}
    assert not [p for p in (out / "shards").iterdir() if p.name.split(".")[0] in old_keys]
    # other inputs' shards are not touched
    other = tmp_path / "b.tif"
    shutil.copy(data["one"], other)
    run_batch([src, other], out, progress=False)
    third = run_batch([src, other], out, progress=False)
    assert third.counts["resumed"] == 2 and "removed_shards" not in third.manifest


# --------------------------------------------------------------------------- models refused once
@pytest.fixture(scope="module")
def segmenter(tmp_path_factory):
    from hyperspy_mmdl import models
    from hyperspy_mmdl.checkpoint import ModelCard, save_checkpoint

    net = models.create("unet_boundary", base_channels=4, depth=1)
    return save_checkpoint(tmp_path_factory.mktemp("m") / "boundaries.pt", net, ModelCard(
        "unet_boundary", config=net.default_cfg["config"], task="segment", input_size=[1, 64, 64]))


def test_wrong_task_is_refused_once_before_the_run(data, segmenter, tmp_path, capsys):
    out = tmp_path / "out"
    with pytest.raises(WrongTaskError, match="boundaries.pt is a 'segment' model; batch --classify needs a "
                                             "'classify' model"):
        run_batch([data["three"]], out, classify=segmenter, progress=False)
    assert not out.exists()  # nothing was started
    rc = mmdl_main(["batch", str(data["three"]), "--out", str(out), "--classify", str(segmenter),
                    "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "boundaries.pt is a 'segment' model" in err[0]


def test_damaged_model_is_refused_once_before_the_run(data, tmp_path, capsys):
    import torch

    from hyperspy_mmdl import models
    from hyperspy_mmdl.checkpoint import ModelCard, save_checkpoint

    net = models.create("psc_encoder", num_classes=3, head=True)
    with torch.no_grad():
        next(iter(net.parameters())).fill_(float("nan"))
    bad = save_checkpoint(tmp_path / "diverged.pt", net, ModelCard(
        "psc_encoder", config=net.default_cfg["config"], task="classify", input_size=[1, 112, 112],
        pixel_size=0.05, pixel_unit="µm", class_names=["small", "medium", "large"]))
    with pytest.raises(CheckpointError, match="diverged.pt: .*NaN or infinite values"):
        run_batch([data["three"]], tmp_path / "out", classify=bad, progress=False)
    rc = mmdl_main(["batch", str(data["three"]), "--out", str(tmp_path / "out"), "--classify", str(bad),
                    "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "diverged.pt" in err[0]


# --------------------------------------------------------------------------- disks
_RUN_IN_TMPFS = """
    import json, os, subprocess, sys, traceback
    from pathlib import Path
    from hyperspy_mmdl.batch import read_results, run_batch

    mnt, src, case = Path(sys.argv[1] if len(sys.argv) > 1 else {mnt!r}), {src!r}, {case!r}
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size={size}", "tmpfs", str(mnt)], check=True)
    out = mnt / "out"
    report = {{}}

    def tmp_files():
        return sorted(str(p.relative_to(out)) for p in out.rglob("*") if ".tmp" in p.name or
                      p.name.startswith(".old"))

    def manifest():
        try:
            return json.loads((out / "manifest.json").read_text())
        except OSError:
            return {{}}

    def attempt(**kw):
        try:
            r = run_batch([src], out, progress=False, **kw)
            return {{"rc": r.exit_code, "read_only": r.read_only, "resumed": r.counts.get("resumed"),
                    "done": r.counts.get("done"), "lines": r.report_lines()}}
        except Exception as err:
            return {{"error": type(err).__name__, "errno": getattr(err, "errno", None),
                    "filename": getattr(err, "filename", None), "message": str(err),
                    "traceback": traceback.format_exc()}}

    {body}
    subprocess.run(["umount", "-l", str(mnt)])
    print(json.dumps(report, default=str))
"""


def _in_tmpfs(case: str, size: str, src: Path, mnt: Path, body: str) -> dict:
    prefix = _mount_namespace()
    mnt.mkdir()
    code = _RUN_IN_TMPFS.format(mnt=str(mnt), src=str(src), case=case, size=size,
                                body=textwrap.indent(textwrap.dedent(body), "    ").strip())
    return _python(code, prefix, timeout=600)


def test_complete_results_on_a_read_only_disk_are_read_back(data, tmp_path):
    report = _in_tmpfs("read_only", "16m", data["three"], tmp_path / "mnt", """
        report["first"] = attempt()
        subprocess.run(["mount", "-o", "remount,ro", str(mnt)], check=True)
        report["again"] = attempt()
        g, f, m = read_results(out)
        report["read"] = {"grains": len(g), "frames": len(f), "state": m["state"]}
        report["other"] = attempt(segment="threshold")   # other parameters: cannot be done here
        from hyperspy_mmdl.cli import main
        import contextlib, io
        buf = io.StringIO()
        with contextlib.redirect_stderr(buf):
            report["cli_rc"] = main(["batch", src, "--out", str(out), "--no-progress"])
        report["cli"] = buf.getvalue()
    """)
    assert report["first"]["rc"] == 0
    again = report["again"]
    assert again["rc"] == 0 and again["read_only"] and again["done"] == 3
    assert again["lines"][:2] == ["  up to date: nothing to do (the output folder is read-only; nothing was written)",
                                  "  tables in nm"]
    assert report["read"]["frames"] == 3 and report["read"]["grains"] > 0 and report["read"]["state"] == "finished"
    other = report["other"]
    assert other["error"] == "OutputNotWritableError" and other["errno"] == 30
    assert other["filename"].endswith("/out") and "3 of 3 frame(s) are not done" in other["message"]
    assert report["cli_rc"] == 0 and "up to date" in report["cli"] and "read-only" in report["cli"]


def test_full_disk_stops_the_run_truthfully(data, tmp_path):
    report = _in_tmpfs("disk_full", "1m", data["twenty"], tmp_path / "mnt", """
        out.mkdir()
        st = os.statvfs(mnt)
        with open(mnt / "filler", "wb") as fh:       # about 200 kB left: the run starts, then fills it
            fh.write(b"\\0" * max(0, st.f_bavail * st.f_frsize - 200_000))
        report["full"] = attempt()
        report["manifest"] = manifest()
        report["tmp"] = tmp_files()
        report["locked"] = (out / ".mmdl-batch.lock").exists()
        (mnt / "filler").unlink()                     # room again: the rerun finishes
        report["again"] = attempt()
        report["tmp_after"] = tmp_files()
    """)
    full = report["full"]
    assert full["error"] == "OutputWriteError" and full["errno"] == 28, full
    assert full["filename"].startswith(str(tmp_path / "mnt" / "out")), full  # the file that could not be written
    assert "the disk is full" in full["message"] and "manifest.json says 'failed'" in full["message"]
    m = report["manifest"]
    assert m["state"] == "failed" and "the disk is full" in m["error"] and m["finished"]
    assert report["tmp"] == [] and not report["locked"]
    done = m["counts"]["done"]
    again = report["again"]
    assert again["rc"] == 0 and again["resumed"] == done and report["tmp_after"] == []


def test_disk_turned_read_only_mid_run(data, tmp_path):
    report = _in_tmpfs("readonly_mid", "32m", data["twenty"], tmp_path / "mnt", """
        def on_progress(done, total):
            if done == 5:
                subprocess.run(["mount", "-o", "remount,ro", str(mnt)], check=True)
        report["ro"] = attempt(on_progress=on_progress)
        subprocess.run(["mount", "-o", "remount,rw", str(mnt)], check=True)
        report["again"] = attempt()
        report["manifest"] = manifest()
        report["tmp"] = tmp_files()
    """)
    ro = report["ro"]
    assert ro["error"] == "OutputWriteError" and ro["errno"] == 30, ro
    assert ro["filename"].startswith(str(tmp_path / "mnt" / "out"))
    assert "the file system is read-only" in ro["message"]
    assert "The run stopped with 5 of 20 frame(s) done" in ro["message"]
    assert "manifest.json could not be updated either" in ro["message"]  # nothing can be written there
    assert report["again"]["rc"] == 0 and report["again"]["resumed"] == 5
    assert report["manifest"]["state"] == "finished" and report["tmp"] == []


# --------------------------------------------------------------------------- the lock
def _race(out: Path, trials: int, racers: int, stale: str | None) -> tuple[int, int]:
    """``trials`` trials in which ``racers`` processes take the lock at the same instant.

    Returns (trials with two holders at once, trials where nobody got it)."""
    import multiprocessing as mp

    ctx = mp.get_context("fork")
    barrier = ctx.Barrier(racers + 1)
    inside, peak, holders, guard = ctx.Value("i", 0), ctx.Value("i", 0), ctx.Value("i", 0), ctx.Lock()

    def racer():
        for _ in range(trials):
            barrier.wait()
            try:
                with _OutputLock(out):
                    with guard:
                        inside.value += 1
                        holders.value += 1
                        peak.value = max(peak.value, inside.value)
                    time.sleep(0.001)
                    with guard:
                        inside.value -= 1
            except OutputLockedError:
                pass
            barrier.wait()

    procs = [ctx.Process(target=racer, daemon=True) for _ in range(racers)]
    for p in procs:
        p.start()
    double = nobody = 0
    lock = out / LOCK_NAME
    for _ in range(trials):
        if stale is not None:
            lock.write_text(stale)
        peak.value = holders.value = 0
        barrier.wait()
        barrier.wait()
        double += peak.value > 1
        nobody += holders.value == 0
    for p in procs:
        p.join(timeout=60)
    return double, nobody


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


@pytest.mark.parametrize("trials", [100, pytest.param(1000, marks=pytest.mark.slow)])
def test_lock_race_never_has_two_holders(tmp_path, trials):
    import socket

    assert _race(tmp_path, trials, 4, None) == (0, 0)
    stale = f"{_dead_pid()} {socket.gethostname()}"  # left by a killed run
    assert _race(tmp_path, trials, 4, stale) == (0, 0)


def test_only_the_holder_removes_the_lock(tmp_path):
    lock = tmp_path / LOCK_NAME
    holder = _OutputLock(tmp_path).__enter__()
    assert writer_active(tmp_path)
    with pytest.raises(OutputLockedError, match=f"another batch run \\(pid {os.getpid()}\\) is writing here"):
        with _OutputLock(tmp_path):
            pass
    assert lock.exists() and writer_active(tmp_path)  # the refused run removed nothing
    holder.__exit__(None, None, None)
    assert not lock.exists() and not writer_active(tmp_path)


def test_lock_of_a_killed_run_is_taken_over(data, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        from hyperspy_mmdl.batch.lock import _OutputLock
        lock = _OutputLock(Path({str(out)!r})).__enter__()
        print("held", flush=True)
        time.sleep(600)
    """)], env=_env(), stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "held"
        with pytest.raises(OutputLockedError, match=f"pid {proc.pid}"):
            run_batch([data["one"]], out, progress=False)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert (out / LOCK_NAME).read_text().startswith(f"{proc.pid} ")  # left behind by the killed run
    result = run_batch([data["one"]], out, progress=False)
    assert result.exit_code == 0 and not (out / LOCK_NAME).exists()


# --------------------------------------------------------------------------- documentation
def test_quick_checksum_limit_is_said_in_help_and_readme(capsys):
    with pytest.raises(SystemExit):
        mmdl_main(["batch", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "restores the modification time" in text and "--checksum full" in text
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## Batch"):]
    section = " ".join(section[:section.index("\n## ", 5)].split())
    assert "--checksum full" in section and "modification time" in section



def test_model_at_an_impossible_scale_fails_the_input_once(data, tmp_path, capsys):
    """A valid TEM card (51 pm/px) on 10 nm/px frames would resample each to 12 500² px: the input is
    reported once, before any frame, and the other inputs go on."""
    from hyperspy_mmdl import models
    from hyperspy_mmdl.checkpoint import ModelCard, save_checkpoint

    net = models.create("psc_encoder", num_classes=3, head=True)
    tem = save_checkpoint(tmp_path / "tem.pt", net, ModelCard(
        "psc_encoder", config=net.default_cfg["config"], task="classify", input_size=[1, 112, 112],
        pixel_size=0.051, pixel_unit="nm", class_names=["small", "medium", "large"]))
    out = tmp_path / "out"
    rc = mmdl_main(["batch", str(data["three"]), "--out", str(out), "--classify", str(tem), "--no-progress"])
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if "tem.pt" in ln]
    assert rc == 1 and len(lines) == 1, err
    assert "three.tif: tem.pt: resampling the 64×64 px frame from 10 nm/px to the model's 0.051 nm/px" in lines[0]
    _, frames, manifest = read_results(out)
    assert manifest["counts"]["frames"] == 0 and manifest["inputs"][0]["status"] == "error"
