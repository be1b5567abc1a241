"""Damaged and degenerate inputs through every entry point: a table of outcomes.

Each case (truncations at many offsets, patched header dimensions of DM3/DM4/TIFF, garbage
bytes under every extension, FIFOs and devices, a zarr store with a deleted chunk, images
with NaN/Inf/extreme/constant values, degenerate shapes, unusable calibrations) is built at
run time from the real files of ``../shared/data`` and run in a forked child under a time
limit and a memory cap (``RLIMIT_AS``: 1.5 GiB over the warmed interpreter); see
``tests/_bad_inputs.py`` for the cases and the classification.

Usage::

    python benchmarks/bad_input.py            # the representative sample (a few minutes)
    python benchmarks/bad_input.py --full     # every case
    python benchmarks/bad_input.py --json out.json

Prints, per entry point, how many cases were tried and how many ended clear / intact /
declined / unhelpful / silent / hang / memory. The target is 0 in silent, hang and memory.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from _bad_inputs import ARRAY_ENTRIES, ENTRIES, OUTCOMES  # noqa: E402


def table(records) -> str:
    rows = []
    head = ["entry point", "cases"] + list(OUTCOMES)
    for entry in ENTRIES + ARRAY_ENTRIES:
        mine = [r for r in records if r["entry"] == entry and r.get("damaged", True)]
        if not mine:
            continue
        c = Counter(r["outcome"] for r in mine)
        rows.append([entry, str(len(mine))] + [str(c.get(o, 0)) for o in OUTCOMES])
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(head)]
    line = lambda cells: "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |"  # noqa: E731
    out = [line(head), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out += [line(r) for r in rows]
    return "\n".join(out)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--full", action="store_true", help="every case, not the representative sample")
    p.add_argument("--json", default=None, help="also write every record here")
    p.add_argument("--only", default="", help="comma-separated case ids")
    p.add_argument("--entries", default="", help="comma-separated entry points")
    p.add_argument("--details", action="store_true", help="list every case that is not clear/intact")
    p.add_argument("--plan", default="", help="JSON {case id: [entry, ...]} (no controls)")
    p.add_argument("--records", default="", help="tabulate stored records (classified again) instead of running")
    a = p.parse_args()
    if a.records:
        from _bad_inputs import reclassify

        records = reclassify(json.loads(Path(a.records).read_text()))
        print(table(records))
        if a.details:
            _details(records)
        return 0
    env = dict(os.environ, OMP_NUM_THREADS="1", MALLOC_ARENA_MAX="2",
               PYTHONPATH=os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]))
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(a.json or Path(tmp) / "records.json")
        cmd = [sys.executable, str(ROOT / "tests" / "_bad_inputs.py"), str(out), "--verbose"]
        cmd += ["--full"] if a.full else []
        cmd += ["--only", a.only] if a.only else []
        cmd += ["--entries", a.entries] if a.entries else []
        cmd += ["--plan", a.plan] if a.plan else []
        subprocess.run(cmd, check=True, env=env)
        records = json.loads(out.read_text())
    print(table(records))
    if a.details:
        _details(records)
    return 0


def _details(records) -> None:
    for r in records:
        if r.get("damaged", True) and r["outcome"] not in ("clear", "intact", "declined"):
            res = r.get("result") or {}
            why = r.get("message") or res.get("upstream") or res.get("stderr", "")[-200:] or json.dumps(res)[:200]
            print(f"  {r['outcome']:9s} {r['entry']:14s} {r['case']:32s} {why[:160]!r}")


if __name__ == "__main__":
    sys.exit(main())
