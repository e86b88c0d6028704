"""The health gate: after a change to a component's files, prove that the component restarted with the
new configuration and stayed healthy — or report why not, with the component's own last words.

Probing before the restart proves nothing (the old process keeps answering), so the gate first waits
for a new process whose command line carries the new flags, then for the component's endpoints and
its pod's own probes to pass, then for a stability window with no restart.
"""
from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Callable, Dict, Optional

from .errors import CisfixError
from .health import Answer, pod_probes, probe_endpoints
from .plugins import Plugins
from . import flags
from .state import NodeState, Process
from . import status


@dataclass(frozen=True)
class GateSettings:
    timeout: float = 180.0  # per component: an API server needs 30-90 s, the kubelet notices within 20 s
    stability: float = 15.0  # seconds of uninterrupted health, same process, after the first success
    interval: float = 1.0


def gate_settings(config: dict, timeout: Optional[float] = None, stability: Optional[float] = None) -> GateSettings:
    """The gate's timing: what is asked for, else the node configuration's `gate:`, else the defaults."""
    configured = config.get("gate", {})
    return GateSettings(
        timeout=timeout or configured.get("timeout", GateSettings.timeout),
        stability=stability if stability is not None else configured.get("stabilityWindow", GateSettings.stability),
        interval=configured.get("interval", GateSettings.interval))


class NotHealthy(CisfixError):
    """The component is unhealthy before any change: a sick node is never 'fixed'."""

    exit_code = status.EXIT_INPUT


class Gate:
    def __init__(self, plugins: Plugins, settings: GateSettings = GateSettings(),
                 progress: Optional[Callable[[str], None]] = None) -> None:
        self.plugins, self.settings = plugins, settings
        self.progress = progress or (lambda line: None)
        self.probes = [p for found in plugins.pm.hook.cisfix_register_probes() for p in found or ()]
        self._logs_before: set = set()

    def gates(self, component: str) -> bool:
        """Does a change to this component's files wait for it? (Not on a node where nothing runs.)"""
        return component in self.plugins.info.components

    def state(self, live: bool = False) -> NodeState:
        """A fresh view of the node: processes and files change while we wait. `live`: running
        components' settings from what they serve (the kubelet's /configz), to verify a change."""
        from .audit import node_state

        return node_state(self.plugins, live)

    def process(self, component: str) -> Optional[Process]:
        return self.state().process(component)

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

    def require_healthy(self, component: str) -> None:
        """The pre-gate: healthy now, allowing a passing hiccup (three tries, `interval` apart)."""
        from tenacity import RetryError, Retrying, retry_if_result, stop_after_attempt, wait_fixed

        retrying = Retrying(stop=stop_after_attempt(3), wait=wait_fixed(self.settings.interval),
                            retry=retry_if_result(lambda a: not a.healthy and not a.refused))
        try:
            answer = retrying(self.check, component)
        except RetryError as exc:
            answer = exc.last_attempt.result()
        if not answer.healthy:
            raise NotHealthy(f"{component} is not healthy before any change, so nothing was changed: {answer.message}")

    def restart(self, component: str) -> None:
        """Run the component's restart command (systemctl restart kubelet, or what the node config says)."""
        command = list(self.state().component(component).restart)
        if command:
            subprocess.run(command, check=False, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, timeout=self.settings.timeout)

    def await_healthy(self, component: str, before: Optional[Process],
                      expected_flags: Optional[Dict[str, Optional[str]]]) -> Answer:
        """Wait for a restart (a process other than `before`, carrying `expected_flags` when given),
        then for health, then for the stability window."""
        s = self.settings
        started = time.monotonic()
        deadline = started + s.timeout
        self._logs_before = set(self.state().log_files(component))
        process = self._await_restart(component, before, expected_flags, started, deadline)
        if process is None:
            looping = len(set(self.state().log_files(component)) - self._logs_before) >= 2
            why = "is crash-looping" if looping else f"did not restart with the new configuration within {s.timeout:.0f}s"
            return Answer(False, f"{component} {why} since the change" + self._last_words(component))
        first_success = None
        successes = 0
        last = Answer(False, "no probe answered")
        while time.monotonic() < deadline:
            state = self.state()
            current = state.process(component)
            if current is None or (current.pid, current.start_ticks) != (process.pid, process.start_ticks):
                return Answer(False, f"{component} restarted again (crashed) after the change" + self._last_words(component))
            answer = self.check(component, state)
            if answer.healthy:
                successes += 1
                first_success = first_success or time.monotonic()
                if time.monotonic() - first_success >= s.stability and successes >= 2:
                    self.progress("")
                    return Answer(True, f"{component} healthy and stable for {s.stability:.0f}s (pid {process.pid})")
                self.progress(f"{component} healthy, watching for {s.stability:.0f}s… {time.monotonic() - started:.0f}s")
            elif first_success is not None or answer.refused:
                # A component that refuses its own kubelet's probes will be killed by it: fail now,
                # not after the kubelet's failure threshold.
                self.progress("")
                when = " (after being healthy)" if first_success is not None else ""
                return Answer(False, f"{answer.message}{when}" + self._last_words(component))
            else:
                self.progress(f"waiting for {component} to become healthy… {time.monotonic() - started:.0f}s")
                last = answer
            time.sleep(s.interval)
        self.progress("")
        reason = last.message if first_success is None else "stability window not reached"
        return Answer(False, f"{component} not healthy within {s.timeout:.0f}s: {reason}" + self._last_words(component))

    def _await_restart(self, component: str, before: Optional[Process], expected: Optional[dict],
                       started: float, deadline: float) -> Optional[Process]:
        while time.monotonic() < deadline:
            state = self.state()
            if len(set(state.log_files(component)) - self._logs_before) >= 2:
                # Started twice since the change and never seen up: the kubelet is crash-looping it.
                self.progress("")
                return None
            process = state.process(component)
            if process and (before is None or (process.pid, process.start_ticks) != (before.pid, before.start_ticks)):
                if expected is None or flags.effective(process.argv[state.program_index(component, process) + 1:]) == expected:
                    return process
            self.progress(f"waiting for {component} to restart… {time.monotonic() - started:.0f}s")
            time.sleep(self.settings.interval)
        self.progress("")
        return None

    def _last_words(self, component: str) -> str:
        tail = self.state().log_tail(component)
        return f"; last log lines: {tail}" if tail else ""


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
    """A live progress line on stderr (rewritten in place on a terminal), silent with -q."""
    if quiet:
        return lambda line: None
    tty = sys.stderr.isatty()
    last = {"line": ""}

    def show(line: str) -> None:
        if tty:
            sys.stderr.write("\r\033[K" + line)
            sys.stderr.flush()
        elif line and line.split("…")[0] != last["line"].split("…")[0]:
            print(line, file=sys.stderr)
        last["line"] = line
    return show
