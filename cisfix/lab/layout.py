"""Where things are in a lab: node paths re-rooted under the lab directory, the lab's own runtime files,
its settings (`lab.json`) and the event log.

The node tree is what a kubeadm node has (`/etc/kubernetes/...`); everything the lab adds for itself lives
under `/var/lib/lab` (settings), `/run/lab` (pid files, pod state) and `/var/log/lab` (events, logs).
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

from .configmaps import STORE
from ..trust import Untrusted, require_trusted_dir, trusted_realpath

COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler")
ALL_COMPONENTS = COMPONENTS + ("kubelet",)
EVENTS = ("pod-started", "container-exited", "probe-failed", "restarted", "duplicate-pod", "config-invalid")

MANIFESTS = "/etc/kubernetes/manifests"
KUBELET_CONFIG = "/var/lib/kubelet/config.yaml"
KUBEADM_FLAGS = "/var/lib/kubelet/kubeadm-flags.env"
KUBELET_DROPIN = "/usr/lib/systemd/system/kubelet.service.d/10-kubeadm.conf"
KUBELET_DEFAULTS = "/etc/default/kubelet"
KUBELET_BINARY = "/usr/bin/kubelet"
IMAGE_BIN = "/usr/local/bin"  # the lab's "container images": one launcher per component
CISFIX_CONFIG = "/etc/cisfix/config.yaml"


class LabError(RuntimeError):
    """A lab cannot be created, started or found; the message says why."""


class BadLabInput(LabError):
    """Bad input (a version, a patch file) rather than an unhealthy lab."""


class NotALab(BadLabInput):
    """The directory given is not a lab."""


@dataclass
class Settings:
    """The lab's own knobs, chosen at `lab create` (lab.json). Times are seconds."""

    version: str
    ports: Dict[str, int]
    # Which node the lab is laid out as: "kubeadm" (kubelet unit + static pods), "rke2" (an `rke2 server`
    # unit that writes the static pods and runs the kubelet) or "k3s" (one `k3s server` unit running every
    # component).
    distribution: str = "kubeadm"
    # Every default is the real node's timing, so that demos and tests see real behaviour; tests that
    # need speed ask for it at `lab create`.
    # The kubelet restarts a crashing container after `backoff_initial`, doubling up to `backoff_max`
    # (CrashLoopBackOff: 10 s and 300 s).
    backoff_initial: float = 10.0
    backoff_max: float = 300.0
    # Multiplies every probe's initialDelaySeconds, periodSeconds and timeoutSeconds as the simulated
    # kubelet runs them; the manifests keep kubeadm's values. 1.0 is real time.
    probe_time_scale: float = 1.0
    # Seconds a stand-in spends starting before it serves, as a real API server does (30-90 s).
    startup_delay: float = 0.0
    # systemd's RestartSec for the kubelet unit (kubeadm's kubelet.service: 10 s).
    kubelet_restart_sec: float = 10.0
    # systemd's RestartSec for a distribution's service unit (k3s.service as k3s's installer writes it,
    # rke2-server.service: 5 s); RKE2 also waits this long before it restarts its kubelet.
    service_restart_sec: float = 5.0
    # The kubelet's inotify watch on the static pod directory; off, it sees changes only at its re-list
    # (fileCheckFrequency), as a kubelet whose watch missed an event does.
    file_watch: bool = True
    # kubeadm: the node's name (kubeadm's nodeRegistration.name), and the cluster store every node of its
    # cluster shares (the first node's, configmaps.py); "" is this lab's own, as on a cluster's first node.
    node_name: str = "lab-node"
    cluster_store: str = ""
    # A managed worker's kubelet: its `--version` answer ("" : "Kubernetes v<version>"), and the node ports
    # the lab publishes at host ports ("10250" -> a free port), as a worker's kubelet keeps its default ports.
    kubelet_version: str = ""
    published: Dict[str, int] = field(default_factory=dict)
    python: str = ""  # the interpreter that runs the lab's launchers
    import_path: list = field(default_factory=list)  # sys.path entries that hold cisfix and its dependencies


@dataclass(frozen=True)
class Unit:
    """The systemd unit the lab's init runs: kubeadm's kubelet.service or a distribution's service."""

    name: str  # "kubelet", "rke2-server", "k3s"
    argv: List[str]  # ExecStart, its program the lab's launcher
    cgroup: str  # "system.slice/kubelet.service"
    restart_sec: float  # RestartSec (Restart=always)
    log: Path  # where its stdout and stderr go (journald is not simulated)


