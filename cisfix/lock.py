"""The run lock: one mutating cisfix run per node at a time (cron runs must never overlap)."""
from __future__ import annotations

import errno
import fcntl
import os
import stat
import time
from pathlib import Path
from typing import Optional

from .bounds import MAX_WAIT, number_problem
from .errors import CisfixError, LockHeld
from .statedir import StateWriteFailed


class RunLock:
    """`flock` on `<state>/lock`, holding the owner's pid for the message a second run prints.

    The kernel drops the lock when the process dies, so a killed run never leaves a stale lock. The
    state folder must exist (`cisfix.statedir.prepare_state_dir`).
    """

    def __init__(self, path: Path, wait: float = 0.0) -> None:
        problem = number_problem(wait, 0.0, MAX_WAIT, low_allowed=True)
        if problem:  # a NaN deadline is never reached: the run would wait for ever
            raise CisfixError(f"waiting {wait} s for the run lock: {problem}")
        self.path, self.wait = path, wait
        self._fd: Optional[int] = None

    def __enter__(self) -> "RunLock":
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, 0o600)
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                os.close(fd)
                raise OSError(errno.EINVAL, "not a regular file")
        except OSError as exc:
            raise StateWriteFailed(f"{self.path}: cannot take the run lock: {exc.strerror}; nothing was changed")
        deadline = time.monotonic() + self.wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                    os.close(fd)
                    raise
            if time.monotonic() >= deadline:
                holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
                os.close(fd)
                raise LockHeld(f"another cisfix run (pid {holder}) holds the lock {self.path}")
            time.sleep(0.1)
        os.ftruncate(fd, 0)
        try:  # the pid only tells a second run whom it waits for: a full disk must not stop this one
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except OSError:
            pass
        self._fd = fd
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._fd is not None
        os.close(self._fd)  # releases the flock
        self._fd = None
