"""What audits read: the node's files and processes, each read once per run.

Audits never start a subprocess; they ask a `NodeState` for files (cached), parsed YAML, a
component's effective flags (the running process first, its manifest otherwise) and modes.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple

from . import flags, sources
from .errors import EditError, InputError
from .node import Node
from .nodefile import Composed, compose_yaml, decode_text, parse_config_yaml
from .shown import shown
from .types import ArgList, Component, Evidence, NodeInfo

if TYPE_CHECKING:  # pragma: no cover
    from .editors.distconfig import DistConfig
    from .editors.flagfile import FlagFile
    from .settings import Settings


@dataclass(frozen=True)
class Process:
    pid: int
    argv: Tuple[str, ...]
    start_ticks: int  # /proc/<pid>/stat field 22: changes when the process is restarted


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
    def __init__(self, node: Node, info: NodeInfo, proc_dir: Optional[Path] = None, live: bool = False) -> None:
        self.node, self.info = node, info
        self.live = live  # read a running component's served configuration (verification after a change)
        self.proc_dir = proc_dir or node.host("/proc")
        self._files: Dict[str, Tuple[Optional[bytes], Any]] = {}  # node path -> (bytes, (size, mtime))
        self._settings: Dict[str, "Settings"] = {}
        self._processes: Optional[List[Process]] = None
        self._own: Dict[str, List[Process]] = {}  # component -> its own processes (see processes_of)
        self._flags: Dict[str, Flags] = {}  # component -> its effective flags (see flags)
        self._boot_time: Optional[float] = None
        self._committed: Optional[Dict[str, str]] = None  # node path -> sha256 cisfix last committed
        self._dist_configs: Dict[Tuple[str, str], "DistConfig"] = {}  # (config, drop-ins) -> merged files

    # ---- files ----
    def read(self, path: str) -> Optional[bytes]:
        """The file's bytes (symlinks followed inside the node), or None when it does not exist.
        Anything but a regular file of at most 1 MiB raises InputError naming it."""
        if path not in self._files:
            self._files[path] = sources.read(self.node.host(self.node.resolve(path)), self.node.display(path))
        return self._files[path][0]

    def cisfix_wrote(self, path: str) -> bool:
        """Whether the file holds exactly what a committed cisfix transaction last wrote to it: a plan may
        use it again (after `kubeadm upgrade` dropped the flag that named it, say) instead of asking a
        person to review a file nobody else wrote."""
        from .atomic import sha256
        from .journal import Journal

        if self._committed is None:
            self._committed = {}
            for tx in Journal(self.node.state_dir / "journal.jsonl").transactions().values():
                if tx.state == "committed":
                    self._committed.update((f["path"], f["after"]["sha256"]) for f in tx.files)
        data = self.read(path)
        return data is not None and self._committed.get(self.node.resolve(path)) == sha256(data)

    def text(self, path: str) -> Optional[str]:
        """The file as UTF-8 text, or None when absent; NUL bytes or bad UTF-8 raise InputError."""
        data = self.read(path)
        return None if data is None else decode_text(data, self.node.display(path))

    def _parsed(self, path: str, kind: str, parse) -> Any:
        """A file parsed once per run (see `cisfix.sources`); None when it does not exist."""
        data = self.read(path)
        if data is None:
            return None
        return sources.parsed(self.node.host(path), data, self._files[path][1], kind, parse)

    def yaml(self, path: str) -> Any:
        """The file parsed as YAML (the first document), or None when absent; a text that opens with `{`
        as JSON, as Go's encoding/json reads it (tabs, big integers, the last of duplicate keys): JSON
        is YAML only mostly. Invalid text and YAML aliases raise InputError as `FILE:LINE: reason`."""
        shown = self.node.display(path)

        def parse(data: bytes) -> Any:
            from .editors import jsontext

            text = decode_text(data, shown)
            if jsontext.is_json(text):
                return jsontext.load(text, shown)
            return parse_config_yaml(text, shown, self._composed(path, text))
        return self._parsed(path, "yaml", parse)

    def config_line(self, path: str, dotted: str, text: Optional[str] = None) -> Optional[int]:
        """The line of a config path's last key in a YAML or JSON file, None when the path is not there.
        `text`: the file as read already (a drop-in, read through the trust checks); else it is read."""
        from ruamel.yaml.nodes import MappingNode

        from .editors import jsontext, yamltext
        from .editors.config import split_path

        parts = split_path(dotted)
        read = text is None
        text = self.text(path) if read else text
        if text is None:
            return None
        if jsontext.is_json(text):
            return jsontext.key_line(text, parts)
        nodes = (self._composed(path, text) if read else compose_yaml(text)).nodes  # the former is kept
        node, key = (nodes[0] if nodes else None), None
        for part in parts:
            pair = yamltext.mapping_get(node, part) if isinstance(node, MappingNode) else None
            if pair is None:
                return None
            key, node = pair
        return key.start_mark.line + 1 if key is not None else None

    def _composed(self, path: str, text: str) -> Composed:
        """The file (`text`, its bytes decoded) composed once for both of its readings: its data and a
        manifest's flags."""
        return self._parsed(path, "composed", lambda data: compose_yaml(text))

    def flag_file(self, path: str) -> "Optional[FlagFile]":
        """A flag file (environment file, systemd drop-in) parsed, or None when absent."""
        from .editors import flagfile

        return self._parsed(path, "flag-file", lambda data: flagfile.parse(data.decode("utf-8", "replace")))

    def manifest_flags(self, component: str) -> Optional[Dict[str, Optional[str]]]:
        """The effective flags of the component's static pod manifest, or None when it has none. A
        manifest the kubelet would refuse (not a Pod, two containers of one name) is invalid input."""
        path = self.component(component).manifest
        if not path:
            return None

        def parse(data: bytes) -> Dict[str, Optional[str]]:
            from .editors.manifest import read_flags

            try:
                text = data.decode("utf-8")
                return dict(read_flags(text, None, fallback=component, composed=self._composed(path, text)))
            except (EditError, UnicodeDecodeError) as exc:
                raise InputError(self.node.display(path), str(exc))
        return self._parsed(path, f"manifest-flags:{component}", parse)

    def settings(self, component: str) -> "Settings":
        """The component's effective settings: command line (live, else from its sources) over its
        config file (see `cisfix.settings`)."""
        if component not in self._settings:
            from .settings import read_settings

            self._settings[component] = read_settings(self, component)
        return self._settings[component]

    def dist_config(self, args: ArgList) -> "DistConfig":
        """The distribution's configuration files merged (`cisfix.settings.dist_config`), read once per run:
        every component's flags come from them, and a node may hold thousands of drop-ins."""
        key = (args.config, args.dropins)
        if key not in self._dist_configs:
            from .settings import dist_config

            self._dist_configs[key] = dist_config(self, args)
        return self._dist_configs[key]

    def present(self, component: str) -> bool:
        """Is the component on this node: running, or with a source file where its layout says?"""
        spec = self.component(component)
        files = [p for p in (spec.manifest, spec.config, *spec.flag_files, spec.args.config if spec.args else None) if p]
        def exists(path: str) -> bool:
            try:
                return self.read(path) is not None
            except InputError:  # there, but broken: its checks say so
                return True
        return any(exists(p) for p in files) or self.process(component) is not None

    def stat(self, path: str) -> Optional[os.stat_result]:
        try:
            return os.stat(self.node.host(self.node.resolve(path)))
        except FileNotFoundError:
            return None

    def glob(self, pattern: str) -> List[str]:
        """Node paths matching a glob such as `/etc/ssl/private/*.key`, sorted."""
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
            found = (_read_process(self.proc_dir / entry)
                     for entry in (os.listdir(self.proc_dir) if self.proc_dir.is_dir() else ()) if entry.isdigit())
            self._processes = [process for process in found if process]
        return self._processes

    def processes_of(self, component: str) -> List[Process]:
        """The component's processes, newest first: its executable (or the script an interpreter runs,
        argv[1]) is the component's `process` setting — a full path when it contains a slash, else a name
        — and it is the component's own by the rule of `cisfix.identity` (a process that only says so is
        ignored and named on stderr)."""
        from .identity import genuine

        if component not in self.info.components:  # not on this node: no process may claim to be it
            return []
        if component not in self._own:
            claims = [p for p in self.processes() if self.program_index(component, p) is not None]
            self._own[component] = sorted(genuine(self, claims, component), key=lambda p: p.start_ticks, reverse=True)
        return self._own[component]

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
        return flags.effective(process.argv[self.program_index(component, process) + 1:])

    def program_index(self, component: str, process: Process) -> Optional[int]:
        wanted = self.component(component).process or component
        for index, arg in enumerate(process.argv[:2]):
            if arg == wanted or ("/" not in wanted and os.path.basename(arg) == wanted):
                return index
        return None

    def log_files(self, component: str) -> List[Path]:
        """The component's container logs in the kubelet's layout: /var/log/pods/<ns>_<pod>_<uid>/
        <container>/<restart count>.log — one file per container start — of its manifest's pod only (a
        pod named like it in another namespace must not put words in the gate's mouth)."""
        from glob import escape

        from .identity import manifest_pod

        spec = self.component(component)
        logs = spec.logs or self.component(self.info.restarted_by(component)).logs
        if logs:  # the files it (or the service that runs it) writes
            return [p for p in (self.node.host(self.node.resolve(log)) for log in logs) if p.is_file()]
        manifest = spec.manifest
        try:
            pod = manifest_pod(self, manifest) if manifest else None
        except InputError:  # a broken manifest: its checks say so, the gate quotes no log
            pod = None
        if pod is None:
            return []
        namespace, name = (escape(part) for part in pod)
        root = self.node.host("/")
        return [p for pattern in (f"{namespace}_{name}_*", f"{namespace}_{name}-*_*")  # <name>-<node name>
                for p in root.glob(f"var/log/pods/{pattern}/{escape(component)}/*.log") if p.is_file()]

    def log_tail(self, files: List[Path], lines: int = 5) -> str:
        """The last lines written to the newest of these container logs that has any: a container the
        kubelet has just started again has not written yet, its previous start has."""
        for path in _newest_first(files):
            try:
                with open(path, "rb") as log:  # the end only: a log grows to its rotation size
                    log.seek(max(0, os.fstat(log.fileno()).st_size - 4096))
                    text = log.read(4096).decode("utf-8", "replace")
            except OSError:  # rotated or removed by the kubelet while we looked
                continue
            tail = [shown(line.strip()) for line in text.splitlines()[-lines:] if line.strip()]
            if tail:
                return " | ".join(tail)
        return ""

    def component(self, name: str) -> Component:
        return self.info.components.get(name) or Component(name)

    def flags(self, component: str) -> Flags:
        """Effective flags: the running process's command line (as the layout's `live_flags` reads it,
        where the process does not show it), else the static pod manifest's. Read once per view of the
        node: every check of a component asks, and k3s's come from the end of a log or from journald."""
        if component not in self._flags:
            self._flags[component] = self._read_flags(component)
        return self._flags[component]

    def _read_flags(self, component: str) -> Flags:
        spec = self.component(component)
        if spec.live_flags:
            found = spec.live_flags(self, spec)
            if found is not None:
                return found
        if spec.manifest:  # a broken manifest is an error even while the old process still runs
            self.yaml(spec.manifest)
        process = None if spec.live_flags else self.process(component)
        if process:
            return Flags(self.process_flags(component, process), Evidence(process=f"{component} (pid {process.pid})"), True)
        if spec.args:  # what its distribution would start it with: the configuration over what it generated
            from .settings import configured_command_line

            values, _ = configured_command_line(self, spec, Flags({}, Evidence(), False))
            return Flags(values, Evidence(file=spec.args.config, detail="with its drop-ins"), False)
        values = self.manifest_flags(component)
        if values is None:
            return Flags({}, Evidence(detail=f"{component} is not running and has no manifest"), False)
        return Flags(values, Evidence(file=spec.manifest), False)


def _newest_first(paths: List[Path]) -> List[Path]:
    def mtime(path: Path) -> float:
        try:
            return path.stat().st_mtime
        except OSError:
            return 0.0
    return sorted(paths, key=mtime, reverse=True)


def _read_process(proc: Path) -> Optional[Process]:
    """The process's argv and start, or None: gone, a kernel thread, or a stat no kernel writes. Any
    process names itself (`/proc/PID/comm`, inside stat's parentheses): bytes, never decoded."""
    try:
        argv = tuple(a.decode("utf-8", "replace") for a in (proc / "cmdline").read_bytes().split(b"\0") if a)
        stat = (proc / "stat").read_bytes()
    except OSError:
        return None
    fields = stat[stat.rfind(b")") + 2:].split()  # the name in parentheses may hold spaces and ')'
    if not argv or len(fields) < 20 or not fields[19].isdigit():
        return None
    return Process(int(proc.name), argv, int(fields[19]))
