"""The node cisfix works on: every path the tool touches is a node path resolved under `--root`.

`/var/lib/kubelet/config.yaml` on a node mounted at `/host` is
`/host/var/lib/kubelet/config.yaml`; symlinks inside the node are followed as the
node itself would follow them (an absolute link target is re-rooted, `..` never climbs above the root).
"""
from __future__ import annotations

import os
import posixpath
import stat
from pathlib import Path
from typing import Optional

from .errors import InputError

_MAX_SYMLINKS = 40
STATE_DIR = "/var/lib/cisfix"  # node path of the state folder unless --state-dir says otherwise


def require_state_dir(state_dir: Path) -> None:
    """The state folder is a folder, or does not exist yet (it is created by the first change); a file,
    a device (`--state-dir /dev/null`) or a path through one is bad input, before any command reads
    PAUSE, HALT or the journal in it."""
    try:
        if stat.S_ISDIR(os.stat(state_dir).st_mode):
            return
    except FileNotFoundError:
        return
    except NotADirectoryError:
        pass
    except OSError as exc:
        raise InputError(state_dir, f"the state folder: {exc.strerror}")
    raise InputError(state_dir, "the state folder is not a directory")


class Node:
    def __init__(self, root: str = "/", state_dir: Optional[str] = None) -> None:
        self.root = Path(os.path.abspath(root))
        if self.root.exists() and not self.root.is_dir():  # a file given as --root: say so, not "no state folder"
            raise InputError(self.root, "--root is not a directory: give the node's root folder")
        # The state dir is a host path when given explicitly, like --root itself.
        self.state_dir = Path(os.path.abspath(state_dir)) if state_dir else self.host(STATE_DIR)
        require_state_dir(self.state_dir)

    def node_path(self, path: str) -> str:
        """Normalise a path given by the user into an absolute node path."""
        if not posixpath.isabs(path):
            if self.root != Path("/"):
                raise InputError(path, "must be an absolute path on the node (it is resolved under --root)")
            path = os.path.abspath(path)
        return posixpath.normpath("/" + path.lstrip("/"))

    def given_path(self, path: str) -> str:
        """A file the operator names: a node path, or a host path under --root (what a shell completes
        there), taken as the node path it names, so that no message shows the root twice."""
        if self.root != Path("/") and posixpath.isabs(path):
            inside = posixpath.relpath(posixpath.normpath(path), str(self.root))
            if not inside.startswith(".."):
                return self.node_path("/" + inside)
        return self.node_path(path)

    def host(self, node_path: str) -> Path:
        """The host path of a node path, without following symlinks."""
        return self.root / self.node_path(node_path).lstrip("/")

    def resolve(self, node_path: str) -> str:
        """Follow symlinks inside the node; return the node path of the real file (which may not exist)."""
        pending = [p for p in self.node_path(node_path).split("/") if p]
        done: list = []
        hops = 0
        while pending:
            part = pending.pop(0)
            if part == "..":
                if done:
                    done.pop()
                continue
            candidate = self.root.joinpath(*done, part)
            if candidate.is_symlink():
                hops += 1
                if hops > _MAX_SYMLINKS:
                    raise InputError(node_path, "too many levels of symbolic links")
                target = os.readlink(candidate)
                if target.startswith("/"):
                    done = []
                pending[:0] = [p for p in target.split("/") if p and p != "."]
                continue
            done.append(part)
        return "/" + "/".join(done)

    def display(self, node_path: str) -> str:
        """How a node path is shown to the user: the host path, so it can be pasted into a shell."""
        return str(self.host(node_path))
