"""Refuse code and checks from places another user could have written (like sshd's StrictModes).

A cron job running as root loads plugin modules and checks.d files; if anyone but root can write them,
anyone can run code as root. The rule applies only when cisfix runs as root.
"""
from __future__ import annotations

import os
import stat
from pathlib import Path

from .errors import InputError


def require_trusted(path: Path) -> None:
    """Raise InputError unless `path` and its directory are owned by root and not group/other-writable."""
    if os.geteuid() != 0:
        return
    for item in (path, path.parent) if path.is_file() else (path,):
        st = os.stat(item)
        if st.st_uid != 0:
            raise InputError(item, f"owned by uid {st.st_uid}, not root; refusing to load checks or plugins from it")
        if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            raise InputError(item, f"writable by group or others (mode {stat.S_IMODE(st.st_mode):04o}); "
                                   "refusing to load checks or plugins from it")
