"""Operating a lab from outside: start, stop, status and `systemctl restart <unit>`.

A component's process is found in /proc by its lab-unique program path (as cisfix finds it), its health by
the URL and certificates the lab wrote into `/etc/cisfix/config.yaml`, its restart count in the kubelet's
pod state (the unit's own, and so every component a k3s unit runs, in the lab init's state; RKE2's
kubelet's in rke2's).
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional
from urllib.parse import urlsplit

from .layout import COMPONENTS as POD_COMPONENTS
from .layout import CISFIX_CONFIG, LabError, Layout, NotALab, trusted_program, trusted_root
from .pods import start_ticks

STOP_TIMEOUT = 20.0


@dataclass(frozen=True)
class ComponentStatus:
    healthy: bool
    pid: Optional[int]
    restarts: int
    port: int

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
        self.layout.ready_file.unlink(missing_ok=True)
        return leftovers

    def restart_kubelet(self, timeout: float = 10.0) -> int:
        """`systemctl restart kubelet`: returns once the new kubelet process runs; its pid."""
        return self.restart_unit(timeout)

    def restart_unit(self, timeout: float = 10.0) -> int:
        """`systemctl restart <the lab's unit>`: returns once the new unit process runs; its pid."""
        # A start made after this SIGHUP was received, not a crash loop's start that raced it.
        state = self._signal_init(signal.SIGHUP, "hups", timeout, "the unit did not restart",
                                  lambda state, before: state.get("startedAfterHups", 0) > before and state.get("unitPid"))
        return state["unitPid"]

    def daemon_reload(self, timeout: float = 10.0) -> None:
        """`systemctl daemon-reload`: returns once the init has re-read the unit files (the next start of the
        unit runs what they say now)."""
        self._signal_init(signal.SIGUSR1, "reloads", timeout, "the init did not reload its unit files",
                          lambda state, before: state.get("reloads", 0) > before)

    def _signal_init(self, sig: int, counter: str, timeout: float, failure: str,
                     answered: Callable[[dict, int], Any]) -> dict:
        """Signal the init and wait for its state to answer: `answered(state, the counter before the signal)`."""
        pid = self.init_pid()
        if not pid:
            raise LabError(f"the lab at {self.root} is not running")
        before = self._init_state().get(counter, 0)
        os.kill(pid, sig)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = self._init_state()
            if answered(state, before):
                return state
            time.sleep(0.05)
        raise LabError(failure)

    def unit_pid(self) -> Optional[int]:
        return self._init_state().get("unitPid")

    def restart_notify_unit(self, timeout: Optional[float] = None) -> int:
        """`systemctl restart` of a Type=notify unit (rke2-server, k3s): returns once the new process has said it
        is ready (its pid); if it exits first, fails with systemctl's message, as the real one does."""
        settings = self.layout.settings()
        pid = self.restart_unit()
        deadline = time.monotonic() + (settings.startup_delay + 60.0 if timeout is None else timeout)
        while time.monotonic() < deadline:
            if self.unit_ready() == pid:
                return pid
            if self.unit_pid() != pid:
                name = next((n for n, c in self.node_config()["components"].items() if "unit" in c), "kubelet")
                unit = f"{name}.service"
                raise LabError(f"Job for {unit} failed because the control process exited with error code.\n"
                               f"See \"systemctl status {unit}\" and \"journalctl -xeu {unit}\" for details.")
            time.sleep(0.05)
        raise LabError(f"the {settings.distribution} unit did not report ready")

    def _init_state(self) -> dict:
        try:
            return json.loads(self.layout.init_state.read_text())
        except (OSError, ValueError):
            return {}

    # ---- status ----
    def status(self) -> Dict[str, ComponentStatus]:
        """Every component the node configuration names. One with no process of its own (k3s's embedded
        ones) is the unit's process; one with no health endpoint (the k3s unit) is healthy while its
        process runs and has told the init it is ready (systemd's Type=notify)."""
        components = self.node_config()["components"]
        unit = next((s for s in components.values() if "unit" in s), None)
        out = {}
        for name, settings in components.items():
            health = settings.get("health")
            pid = find_process((settings if "process" in settings else unit)["process"])
            healthy = self.probe(health) if health else pid is not None and self.unit_ready() == pid
            out[name] = ComponentStatus(healthy, pid, self.restarts(name), urlsplit(health["url"]).port if health else 0)
        return out

    def unit_ready(self) -> Optional[int]:
        """The pid of the unit process that last reported ready (sd_notify READY=1), if any."""
        try:
            return int(self.layout.ready_file.read_text())
        except (OSError, ValueError):
            return None

    def restarts(self, component: str) -> int:
        """A static pod's from the kubelet's pod state; RKE2's kubelet's from rke2's (it is rke2's child);
        anything else's (kubeadm's kubelet, a service unit, k3s's embedded components) is its unit's."""
        distribution = self.layout.settings().distribution
        if distribution != "k3s" and component in POD_COMPONENTS:
            path, key, less = self.layout.pods_dir / f"{component}.json", "restarts", 0
        elif distribution == "rke2" and component == "kubelet":
            path, key, less = self.layout.run_dir / "kubelet.json", "starts", 1
        else:
            path, key, less = self.layout.init_state, "unitStarts", 1
        try:
            return max(0, json.loads(path.read_text())[key] - less)
        except (OSError, ValueError, KeyError):
            return 0

    def probe(self, health: dict, timeout: float = 10.0) -> bool:
        """GET the health URL with the configured client certificate, exactly as cisfix's gate does."""
        from ..health import get
        from ..node import Node
        from ..state import NodeState
        from ..types import NodeInfo

        settings = {key: value for key, value in health.items() if key != "url"}
        return get(health["url"], NodeState(Node(str(self.root)), NodeInfo()), settings, timeout).healthy
