"""What every control-plane node of a cluster must hold before its upgrade: files a fix created that the
persisted configuration refers to (an audit policy, an encryption configuration...) and persist's patch
files. With several control-plane nodes, `kubeadm upgrade apply` runs on one and `upgrade node` on each
other; a node missing such a file gets a pod that cannot start, and kubeadm rolls the node back.

The list — node path, sha256 and mode of each file, never its content (an encryption configuration holds
the cluster's key) — is published in the ConfigMap `kube-system/cisfix-control-plane-files` (key
`files`, JSON); each node's verdict (`persist --check`) is recorded beside it (key `node.<name>`: ready
or not, against which list, by the list's checksum). The files themselves travel in a bundle written
under `<state>/persist/control-plane/` (0700 folders, 0600 files, node paths mirrored, `index.json`),
copied by a person to the other nodes and installed there with `persist --install DIR`.

This module is data only: the list, its merge, comparing a node with it, the bundle on disk. The API
server is asked by `cisfix.persist` and `cisfix.persist_nodes`.
"""
from __future__ import annotations

import json
import os
import posixpath
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, List, Mapping, Optional, Tuple

from .atomic import Meta, sha256, write_atomic
from .errors import InputError
from .node import Node
from .trust import Untrusted, read_node_trusted, read_trusted, require_trusted_dir

NAME = "cisfix-control-plane-files"
BUNDLE = "persist/control-plane"  # under the state folder
PATCH_FILES = "persist/files"  # under the state folder: persist's patch files, for `kubeadm upgrade --patches`
INDEX = "index.json"
LIST_KEY = "files"
VERDICT_PREFIX = "node."
NODE_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")  # a DNS subdomain, as a Node's name is
MAX_FILES = 1000  # far more than any fix creates: a longer list is not one cisfix published


@dataclass(frozen=True)
class FileEntry:
    path: str  # node path
    sha256: str
    mode: int

    def as_dict(self) -> dict:
        return {"path": self.path, "sha256": self.sha256, "mode": f"{self.mode:04o}"}


def encode(entries: Iterable[FileEntry]) -> str:
    """The list as published: sorted by path, so that equal lists have equal text (and checksum)."""
    return json.dumps([e.as_dict() for e in sorted(entries, key=lambda e: e.path)], indent=1, sort_keys=True) + "\n"


def checksum(text: str) -> str:
    return sha256(text.encode())


def _valid_path(path: object) -> bool:
    return isinstance(path, str) and path.startswith("/") and posixpath.normpath(path) == path and path != "/" \
        and "\0" not in path


def decode(text: str, shown: str) -> List[FileEntry]:
    """The published list, or InputError naming `shown` and what is wrong with it."""
    try:
        items = json.loads(text)
    except (ValueError, RecursionError):
        raise InputError(shown, "the list of files is not JSON") from None
    if not isinstance(items, list) or len(items) > MAX_FILES:
        raise InputError(shown, f"the list of files is not a list of at most {MAX_FILES} files")
    entries = []
    for item in items:
        mode = item.get("mode") if isinstance(item, dict) else None
        digest = item.get("sha256") if isinstance(item, dict) else None
        if not (isinstance(item, dict) and _valid_path(item.get("path")) and isinstance(digest, str)
                and re.fullmatch(r"[0-9a-f]{64}", digest) and isinstance(mode, str) and re.fullmatch(r"0?[0-7]{3}", mode)):
            raise InputError(shown, "an entry is not {path: an absolute normal node path, sha256: 64 hex digits, "
                                    "mode: octal}")
        entries.append(FileEntry(item["path"], digest, int(mode, 8)))
    if len({e.path for e in entries}) != len(entries):
        raise InputError(shown, "the list names a file twice")
    return entries


def merge(current: List[FileEntry], mine: List[FileEntry], force: bool) -> Tuple[List[FileEntry], List[str], List[str]]:
    """The cluster's list with this node's files in it: (list, changes, conflicts). A file another node
    published with other content or mode is a conflict, kept unless forced: two nodes with two different
    encryption keys must not both be called right."""
    merged = {e.path: e for e in current}
    changes, conflicts = [], []
    for entry in mine:
        there = merged.get(entry.path)
        if there == entry:
            continue
        if there and not force:
            conflicts.append(f"{entry.path}: published with sha256 {there.sha256[:12]} mode {there.mode:04o}, this "
                             f"node has sha256 {entry.sha256[:12]} mode {entry.mode:04o}; kept (--force replaces it)")
            continue
        merged[entry.path] = entry
        changes.append(f"{entry.path}: sha256 {entry.sha256[:12]} mode {entry.mode:04o} "
                       f"({'replaced' if there else 'added'})")
    return sorted(merged.values(), key=lambda e: e.path), changes, conflicts


