"""What audits read: the node's files and processes, each read once per run.

Audits never start a subprocess; they ask a `NodeState` for files (cached), parsed YAML, a
component's effective flags (the running process first, its manifest otherwise) and modes.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from .node import Node
from .types import Component, Evidence, NodeInfo


@dataclass(frozen=True)
class Process:
    pid: int
    argv: Tuple[str, ...]
    start_ticks: int  # /proc/<pid>/stat field 22: changes when the process is restarted


def parse_argv(argv: Tuple[str, ...]) -> List[Tuple[str, Optional[str]]]:
    """Flags of a command line in order: `--k=v`, `--k v` and bare `--k` (value None)."""
    flags: List[Tuple[str, Optional[str]]] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg.startswith("-") and len(arg) > 1 and arg != "--":
            name, eq, value = arg.lstrip("-").partition("=")
            if not eq and i + 1 < len(argv) and not argv[i + 1].startswith("-"):
                value, i = argv[i + 1], i + 1
            flags.append((name, value if (eq or value) else None))
        i += 1
    return flags


@dataclass(frozen=True)
class Flags:
    """A component's effective flags (the last occurrence wins) and where they were read."""

    values: Dict[str, Optional[str]]
    evidence: Evidence
    running: bool  # read from the live process, not from the manifest

    def get(self, name: str, default: Any = None) -> Any:
        return self.values.get(name, default)

    def __contains__(self, name: str) -> bool:
        return name in self.values


class NodeState:
    def __init__(self, node: Node, info: NodeInfo, proc_dir: Optional[Path] = None) -> None:
        self.node, self.info = node, info
        self.proc_dir = proc_dir or node.host("/proc")
        self._files: Dict[str, Optional[bytes]] = {}
        self._yaml: Dict[str, Any] = {}
        self._processes: Optional[List[Process]] = None

    # ---- files ----
    def read(self, path: str) -> Optional[bytes]:
        """The file's bytes (symlinks followed inside the node), or None when it does not exist."""
        if path not in self._files:
            try:
                self._files[path] = self.node.host(self.node.resolve(path)).read_bytes()
            except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
                self._files[path] = None
        return self._files[path]

    def yaml(self, path: str) -> Any:
        """The file parsed as YAML (the first document), or None when absent. Raises on invalid YAML."""
        if path not in self._yaml:
            data = self.read(path)
            if data is None:
                self._yaml[path] = None
            else:
                from ruamel.yaml import YAML

                self._yaml[path] = next(iter(YAML(typ="safe").load_all(data.decode("utf-8"))), None)
        return self._yaml[path]

    def stat(self, path: str) -> Optional[os.stat_result]:
        try:
            return os.stat(self.node.host(self.node.resolve(path)))
        except FileNotFoundError:
            return None

    def glob(self, pattern: str) -> List[str]:
        """Node paths matching a glob such as `/etc/kubernetes/pki/*.key`, sorted."""
        root = self.node.host("/")
        return sorted("/" + str(p.relative_to(root)) for p in root.glob(pattern.lstrip("/")))

    # ---- owners, by the node's own /etc/passwd and /etc/group ----
    def _names(self, path: str) -> Dict[str, int]:
        names = {"root": 0}
        for line in (self.read(path) or b"").decode("utf-8", "replace").splitlines():
            fields = line.split(":")
            if len(fields) > 2 and fields[2].isdigit():
                names[fields[0]] = int(fields[2])
        return names

    def owner_ids(self, owner: str) -> Optional[Tuple[int, int]]:
        """`user:group` (names or numbers) as (uid, gid); None when a name is unknown on the node."""
        user, _, group = owner.partition(":")
        uid = int(user) if user.isdigit() else self._names("/etc/passwd").get(user)
        gid = int(group) if group.isdigit() else self._names("/etc/group").get(group)
        return None if uid is None or gid is None else (uid, gid)

    def owner_name(self, uid: int, gid: int) -> str:
        users = {v: k for k, v in self._names("/etc/passwd").items()}
        groups = {v: k for k, v in self._names("/etc/group").items()}
        return f"{users.get(uid, uid)}:{groups.get(gid, gid)}"

    # ---- processes ----
    def processes(self) -> List[Process]:
        if self._processes is None:
            self._processes = []
            for entry in os.listdir(self.proc_dir) if self.proc_dir.is_dir() else ():
                if entry.isdigit():
                    process = _read_process(self.proc_dir / entry)
                    if process:
                        self._processes.append(process)
        return self._processes

    def processes_of(self, component: str) -> List[Process]:
        """The component's processes, newest first: its executable (or the script an interpreter runs,
        argv[1]) is the component's `process` setting — a full path when it contains a slash, else a name."""
        matches = [p for p in self.processes() if self.program_index(component, p) is not None]
        return sorted(matches, key=lambda p: p.start_ticks, reverse=True)

    def process(self, component: str) -> Optional[Process]:
        """The component's newest process."""
        matches = self.processes_of(component)
        return matches[0] if matches else None

    def process_flags(self, component: str, process: Process) -> Dict[str, Optional[str]]:
        """The flags on a process's command line, after the program (the last occurrence wins)."""
        return dict(parse_argv(process.argv[self.program_index(component, process) + 1:]))

    def program_index(self, component: str, process: Process) -> Optional[int]:
        wanted = self.component(component).process or component
        for index, arg in enumerate(process.argv[:2]):
            if arg == wanted or ("/" not in wanted and os.path.basename(arg) == wanted):
                return index
        return None

    def log_files(self, component: str) -> List[Path]:
        """The component's container logs in the kubelet's layout: /var/log/pods/<ns>_<pod>_<uid>/
        <container>/<restart count>.log — one file per container start."""
        root = self.node.host("/")
        return [p for p in root.glob(f"var/log/pods/*_{component}*_*/{component}/*.log") if p.is_file()]

    def log_tail(self, files: List[Path], lines: int = 5) -> str:
        """The last lines written to the newest of these container logs."""
        try:
            newest = _newest(files)
            text = newest.read_bytes()[-4096:].decode("utf-8", "replace") if newest else ""
        except OSError:  # rotated or removed by the kubelet while we looked
            return ""
        return " | ".join(line.strip() for line in text.splitlines()[-lines:] if line.strip())

    def component(self, name: str) -> Component:
        return self.info.components.get(name) or Component(name)

    def flags(self, component: str) -> Flags:
        """Effective flags: the running process's command line, else the static pod manifest's."""
        process = self.process(component)
        if process:
            return Flags(self.process_flags(component, process), Evidence(process=f"{component} (pid {process.pid})"), True)
        manifest = self.component(component).manifest
        text = self.read(manifest) if manifest else None
        if text is None:
            return Flags({}, Evidence(detail=f"{component} is not running and has no manifest"), False)
        from .editors.manifest import read_flags

        return Flags(dict(read_flags(text.decode("utf-8"), None, fallback=component)), Evidence(file=manifest), False)


def _newest(paths: List[Path]) -> Optional[Path]:
    return max(paths, key=lambda p: p.stat().st_mtime) if paths else None


def _read_process(proc: Path) -> Optional[Process]:
    try:
        argv = tuple(a.decode("utf-8", "replace") for a in (proc / "cmdline").read_bytes().split(b"\0") if a)
        stat = (proc / "stat").read_text()
    except OSError:
        return None  # gone, or a kernel thread we may not read
    if not argv:
        return None
    fields = stat[stat.rindex(")") + 2:].split()  # the name in parentheses may contain spaces
    return Process(int(proc.name), argv, int(fields[19]))
