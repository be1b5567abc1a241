"""The output lock: one batch run per output folder (``OUT/.mmdl-batch.lock``)."""

from __future__ import annotations

import os
from pathlib import Path


class OutputLockedError(OSError):
    """Another batch run is writing to the same output folder."""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class _OutputLock:
    """``OUT/.mmdl-batch.lock``: one run per output folder; a lock left by a killed run is taken over."""

    def __init__(self, out: Path):
        self.path = out / ".mmdl-batch.lock"

    def __enter__(self):
        import socket

        me = f"{os.getpid()} {socket.gethostname()}"
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                try:
                    pid, host = self.path.read_text().split()[:2]
                    pid = int(pid)
                except (OSError, ValueError):
                    pid, host = 0, ""
                if host and host != socket.gethostname():
                    raise OutputLockedError(
                        f"{self.path.parent}: locked by a batch run on {host} (pid {pid}); remove "
                        f"{self.path} if that run is gone") from None
                if pid and _pid_alive(pid):
                    raise OutputLockedError(f"{self.path.parent}: another batch run (pid {pid}) is writing "
                                            "here; wait for it to finish") from None
                self.path.unlink(missing_ok=True)  # stale: the run was killed
                continue
            with os.fdopen(fd, "w") as fh:
                fh.write(me)
            return self
        raise OutputLockedError(f"{self.path.parent}: could not take the lock {self.path}")

    def __exit__(self, *exc):
        self.path.unlink(missing_ok=True)
        return False
