"""Named crash points for testing recovery: `CISFIX_FAULT=<point>` SIGKILLs the process there.

`CISFIX_FAULT=<point>@N` kills at the N-th time the point is reached (1-based), e.g. while writing the
second file of a transaction. Nothing else reads this variable; unset, every point is a no-op.
"""
from __future__ import annotations

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
)

_reached: Counter = Counter()


def crash_point(name: str) -> None:
    wanted = os.environ.get("CISFIX_FAULT")
    if not wanted:
        return
    point, _, nth = wanted.partition("@")
    if point != name:
        return
    _reached[name] += 1
    if _reached[name] == int(nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)
