"""The lab's init: the part of systemd a node relies on.

It daemonizes (the caller returns once it runs), becomes a child subreaper so that containers left behind
by an exiting kubelet are re-parented to it (as to PID 1 on a node), and runs the node's unit — the
distribution's `Unit` (`UNITS`), recomputed at every start: on kubeadm and on a managed worker (eks-al2,
eks-al2023, gke, aks) the kubelet, its command line kubelet.service's ExecStart as systemd expands it
(systemd.py: kubeadm's drop-in, `kubeadm-flags.env` and `/etc/default/kubelet`; a provider's unit, drop-ins
and environment files), its unit files as loaded at the first start or the last daemon-reload and its
environment files as they are now; on RKE2 `rke2 server` (`rke2.py`), which runs the kubelet as its child;
on k3s `k3s server` (`k3s.py`). `Restart=always` with the unit's RestartSec; SIGHUP is `systemctl restart
<unit>`, SIGUSR1 `systemctl daemon-reload`. It records the exit status of every orphan it reaps (the next
kubelet reports it) and on SIGTERM stops the unit and every container process group, and exits when none
is left.
"""
from __future__ import annotations

import ctypes
import json
import os
import signal
import subprocess
import sys
import time
import traceback
from typing import Callable, Dict, List, Optional

from ..commands import CommandRefused
from . import cgroups, k3s, rke2
from .workerdata import WORKERS
from .layout import Layout, Unit, trusted_program
from .systemd import Manager, Service, UnitError, load_service
from .pods import exit_code, stat_fields

PR_SET_CHILD_SUBREAPER = 36
STOP_GRACE = 5.0
TICK = 0.05


def kubelet_command(layout: Layout) -> List[str]:
    """kubelet.service's ExecStart as a freshly booted systemd expands it (systemd.py), its program the lab's
    launcher at the node's path: kubeadm's /usr/bin/kubelet, a managed worker's provider's."""
    return _launched(layout, load_service(layout, "kubelet.service")).argv


def _launched(layout: Layout, service: Service) -> Service:
    return Service([str(layout.host(service.argv[0]))] + service.argv[1:], service.slice, service.restart_sec)


def kubelet_unit(systemd: Manager) -> Unit:
    """kubelet.service as the init loaded it (until a daemon-reload). The kubelet's RestartSec is the lab's
    setting (tests ask for speed), not the unit file's."""
    layout = systemd.layout
    service = _launched(layout, systemd.service("kubelet.service"))
    return Unit("kubelet", service.argv, f"{service.slice}/kubelet.service", layout.settings().kubelet_restart_sec,
                layout.log_dir / "kubelet.log")


# The unit each distribution's node runs, by Settings.distribution. RKE2's and k3s's are read at every start:
# cisfix edits their configuration files, never their unit files.
UNITS: Dict[str, Callable[[Manager], Unit]] = {"kubeadm": kubelet_unit,
                                              "rke2": lambda systemd: rke2.unit(systemd.layout),
                                              "k3s": lambda systemd: k3s.unit(systemd.layout),
                                              **{name: kubelet_unit for name in WORKERS}}


