"""The version string `cisfix --version` prints, with the build identity of a zipapp when there is one."""
from __future__ import annotations

from . import __version__


def version_string() -> str:
    """`cisfix 0.1.0 (commit <12 hex digits>, built <UTC time>)` from a release archive, else `(source checkout)`.

    build/build.sh writes the module `cisfix/_build.py` into the copy of the sources it packages; a
    checkout never has it. It is imported, not located through __file__, so this works the same
    whether the package is imported from the extracted archive or from anywhere else.
    """
    try:
        from . import _build  # type: ignore[attr-defined]  # generated at build time only
    except ImportError:
        return f"cisfix {__version__} (source checkout)"
    # Twelve hex digits identify the commit and keep the line short enough that argparse's
    # --version action does not wrap it; _build.COMMIT holds the full hash.
    commit = _build.COMMIT[:12] + ("-dirty" if _build.DIRTY else "")
    return f"cisfix {__version__} (commit {commit}, built {_build.BUILT_AT})"