# ---- this node against the list ----

def local_file(node: Node, path: str) -> Optional[Tuple[FileEntry, bytes]]:
    """The node's file as a list entry, with its bytes; None when it does not exist. Untrusted (another
    user could have written it) is raised: such a file is never published nor called right."""
    try:
        data = read_node_trusted(node, path, why="; not taken as the cluster's file")
    except FileNotFoundError:
        return None
    mode = stat.S_IMODE(os.stat(node.host(node.resolve(path))).st_mode)
    return FileEntry(path, sha256(data), mode), data


def problems(node: Node, entries: List[FileEntry]) -> List[str]:
    """One line per listed file this node lacks or holds otherwise; [] when it holds them all."""
    lines = []
    for entry in entries:
        try:
            found = local_file(node, entry.path)
        except InputError as exc:
            lines.append(f"different {entry.path}: {exc.reason}")
            continue
        if found is None:
            lines.append(f"missing {entry.path}")
        elif found[0].sha256 != entry.sha256:
            lines.append(f"different {entry.path}: sha256 {found[0].sha256[:12]}, the published one is "
                         f"{entry.sha256[:12]}")
        elif found[0].mode != entry.mode:
            lines.append(f"different {entry.path}: mode {found[0].mode:04o}, the published one is {entry.mode:04o}")
    return lines


def verdict(list_checksum: str, lines: List[str]) -> str:
    return json.dumps({"ready": not lines, "files": list_checksum, "problems": lines[:50]}, sort_keys=True)


def confirmed(data: Mapping[str, str], name: str, list_checksum: str) -> bool:
    """Has node `name` recorded that it holds the files of this very list?"""
    try:
        said = json.loads(data.get(VERDICT_PREFIX + name, ""))
    except ValueError:
        return False
    return isinstance(said, dict) and said.get("ready") is True and said.get("files") == list_checksum


# ---- the bundle ----

def _private_dirs(base: Path, relative: str) -> Path:
    """base/relative's folder, each folder made 0700 (the bundle holds the cluster's key)."""
    folder = base
    for part in Path(relative).parent.parts:
        folder = folder / part
        folder.mkdir(mode=0o700, exist_ok=True)
        os.chmod(folder, 0o700)
    return folder


def write_bundle(directory: Path, files: Mapping[str, Tuple[FileEntry, bytes]]) -> None:
    """Write the files (node path -> entry and bytes) under `directory`, mirroring node paths, and the
    index. The state folder above it is trusted (root's, as every state folder is)."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    for path, (entry, data) in sorted(files.items()):
        relative = path.lstrip("/")
        _private_dirs(directory, relative)
        target = directory / relative
        if target.is_symlink() or (target.exists() and not target.is_file()):
            raise InputError(target, "is not a regular file; the bundle replaces only its own files")
        write_atomic(target, data, Meta(0o600, os.geteuid(), os.getegid()))
    write_atomic(directory / INDEX, encode(e for e, _ in files.values()).encode(),
                 Meta(0o600, os.geteuid(), os.getegid()))
    # What an earlier list held and this one does not (a replaced key among them) leaves the bundle.
    keep = {directory / INDEX} | {directory / path.lstrip("/") for path in files}
    for folder, _, names in os.walk(directory):
        for name in names:
            if Path(folder, name) not in keep:
                os.unlink(Path(folder, name))


def read_bundle(directory: Path, entries: List[FileEntry]) -> Dict[str, bytes]:
    """The bundle's file of each entry, checked against the published list before anything is written:
    InputError naming the first file refused (a link anywhere on its way, not a regular file, another
    user's, or content other than the published sha256)."""
    why = "; the bundle is read only from folders and files root alone can change"
    base = require_trusted_dir(directory, why=why)
    out = {}
    for entry in entries:
        shown = directory / entry.path.lstrip("/")
        here = base
        for part in entry.path.lstrip("/").split("/"):
            here = here / part
            try:
                if stat.S_ISLNK(os.lstat(here).st_mode):
                    raise Untrusted(shown, f"is reached through the symbolic link {here}; refused, nothing installed")
            except FileNotFoundError:
                raise InputError(shown, "not in the bundle; nothing installed") from None
        data = read_trusted(here, why=f"{why}; nothing installed")
        if sha256(data) != entry.sha256:
            raise InputError(shown, f"sha256 {sha256(data)[:12]} is not the published {entry.sha256[:12]}; "
                                    "nothing installed")
        out[entry.path] = data
    return out
