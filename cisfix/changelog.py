"""The append-only change log `<root>/var/log/cisfix.log`, for people who grep.

Every line about a change carries REMEDIATION or ROLLBACK, the txid and the file, so
`grep REMEDIATION /var/log/cisfix.log` lists what cisfix changed and when.
"""
from __future__ import annotations

import logging
import os
import stat
import sys
import time
from pathlib import Path

from .trust import enforced

log = logging.getLogger("cisfix")
CHANGE_LOG = "/var/log/cisfix.log"  # node path


class ChangeLog:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.skipped = False

    def write(self, word: str, txid: str, node_path: str, message: str) -> None:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        line = f"{stamp} {word} txid={txid} file={node_path} pid={os.getpid()} {message}\n"
        log.info("%s", line.rstrip("\n"))  # on stderr with -v, and for Runner(verbose=1)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        folder = os.stat(self.path.parent)
        if enforced() and folder.st_uid != 0:  # its owner may delete what root logs, or swap the file
            self._skip(f"its folder is owned by uid {folder.st_uid}, not root")
            return
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW | os.O_NONBLOCK
                         | os.O_CLOEXEC, 0o640)
        except OSError as exc:  # a link or a FIFO someone put in its place, or a full disk
            self._skip(exc.strerror or str(exc))
            return
        try:
            problem = _problem(os.fstat(fd))
            if problem:
                self._skip(problem)
                return
            os.write(fd, line.encode())
        except OSError as exc:
            self._skip(exc.strerror or str(exc))
        finally:
            os.close(fd)

    def _skip(self, why: str) -> None:
        """The journal, not this log, is the record of a change: a log that cannot be written safely is
        left alone, and said once."""
        if not self.skipped:
            self.skipped = True
            print(f"cisfix: warning: not appending to {self.path}: {why}", file=sys.stderr)


def _problem(st: os.stat_result) -> str:
    """Why root must not append to this file. Its folder may be writable by a log group (/var/log on
    Ubuntu is root:syslog 0775), so what it names is checked once opened: a hard link to another root
    file, or a file someone else created there, must never receive root's lines."""
    if not stat.S_ISREG(st.st_mode):
        return "not a regular file"
    if enforced() and st.st_uid != 0:
        return f"owned by uid {st.st_uid}, not root"
    if st.st_nlink != 1:
        return f"{st.st_nlink} hard links to it"
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return f"writable by group or others (mode {stat.S_IMODE(st.st_mode):04o})"
    return ""
