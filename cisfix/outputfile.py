"""Files root writes where a person or a collector asked (`audit --output`, drift's textfile, persist's
files), written as Ansible's `atomic_move` writes them, so that nobody else can redirect the write.

Root writes wherever it is told, so whoever can change what the name points to chooses what root
overwrites. Hence: the folder is resolved and must be trusted exactly as the state folder is (every
directory of its real path root-owned and not group/other-writable, `cisfix.trust`), after which only
root can change its entries; the file name itself is never resolved, and a target that exists but is
not a regular file (a link, a device such as /dev/full, a FIFO, a directory) is refused, never followed
nor replaced. The bytes go to a temp file in that folder (`cisfix.atomic`: O_EXCL|O_NOFOLLOW, fsync)
renamed over the target, so a reader sees the old file or the new one, never half of one. A missing
folder is created (0755) only below trusted ones. Every refusal or failure is one line naming the
file or folder (exit 2) and leaves the target as it was.
"""
from __future__ import annotations

import os
import posixpath
import stat
from pathlib import Path
from typing import Iterable, List, Optional, Tuple

from .atomic import Meta, make_folders, write_atomic
from .errors import InputError
from .node import Node
from .trust import require_trusted_dir, trusted_realpath
from .types import NodeInfo

_KINDS = ((stat.S_ISLNK, "a symbolic link"), (stat.S_ISDIR, "a directory"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"))


def managed_places(node: Node, info: Optional[NodeInfo]) -> List[Tuple[Path, str]]:
    """(real host path, why) of what no output may replace: the folders the kubelet reads pods from (any
    file written there runs), cisfix's state folder (its journal and backups), and every file a
    component's settings live in (changed only inside transactions)."""
    components = info.components.values() if info else ()
    places = [(posixpath.dirname(c.manifest), "is a static pod folder: the kubelet would run any file there as a pod")
              for c in components if c.manifest]
    places += [(path, f"is {c.name}'s settings file, which cisfix changes only inside a transaction")
               for c in components for path in (c.manifest, c.config, *c.flag_files) if path]
    real = [(Path(os.path.realpath(node.host(node.resolve(path)))), why) for path, why in places]
    return real + [(Path(os.path.realpath(node.state_dir)), "is cisfix's state folder (its journal and backups)")]


def write_output_file(path: Path, data: bytes, what: str, mode: int = 0o644,
                      keep_out: Iterable[Tuple[Path, str]] = ()) -> Path:
    """Replace the regular file `path` (a host path) with `data`, `mode` and root's ownership; return the
    path written. `what` names the file in messages ("the --output file"); `keep_out` lists (real path,
    why) of folders no output may land in and files it may not replace (`managed_places`). Raises
    InputError, with nothing written."""
    path = Path(os.path.abspath(path))
    if path.name in ("", ".", ".."):
        raise InputError(path, f"{what}: not a file name")
    why = f"; {what} is written only into a folder that root alone can change"
    target = path
    try:
        folder = _make_folder(path, what, why)
        target = folder / path.name
        for place, reason in keep_out:
            if place == target or place == folder or place in folder.parents:
                raise InputError(place, f"{reason}; refusing to write {what} there")
        _require_regular_or_missing(target, what, why)
        write_atomic(target, data, Meta(mode, os.geteuid(), os.getegid()))
    except OSError as exc:  # ENOSPC, EROFS, ENOTDIR on the way...: write_atomic removed its temp file
        raise InputError(target, f"cannot write {what}: {exc.strerror}; nothing was written")
    return target


def _require_regular_or_missing(target: Path, what: str, why: str) -> None:
    try:
        kind = next((name for test, name in _KINDS if test(os.lstat(target).st_mode)), "")
    except FileNotFoundError:
        return
    if kind:
        raise InputError(target, f"is {kind}; {what} replaces only a regular file, never follows or replaces anything else")
    trusted_realpath(target, why=why)  # in a shared folder such as /tmp, a file stays root's only if root owns it


def _make_folder(path: Path, what: str, why: str) -> Path:
    """The real path of the target's folder, trusted, created (0755) below trusted folders if missing."""
    real = trusted_realpath(path.parent, why=why)
    if ".." in real.parts:  # a link into a folder that does not exist yet, then out of it
        raise InputError(path.parent, f"{what}: no such directory")
    try:
        make_folders(real)  # one made meanwhile is checked below like any other folder
    except OSError as exc:
        raise InputError(exc.filename or real, f"cannot create the folder for {what}: {exc.strerror}; "
                                               "nothing was written")
    return require_trusted_dir(path.parent, why=why)


def write_report(path: str, text: str, node: Node, info: Optional[NodeInfo]) -> None:
    """A report's --output: atomically and 0644 (a collector such as node_exporter's textfile reads it, as
    another user), never through a link nor into a folder others can change, never among the static pods,
    a component's settings or the state folder."""
    write_output_file(Path(path), text.encode("utf-8"), "the --output file", keep_out=managed_places(node, info))
