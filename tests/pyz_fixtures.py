"""The release archive, built once per test session with build/build.sh and shared by every test that
runs it (the zipapp's own tests, the fleet playbook), so the suite builds it once."""
from __future__ import annotations

import fcntl
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BUILD_SH = REPO / "build" / "build.sh"
WHEELS_UNAVAILABLE = 3  # build.sh's exit status when the pinned wheels are neither cached nor downloadable


def build(outdir: Path) -> Path:
    """dist/cisfix.pyz and its .sha256 in `outdir`; skips when the pinned wheels cannot be had."""
    # One build at a time: test workers share build/.cache and the generated cisfix/_build.py.
    lock = REPO / "build" / ".cache" / "build.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        result = subprocess.run(["bash", str(BUILD_SH), str(outdir)], capture_output=True, text=True)
    if result.returncode == WHEELS_UNAVAILABLE:
        pytest.skip("cannot build cisfix.pyz: the pinned wheels are not in build/.cache/wheels and the "
                    "package index is unreachable; run build/build.sh once online")
    assert result.returncode == 0, result.stdout + result.stderr
    return outdir / "cisfix.pyz"


@pytest.fixture(scope="session")
def pyz(tmp_path_factory) -> Path:
    return build(tmp_path_factory.mktemp("dist"))
