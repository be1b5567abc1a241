"""Executors: the in-process loop or dask.distributed, the same item function (:func:`process_item`)."""

from __future__ import annotations

from typing import Iterator

from .shards import process_item
from .store import OutputWriteError


class _Interrupted(Exception):
    pass


def _run_local(items, func, params, shard_dir, cancel) -> Iterator[dict]:
    for item in items:
        if cancel is not None and cancel.is_set():
            raise _Interrupted()
        yield func(item, params, shard_dir)


def _run_distributed(items, func, params, shard_dir, cancel, client) -> Iterator[dict]:
    from distributed import as_completed

    nthreads = max(1, sum(client.nthreads().values()))
    window = 2 * nthreads
    pending = iter(items)
    ac = as_completed()
    in_flight = 0

    def submit_next() -> bool:
        try:
            item = next(pending)
        except StopIteration:
            return False
        ac.add(client.submit(func, item, params, shard_dir, key=f"mmdl-batch-{item['key']}", pure=False))
        return True

    try:
        for _ in range(window):
            if not submit_next():
                break
            in_flight += 1
        while in_flight:
            if cancel is not None and cancel.is_set():
                raise _Interrupted()
            future = next(ac)
            in_flight -= 1
            try:
                record = future.result()
            except OutputWriteError:  # the output folder cannot be written: the run stops
                raise
            except Exception as err:  # the worker died or the task could not run
                record = {"key": future.key.removeprefix("mmdl-batch-"), "status": "error",
                          "error": f"{type(err).__name__}: {err}"}
            yield record
            if submit_next():
                in_flight += 1
    finally:
        for f in list(ac.futures):
            f.cancel()


class _Executor:
    """Context manager giving ``map(items)`` through the chosen back end."""

    def __init__(self, workers: int | None, scheduler: str | None):
        if workers is not None and scheduler is not None:
            raise ValueError("give either workers or scheduler, not both")
        if workers is not None and int(workers) < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self.workers = None if workers is None else int(workers)
        self.scheduler = scheduler
        self.client = None
        self.cluster = None

    def __enter__(self):
        if self.scheduler is not None or self.workers is not None:
            from distributed import Client, LocalCluster

            if self.scheduler is not None:
                self.client = Client(self.scheduler)
            else:
                self.cluster = LocalCluster(n_workers=self.workers, threads_per_worker=1, processes=True,
                                            dashboard_address=None)
                self.client = Client(self.cluster)
        return self

    def __exit__(self, *exc):
        if self.client is not None:
            self.client.close()
        if self.cluster is not None:
            self.cluster.close()
        return False

    @property
    def description(self) -> str:
        if self.scheduler is not None:
            return f"dask.distributed scheduler {self.scheduler}"
        if self.workers is not None:
            return f"dask.distributed LocalCluster, {self.workers} worker process(es)"
        return "in-process"

    def map(self, items, params, shard_dir, cancel=None) -> Iterator[dict]:
        if self.client is None:
            return _run_local(items, process_item, params, shard_dir, cancel)
        return _run_distributed(items, process_item, params, shard_dir, cancel, self.client)
