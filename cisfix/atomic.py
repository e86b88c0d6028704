"""Atomic file replacement that never leaves anything behind in the target's directory.

The temp file's name starts with a dot: the kubelet ignores dotfiles in its static pod directory and
reads every other file there as a pod. After a crash the temp file may remain; `remove_strays` (called by
recovery) deletes it, recognising it by its name.
"""
from __future__ import annotations

import errno
import hashlib
import os
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from .faults import crash_point

_TEMP_MARK = ".cisfix-"


@dataclass(frozen=True)
class Meta:
    """Permission bits and ownership of a file."""

    mode: int
    uid: int
    gid: int

    @classmethod
    def of(cls, st: os.stat_result) -> "Meta":
        return cls(stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid)

    def as_dict(self) -> dict:
        return {"mode": f"{self.mode:04o}", "uid": self.uid, "gid": self.gid}

    @classmethod
    def from_dict(cls, d: dict) -> "Meta":
        return cls(int(d["mode"], 8), int(d["uid"]), int(d["gid"]))


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def file_sha256(path: Path) -> Optional[str]:
    """The file's hash, or None when it does not exist."""
    try:
        return sha256(path.read_bytes())
    except FileNotFoundError:
        return None


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_folders(path: Path, mode: int = 0o755) -> None:
    """Create the missing folders of `path` (a real path), each 0755 and `path` itself `mode` whatever
    the umask, each made durable in its parent; one made meanwhile by someone else is left to the
    caller's checks. Raises OSError naming the folder."""
    missing = []
    while not path.exists():
        missing.append(path)
        path = path.parent
    for directory in reversed(missing):
        wanted = mode if directory == missing[0] else 0o755
        try:
            directory.mkdir(mode=wanted)
        except FileExistsError:
            continue
        os.chmod(directory, wanted)  # mkdir's mode is filtered by the umask
        fsync_dir(directory.parent)


def _copy_xattrs(source: Path, fd: int) -> None:
    """Carry extended attributes such as `security.selinux` over to the replacement."""
    try:
        names = os.listxattr(source)
    except OSError:
        return  # no xattr support here, or the file is new
    for name in names:
        try:
            os.setxattr(fd, name, os.getxattr(source, name))
        except OSError as exc:
            if exc.errno not in (errno.ENOTSUP, errno.EPERM, errno.EACCES):
                raise


def write_atomic(
    target: Path,
    data: bytes,
    meta: Optional[Meta] = None,
    check_before_replace: Optional[Callable[[], None]] = None,
) -> None:
    """Replace `target` (a real file, not a symlink) with `data` in one rename.

    `meta` defaults to the existing file's mode and owner (a new file gets 0600 and the caller's ids).
    `check_before_replace` runs just before the rename and may raise to abort, e.g. when someone else
    changed the target since it was read.
    """
    directory = target.parent
    try:
        existing = os.stat(target)
    except FileNotFoundError:
        existing = None
    if meta is None:
        meta = Meta.of(existing) if existing else Meta(0o600, os.getuid(), os.getgid())
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}{_TEMP_MARK}", suffix=".tmp", dir=directory)
    except OSError as exc:  # a read-only or full folder
        raise _naming(target, exc) from exc
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            half = len(data) // 2
            out.write(data[:half])
            out.flush()
            crash_point("mid-write")
            out.write(data[half:])
            out.flush()
            os.fchown(out.fileno(), meta.uid, meta.gid)
            os.fchmod(out.fileno(), meta.mode)  # after chown, which may clear setuid bits
            if existing:
                _copy_xattrs(target, out.fileno())
            os.fsync(out.fileno())
        if check_before_replace:
            check_before_replace()
        os.replace(tmp, target)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.errno:
            raise _naming(target, exc) from exc
        raise
    fsync_dir(directory)


def _naming(target: Path, exc: OSError) -> OSError:
    """The error naming the target, not the temp file the user never asked about."""
    return OSError(exc.errno, exc.strerror, str(target))


def set_meta(target: Path, meta: Meta) -> None:
    """Owner, then mode (chown may clear setuid bits). Not atomic: recovery recognises the state between."""
    os.chown(target, meta.uid, meta.gid)
    crash_point("mid-metadata")
    os.chmod(target, meta.mode)
    fsync_dir(target.parent)


def remove_strays_under(directory: Path) -> list:
    """Delete the temp files a killed run left anywhere under `directory` (the backups); return them."""
    removed = []
    for stray in directory.rglob(f".*{_TEMP_MARK}*.tmp") if directory.is_dir() else ():
        stray.unlink(missing_ok=True)
        fsync_dir(stray.parent)
        removed.append(stray)
    return removed


def remove_strays(target: Path) -> list:
    """Delete temp files a killed run left next to `target`; return what was removed."""
    removed = []
    for stray in target.parent.glob(f".{target.name}{_TEMP_MARK}*.tmp"):
        stray.unlink(missing_ok=True)
        removed.append(stray)
    if removed:
        fsync_dir(target.parent)
    return removed
