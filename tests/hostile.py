"""A real unprivileged local user, for replaying attacks on what root trusts.

`mallory` is a system user created with `useradd` (never removed: concurrent test runs share it, and a
user without a home or a shell harms nothing). Her processes are real: another uid, no supplementary
groups. `shared_dir` is a folder she can reach (pytest's own temp folders are root's alone)."""
from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

NAME = "cisfix-mallory"
# Hers is the system's interpreter: the test's own may live where she cannot reach (/root).
HER_PYTHON = next((p for p in ("/usr/bin/python3", "/usr/local/bin/python3") if os.access(p, os.X_OK)), sys.executable)


@pytest.fixture(scope="session")
def mallory():
    """(uid, gid) of the unprivileged user; skipped when this is not root or useradd is missing."""
    if os.geteuid() != 0:
        pytest.skip("replaying attacks of another local user needs root (to create her and to be her victim)")
    if not shutil.which("useradd"):
        pytest.skip("useradd is not installed: no way to create an unprivileged user")
    try:
        entry = pwd.getpwnam(NAME)
    except KeyError:
        created = subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", NAME],
                                 capture_output=True, text=True)
        if created.returncode not in (0, 9):  # 9: created meanwhile by a concurrent run
            pytest.skip(f"useradd failed: {created.stderr.strip()}")
        entry = pwd.getpwnam(NAME)
    return entry.pw_uid, entry.pw_gid


def as_mallory(mallory, code: str, *args: str, background: bool = False, **kwargs):
    """Run Python code as her: a real process with her uid and gid and no other group."""
    uid, gid = mallory
    argv = [HER_PYTHON, "-c", code, *args]
    options = dict(user=uid, group=gid, extra_groups=[], env={"PATH": "/usr/bin:/bin"}, cwd="/", **kwargs)
    if background:
        return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, **options)
    return subprocess.run(argv, capture_output=True, text=True, **options)


@pytest.fixture
def shared_dir():
    """A root-owned 0755 folder in /tmp that she can traverse; removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix="cisfix-shared-"))
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def her_dir(shared_dir, mallory):
    """A folder she owns."""
    path = shared_dir / "mallory"
    path.mkdir()
    os.chown(path, *mallory)
    return path
