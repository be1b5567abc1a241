"""Batch throughput and memory: frames/s and peak RSS of the whole process tree.

A ``FRAMES × SIZE × SIZE`` uint8 stack (default 2 000 × 1024 × 1024, 2 GB raw) is
generated to disk as ``.zspy`` chunk by chunk (one frame per chunk, never the
whole stack in memory), then processed by :func:`hyperspy_mmdl.batch.run_batch`
with 1 and 2 dask.distributed worker processes in one run. Peak memory is the
largest sum of the RSS of this process and all its children (the dask workers),
sampled every 0.1 s, so it counts shared pages more than once (an upper bound).

Usage::

    python benchmarks/batch.py                      # full size: 2 000 frames of 1024²
    python benchmarks/batch.py --frames 200         # smaller
    python benchmarks/batch.py --frames 100 --size 512 --workers 1,2 --dir /tmp/bench

The frames are 8 synthetic polycrystals (``hyperspy_mmdl.synthetic.polycrystal``)
rolled by a different offset per frame, so every frame differs and generation
stays cheap. Everything written is removed at the end unless ``--keep``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

N_BASES = 8


class TreeRSS:
    """Sample the summed RSS and CPU time of a process and its descendants in a background thread.

    ``peak`` is the largest summed RSS seen; ``cpu_seconds`` the user + system time
    the tree used while sampled (the last sample of every process that ended is
    kept); ``load`` the machine's 1-minute load average at the start and the end.
    """

    def __init__(self, interval: float = 0.1):
        import psutil

        self._proc = psutil.Process(os.getpid())
        self.interval = interval
        self.peak = 0
        self._cpu: dict[int, float] = {}
        self._cpu0 = 0.0
        self.load = (os.getloadavg()[0], None)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def sample(self) -> int:
        import psutil

        total = 0
        for p in [self._proc] + self._proc.children(recursive=True):
            try:
                total += p.memory_info().rss
                t = p.cpu_times()
                self._cpu[p.pid] = t.user + t.system
            except psutil.Error:
                pass
        return total

    @property
    def cpu_seconds(self) -> float:
        return sum(self._cpu.values()) - self._cpu0

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self.sample())
            self._stop.wait(self.interval)

    def __enter__(self):
        self.peak = self.sample()
        self._cpu0 = sum(self._cpu.values())
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.sample())
        self.load = (self.load[0], os.getloadavg()[0])
        return False


def generate_stack(path: Path, frames: int, size: int, pixel_size: float, mean_ecd: float) -> float:
    """Write the stack as zspy, one frame per chunk; returns the seconds taken."""
    import dask
    import dask.array as da
    from hyperspy.signals import LazySignal2D

    from hyperspy_mmdl.calibration import Calibration
    from hyperspy_mmdl.synthetic import polycrystal

    t0 = time.perf_counter()
    bases = []
    for k in range(N_BASES):
        img = np.asarray(polycrystal(shape=(size, size), pixel_size=pixel_size, unit="nm",
                                     mean_ecd=mean_ecd, seed=k).image)
        if img.dtype != np.uint8:
            img = np.clip(np.round(img * 255.0), 0, 255).astype(np.uint8)
        bases.append(img)

    def make(block_id=None):
        i = block_id[0]
        frame = np.roll(bases[i % N_BASES], shift=(i * 97) % size, axis=1)
        return np.roll(frame, shift=(i * 53) % size, axis=0)[None]

    data = da.map_blocks(make, chunks=((1,) * frames, (size,), (size,)), dtype=np.uint8,
                         meta=np.empty((0, 0, 0), np.uint8))
    cal = Calibration.from_pixel_size(pixel_size, "nm").with_frames()
    s = LazySignal2D(data, axes=cal.to_axes(data.shape))
    s.metadata.General.title = "batch benchmark stack"
    with dask.config.set(scheduler="threads", num_workers=2):
        s.save(path, overwrite=True, chunks=(1, size, size), show_progressbar=False)
    return time.perf_counter() - t0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=2000)
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--workers", default="1,2", help="comma-separated worker counts (0 = in-process)")
    ap.add_argument("--segment", default="auto")
    ap.add_argument("--param", "-p", default="", help="segmentation parameters, k=v,k2=v2")
    ap.add_argument("--pixel-size", type=float, default=10.0, help="nm per pixel")
    ap.add_argument("--mean-ecd", type=float, default=600.0, help="mean grain diameter (nm)")
    ap.add_argument("--dir", default=None, help="working folder (default: a temporary one)")
    ap.add_argument("--keep", action="store_true", help="keep the stack and the outputs")
    args = ap.parse_args(argv)

    from hyperspy_mmdl.batch import run_batch
    from hyperspy_mmdl.cli.batch import parse_pairs

    segment_params = parse_pairs(args.param, "--param")

    workdir = Path(args.dir or tempfile.mkdtemp(prefix="mmdl-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    raw = args.frames * args.size * args.size
    need = raw * 4  # stack (compressed) + label shards + label zspy, with margin
    free = shutil.disk_usage(workdir).free
    if free < need:
        print(f"not enough disk in {workdir}: {free / 1e9:.1f} GB free, {need / 1e9:.1f} GB needed",
              file=sys.stderr)
        return 2
    stack = workdir / "stack.zspy"
    counts = [int(w) for w in args.workers.split(",")]
    rows = []
    try:
        with TreeRSS() as gen_mem:
            gen_s = generate_stack(stack, args.frames, args.size, args.pixel_size, args.mean_ecd)
        print(f"generated {args.frames}×{args.size}×{args.size} uint8 ({raw / 1e9:.2f} GB raw) in "
              f"{gen_s:.1f} s; peak RSS {gen_mem.peak / 2**20:.0f} MiB", flush=True)
        for w in counts:
            out = workdir / f"out-{w}"
            shutil.rmtree(out, ignore_errors=True)
            last = {"t": None}
            t0 = time.perf_counter()

            def on_progress(done, total, last=last):
                if done == total:
                    last["t"] = time.perf_counter()

            with TreeRSS() as mem:
                result = run_batch([stack], out, segment=args.segment, segment_params=segment_params,
                                   workers=w or None, progress=True,
                                   on_progress=on_progress)
            wall = time.perf_counter() - t0
            proc = (last["t"] or time.perf_counter()) - t0
            c = result.counts
            rows.append(dict(workers=w, frames=c["done"], errors=c["error"], wall=wall, process=proc,
                             fps=c["done"] / proc, peak=mem.peak, cpu=mem.cpu_seconds, load=mem.load,
                             grains=result.manifest["outputs"].get("n_grains", 0)))
            print(f"workers={w}: {c['done']} frames in {proc:.1f} s (+{wall - proc:.1f} s assembly), "
                  f"peak RSS {mem.peak / 2**20:.0f} MiB", flush=True)
            if not args.keep:
                shutil.rmtree(out, ignore_errors=True)
    finally:
        if not args.keep and args.dir is None:
            shutil.rmtree(workdir, ignore_errors=True)
        elif not args.keep:
            shutil.rmtree(stack, ignore_errors=True)

    base = rows[0]["fps"] if rows else float("nan")
    print()
    print(f"stack {args.frames} × {args.size} × {args.size} uint8 (zspy), segment={args.segment} "
          f"{segment_params or ''}, {os.cpu_count()} CPU(s)")
    print("| workers | frames | failed | grains | processing s | wall s | frames/s | speed-up | "
          "CPU s/frame | cores busy | load avg (start→end) | peak RSS (tree) |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['workers'] or 'in-process'} | {r['frames']} | {r['errors']} | {r['grains']} | "
              f"{r['process']:.1f} | {r['wall']:.1f} | {r['fps']:.2f} | {r['fps'] / base:.2f}× | "
              f"{r['cpu'] / max(r['frames'], 1):.2f} | {r['cpu'] / r['wall']:.2f} | "
              f"{r['load'][0]:.1f}→{r['load'][1]:.1f} | {r['peak'] / 2**20:.0f} MiB |")
    print("cores busy = CPU time of the process tree / wall time; the load average counts every "
          "process on the machine (other jobs compete for the same cores)")
    over = [r for r in rows if r["peak"] >= 2 * 2**30]
    if over:
        print(f"peak memory over 2 GiB in {len(over)} run(s)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
