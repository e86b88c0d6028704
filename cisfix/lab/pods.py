"""One container of a static pod, as the kubelet runs it: start, probe, kill, restart with back-off.

A `ContainerWorker` thread owns one container. It runs the image's program (the lab's launcher for the
command's first word) in its own process group with the container's mounts, writes its state to
`/run/lab/pods/<component>.json`, runs the startup, liveness and readiness probes of the manifest and
restarts the container when it exits or fails a probe, with CrashLoopBackOff delays. When the kubelet
itself stops, workers let their containers run on (as a real kubelet does) and the next kubelet adopts
them from the state files.
"""
from __future__ import annotations

import http.client
import json
import os
import signal
import ssl
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional

from . import cgroups
from .container import ENV_CONFIGMAPS, ENV_IMAGE, ENV_STARTUP_DELAY, Mounts
from ..commands import CommandRefused
from .layout import Layout, Settings, emit, trusted_program

MIN_PROBE_PERIOD = 0.1  # seconds: a scaled-down probe period never goes below this
TICK = 0.05
STOP_GRACE = 5.0  # seconds between SIGTERM and SIGKILL (terminationGracePeriodSeconds is 30 on a node)


def stat_fields(pid: int) -> Optional[List[bytes]]:
    """/proc/<pid>/stat from field 3 (the state) on; None when gone. Read as bytes: the name before
    them is any bytes a process gives itself."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    return stat[stat.rfind(b")") + 2:].split()


def start_ticks(pid: int) -> Optional[int]:
    """/proc/<pid>/stat field 22: tells a process from a later one with the same pid."""
    fields = stat_fields(pid)
    return None if not fields or fields[0] == b"Z" else int(fields[19])


def exit_code(returncode: int) -> int:
    """As the container runtime reports it: killed by signal N is 128+N."""
    return 128 - returncode if returncode < 0 else returncode


def kill_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


class Running:
    """A container process: a child of this kubelet, or adopted from the previous one."""

    def __init__(self, pid: int, popen: Optional[subprocess.Popen], exits_dir: Path) -> None:
        self.pid, self.popen, self.exits_dir = pid, popen, exits_dir
        self.ticks = start_ticks(pid)

    def poll(self) -> Optional[int]:
        if self.popen is not None:
            code = self.popen.poll()
            return None if code is None else exit_code(code)
        if start_ticks(self.pid) == self.ticks and self.ticks is not None:
            return None
        # The lab's init reaped it (it was re-parented there when the old kubelet exited).
        record = self.exits_dir / f"{self.pid}.json"
        for _ in range(20):
            if record.exists():
                return json.loads(record.read_text())["code"]
            time.sleep(TICK)
        return -1  # unknown

    def stop(self) -> None:
        kill_group(self.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE
        while self.poll() is None and time.monotonic() < deadline:
            time.sleep(TICK)
        if self.poll() is None:
            kill_group(self.pid, signal.SIGKILL)
            while self.poll() is None:
                time.sleep(TICK)
        kill_group(self.pid, signal.SIGKILL)  # anything left in its process group


@dataclass
class Probe:
    kind: str  # startup, liveness, readiness
    spec: dict
    scale: float
    next_at: float = 0.0
    failures: int = 0

    @property
    def period(self) -> float:
        return max(MIN_PROBE_PERIOD, self.spec.get("periodSeconds", 10) * self.scale)

    @property
    def threshold(self) -> int:
        return self.spec.get("failureThreshold", 3)

    def schedule_first(self, started: float) -> None:
        self.next_at, self.failures = started + self.spec.get("initialDelaySeconds", 0) * self.scale, 0

    def run(self) -> Optional[str]:
        """None on success, else why it failed (the kubelet's wording)."""
        get = self.spec.get("httpGet")
        if get is None:
            return None  # exec and tcpSocket probes are not simulated: they pass
        scheme, host = get.get("scheme", "HTTP"), get.get("host") or "127.0.0.1"
        port, path = int(get["port"]), get.get("path", "/")
        timeout = max(MIN_PROBE_PERIOD, self.spec.get("timeoutSeconds", 1) * self.scale)
        if scheme == "HTTPS":
            context = ssl.create_default_context()
            context.check_hostname, context.verify_mode = False, ssl.CERT_NONE  # the kubelet does not verify
            conn = http.client.HTTPSConnection(host, port, timeout=timeout, context=context)
        else:
            conn = http.client.HTTPConnection(host, port, timeout=timeout)
        url = f"{scheme.lower()}://{host}:{port}{path}"
        try:
            conn.request("GET", path, headers={"User-Agent": "kube-probe/lab"})
            response = conn.getresponse()
            body = response.read(1024).decode("utf-8", "replace")
        except (OSError, ssl.SSLError, http.client.HTTPException) as exc:
            return f"Get \"{url}\": {exc}"
        finally:
            conn.close()
        if 200 <= response.status < 400:
            return None
        return f"HTTP probe failed with statuscode: {response.status} {body[:200]}".strip()


@dataclass
class PodSpec:
    """What the kubelet's sync loop hands a worker."""

    component: str  # the pod's `component` label, else its name: the name events and status use
    pod_name: str
    namespace: str
    source: str  # manifest file (node path)
    config_hash: str
    spec: dict
    container: dict
    image: str = field(init=False)

    def __post_init__(self) -> None:
        self.image = self.container.get("image", "")

    @property
    def uid(self) -> str:
        """The pod's uid, as in its log folder's name and its cgroup's."""
        return self.config_hash[:32]


class ContainerWorker(threading.Thread):
    def __init__(self, layout: Layout, settings: Settings, pod: PodSpec, adopt: Optional[dict] = None) -> None:
        super().__init__(name=f"pod-{pod.component}", daemon=True)
        self.layout, self.settings, self.pod = layout, settings, pod
        self.state_file = layout.pods_dir / f"{pod.component}.json"
        self.mounts = Mounts.from_pod(pod.spec, pod.container, layout.root)
        scale = settings.probe_time_scale
        self.probes = {kind: Probe(kind, pod.container[f"{kind}Probe"], scale)
                       for kind in ("startup", "liveness", "readiness") if pod.container.get(f"{kind}Probe")}
        self.restarts = adopt["restarts"] if adopt else 0
        self.started_up = adopt["startedUp"] if adopt else False
        self.ready = False
        self.running: Optional[Running] = None
        self.log_file: Optional[Path] = None
        self.cgroup: Optional[str] = None  # the running container's
        if adopt:
            self.running = Running(adopt["pid"], None, layout.exits_dir)
            self.log_file = Path(adopt["log"])
            self.cgroup = adopt.get("cgroup")
        self._detach = threading.Event()  # the kubelet stops: leave the container running
        self._remove = threading.Event()  # the pod is gone: kill the container

    # ---- lifecycle seen from the kubelet ----
    def detach(self) -> None:
        self._detach.set()

    def remove(self) -> None:
        self._remove.set()
        self.join()

    # ---- the worker ----
    def run(self) -> None:
        if self.running is None:
            self._start()
        else:
            self._probes_from(time.monotonic())
        while not self._detach.is_set():
            if self._remove.is_set():
                self._kill()
                cgroups.remove(self.cgroup, pod_too=True)
                self.state_file.unlink(missing_ok=True)
                return
            code = self.running.poll() if self.running else None
            if self.running is not None and code is not None:
                self._exited(code)
                cgroups.remove(self.cgroup)
                if not self._wait_back_off():
                    continue
                self.restarts += 1
                self._start()
                continue
            self._run_due_probes()
            time.sleep(TICK)

    def _argv(self) -> List[str]:
        """The image's program is the lab's launcher for the command's first word; the flags are the
        manifest's, untouched (the launcher resolves paths through the mounts)."""
        command = list(self.pod.container.get("command") or []) + list(self.pod.container.get("args") or [])
        program = self.layout.launcher(command[0]) if command and "/" not in command[0] else Path(command[0])
        return trusted_program(self.settings.python, [str(program)] + command[1:], f"the {self.pod.pod_name} pod")

    def _start(self) -> None:
        log_dir = self.layout.host(f"/var/log/pods/{self.pod.namespace}_{self.pod.pod_name}_"
                                   f"{self.pod.uid}/{self.pod.container['name']}")
        log_dir.mkdir(parents=True, exist_ok=True)
        self.log_file = log_dir / f"{self.restarts}.log"
        self._set_up_volumes()
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), ENV_IMAGE: self.pod.image,
               ENV_STARTUP_DELAY: str(self.settings.startup_delay), ENV_CONFIGMAPS: str(self.layout.store(self.settings)),
               **self.mounts.to_env()}
        self.cgroup = cgroups.new_container(self.pod.uid)
        with open(self.log_file, "ab") as log:
            try:
                popen = subprocess.Popen(cgroups.joined(self.cgroup, self._argv()), stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=log, env=env, cwd=str(self.layout.root),
                                         start_new_session=True)
            except (OSError, CommandRefused) as exc:  # as a runtime fails an image it cannot run
                log.write(f"exec failed: {exc}\n".encode())
                popen = subprocess.Popen(["false"], start_new_session=True)
        self.running = Running(popen.pid, popen, self.layout.exits_dir)
        self.started_up, self.ready = False, False
        self._probes_from(time.monotonic())
        self._save()
        if self.restarts == 0:
            emit(self.layout, "pod-started", self.pod.component,
                 f"started pod {self.pod.pod_name} from {self.pod.source} (hash {self.pod.config_hash[:12]}), "
                 f"container {self.pod.container['name']} pid {popen.pid}")
        else:
            emit(self.layout, "restarted", self.pod.component,
                 f"restarted container {self.pod.container['name']} (restart count {self.restarts}), pid {popen.pid}")

    def _set_up_volumes(self) -> None:
        """hostPath volumes of type DirectoryOrCreate and FileOrCreate are created on the host as needed."""
        for volume in self.pod.spec.get("volumes") or ():
            host_path = volume.get("hostPath") or {}
            target = self.layout.host(host_path.get("path", "/"))
            if host_path.get("type") == "DirectoryOrCreate":
                target.mkdir(parents=True, exist_ok=True)
            elif host_path.get("type") == "FileOrCreate" and not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                target.touch(mode=0o644)

    def _probes_from(self, started: float) -> None:
        for probe in self.probes.values():
            probe.schedule_first(started)

    def _save(self) -> None:
        state = {"component": self.pod.component, "pod": self.pod.pod_name, "source": self.pod.source,
                 "hash": self.pod.config_hash, "pid": self.running.pid, "ticks": self.running.ticks,
                 "restarts": self.restarts, "startedUp": self.started_up, "ready": self.ready,
                 "log": str(self.log_file), "mounts": self.mounts.entries, "cgroup": self.cgroup}
        tmp = self.state_file.with_name(f".{self.state_file.name}.tmp")
        tmp.write_text(json.dumps(state))
        os.replace(tmp, self.state_file)

    def _exited(self, code: int) -> None:
        try:
            tail = self.log_file.read_text(errors="replace").splitlines()[-5:] if self.log_file else []
        except OSError:
            tail = []
        emit(self.layout, "container-exited", self.pod.component,
             f"container {self.pod.container['name']} exited with code {code}" +
             (": " + "\n".join(tail) if tail else ""))

    def _wait_back_off(self) -> bool:
        """CrashLoopBackOff: the first restart is immediate, then initial * 2^n up to max. False when the
        wait was cut short by the kubelet stopping or the pod going away."""
        s = self.settings
        delay = 0.0 if self.restarts == 0 else min(s.backoff_initial * 2 ** (self.restarts - 1), s.backoff_max)
        deadline = time.monotonic() + delay
        while time.monotonic() < deadline:
            if self._detach.is_set() or self._remove.is_set():
                return False
            time.sleep(TICK)
        return not (self._detach.is_set() or self._remove.is_set())

    def _run_due_probes(self) -> None:
        now = time.monotonic()
        active = [self.probes["startup"]] if "startup" in self.probes and not self.started_up else [
            p for k, p in self.probes.items() if k != "startup"]
        for probe in active:
            if now < probe.next_at:
                continue
            probe.next_at = now + probe.period
            failure = probe.run()
            if failure is None:
                probe.failures = 0
                if probe.kind == "startup":
                    self.started_up = True
                    self._probes_from(time.monotonic())
                elif probe.kind == "readiness" and not self.ready:
                    self.ready = True
                self._save()
                continue
            probe.failures += 1
            emit(self.layout, "probe-failed", self.pod.component,
                 f"{probe.kind.capitalize()} probe failed ({probe.failures}/{probe.threshold}): {failure}")
            if probe.kind == "readiness":
                self.ready = False
            elif probe.failures >= probe.threshold:
                emit(self.layout, "probe-failed", self.pod.component,
                     f"Container {self.pod.container['name']} failed {probe.kind} probe, will be restarted")
                self._kill()
                return

    def _kill(self) -> None:
        if self.running is not None:
            self.running.stop()
