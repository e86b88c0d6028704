"""Trust nothing another user could have written (like sshd's StrictModes).

A cron job running as root loads plugin modules and checks.d files and believes its own journal; if
anyone but root can write them — or can write any directory on the way to them, and so swap what a
name points to — anyone can run code as root or have root restore a file of their choosing.

The rule, applied when cisfix runs as root: every directory of the *real* path, from `/` down, is owned
by root and not writable by group or others (a root-owned sticky directory such as `/tmp` is allowed,
but then the entry in it must be owned by root: only its owner can replace it); the file itself is
owned by root and not writable by group or others. Paths are resolved one component at a time, symlinks
followed as the kernel follows them, each link read from a directory already checked. Once every
directory of the real path is trusted, nobody but root can change what the path names, so the file
opened afterwards (without following links, then `fstat`ed) is the file that was checked.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
import stat
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Tuple, Type

from .errors import InputError
from .nodefile import read_open

if TYPE_CHECKING:  # pragma: no cover
    from .node import Node

_MAX_SYMLINKS = 40


class Untrusted(InputError):
    """A file or directory another user could have written; nothing is read from it."""


def enforced() -> bool:
    return os.geteuid() == 0


def _problem(st: os.stat_result) -> str:
    """Why a file or directory with this status cannot be trusted, or ''."""
    if st.st_uid != 0:
        return f"owned by uid {st.st_uid}, not root"
    writable = st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
    if writable and not (stat.S_ISDIR(st.st_mode) and st.st_mode & stat.S_ISVTX):
        return f"writable by group or others (mode {stat.S_IMODE(st.st_mode):04o})"
    return ""


def _shared(st: os.stat_result) -> bool:
    """A sticky directory others may write to (e.g. /tmp): its entries are safe only if root owns them."""
    return bool(st.st_mode & stat.S_ISVTX and st.st_mode & (stat.S_IWGRP | stat.S_IWOTH))


def trusted_realpath(path: Path, error: Type[InputError] = Untrusted, why: str = "",
                     within: Path = Path("/")) -> Path:
    """The real path of `path`, each directory on the way checked from `/` down (as root).

    Components that do not exist yet are appended unchecked (the caller creates them in a checked
    directory). `why` ends the message: what is refused. `within`: the root of the file system `path`
    is in, e.g. a process's `/proc/PID/root` (its absolute links lead back there); the path returned
    and the paths refused are under it.
    """
    pending = [p for p in str(Path(os.path.abspath(path))).split("/") if p]
    real = Path("/")

    def host(inner: Path) -> Path:
        return within.joinpath(*inner.parts[1:])

    parent = os.stat(within)  # stat: a process's root is a link to follow
    hops = 0

    def refuse(item: Path, problem: str) -> "InputError":
        return error(host(item), f"{problem}{why}")

    if enforced() and _problem(parent):
        raise refuse(real, _problem(parent))
    while pending:
        part = pending.pop(0)
        if part in (".", ".."):
            real = real.parent if part == ".." else real
            parent = os.stat(host(real))
            continue
        candidate = real / part
        try:
            st = os.lstat(host(candidate))
        except FileNotFoundError:
            return host(candidate).joinpath(*pending)
        if enforced() and _shared(parent) and st.st_uid != 0:
            raise refuse(candidate, f"owned by uid {st.st_uid} in the shared directory {host(real)}")
        if stat.S_ISLNK(st.st_mode):
            hops += 1
            if hops > _MAX_SYMLINKS:
                raise error(path, "too many levels of symbolic links")
            target = os.readlink(host(candidate))
            if target.startswith("/"):
                real, parent = Path("/"), os.stat(within)
            pending[:0] = [p for p in target.split("/") if p]
            continue
        if stat.S_ISDIR(st.st_mode) and pending and enforced() and _problem(st):
            raise refuse(candidate, _problem(st))
        real, parent = candidate, st
    return host(real)


def require_trusted_file(fd: int, path: Path, error: Type[InputError] = Untrusted, why: str = "") -> os.stat_result:
    """`fstat` an open descriptor: a regular file, and (as root) owned by root, not writable by others."""
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        kind = "a directory" if stat.S_ISDIR(st.st_mode) else "not a regular file"
        raise error(path, f"is {kind}{why}")
    if enforced() and _problem(st):
        raise error(path, f"{_problem(st)}{why}")
    return st


@contextmanager
def _opened_trusted(path: Path, error: Type[InputError], why: str) -> Iterator[Tuple[int, os.stat_result]]:
    """The file `path` names, opened once its real path was checked, with its own status checked:
    (descriptor, status). FileNotFoundError when it does not exist."""
    real = trusted_realpath(path, error, why)
    try:
        fd = os.open(real, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise error(path, f"{exc.strerror}{why}")
    try:
        yield fd, require_trusted_file(fd, path, error, why)
    finally:
        os.close(fd)


def read_trusted(path: Path, error: Type[InputError] = Untrusted, why: str = "") -> bytes:
    """The bytes of the file `path` names, read from the very file whose path and status were checked,
    bounded as a node file is (`nodefile.read_open`). A file that does not exist raises FileNotFoundError."""
    with _opened_trusted(path, error, why) as (fd, _):
        return read_open(fd, path)


def read_tail_trusted(path: Path, limit: int, error: Type[InputError] = Untrusted, why: str = "") -> bytes:
    """The last `limit` bytes of the file `path` names (a log that grows without bound), checked as
    `read_trusted` checks a file, from its first whole line on. FileNotFoundError when it does not exist."""
    with _opened_trusted(path, error, why) as (fd, st):
        start = max(0, st.st_size - limit)
        try:
            data = os.pread(fd, limit, start)
        except OSError as exc:
            raise error(path, f"{exc.strerror}{why}")
    return data.split(b"\n", 1)[1] if start and b"\n" in data else data


def require_trusted_dir(path: Path, error: Type[InputError] = Untrusted, why: str = "") -> Path:
    """The real path of a directory whose every directory, itself included, is trusted."""
    real = trusted_realpath(path, error, why)
    try:
        st = os.lstat(real)
    except FileNotFoundError:
        raise error(path, f"no such directory{why}")
    if not stat.S_ISDIR(st.st_mode):
        raise error(path, f"not a directory{why}")
    if enforced() and _problem(st):
        raise error(real, f"{_problem(st)}{why}")
    return real


def read_node_trusted(node: "Node", node_path: str, error: Type[InputError] = Untrusted, why: str = "") -> bytes:
    """`read_trusted` of a node path: its links followed inside the node, as the node itself would (never
    out of `--root`), then the real file and every folder above it checked."""
    return read_trusted(node.host(node.resolve(node_path)), error, why)
