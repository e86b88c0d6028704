"""kubeadm's `--patches DIR`: files named `target[suffix][+patchtype].{yaml|json}`, applied in file name
order to the object kubeadm generated for `target` (kubeadm's `app/util/patches/patches.go`).

Targets: the four static pods, `kubeletconfiguration` and `corednsdeployment`. The lab has no CoreDNS
Deployment: a `corednsdeployment` patch is read and its form checked (a mapping, or a list of JSON
patch operations), then reported as applied to nothing. Patch types: `strategic` (the default; lists
of containers, volumes and env merge by name, volumeMounts by mountPath, other lists are replaced),
`merge` (RFC 7386) and `json` (RFC 6902). A file's YAML may hold several patches as documents.

File names as kubeadm's parseFilename reads them: a name not ending in `.json` or `.yaml`, or not
starting with a target, is skipped (kubeadm prints "Ignoring file"); the rest of the name is matched
from its start only, so after `+` a patch type must follow at once (`+jsonx.yaml` is json) and a `+`
followed by anything else is an error ("unknown or missing patch type after '+'"), as are a file that
cannot be read or applied; an empty file is skipped. Sub-directories are walked too (filepath.Walk),
in lexical order of the whole path.
"""
from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List

from .layout import BadLabInput

COREDNS = "corednsdeployment"  # a target the lab has no object for
TARGETS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubeletconfiguration", COREDNS)
PATCH_TYPES = ("json", "merge", "strategic")
EXTENSION = re.compile(r".+\.(json|yaml)$")
FILE_NAME = re.compile(rf"^({'|'.join(map(re.escape, TARGETS))})([^.+\n]*)(\+)?({'|'.join(PATCH_TYPES)})?")
JSON_OPERATIONS = ("add", "remove", "replace", "move", "copy", "test")
MERGE_KEYS = {"containers": "name", "initContainers": "name", "volumes": "name", "env": "name",
              "volumeMounts": "mountPath", "ports": "containerPort"}


class PatchError(BadLabInput):
    """A patch file cannot be read or applied."""


@dataclass(frozen=True)
class Patch:
    target: str
    kind: str  # strategic, merge or json
    documents: tuple
    source: str


def load(directory: Path) -> List[Patch]:
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    if not directory.is_dir():
        raise PatchError(f"--patches {directory}: not a directory")
    patches = []
    for path in _walk(directory):
        match = FILE_NAME.match(path.name)
        if not EXTENSION.match(path.name) or not match:
            continue  # kubeadm: "Ignoring file ...: unknown target" (or extension)
        if match.group(3) and not match.group(4):
            raise PatchError(f"{path}: unknown or missing patch type after '+', must be one of "
                             f"[{' '.join(PATCH_TYPES)}]")
        try:
            text = path.read_text(encoding="utf-8")
            documents = tuple(d for d in YAML(typ="safe", pure=True).load_all(text) if d is not None)
        except (OSError, UnicodeDecodeError, YAMLError) as exc:
            raise PatchError(f"{path}: cannot read the patch: {str(exc).splitlines()[0]}") from None
        if not text:
            continue  # kubeadm: "Ignoring empty file"
        patch = Patch(match.group(1), match.group(4) or "strategic", documents, str(path))
        if patch.target == COREDNS:
            _check_form(patch)
        patches.append(patch)
    return patches


def _walk(directory: Path) -> List[Path]:
    """Every file under `directory`, as Go's filepath.Walk visits them: each folder's entries in
    lexical order, a sub-folder's files where the folder's name falls."""
    found: List[Path] = []
    for entry in sorted(directory.iterdir(), key=lambda p: p.name):
        if entry.is_dir() and not entry.is_symlink():
            found += _walk(entry)
        elif not entry.is_dir():
            found.append(entry)
    return found


