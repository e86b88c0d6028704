"""The version string `cisfix --version` prints, with the build identity of a zipapp when there is one."""
from __future__ import annotations

from . import __version__


def version_string() -> str:
    return f"cisfix {__version__}"
