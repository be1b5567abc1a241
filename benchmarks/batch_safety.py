"""Model cards and batch edges: what a user meets, per entry point, before and after a fix.

Three parts:

* **model cards** — a small real classifier (``psc_encoder`` with a 3-class head, 112 px
  at 0.05 µm/px) and a segmentation U-Net are saved with :func:`save_checkpoint`; each
  defect of issue 16 is written into a copy of the file (the card's JSON or the
  weights edited, as a user or a broken script would) and the copy is given to four
  entry points: ``inference.classify`` (Python), ``s.classify`` (HyperSpy),
  ``mmdl batch --classify`` (command line, a 3-frame stack) and
  ``explain.attention_map``. One more row saves a checkpoint under ``umask 022``;
* **batch edges** — folders with a symlink loop, a FIFO, an unreadable sub-folder,
  a 240-character file name; a complete output on a read-only file system; a disk
  that fills up and one turned read-only mid-run (small tmpfs mounts in a private
  mount namespace, ``unshare``); an input rewritten between runs; each through
  ``run_batch`` (Python) and ``mmdl batch`` (command line);
* **the output lock** — racers in separate processes take ``OUT/.mmdl-batch.lock``
  at the same instant, trial after trial, with and without a stale lock (one left
  by a killed run) in place; a trial with two holders at once is a failure.

Every case runs in a child process (``PYTHONPATH`` = the sources under test, an
address-space limit, a timeout) and is judged:

``clear``      handled: refused once with napari-mmdl's error naming the file and the
               problem, or reported per input while the run goes on, or simply done
               right (a long name processed, a read-only complete output read back);
``unhelpful``  an error, but a raw one (a foreign exception type, no file named, a
               traceback, the same error once per frame, an untruthful manifest or
               temporary files left behind);
``silent``     no error, and results that are wrong or incomplete without a word;
``hang``       no answer within the timeout;
``memory``     a giant allocation (``MemoryError``) or the address-space limit hit.

The control rows (``good card``, ``plain folder``) must come out ``clear`` (they run).

Usage::

    python benchmarks/batch_safety.py                          # this checkout's src, all parts
    python benchmarks/batch_safety.py --src /work/main/src     # the same cases on another tree
    python benchmarks/batch_safety.py --part lock --trials 1000

Prints one table per part (cases × entry points, then the counts per entry point)
and the lock race (trials, trials with two holders at once).
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve()
ROOT = HERE.parents[1]
VERDICTS = ("clear", "unhelpful", "silent", "hang", "memory")

CARD_CASES = {
    "good card (control)": "good",
    "class names 2, outputs 3": "class_names_short",
    "input size [1,16,16]": "input_16",
    "input size 2000": "input_2000",
    "input channels 2": "input_chans_2",
    "pixel size -0.05 µm": "pixel_negative",
    "pixel size 0": "pixel_zero",
    "pixel size NaN": "pixel_nan",
    "pixel unit parsec": "unit_parsec",
    "pixel size 1e-7 µm": "pixel_tiny",
    "pixel size 5.1e-5 µm": "pixel_fine",
    "NaN weights": "nan_weights",
    "num_classes 1e9": "num_classes_huge",
    "wrong task (segmenter)": "wrong_task",
}
CARD_ENTRIES = ("inference.classify", "s.classify", "mmdl batch", "attention_map")
BATCH_CASES = {
    "plain folder (control)": "plain",
    "symlink loop in folder": "symlink_loop",
    "FIFO named *.tif": "fifo",
    "unreadable sub-folder": "unreadable",
    "240-character name": "long_name",
    "read-only complete output": "read_only",
    "disk full mid-run": "disk_full",
    "disk read-only mid-run": "readonly_mid",
    "input rewritten": "rewritten",
}
BATCH_ENTRIES = ("run_batch", "mmdl batch")


# =============================================================================== parent
def _env(src: str, home: str) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = src
    env["OMP_NUM_THREADS"] = "1"
    env["HOME"] = home
    env["MPLCONFIGDIR"] = os.path.join(home, "mpl")
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def _limits(mem_gib: float):
    def apply():
        limit = int(mem_gib * (1 << 30))
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        os.nice(5)
    return apply


def _unshare_prefix() -> list[str] | None:
    """A command prefix that runs in a private mount namespace where we may mount tmpfs."""
    exe = shutil.which("unshare")
    if exe is None:
        return None
    prefix = [exe, "-m"] if os.geteuid() == 0 else [exe, "-rm"]
    probe = subprocess.run(prefix + ["sh", "-c", "d=$(mktemp -d) && mount -t tmpfs -o size=64k tmpfs $d "
                                     "&& umount $d && rmdir $d"], capture_output=True)
    return prefix if probe.returncode == 0 else None


def _run_cases(args, part: str, entry: str, cases: list[str], work: Path, env: dict,
               prefix: list[str] | None = None) -> dict[str, dict]:
    """Run ``cases`` of one entry point in child processes; a child that hangs or dies is replaced."""
    results: dict[str, dict] = {}
    remaining = list(cases)
    while remaining:
        # the entry travels as its index: no "mmdl batch" in a command line that a broad pkill could match
        entries = CARD_ENTRIES + ("save_checkpoint",) if part == "cards" else BATCH_ENTRIES
        cmd = (prefix or []) + [sys.executable, str(HERE), "--child", part, "--entry", str(entries.index(entry)),
                                "--work", str(work),
                                "--cases", ",".join(remaining)]
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                preexec_fn=_limits(args.mem_gib))
        lines: queue.Queue = queue.Queue()
        err_tail: list[str] = []
        threading.Thread(target=lambda: [lines.put(ln) for ln in proc.stdout] + [lines.put(None)],
                         daemon=True).start()
        threading.Thread(target=lambda: [err_tail.append(ln) for ln in proc.stderr], daemon=True).start()
        # start-up (imports) is not timed as a case: a loaded machine takes minutes to import torch
        current, deadline = None, time.monotonic() + max(900.0, args.timeout)
        while True:
            try:
                line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                line = "TIMEOUT"
            if line == "TIMEOUT" or (line is None):
                break
            if line.startswith("READY"):
                deadline = time.monotonic() + args.timeout
            elif line.startswith("START "):
                current, deadline = line.split(" ", 1)[1].strip(), time.monotonic() + args.timeout
            elif line.startswith("RESULT "):
                res = json.loads(line[7:])
                results[res["case"]] = res
                remaining.remove(res["case"])
                current = None
        if line == "TIMEOUT":
            proc.kill()
            proc.wait()
            if current is None:  # stuck before its first case (import): give up on the rest
                for c in remaining:
                    results[c] = {"case": c, "verdict": "hang", "detail": "no answer (start-up)"}
                break
            results[current] = {"case": current, "verdict": "hang",
                                "detail": f"no answer within {args.timeout:.0f} s"}
            remaining.remove(current)
            continue
        rc = proc.wait()
        if current is not None:  # the child died in the middle of a case
            tail = "".join(err_tail[-5:])
            mem = rc in (-9, 137) or "MemoryError" in tail or "bad_alloc" in tail or "Cannot allocate" in tail
            results[current] = {"case": current, "verdict": "memory" if mem else "unhelpful",
                                "detail": f"child died (rc {rc}): {tail.strip()[-200:]}"}
            remaining.remove(current)
        elif remaining:
            for c in remaining:
                results[c] = {"case": c, "verdict": "unhelpful",
                              "detail": f"child ended (rc {proc.returncode}): {''.join(err_tail[-3:])[-300:]}"}
            break
    return results


def _table(title: str, cases: dict, entries, results: dict) -> list[str]:
    width = max(len(c) for c in cases) + 2
    col = max(12, max(len(e) for e in entries) + 2)
    out = [title, "", "case".ljust(width) + "".join(e.ljust(col) for e in entries), "-" * (width + col * len(entries))]
    for label, case in cases.items():
        row = label.ljust(width)
        for e in entries:
            r = results.get(e, {}).get(case)
            row += (r["verdict"] if r else "n/a").ljust(col)
        out.append(row)
    out += ["", "entry point".ljust(width) + "".join(v.ljust(11) for v in ("cases",) + VERDICTS),
            "-" * (width + 11 * (len(VERDICTS) + 1))]
    for e in entries:
        rs = [r for r in results.get(e, {}).values() if r is not None]
        counts = [sum(r["verdict"] == v for r in rs) for v in VERDICTS]
        out.append(e.ljust(width) + str(len(rs)).ljust(11) + "".join(str(n).ljust(11) for n in counts))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--src", default=str(ROOT / "src"), help="the sources under test (PYTHONPATH)")
    ap.add_argument("--part", choices=("all", "cards", "batch", "lock"), default="all")
    ap.add_argument("--trials", type=int, default=1000, help="lock-race trials per setting (default 1000)")
    ap.add_argument("--racers", type=int, default=4, help="processes racing for the lock per trial")
    ap.add_argument("--timeout", type=float, default=120.0, help="seconds per case before it counts as a hang")
    ap.add_argument("--mem-gib", type=float, default=6.0, help="address-space limit per child (GiB)")
    ap.add_argument("--json", help="also write the verdicts and details to this file")
    ap.add_argument("--verbose", "-v", action="store_true", help="print every case's detail")
    ap.add_argument("--entries", help="only these entry points (comma-separated, e.g. 'mmdl batch')")
    # child mode (internal)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--entry", help=argparse.SUPPRESS)
    ap.add_argument("--work", help=argparse.SUPPRESS)
    ap.add_argument("--cases", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        return child_main(args)

    src = str(Path(args.src).resolve())
    work = Path(tempfile.mkdtemp(prefix="mmdl-safety-"))
    os.chmod(work, 0o777)
    home = work / "home"
    home.mkdir()
    os.chmod(home, 0o777)
    env = _env(src, str(home))
    report: dict = {"src": src}
    lines = [f"sources under test: {src}", ""]
    try:
        if args.part in ("all", "cards", "batch"):
            t0 = time.monotonic()
            setup = subprocess.run([sys.executable, str(HERE), "--child", "setup", "--work", str(work)], env=env,
                                   capture_output=True, text=True, preexec_fn=_limits(args.mem_gib))
            if setup.returncode != 0:
                print(setup.stderr[-3000:], file=sys.stderr)
                return 1
            print(f"[setup {time.monotonic() - t0:.0f} s]", file=sys.stderr)
        if args.part in ("all", "cards"):
            res = {}
            for entry in CARD_ENTRIES:
                if args.entries and entry not in args.entries.split(","):
                    continue
                t0 = time.monotonic()
                res[entry] = _run_cases(args, "cards", entry, list(CARD_CASES.values()), work, env)
                print(f"[cards / {entry}: {time.monotonic() - t0:.0f} s]", file=sys.stderr)
                if args.json:
                    Path(args.json).write_text(json.dumps({"src": src, "cards": res}, indent=1, default=str))
            # the file mode of a saved checkpoint (one entry point)
            mode = _run_cases(args, "cards", "save_checkpoint", ["file_mode"], work, env)
            report["cards"] = {**res, "save_checkpoint": mode}
            lines += _table("MODEL CARDS (a tampered copy of a checkpoint per row)", CARD_CASES,
                            [e for e in CARD_ENTRIES if e in res], res)
            m = mode["file_mode"]
            lines += ["", f"checkpoint saved under umask 022: {m['verdict']} ({m['detail']})", ""]
        if args.part in ("all", "batch"):
            prefix = _unshare_prefix()
            res = {}
            for entry in BATCH_ENTRIES:
                if args.entries and entry not in args.entries.split(","):
                    continue
                res[entry] = {}
                t0 = time.monotonic()
                for case in BATCH_CASES.values():
                    if case in ("read_only", "disk_full", "readonly_mid") and prefix is None:
                        res[entry][case] = {"case": case, "verdict": "n/a",
                                            "detail": "no private mount namespace (unshare -m) here"}
                        continue
                    pre = prefix if case in ("read_only", "disk_full", "readonly_mid") else None
                    if case == "unreadable" and os.geteuid() == 0:  # root reads anything: drop that power
                        if shutil.which("setpriv") is None:
                            res[entry][case] = {"case": case, "verdict": "n/a", "detail": "root without setpriv"}
                            continue
                        pre = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search"]
                    res[entry].update(_run_cases(args, "batch", entry, [case], work, env, prefix=pre))
                print(f"[batch / {entry}: {time.monotonic() - t0:.0f} s]", file=sys.stderr)
                if args.json:  # kept as it comes: a run cut short keeps what it measured
                    Path(args.json).write_text(json.dumps({"src": src, "batch": res}, indent=1, default=str))
            report["batch"] = res
            lines += _table("BATCH EDGES", BATCH_CASES, [e for e in BATCH_ENTRIES if e in res], res) + [""]
        if args.part in ("all", "lock"):
            t0 = time.monotonic()
            out = subprocess.run([sys.executable, str(HERE), "--child", "lock", "--work", str(work), "--cases",
                                  f"{args.trials},{args.racers}"], env=env, capture_output=True, text=True)
            if out.returncode != 0:
                print(out.stderr[-3000:], file=sys.stderr)
                return 1
            race = json.loads(out.stdout.strip().splitlines()[-1])
            report["lock"] = race
            print(f"[lock race: {time.monotonic() - t0:.0f} s]", file=sys.stderr)
            lines += [f"LOCK RACE ({args.racers} processes per trial)", "",
                      "setting".ljust(28) + "trials".ljust(10) + "double holders".ljust(18) + "no holder",
                      "-" * 66]
            for setting in ("no stale lock", "stale lock in place"):
                r = race[setting]
                lines.append(setting.ljust(28) + str(r["trials"]).ljust(10) + str(r["double"]).ljust(18)
                             + str(r["none"]))
            lines.append("")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print("\n".join(lines))
    if args.verbose:
        for part in ("cards", "batch"):
            for entry, cases in report.get(part, {}).items():
                for case, r in cases.items():
                    print(f"{part:6s} {entry:20s} {case:18s} {r['verdict']:10s} {r.get('detail', '')[:300]}")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1, default=str))
    return 0


# =============================================================================== children
def _say(kind: str, payload) -> None:
    print(f"{kind} {payload if isinstance(payload, str) else json.dumps(payload, default=str)}", flush=True)


def child_main(args) -> int:
    work = Path(args.work)
    if args.child == "setup":
        _setup(work)
        return 0
    if args.child == "lock":
        trials, racers = (int(v) for v in args.cases.split(","))
        print(json.dumps(_lock_race(work, trials, racers)))
        return 0
    run = {"cards": _card_case, "batch": _batch_case}[args.child]
    args.entry = (CARD_ENTRIES + ("save_checkpoint",) if args.child == "cards" else BATCH_ENTRIES)[int(args.entry)]
    import hyperspy.api  # noqa: F401  (the imports every case needs, before the clock starts)
    import torch  # noqa: F401

    import hyperspy_mmdl.batch  # noqa: F401
    import hyperspy_mmdl.cli  # noqa: F401
    import hyperspy_mmdl.explain  # noqa: F401
    if args.child == "batch":  # warm up: the first frame of a process imports the whole chain
        import numpy as np
        import pyarrow.parquet  # noqa: F401

        from hyperspy_mmdl.batch import process_frame
        from hyperspy_mmdl.calibration import Calibration

        process_frame(np.random.default_rng(0).random((64, 64)), Calibration.from_pixel_size(10.0, "nm"))
    _say("READY", "")
    for case in args.cases.split(","):
        _say("START", case)
        try:
            verdict, detail = run(work, args.entry, case)
        except MemoryError as err:
            verdict, detail = "memory", f"MemoryError: {err}"
        except BaseException as err:  # noqa: BLE001 - the judge must not die
            verdict, detail = _judge_exception(err, [])
        _say("RESULT", {"case": case, "verdict": verdict, "detail": detail})
    return 0


def _write_stack(path: Path, n_frames: int, shape=(256, 256), pixel=20.0, seed=0):
    import hyperspy.api as hs
    import numpy as np

    from hyperspy_mmdl.synthetic import polycrystal

    sample = polycrystal(shape=shape, n_frames=n_frames, pixel_size=pixel, unit="nm", mean_ecd=200.0,
                         noise=0.05, seed=seed)
    data = np.asarray(sample.image, dtype=np.float32)
    cal = sample.calibration if sample.calibration.ndim == data.ndim else sample.calibration.with_frames()
    s = hs.signals.Signal2D(data, axes=cal.to_axes(data.shape))
    s.save(path, overwrite=True)
    return path


def _tamper(src: Path, dst: Path, card=None, weights=None):
    import torch

    payload = torch.load(src, weights_only=True)
    if card is not None:
        c = json.loads(payload["card"])
        card(c)
        payload["card"] = json.dumps(c)  # NaN stays the JSON literal NaN
    if weights is not None:
        weights(payload["state_dict"])
    torch.save(payload, dst)


def _setup(work: Path):
    import torch

    from hyperspy_mmdl import models
    from hyperspy_mmdl.checkpoint import ModelCard, save_checkpoint

    data = work / "data"
    data.mkdir()
    _write_stack(data / "stack.tif", 3)
    _write_stack(data / "one.tif", 1, shape=(128, 128))
    _write_stack(data / "twenty.tif", 20, shape=(128, 128), seed=3)
    m = work / "models"
    m.mkdir()
    torch.manual_seed(0)
    net = models.create("psc_encoder", num_classes=3, in_chans=1, head=True)
    good = save_checkpoint(m / "good.pt", net, ModelCard(
        "psc_encoder", config=net.default_cfg["config"], task="classify", input_size=[1, 112, 112],
        pixel_size=0.05, pixel_unit="µm", class_names=["small", "medium", "large"]))
    seg = models.create("unet_boundary", base_channels=4, depth=1)
    save_checkpoint(m / "wrong_task.pt", seg, ModelCard(
        "unet_boundary", config=seg.default_cfg["config"], task="segment", input_size=[1, 64, 64],
        pixel_size=20.0, pixel_unit="nm"))

    def setter(**kw):
        return lambda c: c.update(kw)

    edits = {
        "class_names_short": setter(class_names=["a", "b"]),
        "input_16": setter(input_size=[1, 16, 16]),
        "input_2000": setter(input_size=[1, 2000, 2000]),
        "input_chans_2": setter(input_size=[2, 112, 112]),
        "pixel_negative": setter(pixel_size=-0.05),
        "pixel_zero": setter(pixel_size=0),
        "pixel_nan": setter(pixel_size=float("nan")),
        "unit_parsec": setter(pixel_unit="parsec"),
        "pixel_tiny": setter(pixel_size=1e-7),
        "pixel_fine": setter(pixel_size=5.1e-5),
        "num_classes_huge": lambda c: (c["config"].update(num_classes=10 ** 9), c.update(class_names=None)),
    }
    for name, edit in edits.items():
        _tamper(good, m / f"{name}.pt", card=edit)
    shutil.copy(good, m / "good_copy.pt")

    def nan(sd):
        for v in sd.values():
            if v.is_floating_point():
                v.fill_(float("nan"))
                break
    _tamper(good, m / "nan_weights.pt", weights=nan)


def _mmdl(argv: list[str]) -> tuple[int | None, str, BaseException | None]:
    """``mmdl ARGV`` in this process: exit code, stderr, and an exception that escaped."""
    import contextlib
    import io

    from hyperspy_mmdl.cli import main

    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            rc = main(argv)
        return rc, err.getvalue(), None
    except SystemExit as e:
        return int(e.code or 0), err.getvalue(), None
    except BaseException as e:  # noqa: BLE001
        return None, err.getvalue(), e


def _judge_exception(err: BaseException, names: list[str]) -> tuple[str, str]:
    text = f"{type(err).__name__}: {err}"
    if isinstance(err, MemoryError) or "Unable to allocate" in text or "DefaultCPUAllocator" in text:
        return "memory", text[:300]
    try:
        from hyperspy_mmdl.errors import MMDLError
    except ImportError:  # pragma: no cover
        MMDLError = ()  # noqa: N806
    ours = isinstance(err, MMDLError) or isinstance(err, OSError)
    if ours and (not names or any(n in str(err) for n in names)):
        return "clear", text[:300]
    return "unhelpful", text[:300]


# ------------------------------------------------------------------------------- model cards
def _card_case(work: Path, entry: str, case: str) -> tuple[str, str]:
    import numpy as np

    if case == "file_mode":
        return _file_mode(work)
    ckpt = work / "models" / (case + ".pt" if case != "good" else "good_copy.pt")
    name = ckpt.name
    stack = work / "data" / "stack.tif"
    if entry in ("inference.classify", "attention_map", "s.classify"):
        from hyperspy_mmdl import explain, inference, io

        img = io.load(stack)
        try:
            if entry == "inference.classify":
                out = inference.classify(img.data, img.calibration.image, ckpt, device="cpu")
            elif entry == "attention_map":
                out = explain.attention_map(img.data, img.calibration.image, ckpt, device="cpu")
            else:
                import hyperspy.api as hs

                s = hs.load(stack, signal_type="microstructure")
                out = s.classify(ckpt, device="cpu", show_progressbar=False).data
        except BaseException as err:  # noqa: BLE001
            if case == "good":
                return "unhelpful", f"the control failed: {type(err).__name__}: {err}"
            return _judge_exception(err, [name])
        out = np.asarray(out)
        if case == "good":
            ok = np.isfinite(out).all()
            return ("clear" if ok else "unhelpful"), f"ran: output {out.shape}"
        return "silent", f"ran without a word: output {out.shape}, finite={bool(np.isfinite(out).all())}"
    # mmdl batch --classify over a 3-frame stack
    out = work / "runs" / f"cards-{case}"
    rc, err, exc = _mmdl(["batch", str(stack), "--out", str(out), "--classify", str(ckpt), "--no-progress"])
    if exc is not None:
        verdict, detail = _judge_exception(exc, [name])
        return ("unhelpful" if verdict == "clear" else verdict), f"escaped the CLI: {detail}"
    lines = [ln for ln in err.splitlines() if ln.strip()]
    if case == "good":
        return ("clear" if rc == 0 else "unhelpful"), f"rc {rc}: {err.strip()[-200:]}"
    if rc == 0:
        frames = ""
        try:
            import pandas as pd

            f = pd.read_csv(out / "frames.csv")
            frames = ", ".join(c for c in f.columns if c.startswith("p_") or c == "predicted_class")
            frames += f"; predicted_class {list(f.get('predicted_class', []))}"
        except Exception:  # noqa: BLE001
            pass
        return "silent", f"rc 0: wrote {frames}"
    if "Unable to allocate" in err or "MemoryError" in err or "allocate memory" in err:
        return "memory", err.strip()[-300:]
    per_frame = [ln for ln in lines if re.search(r"failed: .* frame \d+: ", ln)]
    if "Traceback" in err or name not in err or len(per_frame) > 1:
        why = "per frame" if len(per_frame) > 1 else ("traceback" if "Traceback" in err else "file not named")
        return "unhelpful", f"rc {rc} ({why}): {err.strip()[-300:]}"
    return "clear", f"rc {rc}: {err.strip()[-300:]}"


def _file_mode(work: Path) -> tuple[str, str]:
    from hyperspy_mmdl import models
    from hyperspy_mmdl.checkpoint import ModelCard, save_checkpoint

    old = os.umask(0o022)
    try:
        net = models.create("unet_boundary", base_channels=4, depth=1)
        path = save_checkpoint(work / "models" / "mode.pt", net, ModelCard(
            "unet_boundary", config=net.default_cfg["config"], task="segment", input_size=[1, 64, 64]))
    finally:
        os.umask(old)
    mode = path.stat().st_mode & 0o777
    return ("clear" if mode == 0o644 else "silent"), f"mode {mode:04o} (0644 expected: readable by the group)"


# ------------------------------------------------------------------------------- batch edges
def _batch_call(entry: str, inputs: list, out: Path, **kw):
    """``(result or None, rc, stderr text, exception)`` of one batch run through ``entry``."""
    if entry == "run_batch":
        import contextlib
        import io

        from hyperspy_mmdl.batch import run_batch

        err = io.StringIO()
        try:
            with contextlib.redirect_stderr(err):
                res = run_batch([str(i) for i in inputs], out, progress=False, **kw)
            return res, res.exit_code, "\n".join(res.report_lines()), None
        except BaseException as e:  # noqa: BLE001
            return None, None, err.getvalue(), e
    extra = []
    for k, v in kw.items():
        if k == "on_progress":
            continue
        extra += [f"--{k.replace('_', '-')}", str(v)]
    rc, err, exc = _mmdl(["batch", *map(str, inputs), "--out", str(out), "--no-progress", *extra])
    return None, rc, err, exc


def _manifest(out: Path) -> dict:
    try:
        return json.loads((out / "manifest.json").read_text())
    except (OSError, ValueError):
        return {}


def _tmp_files(out: Path) -> list[str]:
    return [str(p.relative_to(out)) for p in out.rglob("*") if ".tmp" in p.name or p.name.startswith(".old")]


def _done_frames(out: Path) -> int:
    m = _manifest(out)
    return sum(1 for e in m.get("items", []) if e.get("status") == "done")


def _mentions(res, err: str, out: Path, word: str) -> bool:
    m = res.manifest if res is not None else _manifest(out)
    text = err + json.dumps([e for e in m.get("inputs", []) if e.get("status") == "error"])
    return word in text


def _batch_case(work: Path, entry: str, case: str) -> tuple[str, str]:
    tag = entry.replace(" ", "_")
    base = work / "runs" / f"{case}-{tag}"
    base.mkdir(parents=True, exist_ok=True)
    one = work / "data" / "one.tif"
    if case == "plain":
        d = base / "in"
        d.mkdir()
        shutil.copy(one, d / "good.tif")
        res, rc, err, exc = _batch_call(entry, [d], base / "out")
        if exc is not None:
            return _judge_exception(exc, [])
        return ("clear" if rc == 0 and _done_frames(base / "out") == 1 else "unhelpful"), f"rc {rc}"
    if case in ("symlink_loop", "fifo", "unreadable"):
        d = base / "in"
        d.mkdir()
        shutil.copy(one, d / "good.tif")
        if case == "symlink_loop":
            os.symlink("loop.tif", d / "loop.tif")
            (d / "sub").mkdir()
            shutil.copy(one, d / "sub" / "b.tif")
            os.symlink("..", d / "sub" / "up")
            word, expect = "loop.tif", 2
        elif case == "fifo":
            os.mkfifo(d / "pipe.tif")
            word, expect = "pipe.tif", 1
        else:
            (d / "locked").mkdir()
            shutil.copy(one, d / "locked" / "x.tif")
            os.chmod(d / "locked", 0)
            word, expect = "locked", 1
        res, rc, err, exc = _batch_call(entry, [d], base / "out")
        if exc is not None:
            v, detail = _judge_exception(exc, [word])
            return ("unhelpful" if v == "clear" else v), f"the run stopped: {detail}"
        done = _done_frames(base / "out")
        said = _mentions(res, err, base / "out", word)
        if done >= expect and said:
            return "clear", f"rc {rc}, {done} frame(s) done, {word} reported"
        if not said:
            return "silent", f"rc {rc}, {done} frame(s) done, {word} not mentioned"
        return "unhelpful", f"rc {rc}, {done} of {expect} frame(s) done"
    if case == "long_name":
        d = base / "in"
        d.mkdir()
        name = "g" * 236 + ".tif"
        shutil.copy(one, d / name)
        res, rc, err, exc = _batch_call(entry, [d / name], base / "out")
        if exc is not None:
            return "unhelpful", f"{type(exc).__name__}: {str(exc)[:200]}"
        m = _manifest(base / "out")
        labels = [e.get("labels") for e in m.get("inputs", [])]
        ok = rc == 0 and m.get("state") == "finished" and labels and labels[0] and \
            (base / "out" / labels[0]).is_dir()
        if ok:
            import hyperspy.api as hs

            ok = hs.load(base / "out" / labels[0]).data.shape == (128, 128)
        return ("clear" if ok else "unhelpful"), f"rc {rc}, state {m.get('state')}, labels {labels}: " \
                                                 f"{err.strip()[-200:]}"
    if case == "rewritten":
        d = base / "in"
        d.mkdir()
        shutil.copy(work / "data" / "stack.tif", d / "a.tif")
        _batch_call(entry, [d / "a.tif"], base / "out")
        shutil.copy(one, d / "a.tif")  # rewritten: other content, 1 frame
        res, rc, err, exc = _batch_call(entry, [d / "a.tif"], base / "out")
        if exc is not None:
            return _judge_exception(exc, [])
        records = list((base / "out" / "shards").glob("*.json"))
        return ("clear" if len(records) == 1 else "silent"), f"rc {rc}, {len(records)} shard record(s) for 1 frame"
    # file systems: a tmpfs in our private mount namespace
    mnt = base / "mnt"
    mnt.mkdir()
    size = {"read_only": "64m", "disk_full": "1m", "readonly_mid": "64m"}[case]
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mnt)], check=True)
    out = mnt / "out"
    twenty = work / "data" / "twenty.tif"
    try:
        if case == "read_only":
            _batch_call(entry, [one], out)
            subprocess.run(["mount", "-o", "remount,ro", str(mnt)], check=True)
            res, rc, err, exc = _batch_call(entry, [one], out)
            if exc is not None:
                return "unhelpful", f"rerun: {type(exc).__name__}: {str(exc)[:200]}"
            from hyperspy_mmdl.batch import read_results

            try:
                grains, frames, _ = read_results(out)
            except Exception as e:  # noqa: BLE001
                return "unhelpful", f"rerun rc {rc}; read_results: {type(e).__name__}: {e}"
            ok = rc == 0 and len(frames) == 1
            return ("clear" if ok else "unhelpful"), f"rerun rc {rc}: {err.strip()[-200:]}; read back " \
                                                    f"{len(frames)} frame row(s)"
        if case == "disk_full":
            out.mkdir()
            # leave about 200 kB free: the run starts, then the disk fills
            free = os.statvfs(mnt).f_bavail * os.statvfs(mnt).f_frsize
            with open(mnt / "filler", "wb") as fh:
                fh.write(b"\0" * max(0, free - 200_000))
            res, rc, err, exc = _batch_call(entry, [twenty], out)
            return _judge_write_failure(res, rc, err, exc, out, "space")
        # readonly_mid: the file system turns read-only after a few frames
        state = {"done": False}

        def remount():  # retried: a file open for writing at that instant keeps it busy
            for _ in range(200):
                if subprocess.run(["mount", "-o", "remount,ro", str(mnt)], capture_output=True).returncode == 0:
                    break
                time.sleep(0.01)
            state["done"] = True

        if entry == "run_batch":
            def on_progress(done, total):
                if done == 5 and not state["done"]:
                    remount()
            res, rc, err, exc = _batch_call(entry, [twenty], out, on_progress=on_progress)
        else:
            def watch():
                while not state["done"]:
                    if len(list((out / "shards").glob("*.json"))) >= 5:
                        remount()
                    time.sleep(0.01)
            t = threading.Thread(target=watch, daemon=True)
            t.start()
            res, rc, err, exc = _batch_call(entry, [twenty], out)
            state["done"] = True
        # (nothing can be cleaned or recorded on a read-only disk: judged on what the user is told;
        # the rerun once the disk is writable again is in tests/test_batch_safety.py)
        return _judge_write_failure(res, rc, err, exc, out, "read-only", ro=True)
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def _judge_write_failure(res, rc, err, exc, out: Path, word: str, ro: bool = False) -> tuple[str, str]:
    text = f"{type(exc).__name__}: {exc}" if exc is not None else err
    m = _manifest(out)
    left = _tmp_files(out)
    if exc is None and rc == 0:
        return "silent", f"rc 0 although the disk failed: {text.strip()[-200:]}"
    names_path = str(out) in text
    problems = []
    if not names_path:
        problems.append("no path named")
    if "Traceback" in text:
        problems.append("traceback")
    if ".mmdl-batch.lock" in text:
        problems.append("reports the lock")
    if word not in text.lower() and not (word == "space" and "disk is full" in text.lower()):
        problems.append(f"'{word}' not said")
    if not ro:  # on a read-only disk nothing can be written or removed
        if m.get("state") != "failed":
            problems.append(f"manifest state {m.get('state')!r}")
        if left:
            problems.append(f"{len(left)} temporary file(s) left")
    detail = f"{'; '.join(problems) or 'ok'}: {text.strip()[-250:]}"
    return ("unhelpful" if problems else "clear"), detail


# ------------------------------------------------------------------------------- lock race
def _lock_race(work: Path, trials: int, racers: int) -> dict:
    """``trials`` trials per setting; ``racers`` processes take the lock at the same instant."""
    import multiprocessing as mp

    from hyperspy_mmdl.batch.lock import OutputLockedError, _OutputLock

    ctx = mp.get_context("fork")
    out = work / "lock-out"
    out.mkdir(exist_ok=True)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    import socket

    stale = f"{dead} {socket.gethostname()}"
    barrier = ctx.Barrier(racers + 1)
    inside = ctx.Value("i", 0)
    peak = ctx.Value("i", 0)
    holders = ctx.Value("i", 0)
    guard = ctx.Lock()

    def racer(n_trials):
        for _ in range(n_trials):
            barrier.wait()
            try:
                with _OutputLock(out):
                    with guard:
                        inside.value += 1
                        holders.value += 1
                        peak.value = max(peak.value, inside.value)
                    time.sleep(0.002)
                    with guard:
                        inside.value -= 1
            except OutputLockedError:
                pass
            barrier.wait()

    result = {}
    for setting in ("no stale lock", "stale lock in place"):
        procs = [ctx.Process(target=racer, args=(trials,)) for _ in range(racers)]
        for p in procs:
            p.start()
        double = none = 0
        for _ in range(trials):
            lock = out / ".mmdl-batch.lock"
            if setting == "stale lock in place":
                lock.write_text(stale)
            else:
                lock.unlink(missing_ok=True)
            peak.value = 0
            holders.value = 0
            barrier.wait()  # go
            barrier.wait()  # all done
            double += peak.value > 1
            none += holders.value == 0
        for p in procs:
            p.join()
        result[setting] = {"trials": trials, "double": double, "none": none}
    return result


if __name__ == "__main__":
    sys.exit(main())
