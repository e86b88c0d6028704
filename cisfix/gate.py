"""The health gate: after a change to a component's files, prove that the component restarted with the
new configuration and stayed healthy — or report why not, with the component's own last words.

Probing before the restart proves nothing (the old process keeps answering), so the gate first waits
for a new process whose command line carries the new flags, then for the component's endpoints and
its pod's own probes to pass, then for a stability window with no restart.

Every verdict is about the pod started from the configuration the gate expects, never about another:
after a rollback the kubelet may keep restarting the failed pod until it notices the restored manifest
(up to its 20 s re-list), and that pod's crashes say nothing about the restored one. A `Watch`, taken
just before the files are written, says which processes and which container logs are evidence.
"""
from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Dict, FrozenSet, Iterable, Iterator, List, Optional, Set, Tuple

from .bounds import MAX_STABILITY, MAX_TIMEOUT, number_problem
from .commands import run_trusted, trusted_command
from .errors import CisfixError, InputError
from .health import Answer, pod_probes, probe_endpoints
from .plugins import Plugins
from .state import NodeState, Process
from . import status


@dataclass(frozen=True)
class GateSettings:
    timeout: float = 180.0  # per component: an API server needs 30-90 s, the kubelet notices within 20 s
    stability: float = 15.0  # seconds of uninterrupted health, same process, after the first success
    interval: float = 1.0  # the longest pause between two looks at the node (see Gate.pauses)
    # Consecutive failed probes tolerated after the first success, as the kubelet's failureThreshold
    # (kubeadm's readiness probes use 3): one slow answer on a loaded node is not a broken change.
    failure_threshold: int = 3


def gate_settings(config: dict, timeout: Optional[float] = None, stability: Optional[float] = None) -> GateSettings:
    """The gate's timing: what is asked for, else the node configuration's `gate:`, else the defaults.
    Numbers outside their limits (`cisfix.bounds`; the command line and the node configuration's schema
    refuse them first) and a stability window that cannot end before the timeout are bad input: a NaN
    window is never reached and every gated change would be rolled back, however healthy."""
    configured = config.get("gate", {})
    settings = GateSettings(
        timeout=timeout if timeout is not None else configured.get("timeout", GateSettings.timeout),
        stability=stability if stability is not None else configured.get("stabilityWindow", GateSettings.stability),
        interval=configured.get("interval", GateSettings.interval),
        failure_threshold=configured.get("failureThreshold", GateSettings.failure_threshold))
    for name, number, high, zero in (("timeout", settings.timeout, MAX_TIMEOUT, False),
                                     ("stability window", settings.stability, MAX_STABILITY, True)):
        problem = number_problem(number, 0.0, high, zero)  # a caller of the Python API, which argparse did not see
        if problem:
            raise InputError(f"gate {name} {number}", problem)
    if settings.stability >= settings.timeout:
        where = "--stability-window" if stability is not None else "gate.stabilityWindow"
        raise InputError(f"{where} {settings.stability:g}", f"must be shorter than the timeout "
                         f"({settings.timeout:g}s): the gate gives up before the window could end")
    return settings


FIRST_PAUSE = 0.1  # seconds: the first pause of a wait, see Gate.pauses


class NotHealthy(CisfixError):
    """The component is unhealthy before any change: a sick node is never 'fixed'."""

    exit_code = status.EXIT_INPUT


Flags = Optional[Dict[str, Optional[str]]]


LogMarks = Dict[Path, Tuple[int, int]]  # container log -> (size, mtime): what was written by when


def log_marks(state: NodeState, component: str) -> LogMarks:
    marks = {}
    for path in state.log_files(component):
        try:
            stat = path.stat()
        except OSError:  # removed by the kubelet's log rotation or garbage collection meanwhile
            continue
        marks[path] = (stat.st_size, stat.st_mtime_ns)
    return marks


def written_since(now: LogMarks, before: LogMarks) -> List[Path]:
    """Logs created or written to between two looks: one per container start (a retried configuration's
    pod appends to the logs its earlier run left, so growth counts as well as creation)."""
    return [path for path, mark in now.items() if before.get(path) != mark]