class Supervisor:
    def __init__(self, layout: Layout) -> None:
        self.layout = layout
        self.settings = layout.settings()
        self.unit_of = UNITS[self.settings.distribution]
        self.systemd = Manager(layout)
        self.reload_requests = 0  # SIGUSR1s received: `systemctl daemon-reload`
        self.reloads = 0  # the requests answered: one reload answers all those received before it
        self.process: Optional[subprocess.Popen] = None  # the unit's main process
        self.starts = 0
        self.restart_sec = 0.0  # the running unit's RestartSec
        self.restart_at: Optional[float] = None
        self.stopping = False
        self.restart_requested = False
        # SIGHUPs received, and how many had been received when the running unit process was started: a
        # restart is answered only by a start made after its SIGHUP, not by a crash loop's start racing it.
        self.hups = 0
        self.started_after_hups = 0
        self.saved_hups = 0

    def _save(self) -> None:
        state = {"unitPid": self.process.pid if self.process else None, "unitStarts": self.starts,
                 "hups": self.hups, "startedAfterHups": self.started_after_hups, "reloads": self.reloads}
        self.saved_hups = self.hups
        tmp = self.layout.init_state.with_name(".init.json.tmp")
        tmp.write_text(json.dumps(state))
        os.replace(tmp, self.layout.init_state)

    def start_unit(self) -> None:
        """In the unit's cgroup, as systemd starts it. A program that fails the trust rule is not run: the
        log says why and the unit stays down (not retried: the files will not change alone)."""
        try:
            unit = self.unit_of(self.systemd)
        except (UnitError, OSError) as exc:  # systemd does not start a unit it cannot load
            with open(self.layout.log_dir / "init.log", "a") as log:
                log.write(f"not started: {exc}\n")
            self.restart_at = None
            return
        self.restart_sec = unit.restart_sec
        unit.log.parent.mkdir(parents=True, exist_ok=True)
        log = open(unit.log, "ab")
        try:
            argv = cgroups.joined(unit.cgroup, trusted_program(self.settings.python, unit.argv, f"the lab's {unit.name}"))
        except CommandRefused as exc:
            log.write(f"not started: {exc}\n".encode())
            log.close()
            self.restart_at = None
            return
        hups = self.hups  # a SIGHUP from here on stops this very process: it is no answer to that one
        self.process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                        cwd=str(self.layout.root), start_new_session=True)
        log.close()
        self.starts += 1
        self.started_after_hups = hups
        self.restart_at = None
        self._save()

    def reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            code = exit_code(-os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status))
            if self.process is not None and pid == self.process.pid:
                self.process.returncode = code
                self.process = None
                self._save()
                if not self.stopping:
                    delay = 0.0 if self.restart_requested else self.restart_sec
                    self.restart_at, self.restart_requested = time.monotonic() + delay, False
            else:
                (self.layout.exits_dir / f"{pid}.json").write_text(json.dumps({"code": code}))

    def run(self) -> None:
        signal.signal(signal.SIGTERM, self._on_term)
        signal.signal(signal.SIGINT, self._on_term)
        signal.signal(signal.SIGHUP, self._on_hup)
        signal.signal(signal.SIGUSR1, self._on_usr1)
        self.start_unit()
        while not self.stopping:
            self.reap()
            if self.reloads < self.reload_requests:
                self.reloads = self.reload_requests
                self.systemd.daemon_reload()
                self._save()
            if self.process is None and self.restart_at is not None and time.monotonic() >= self.restart_at:
                self.start_unit()
            elif self.hups != self.saved_hups:  # saved here, not in the handler, which may interrupt a save
                self._save()
            time.sleep(TICK)
        self.shutdown()

    def _on_term(self, *_: object) -> None:
        self.stopping = True

    def _on_usr1(self, *_: object) -> None:
        self.reload_requests += 1

    def _on_hup(self, *_: object) -> None:
        self.hups += 1
        if self.process is not None:
            self.restart_requested = True
            self.process.send_signal(signal.SIGTERM)
        else:
            self.restart_at = time.monotonic()

    def shutdown(self) -> None:
        """The unit first (a kubelet's containers are then all re-parented here), then every process group."""
        if self.process is not None:
            self.process.send_signal(signal.SIGTERM)
            self._wait(lambda: self.process is None, STOP_GRACE)
            if self.process is not None:
                os.killpg(self.process.pid, signal.SIGKILL)
                self._wait(lambda: self.process is None, STOP_GRACE)
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for pid in self.children():
                try:
                    os.killpg(os.getpgid(pid), sig)
                except (ProcessLookupError, PermissionError):
                    pass
            if self._wait(lambda: not self.children(), STOP_GRACE):
                break
        for path in self.layout.pods_dir.glob("*.json"):
            try:
                cgroups.remove(json.loads(path.read_text()).get("cgroup"), pod_too=True)
            except ValueError:  # a state file cut short: its cgroup stays, empty
                pass
            path.unlink()
        self.layout.init_pidfile.unlink(missing_ok=True)

    def _wait(self, done, seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.reap()
            if done():
                return True
            time.sleep(TICK)
        return done()

    def children(self) -> List[int]:
        me, found = str(os.getpid()).encode(), []
        for entry in os.listdir("/proc"):
            fields = stat_fields(int(entry)) if entry.isdigit() else None
            if fields and fields[1] == me and fields[0] != b"Z":
                found.append(int(entry))
        return found


def main(root: str) -> int:
    """Daemonize; the parent returns 0 once the child has written its pid file."""
    layout = Layout(root)
    read_end, write_end = os.pipe()
    if os.fork() > 0:
        os.close(write_end)
        ready = os.read(read_end, 1)
        return 0 if ready == b"1" else 1
    os.close(read_end)
    os.setsid()
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    log_fd = os.open(layout.log_dir / "init.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    null_fd = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null_fd, 0)
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    layout.init_pidfile.write_text(f"{os.getpid()}\n")
    os.write(write_end, b"1")
    os.close(write_end)
    code = 0
    try:
        Supervisor(layout).run()
    except BaseException:  # the log says why; the stop command still finds no pid file
        traceback.print_exc()
        code = 1
    sys.stderr.flush()
    os._exit(code)  # the forked child must not unwind into its parent's launcher
