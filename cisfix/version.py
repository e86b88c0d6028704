"""The version string `cisfix --version` prints, with the build identity of a zipapp when there is one."""
from __future__ import annotations

from types import ModuleType
from typing import Optional

from . import __version__


def _build() -> Optional[ModuleType]:
    """build/build.sh writes the module `cisfix/_build.py` into the copy of the sources it packages; a
    checkout never has it. It is imported, not located through __file__, so this works the same
    whether the package is imported from the extracted archive or from anywhere else."""
    try:
        from . import _build  # type: ignore[attr-defined]  # generated at build time only
    except ImportError:
        return None
    return _build


def commit() -> Optional[str]:
    """The commit this build was made from, or None in a source checkout (no build, so no commit to
    name). Twelve hex digits identify it and keep `--version` short enough that argparse does not wrap
    it; `_build.COMMIT` holds the full hash."""
    build = _build()
    return None if build is None else build.COMMIT[:12] + ("-dirty" if build.DIRTY else "")


def version_string() -> str:
    """`cisfix 0.1.0 (commit <12 hex digits>, built <UTC time>)` from a release archive, else `(source checkout)`."""
    build = _build()
    if build is None:
        return f"cisfix {__version__} (source checkout)"
    return f"cisfix {__version__} (commit {commit()}, built {build.BUILT_AT})"
