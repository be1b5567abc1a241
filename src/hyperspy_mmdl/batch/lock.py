"""The output lock: one batch run per output folder (``OUT/.mmdl-batch.lock``).

The lock is an advisory :func:`fcntl.flock` on an open descriptor of the lock file,
taken without waiting. The kernel holds it for the open file, so

* two runs can never both hold it (taking it is one atomic system call; there is
  no window between creating the file and claiming it);
* a run that is killed lets go of it with its last descriptor: a lock left by a
  killed run is no obstacle, and nothing has to guess from a process id whether
  its owner is still alive;
* only the holder removes the file, while it still holds the lock. A competitor
  that opened the old file before it was removed finds, once it gets the lock, that
  the path names another file (or none) and starts again.

The file holds ``"<pid> <host>"`` of the holder, for the messages. A file written by
a run on another host is respected (on file systems where locks are not shared
between hosts it is the only sign of that run); remove it by hand if that run is
gone.
"""

from __future__ import annotations

import errno
import os
import socket
from pathlib import Path

LOCK_NAME = ".mmdl-batch.lock"

#: errno values meaning "this folder cannot be written" (the output is read-only for us).
_NOT_WRITABLE = {errno.EROFS, errno.EACCES, errno.EPERM}


class OutputLockedError(OSError):
    """Another batch run is writing to the same output folder."""


class OutputNotWritableError(OSError):
    """The output folder cannot be written (a read-only file system or no permission)."""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _holder(text: str) -> tuple[int, str]:
    try:
        pid, host = text.split()[:2]
        return int(pid), host
    except ValueError:
        return 0, ""


def _read_fd(fd: int) -> str:
    try:
        return os.pread(fd, 256, 0).decode("utf-8", "replace")
    except OSError:
        return ""


def _same_file(fd: int, path: Path) -> bool:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (mine.st_dev, mine.st_ino)


class _OutputLock:
    """``OUT/.mmdl-batch.lock``, held with :func:`fcntl.flock` (see the module's notes).

    Examples
    --------
    >>> import tempfile
    >>> out = Path(tempfile.mkdtemp())
    >>> with _OutputLock(out):
    ...     try:
    ...         _OutputLock(out).__enter__()
    ...     except OutputLockedError as err:
    ...         print("refused")
    refused
    """

    def __init__(self, out: Path):
        self.path = Path(out) / LOCK_NAME
        self.fd: int | None = None

    def __enter__(self):
        import fcntl

        me = f"{os.getpid()} {socket.gethostname()}"
        for _ in range(50):
            try:
                # read-only: a descriptor open for writing would keep the file system from being
                # remounted read-only (the pid is written through a second, short-lived one)
                fd = os.open(self.path, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
            except OSError as err:
                if err.errno in _NOT_WRITABLE:
                    raise OutputNotWritableError(err.errno, f"cannot write the output folder ({err.strerror})",
                                                 str(self.path.parent)) from None
                raise
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as err:
                text = _read_fd(fd)
                os.close(fd)
                if err.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                    raise
                pid, host = _holder(text)
                who = f" (pid {pid}{'' if host == socket.gethostname() else f' on {host}'})" if pid else ""
                raise OutputLockedError(f"{self.path.parent}: another batch run{who} is writing here; "
                                        "wait for it to finish") from None
            if not _same_file(fd, self.path):  # the holder before us removed it: start again
                os.close(fd)
                continue
            pid, host = _holder(_read_fd(fd))
            if host and host != socket.gethostname():
                os.close(fd)
                raise OutputLockedError(f"{self.path.parent}: locked by a batch run on {host} (pid {pid}); "
                                        f"remove {self.path} if that run is gone")
            try:
                wfd = os.open(self.path, os.O_WRONLY | os.O_TRUNC | os.O_CLOEXEC)
                try:
                    os.write(wfd, me.encode())
                finally:
                    os.close(wfd)
            except OSError as err:
                os.close(fd)
                if err.errno in _NOT_WRITABLE:
                    raise OutputNotWritableError(err.errno, f"cannot write the output folder ({err.strerror})",
                                                 str(self.path.parent)) from None
                raise
            self.fd = fd
            return self
        raise OutputLockedError(f"{self.path.parent}: could not take the lock {self.path}")

    def __exit__(self, *exc):
        fd, self.fd = self.fd, None
        if fd is None:
            return False
        try:
            if _same_file(fd, self.path):  # ours: remove it while still holding it
                self.path.unlink()
        except OSError:
            pass  # a read-only or full disk: the file stays, and is no obstacle to the next run
        finally:
            os.close(fd)  # lets go of the lock
        return False


def writer_active(out: Path) -> bool:
    """True when a batch run holds the lock of ``out`` (checked without writing anything).

    Examples
    --------
    >>> import tempfile
    >>> writer_active(Path(tempfile.mkdtemp()))
    False
    """
    import fcntl

    try:
        fd = os.open(Path(out) / LOCK_NAME, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return False
    except OSError:
        return True
    finally:
        os.close(fd)
