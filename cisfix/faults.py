"""Named crash points for testing recovery: `CISFIX_FAULT=<point>` SIGKILLs the process there.

`CISFIX_FAULT=<point>@N` kills at the N-th time the point is reached (1-based), e.g. while writing the
second file of a transaction. `CISFIX_FAULT=enospc@N` makes the N-th write to the state folder (a
journal record or a backup) fail as on a full disk, a journal record after a short write of half of
it. Nothing else reads this variable; unset, every point is a no-op.
"""
from __future__ import annotations

import errno
import os
import signal
from collections import Counter

POINTS = (
    "after-begin",  # the begin record is on disk, nothing else
    "after-backup",  # every backup is written and journaled, no target touched
    "mid-write",  # half of a temp file is written next to its target
    "after-replace",  # a target was replaced, its `applied` record not yet written
    "before-commit",  # every target replaced, no commit record
    "mid-rollback",  # the first file of a rollback restored, the rest not
    "mid-metadata",  # a mode/owner change: owner changed, mode not yet
)

STATE_WRITES = ("journal-write", "backup-write")  # where `enospc@N` counts

_reached: Counter = Counter()


def _reached_now(name: str) -> bool:
    """Is this the time `CISFIX_FAULT` names for the point `name`?"""
    wanted = os.environ.get("CISFIX_FAULT")
    if not wanted:
        return False
    point, _, nth = wanted.partition("@")
    if point != name:
        return False
    _reached[name] += 1
    return _reached[name] == int(nth or 1)


def crash_point(name: str) -> None:
    if _reached_now(name):
        os.kill(os.getpid(), signal.SIGKILL)


def fail_point(name: str, fd: int = -1, data: bytes = b"") -> None:
    """A write to the state folder (`name` in STATE_WRITES) that may be made to fail with ENOSPC."""
    assert name in STATE_WRITES
    if _reached_now("enospc"):
        if fd >= 0:
            os.write(fd, data[: len(data) // 2])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
