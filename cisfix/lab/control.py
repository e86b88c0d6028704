"""Operating a lab from outside: start, stop, status and `systemctl restart <unit>` (the kubelet on
kubeadm, rke2-server on RKE2).

A component's process is found in /proc by its lab-unique program path (as cisfix finds it), its health by
the URL and certificates the lab wrote into `/etc/cisfix/config.yaml` (a component without one, such as
rke2-server, is healthy while it runs), its restart count in the kubelet's pod state (the unit's own in
the lab init's state; RKE2's kubelet's in rke2's).
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional
from urllib.parse import urlsplit

from .layout import ALL_COMPONENTS, CISFIX_CONFIG, LabError, Layout, NotALab, trusted_program, trusted_root
from .pods import start_ticks

STOP_TIMEOUT = 20.0


@dataclass(frozen=True)
class ComponentStatus:
    healthy: bool
    pid: Optional[int]
    restarts: int
    port: Optional[int]  # None: no health endpoint (a supervisor service)

    def as_dict(self) -> dict:
        return {"healthy": self.healthy, "pid": self.pid, "restarts": self.restarts, "port": self.port}


def processes_under(root: Path) -> List[int]:
    """Pids whose program (argv[0], or argv[1] after an interpreter) lies under the lab directory."""
    prefix = str(root).rstrip("/") + "/"
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            argv = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")[:2]
        except OSError:
            continue
        if start_ticks(int(entry)) is not None and any(a.decode(errors="replace").startswith(prefix) for a in argv):
            found.append(int(entry))
    return found


def find_process(program: str) -> Optional[int]:
    """The newest process running `program` (argv[0] or argv[1])."""
    best = None
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            argv = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")[:2]
        except OSError:
            continue
        ticks = start_ticks(int(entry))
        if ticks is not None and program.encode() in argv and (best is None or ticks > best[0]):
            best = (ticks, int(entry))
    return best[1] if best else None


def _json(path: Path) -> dict:
    """A state file's object; {} when it is missing or cut short."""
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


class Lab:
    def __init__(self, root: "str | os.PathLike[str]") -> None:
        trusted_root(root)
        self.layout = Layout(root)
        if not self.layout.settings_file.exists():
            raise NotALab(f"{self.layout.root} is not a lab (no {self.layout.settings_file}); run `cisfix lab create`")
        self.root = self.layout.root

    # ---- configuration the lab wrote for cisfix ----
    def node_config(self) -> dict:
        from ruamel.yaml import YAML

        return YAML(typ="safe", pure=True).load(self.layout.host(CISFIX_CONFIG).read_text())

    def init_pid(self) -> Optional[int]:
        try:
            pid = int(self.layout.init_pidfile.read_text())
        except (OSError, ValueError):
            return None
        try:
            program = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[1].decode()
        except (OSError, IndexError, UnicodeDecodeError):
            return None
        return pid if program == str(self.layout.init_program) else None

    # ---- start / stop ----
    def start(self, wait: float = 60.0) -> Dict[str, ComponentStatus]:
        if self.init_pid():
            raise LabError(f"the lab at {self.root} is running already")
        settings = self.layout.settings()
        argv = trusted_program(settings.python, [str(self.layout.init_program)], "the lab's init")
        result = subprocess.run(argv, capture_output=True, text=True)
        if result.returncode != 0:
            raise LabError(f"the lab's init did not start: {result.stderr.strip()}")
        return self.wait_healthy(wait) if wait else self.status()

    def wait_healthy(self, timeout: float) -> Dict[str, ComponentStatus]:
        deadline = time.monotonic() + timeout
        while True:
            status = self.status()
            if all(s.healthy for s in status.values()):
                return status
            if time.monotonic() > deadline:
                sick = ", ".join(name for name, s in status.items() if not s.healthy)
                raise LabError(f"not healthy after {timeout:g}s: {sick} (see {self.layout.events_file})")
            time.sleep(0.1)

    def stop(self) -> List[int]:
        """Stop the init (which stops the kubelet and every container), then make sure nothing of the lab
        runs on. Returns the pids that had to be killed afterwards (none, when all went well)."""
        pid = self.init_pid()
        if pid:
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + STOP_TIMEOUT
            while start_ticks(pid) is not None and time.monotonic() < deadline:
                time.sleep(0.05)
        leftovers = processes_under(self.root)
        for leftover in leftovers:
            try:
                os.kill(leftover, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.layout.init_pidfile.unlink(missing_ok=True)
        return leftovers

    def restart_service(self, timeout: Optional[float] = None) -> int:
        """`systemctl restart <the lab's unit>`: the new process's pid, once it runs — for a Type=notify unit
        (rke2-server) once it has said READY, with no time limit unless `timeout` (its TimeoutStartSec=0; a
        simple unit's: 10 s to appear). A unit process that exits first is a failed job."""
        pid = self.init_pid()
        if not pid:
            raise LabError(f"the lab at {self.root} is not running")
        state = self._init_state()
        before, unit, notify = state.get("unitStarts", 0), state.get("unit", "the unit"), state.get("notify")
        os.kill(pid, signal.SIGHUP)
        limit = timeout if timeout is not None else (None if notify else 10.0)
        deadline = None if limit is None else time.monotonic() + limit
        started = None
        while deadline is None or time.monotonic() < deadline:
            state = self._init_state()
            if started is None and state.get("unitStarts", 0) > before:
                started = state.get("unitPid") or -1
            if started is not None:
                if started == -1 or state.get("unitPid") != started:
                    raise LabError(f"Job for {unit}.service failed because the control process exited with error code.")
                if not notify or _json(self.layout.ready_file).get("pid") == started:
                    return started
            time.sleep(0.05)
        raise LabError(f"{unit} did not {'say it is ready' if started else 'restart'} within {limit:g}s")

    restart_kubelet = restart_service  # a kubeadm lab's unit is the kubelet

    def _init_state(self) -> dict:
        return _json(self.layout.init_state)

    # ---- status ----
    def status(self) -> Dict[str, ComponentStatus]:
        """Every component the node configuration names: the five, and a supervisor service if any."""
        components = self.node_config()["components"]
        out = {}
        for name in ALL_COMPONENTS + tuple(sorted(set(components) - set(ALL_COMPONENTS))):
            settings = components[name]
            health, pid = settings.get("health"), find_process(settings["process"])
            healthy = self.probe(health) if health else pid is not None
            out[name] = ComponentStatus(healthy, pid, self.restarts(name),
                                        urlsplit(health["url"]).port if health else None)
        return out

    def restarts(self, component: str) -> int:
        """The kubelet's pod state for a pod; the init's for its unit; the unit's own for its child kubelet."""
        state = self._init_state()
        if component == state.get("unit"):
            return max(0, state.get("unitStarts", 0) - 1)
        if component == "kubelet":
            return max(0, _json(self.layout.run_dir / "kubelet.json").get("starts", 0) - 1)
        return _json(self.layout.pods_dir / f"{component}.json").get("restarts", 0)

    def probe(self, health: dict, timeout: float = 10.0) -> bool:
        """GET the health URL with the configured client certificate, exactly as cisfix's gate does."""
        from ..health import get
        from ..node import Node
        from ..state import NodeState
        from ..types import NodeInfo

        settings = {key: value for key, value in health.items() if key != "url"}
        return get(health["url"], NodeState(Node(str(self.root)), NodeInfo()), settings, timeout).healthy