def _check_form(patch: Patch) -> None:
    """What can be checked of a patch without its object: a mapping, or a list of JSON patch operations."""
    for document in patch.documents:
        if patch.kind != "json" and not isinstance(document, dict):
            raise PatchError(f"{patch.source}: a {patch.kind} patch must be a mapping")
        if patch.kind == "json" and not (isinstance(document, list) and all(
                isinstance(op, dict) and op.get("op") in JSON_OPERATIONS and isinstance(op.get("path"), str)
                for op in document)):
            raise PatchError(f"{patch.source}: a json patch is a list of operations with an op and a path")


def unapplied(patches: List[Patch]) -> List[str]:
    """The patch files for targets the lab has no object for (read and checked, applied to nothing)."""
    return [p.source for p in patches if p.target == COREDNS]


def apply(patches: List[Patch], target: str, obj: Dict[str, Any]) -> Dict[str, Any]:
    """`obj` with every patch for `target` applied, in order."""
    for patch in (p for p in patches if p.target == target):
        for document in patch.documents:
            try:
                if patch.kind == "json":
                    obj = json_patch(obj, document)
                else:
                    if not isinstance(document, dict):
                        raise PatchError(f"{patch.source}: a {patch.kind} patch must be a mapping")
                    obj = merge(obj, document, strategic=patch.kind == "strategic")
            except (KeyError, IndexError, ValueError, TypeError) as exc:
                raise PatchError(f"{patch.source}: cannot apply the patch: {exc}") from None
    return obj


def merge(obj: Any, patch: Any, strategic: bool, key: str = "") -> Any:
    """RFC 7386 merge (null deletes, maps merge, everything else replaces); strategic merge also merges
    the lists of MERGE_KEYS item by item."""
    if strategic and isinstance(patch, list) and isinstance(obj, list) and key in MERGE_KEYS:
        by = MERGE_KEYS[key]
        out = copy.deepcopy(obj)
        for item in patch:
            index = next((i for i, old in enumerate(out) if isinstance(old, dict) and old.get(by) == item.get(by)), None)
            if index is None:
                out.append(item)
            else:
                out[index] = merge(out[index], item, strategic)
        return out
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = copy.deepcopy(obj) if isinstance(obj, dict) else {}
    for name, value in patch.items():
        if value is None:
            out.pop(name, None)
        else:
            out[name] = merge(out.get(name), value, strategic, name)
    return out


def _pointer(path: str) -> List[Any]:
    if not path.startswith("/"):
        raise ValueError(f"bad JSON pointer {path!r}")
    return [part.replace("~1", "/").replace("~0", "~") for part in path.split("/")[1:]]


def _parent(doc: Any, parts: List[str]) -> Any:
    for part in parts[:-1]:
        doc = doc[int(part)] if isinstance(doc, list) else doc[part]
    return doc


def json_patch(obj: Any, operations: Any) -> Any:
    """RFC 6902: add, remove, replace, move, copy, test."""
    if not isinstance(operations, list):
        raise ValueError("a json patch is a list of operations")
    doc = copy.deepcopy(obj)
    for op in operations:
        name, parts = op["op"], _pointer(op["path"])
        if name in ("move", "copy"):
            source = _pointer(op["from"])
            holder = _parent(doc, source)
            value = copy.deepcopy(holder[int(source[-1])] if isinstance(holder, list) else holder[source[-1]])
            if name == "move":
                json_patch_remove(holder, source[-1])
            name, op = "add", {"value": value}
        parent, last = _parent(doc, parts), parts[-1]
        if name == "test":
            current = parent[int(last)] if isinstance(parent, list) else parent[last]
            if current != op["value"]:
                raise ValueError(f"test failed at {'/'.join(parts)}")
        elif name == "remove":
            json_patch_remove(parent, last)
        elif name in ("add", "replace"):
            if isinstance(parent, list):
                index = len(parent) if last == "-" else int(last)
                if name == "add":
                    parent.insert(index, op["value"])
                else:
                    parent[index] = op["value"]
            else:
                if name == "replace" and last not in parent:
                    raise KeyError(last)
                parent[last] = op["value"]
        else:
            raise ValueError(f"unknown operation {name!r}")
    return doc


def json_patch_remove(parent: Any, last: str) -> None:
    if isinstance(parent, list):
        del parent[int(last)]
    else:
        del parent[last]