_WHY = "; not using it as a lab (root runs the programs a lab's files name)"


def trusted_root(root: "os.PathLike[str] | str", creating: bool = False) -> Path:
    """The lab folder's real path, refused (`Untrusted`: one line, exit 2) unless it is a directory — or,
    `creating`, does not exist yet — and, as root, it and every folder above it pass the trust rule the
    state folder's do: whoever could write there could make `lab start` run their program as root."""
    path = Path(os.path.abspath(root))
    try:
        real = trusted_realpath(path, Untrusted, _WHY)
        if creating and not os.path.lexists(real):
            return real
        return require_trusted_dir(real, Untrusted, _WHY)
    except OSError as exc:  # a path that runs through a file
        raise Untrusted(path, f"{exc.strerror}{_WHY}")


def trusted_program(python: str, argv: List[str], what: str) -> List[str]:
    """`argv` run by the interpreter lab.json names: the interpreter and the program pass the trust rule
    for every command root runs (`cisfix.commands.trusted_command`: real paths, root's files in root's
    folders). The arguments after the program are not checked: they are a container's, paths inside the
    node that name nothing of the host's (a restart command's arguments are the host's, and checked)."""
    from ..commands import trusted_command

    return trusted_command([python], f"the python that runs {what}") + trusted_command(argv[:1], what) + argv[1:]


class Layout:
    def __init__(self, root: "os.PathLike[str] | str") -> None:
        self.root = Path(os.path.abspath(root))

    def host(self, node_path: str) -> Path:
        return self.root / node_path.lstrip("/")

    @property
    def settings_file(self) -> Path:
        return self.host("/var/lib/lab/lab.json")

    @property
    def run_dir(self) -> Path:
        return self.host("/run/lab")

    @property
    def init_pidfile(self) -> Path:
        return self.run_dir / "init.pid"

    @property
    def init_state(self) -> Path:
        return self.run_dir / "init.json"

    @property
    def ready_file(self) -> Path:
        """The pid of the unit process that last reported ready: the lab's sd_notify(READY=1)."""
        return self.run_dir / "unit-ready"

    @property
    def pods_dir(self) -> Path:
        """One JSON file per running container, written by the kubelet, read by `lab status`."""
        return self.run_dir / "pods"

    @property
    def exits_dir(self) -> Path:
        """Exit statuses of containers whose kubelet went away, recorded by the lab's init."""
        return self.run_dir / "exits"

    @property
    def log_dir(self) -> Path:
        return self.host("/var/log/lab")

    @property
    def events_file(self) -> Path:
        return self.log_dir / "events.jsonl"

    def launcher(self, component: str) -> Path:
        return self.host(KUBELET_BINARY if component == "kubelet" else f"{IMAGE_BIN}/{component}")

    @property
    def init_program(self) -> Path:
        return self.host("/sbin/lab-init")

    @property
    def restart_kubelet_program(self) -> Path:
        return self.host("/usr/local/sbin/lab-restart-kubelet")

    @property
    def daemon_reload_program(self) -> Path:
        return self.host("/usr/local/sbin/lab-daemon-reload")

    def restart_program(self, unit: str) -> Path:
        """The lab's `systemctl restart <unit>`."""
        return self.restart_kubelet_program if unit == "kubelet" else self.host(f"/usr/local/sbin/lab-restart-{unit}")

    def store(self, settings: Settings) -> Path:
        """The cluster store this node's API server serves: its cluster's, which is the first node's."""
        return Path(settings.cluster_store) if settings.cluster_store else self.host(STORE)

    def settings(self) -> Settings:
        return Settings(**json.loads(self.settings_file.read_text(encoding="utf-8")))

    def save_settings(self, settings: Settings) -> None:
        self.settings_file.parent.mkdir(parents=True, exist_ok=True)
        self.settings_file.write_text(json.dumps(asdict(settings), indent=2) + "\n", encoding="utf-8")


def emit(layout: Layout, event: str, component: str, message: str) -> None:
    """Append one event line. One write of one line with O_APPEND: lines of concurrent writers never mix."""
    assert event in EVENTS, event
    line = json.dumps({"time": time.time(), "event": event, "component": component, "message": message})
    layout.log_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(layout.events_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\n").encode("utf-8"))
    finally:
        os.close(fd)


def read_events(layout: Layout, since: float = 0.0, component: Optional[str] = None) -> list:
    try:
        lines = layout.events_file.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []
    events = [json.loads(line) for line in lines if line.strip()]
    return [e for e in events if e["time"] >= since and component in (None, e["component"])]
