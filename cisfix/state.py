"""What audits read: the node's files and processes, each read once per run.

Audits never start a subprocess; they ask a `NodeState` for files (cached), parsed YAML, a
component's effective flags (the running process first, its manifest otherwise) and modes.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from .errors import EditError, InputError
from .node import Node
from .nodefile import decode_text, read_bytes, refuse_yaml_aliases
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
        self._boot_time: Optional[float] = None

    # ---- files ----
    def read(self, path: str) -> Optional[bytes]:
        """The file's bytes (symlinks followed inside the node), or None when it does not exist.
        Anything but a regular file of at most 1 MiB raises InputError naming it."""
        if path not in self._files:
            self._files[path] = read_bytes(self.node.host(self.node.resolve(path)), self.node.display(path))
        return self._files[path]

    def text(self, path: str) -> Optional[str]:
        """The file as UTF-8 text, or None when absent; NUL bytes or bad UTF-8 raise InputError."""
        data = self.read(path)
        return None if data is None else decode_text(data, self.node.display(path))

    def yaml(self, path: str) -> Any:
        """The file parsed as YAML (the first document), or None when absent. Invalid YAML and YAML
        aliases raise InputError as `FILE:LINE: reason`."""
        if path not in self._yaml:
            text = self.text(path)
            self._yaml[path] = None if text is None else _parse_yaml(text, self.node.display(path))
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

    def started_at(self, process: Process) -> float:
        """When a process started, as a Unix time: boot time plus its start in clock ticks."""
        if self._boot_time is None:
            try:
                stat = (self.proc_dir / "stat").read_text()
                self._boot_time = float(next(line.split()[1] for line in stat.splitlines() if line.startswith("btime ")))
            except (OSError, StopIteration, IndexError, ValueError):
                self._boot_time = 0.0  # unknown: every process seems to have started long ago
        return self._boot_time + process.start_ticks / os.sysconf("SC_CLK_TCK")

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
        """The last lines written to the newest of these container logs that has any: a start the
        kubelet has only just made has an empty log; the crash before it said why."""
        for path in sorted(files, key=_mtime, reverse=True):
            try:
                text = path.read_bytes()[-4096:].decode("utf-8", "replace")
            except OSError:  # rotated or removed by the kubelet while we looked
                continue
            words = [line.strip() for line in text.splitlines() if line.strip()]
            if words:
                return " | ".join(words[-lines:])
        return ""

    def component(self, name: str) -> Component:
        return self.info.components.get(name) or Component(name)

    def flags(self, component: str) -> Flags:
        """Effective flags: the running process's command line, else the static pod manifest's."""
        manifest = self.component(component).manifest
        if manifest:  # a broken manifest is an error even while the old process still runs
            self.yaml(manifest)
        process = self.process(component)
        if process:
            return Flags(self.process_flags(component, process), Evidence(process=f"{component} (pid {process.pid})"), True)
        text = self.text(manifest) if manifest else None
        if text is None:
            return Flags({}, Evidence(detail=f"{component} is not running and has no manifest"), False)
        from .editors.manifest import read_flags

        try:
            return Flags(dict(read_flags(text, None, fallback=component)), Evidence(file=manifest), False)
        except EditError as exc:
            raise InputError(self.node.display(manifest), str(exc))


def _parse_yaml(text: str, shown: str) -> Any:
    from ruamel.yaml import YAML
    from ruamel.yaml.error import MarkedYAMLError, YAMLError

    refuse_yaml_aliases(text, shown)
    try:
        return next(iter(YAML(typ="safe").load_all(text)), None)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        raise InputError(f"{shown}:{mark.line + 1}" if mark else shown,
                         f"invalid YAML: {exc.problem or exc.context or 'unparsable'}")
    except YAMLError as exc:
        raise InputError(shown, f"invalid YAML: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}")


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:  # rotated away meanwhile
        return 0.0


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
