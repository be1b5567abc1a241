"""``benchmarks/gpu.py --dry-run``: the GPU table script runs end to end on CPU at tiny sizes."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

pytest.importorskip("torch")

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu.py"


def test_gpu_benchmark_dry_run(capsys):
    spec = importlib.util.spec_from_file_location("bench_gpu", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.main(["--dry-run"]) == 0
    out = capsys.readouterr().out
    from hyperspy_mmdl import models

    rows = [line.split() for line in out.splitlines()]
    for name in models.list_models():
        modes = {r[1] for r in rows if len(r) > 2 and r[0] == name and r[1] in ("fp32", "amp", "channels_last")
                 and r[2].replace(".", "", 1).isdigit()}  # a number, not "failed:"
        assert modes == {"fp32", "amp", "channels_last"}, (name, out)
    for name in ("psc_fusion", "eanet", "msfb_resnet50+pca_parallel"):  # training steps timed
        assert any(r and r[0] == name and r[1] == "1" and float(r[2]) > 0 for r in rows), (name, out)
    assert "tiled boundary U-Net" in out and "Grad-CAM vgg_grain" in out and "failed" not in out
