"""The state folder (`<root>/var/lib/cisfix` or `--state-dir`): journal, backups, lock and HALT.

Root acts on what it finds there, so it must be as trusted as root's own files (see `cisfix.trust`):
the folder and every directory above it owned by root and not writable by group or others. It is
created with explicit modes whatever the umask (0700; missing parents 0755), an existing folder is
tightened to 0700, and a folder inside `--root` must really be inside it: a symlink that leads out of
the node is refused, so nothing is ever written outside the root.
"""
from __future__ import annotations

import datetime
import json
import os
import stat
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from . import status
from .atomic import make_folders
from .errors import CisfixError, InputError
from .node import Node
from .trust import Untrusted, require_trusted_dir, trusted_realpath

WHY = "; the state folder must be writable by root only"
LATEST = datetime.datetime(9999, 12, 31, tzinfo=datetime.timezone.utc).timestamp()


def is_timestamp(value: object) -> bool:
    """A time a state file may hold: a Unix time a date can say (NaN, infinities and the year 10000
    would end a later run in a traceback when printed)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value <= LATEST


class UntrustedState(Untrusted):
    """The state folder or journal could have been written by someone else: a person must look."""

    exit_code = status.EXIT_ROLLBACK_FAILED


class StateWriteFailed(CisfixError):
    """The state folder cannot be written (read-only, full, a folder root may not change such as
    /proc/1): a person must make room or make it writable (exit 4). Files there are replaced atomically,
    so nothing was half-written."""

    exit_code = status.EXIT_ROLLBACK_FAILED


@contextmanager
def writing_state(where: Path) -> Iterator[None]:
    """Writes to the state folder: a failure is one line naming the file (or `where`) and the reason."""
    try:
        yield
    except OSError as exc:
        raise StateWriteFailed(f"{exc.filename or where}: the state folder cannot be written: "
                               f"{exc.strerror or exc}; nothing was changed") from None


def load_state_json(data: bytes) -> object:
    """A state file's JSON. Nesting deeper than the parser's recursion is a ValueError like any other
    damage, which each reader refuses as a file cisfix did not write."""
    try:
        return json.loads(data)
    except RecursionError:
        raise ValueError("nested deeper than any state cisfix writes") from None


def confined(node: Node, host_path: Path) -> Path:
    """The real path of `host_path`; when it is inside the root, a symlink may not lead out of it."""
    real = Path(os.path.realpath(host_path))
    if _inside(host_path, node.root) and not _inside(real, node.root):
        raise InputError(host_path, f"leads outside --root {node.root} (to {real}); refusing to write there")
    return real


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents or root == Path("/")


def prepare_state_dir(node: Node) -> Path:
    """Check (and create, or tighten) the state folder before a mutating run writes to it."""
    confined(node, node.state_dir)
    real = trusted_realpath(node.state_dir, UntrustedState, WHY)
    with writing_state(node.state_dir):
        make_folders(real, 0o700)
        real = require_trusted_dir(node.state_dir, UntrustedState, WHY)
        st = os.stat(real)
        if stat.S_IMODE(st.st_mode) != 0o700 and st.st_uid == os.geteuid():
            os.chmod(real, 0o700)  # e.g. 0755 from an older cisfix: backups are root's to read
    return real