@dataclass(frozen=True)
class Watch:
    """What counts as evidence about a component after a write, taken just before the write.

    Processes: only those whose flags are `flags` (None: any flags); with `fresh`, only processes started
    after the watch — a change that needs a restart is never proven by the process that ran before it.
    Without `fresh` (a rollback or recovery of a static pod, which the kubelet may never have replaced) a
    process that already ran with the expected flags may be judged, and when the kubelet replaces it after
    all, the gate waits for its successor instead of calling that a crash.

    Container logs (one directory per pod: the kubelet's /var/log/pods/<ns>_<pod>_<uid>/<container>, the
    uid a hash of the decoded manifest) count as starts of the expected pod unless they are in a directory
    of another pod (`foreign`); with `foreign` None, no log is evidence (nothing tells the pods apart).
    """

    component: str
    flags: Flags
    fresh: bool
    processes_before: FrozenSet[Tuple[int, int]]
    logs_before: LogMarks
    foreign: Optional[FrozenSet[Path]]
    # A service that runs others (rke2-server, k3s: see `Component.runs`): the watches of the components
    # its restart restarts, each judged like a component of its own, all at once.
    parts: Tuple["Watch", ...] = ()

    @classmethod
    def before_change(cls, state: NodeState, component: str, flags: Flags, fresh: bool = True,
                      changed: Optional[Set[str]] = None) -> "Watch":
        """Before applying a change: the pod running now is not the one to judge. Its directory is the one
        written since its process started (static pods run one at a time, so the others are dead pods).
        `changed`: of the components this one runs, those whose settings the change changes (None: not known)."""
        logs = log_marks(state, component)
        running = state.process(component)
        since = (state.started_at(running) - 1.0) * 1e9 if running else float("inf")  # 1 s: btime's precision
        foreign = frozenset(path.parent for path, (_, mtime) in logs.items() if mtime >= since)
        parts = tuple(cls.before_change(state, name, None, _restarted_with(state, name, changed))
                      for name in _run_parts(state, component))
        return cls(component, flags, fresh, _pids(state, component), logs, foreign, parts)

    def undo(self, state: NodeState, flags: Flags, fresh: bool) -> "Watch":
        """Before putting back what this watch's change replaced: the pods that wrote since the change —
        the failed one, the one it replaced shutting down — are not the restored one."""
        logs = log_marks(state, self.component)
        foreign = frozenset(path.parent for path in written_since(logs, self.logs_before))
        parts = tuple(part.undo(state, None, part.fresh) for part in self.parts)
        return Watch(self.component, flags, fresh, _pids(state, self.component), logs, foreign, parts)

    @classmethod
    def after_recovery(cls, state: NodeState, component: str, flags: Flags, fresh: bool) -> "Watch":
        """After recovery restored files a crash left: which pod is which is unknown, so only processes
        carrying the restored flags are evidence."""
        parts = tuple(cls.after_recovery(state, name, None, fresh and _restarted_with(state, name, None))
                      for name in _run_parts(state, component))
        return cls(component, flags, fresh, _pids(state, component), {}, None, parts)

    def existed(self, process: Process) -> bool:
        return (process.pid, process.start_ticks) in self.processes_before

    def candidate(self, state: NodeState) -> Optional[Process]:
        """The newest process that may be the one started from the expected configuration."""
        for process in state.processes_of(self.component):
            if self.fresh and self.existed(process):
                continue
            if self.flags is None or state.process_flags(self.component, process) == self.flags:
                return process
        return None

    def new_logs(self, state: NodeState) -> List[Path]:
        """Container starts of the expected pod since the watch, one log file each."""
        if self.foreign is None:
            return []
        return [p for p in written_since(log_marks(state, self.component), self.logs_before)
                if p.parent not in self.foreign]

    def last_words(self, state: NodeState) -> str:
        """The expected pod's last log lines; the component's newest when that pod wrote none."""
        tail = state.log_tail(self.new_logs(state)) or state.log_tail(state.log_files(self.component))
        return f"; last log lines: {tail}" if tail else ""


def _run_parts(state: NodeState, component: str) -> List[str]:
    """The components a service's restart restarts that are on this node, in the order a fix takes them."""
    return [name for name in state.component(component).runs if name in state.info.components and state.present(name)]


