"""`cisfix paths --for audit|fix`: every node path a run reads or writes, as the plugins declare them
(`cisfix_host_paths`), folded into what to give a container that runs cisfix with `--root /host`: each
path mounted at `/host<path>`, read-only unless it says `write`, and each `hide` path inside one of them
masked by an empty folder. deploy/kubernetes mounts exactly these (tests/test_fleet_kubernetes.py)."""
from __future__ import annotations

import argparse
import json
import posixpath
from dataclasses import dataclass
from typing import TYPE_CHECKING, Dict, Iterable, List, Tuple

from . import status
from .cli_context import AddCommand, format_option, load_plugins

if TYPE_CHECKING:  # pragma: no cover (every command's parser imports this module: it stays light)
    from .types import HostPath

RUNS = ("audit", "fix")


def _strength(access: str) -> int:
    """HIDE wins: what must never be seen is never given."""
    from .types import HIDE, READ, WRITE

    return {"": 0, READ: 1, WRITE: 2, HIDE: 3}[access]


@dataclass(frozen=True)
class Mount:
    path: str  # node path
    access: str  # READ, WRITE or HIDE
    folder: bool
    reasons: Tuple[str, ...]


def _access(declared: "HostPath", run: str) -> str:
    """A fix audits first: it needs what an audit reads too."""
    wanted = (declared.audit,) if run == "audit" else (declared.audit, declared.fix)
    return max(wanted, key=_strength)


def _inside(path: str, folder: str) -> bool:
    return path.startswith(folder.rstrip("/") + "/")


def mounts(declarations: Iterable["HostPath"], run: str) -> List[Mount]:
    """What one run needs, sorted by path: the strongest access declared for each path; a path inside a
    given folder that grants as much is left out (its reasons go to the folder); a `hide` path is kept
    only inside a folder that is given, and nothing inside it is given."""
    from .types import HIDE

    merged: Dict[str, Mount] = {}
    for declared in declarations:
        access = _access(declared, run)
        if not access:
            continue
        path = posixpath.normpath(declared.path)
        known = merged.get(path, Mount(path, "", declared.folder, ()))
        reasons = known.reasons + ((declared.reason,) if declared.reason not in known.reasons else ())
        merged[path] = Mount(path, max(known.access, access, key=_strength),
                             known.folder and declared.folder, reasons)
    given: Dict[str, Mount] = {}
    for path in sorted(merged):  # a folder sorts before what is inside it
        mount = merged[path]
        if any(given[f].access == HIDE and _inside(path, f) for f in given):
            continue  # never given, whatever else wants it
        folders = [f for f in given if given[f].folder and given[f].access != HIDE and _inside(path, f)]
        if mount.access == HIDE:
            if folders:
                given[path] = mount
            continue
        cover = next((f for f in reversed(folders) if _strength(given[f].access) >= _strength(mount.access)), None)
        if cover is None:
            given[path] = mount
        else:
            extra = tuple(r for r in mount.reasons if r not in given[cover].reasons)
            given[cover] = Mount(cover, given[cover].access, True, given[cover].reasons + extra)
    return list(given.values())


def cmd_paths(args: argparse.Namespace) -> int:

    plugins = load_plugins(args, require_node=False)
    found = mounts((p for answer in plugins.pm.hook.cisfix_host_paths(node_info=plugins.info) for p in answer or ()),
                   args.run)
    if args.format == "json":
        print(json.dumps([{"path": m.path, "access": m.access, "folder": m.folder, "reasons": list(m.reasons)}
                          for m in found], indent=2))
    else:
        for m in found:
            print(f"{m.access:<5}  {'folder' if m.folder else 'file  '}  {m.path}  # {'; '.join(m.reasons)}")
    return status.EXIT_OK


def add_command(command: AddCommand) -> None:
    paths = command("paths", cmd_paths, "the node paths a run reads and writes: what a container must mount")
    paths.add_argument("--for", dest="run", choices=RUNS, default="audit", help="the run (default audit)")
    format_option(paths)