def _restarted_with(state: NodeState, name: str, changed: Optional[Set[str]]) -> bool:
    """Must a component that its service runs be a new process after the service's restart? Its own
    processes (the kubelet, rke2's child; k3s's embedded components) always are. A static pod is started
    again only when its regenerated manifest differs (`changed`; None: not known, as after a crash): one
    that did not change may keep running, and the one judged then."""
    return not state.component(name).manifest or (changed is not None and name in changed)


def _restart_what(component: str) -> str:
    return f"{component}'s restart command"


def _reload_what(component: str) -> str:
    return f"{component}'s reload command"


def _pids(state: NodeState, component: str) -> FrozenSet[Tuple[int, int]]:
    return frozenset((p.pid, p.start_ticks) for p in state.processes_of(component))


class Gate:
    def __init__(self, plugins: Plugins, settings: GateSettings = GateSettings(),
                 progress: Optional[Callable[[str], None]] = None) -> None:
        self.plugins, self.settings = plugins, settings
        self.progress = progress or (lambda line: None)
        self.probes = [p for found in plugins.pm.hook.cisfix_register_probes() for p in found or ()]

    def gates(self, component: str) -> bool:
        """Does a change to this component's files wait for it? (Not on a node where nothing runs.)"""
        return component in self.plugins.info.components

    def state(self, live: bool = False) -> NodeState:
        """A fresh view of the node: processes and files change while we wait. `live`: running
        components' settings from what they serve (the kubelet's /configz), to verify a change."""
        from .audit import node_state

        return node_state(self.plugins, live)

    def watch(self, component: str, flags: Flags, changed: Optional[Set[str]] = None) -> Watch:
        """Call just before writing a change to the component's files; `flags` are what the new process
        will carry; `changed`, for a service that runs others, those whose settings change (None: not known)."""
        return Watch.before_change(self.state(), component, flags, changed=changed)

    def check(self, component: str, state: Optional[NodeState] = None) -> Answer:
        """One round of every probe: authenticated endpoints, the pod's own probes, plugin probes."""
        state = state or self.state()
        for answer in (probe_endpoints(state, component), pod_probes(state, component)):
            if not answer.healthy:
                return answer
        for probe in self.probes:
            if probe.component == component:
                healthy, message = probe.check(state, component)
                if not healthy:
                    return Answer(False, f"{component}: {message}")
        return Answer(True, f"{component} healthy")

    def answer_now(self, component: str) -> Answer:
        """Is the component healthy now, allowing a passing hiccup (three tries, `interval` apart)?"""
        from tenacity import RetryError, Retrying, retry_if_result, stop_after_attempt, wait_fixed

        retrying = Retrying(stop=stop_after_attempt(3), wait=wait_fixed(self.settings.interval),
                            retry=retry_if_result(lambda a: not a.healthy and not a.refused))
        try:
            return retrying(self.check, component)
        except RetryError as exc:
            return exc.last_attempt.result()

    def require_healthy(self, component: str) -> None:
        """The pre-gate: healthy now (see `answer_now`), and so is every component it runs."""
        for name in [component, *_run_parts(self.state(), component)]:
            answer = self.answer_now(name)
            if not answer.healthy:
                raise NotHealthy(f"{name} is not healthy before any change, so nothing was changed: {answer.message}")

    def unhealthy(self) -> Dict[str, Answer]:
        """Every component of the node the gate waits for that does not answer healthy now, with its
        answer: what `cisfix resume` must hear before it clears HALT."""
        state = self.state()
        answers = {c: self.answer_now(c) for c in sorted(self.plugins.info.components)
                   if self.gates(c) and state.present(c)}
        return {c: a for c, a in answers.items() if not a.healthy}

    def restart(self, component: str) -> None:
        """Run the component's restart command (systemctl restart kubelet, or what the node config says),
        once it passed the trust rule (`cisfix.commands`); a refused one raises CommandRefused."""
        command = self.plugins.info.components[component].restart
        if command:
            run_trusted(command, _restart_what(component), self.settings.timeout)

    def reload(self, component: str) -> Optional[str]:
        """Run the component's reload command (systemctl daemon-reload) under the same rule; what went
        wrong when it did not exit 0, for the answer (systemd then still holds the unit as it loaded it)."""
        command = self.plugins.info.components[component].reload
        status = run_trusted(command, _reload_what(component), self.settings.timeout) if command else 0
        if status == 0:
            return None
        return (f"{component}'s reload command ({' '.join(command)}) exited {status}: the unit files were not "
                f"re-read, so a restart would not apply the change")

    def require_restartable(self, components: Iterable[Optional[str]]) -> None:
        """Before any change: the restart (and reload) command of every component the run may gate is one
        root may run, so that no run is refused halfway, after some of its changes."""
        for component in components:
            spec = self.plugins.info.components[component] if component else None
            if spec and self.gates(component) and spec.restart:
                trusted_command(spec.restart, _restart_what(component))
                if spec.reload:
                    trusted_command(spec.reload, _reload_what(component))

    def pauses(self, longest: Optional[float] = None) -> Iterator[float]:
        """Pauses between looks at the node while waiting for something to happen: 0.1 s at first, so a
        restart is seen within a fraction of a second of the node showing it, growing by half each time
        up to `longest` (default `interval`), so a long wait costs the node little."""
        longest = self.settings.interval if longest is None else longest
        pause = min(FIRST_PAUSE, longest)
        while True:
            yield pause
            pause = min(pause * 1.5, longest)

    def await_healthy(self, watch: Watch, stop: Optional[threading.Event] = None) -> Answer:
        """Wait for the process the watch expects, then for health, then for the stability window. A
        service that runs others is healthy when it and each of them is, judged at once (one stability
        window for all); the first that fails ends the wait for the others. `stop` set: give up."""
        if watch.parts:
            return self._await_all((replace(watch, parts=()), *watch.parts))
        stop = stop or threading.Event()
        started = time.monotonic()
        deadline = started + self.settings.timeout
        while True:
            process = self._await_process(watch, started, deadline, stop)
            if stop.is_set():
                return Answer(False, f"{watch.component}: not judged, another component failed")
            if process is None:
                state = self.state()
                why = ("is crash-looping" if len(watch.new_logs(state)) >= 2
                       else f"did not restart with the new configuration within {self.settings.timeout:.0f}s")
                return Answer(False, f"{watch.component} {why} since the change" + watch.last_words(state))
            answer = self._judge(watch, process, started, deadline, stop)
            if answer is not None:
                return answer
            # The process that ran before the write was replaced by the kubelet after all: judge its successor.

    def _await_all(self, watches: Tuple[Watch, ...]) -> Answer:
        """Each watch judged in a thread of its own: healthy when all are, else the first failure (the
        others are given up then, their answers say nothing)."""
        stop, guard = threading.Event(), threading.Lock()
        answers: Dict[int, Answer] = {}
        failures: List[Answer] = []

        def judge(index: int, watch: Watch) -> None:
            try:
                answer = self.await_healthy(watch, stop)
            except Exception as exc:  # a bug: this component's failure, never lost in a thread
                answer = Answer(False, f"{watch.component}: internal error while judging: {exc!r}")
            with guard:
                answers[index] = answer
                if not answer.healthy and not stop.is_set():
                    failures.append(answer)
                    stop.set()
        threads = [threading.Thread(target=judge, args=(i, w), daemon=True) for i, w in enumerate(watches)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if failures:
            return failures[0]
        ordered = [answers[i] for i in range(len(watches))]
        return Answer(True, "; ".join(a.message for a in ordered), seen=ordered[0].seen,
                      healthy_since=max(a.healthy_since or 0.0 for a in ordered) or None)

    def _judge(self, watch: Watch, process: Process, started: float, deadline: float,
               stop: threading.Event) -> Optional[Answer]:
        """Health, then stability, of one process; None when it was a process from before the write that
        went away (not a crash of the expected pod)."""
        component, s = watch.component, self.settings
        seen, first_success = time.time(), None
        successes = failures = 0
        last = Answer(False, "no probe answered")
        # The first healthy answer starts the stability window, so each moment it goes unseen is added
        # to the fix: while the process starts, look at least four times an interval.
        pauses = self.pauses(self.settings.interval / 4)
        while time.monotonic() < deadline and not stop.is_set():
            state = self.state()
            if (process.pid, process.start_ticks) not in _pids(state, component):  # exec keeps a process, argv aside
                if watch.existed(process):
                    return None
                return Answer(False, f"{component} restarted again (crashed) after the change" + watch.last_words(state))
            answer = self.check(component, state)
            failures = 0 if answer.healthy else failures + 1
            if answer.healthy:
                successes += 1
                first_success = first_success or time.monotonic()
                if time.monotonic() - first_success >= s.stability and successes >= 2:
                    self.progress(f"{component}: ")
                    return Answer(True, f"{component} healthy and stable for {s.stability:.0f}s (pid {process.pid})",
                                  seen=seen, healthy_since=time.time() - (time.monotonic() - first_success))
                self.progress(f"{component}: healthy, watching for {s.stability:.0f}s… {time.monotonic() - started:.0f}s")
            elif answer.refused or (first_success is not None and failures >= s.failure_threshold):
                # A component that refuses its own kubelet's probes will be killed by it: fail now,
                # not after the kubelet's failure threshold.
                self.progress(f"{component}: ")
                when = " (after being healthy)" if first_success is not None else ""
                return Answer(False, f"{answer.message}{when}" + watch.last_words(state))
            elif first_success is not None:
                self.progress(f"{component}: failed {failures} probe(s) of {s.failure_threshold} allowed… "
                              f"{time.monotonic() - started:.0f}s")
            else:
                self.progress(f"{component}: waiting to become healthy… {time.monotonic() - started:.0f}s")
                last = answer
            # After the first success: once an interval, the last probe when the window ends.
            if first_success is None:
                time.sleep(next(pauses))
            else:
                window_left = first_success + s.stability - time.monotonic()
                time.sleep(window_left if 0 < window_left < s.interval else s.interval)
        self.progress(f"{component}: ")
        reason = last.message if first_success is None else "stability window not reached"
        return Answer(False, f"{component} not healthy within {s.timeout:.0f}s: {reason}" + watch.last_words(self.state()))

    def _await_process(self, watch: Watch, started: float, deadline: float,
                       stop: threading.Event) -> Optional[Process]:
        pauses = self.pauses()
        while time.monotonic() < deadline and not stop.is_set():
            state = self.state()
            if len(watch.new_logs(state)) >= 2:
                # The expected pod started twice and was never seen up: the kubelet is crash-looping it.
                self.progress(f"{watch.component}: ")
                return None
            process = watch.candidate(state)
            if process is not None:
                return process
            self.progress(f"{watch.component}: waiting to restart… {time.monotonic() - started:.0f}s")
            time.sleep(next(pauses))
        self.progress(f"{watch.component}: ")
        return None


class OfflineGate(Gate):
    """The gate of a node where nothing runs (`offline: true`: a disk image, a test tree): no component
    to wait for, nothing to restart."""

    def gates(self, component: str) -> bool:
        return False


def make_gate(plugins: Plugins, settings: GateSettings = GateSettings(),
              progress: Optional[Callable[[str], None]] = None) -> Gate:
    """The gate for this node, chosen once."""
    return (OfflineGate if plugins.config.get("offline") else Gate)(plugins, settings, progress)


def progress_printer(quiet: bool) -> Callable[[str], None]:
    """Progress lines on stderr, silent with -q. A line is `<component>: <what>`; `<component>: ` alone
    ends that component's progress. On a terminal one live line is rewritten in place, showing every
    component still being gated; elsewhere a component's line is printed when what it says changes.
    Several components are gated at once, from threads: a line is always written whole."""
    if quiet:
        return lambda line: None
    tty = sys.stderr.isatty()
    current: Dict[str, str] = {}  # component -> its latest progress
    lock = threading.Lock()

    def show(line: str) -> None:
        component, _, what = line.partition(": ")
        with lock:
            before = current.pop(component, "")
            if what:
                current[component] = what
            if tty:
                sys.stderr.write("\r\033[K" + " · ".join(f"{c}: {w}" for c, w in sorted(current.items())))
                sys.stderr.flush()
            elif what and what.split("…")[0] != before.split("…")[0]:
                print(line, file=sys.stderr)
    return show
