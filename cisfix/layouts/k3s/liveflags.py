"""k3s's live flags: its components run inside the one `k3s server` process, whose own argv says nothing
of theirs. At each start k3s logs the command line it gives each one —

    time="2026-12-02T10:00:00Z" level=info msg="Running kube-apiserver --advertise-address=... --profiling=false"

— to journald (systemd) or to /var/log/k3s.log (OpenRC). The live flags of a component are those of the
newest such line written since the running k3s process started: an older line describes a process that
is gone. The log is read only when root owns it and no one else may write it (its lines are verdicts),
and only its last `TAIL` bytes (a log grows until rotated).
"""
from __future__ import annotations

import json
import re
import subprocess
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Iterable, List, Optional, Tuple

from ... import flags as flag_parser
from ...commands import CommandRefused, SEARCH_PATH, trusted_command
from ...errors import InputError
from ...trust import read_tail_trusted
from ...types import Component, Evidence

if TYPE_CHECKING:  # pragma: no cover
    from ...node import Node
    from ...state import Flags, NodeState

SERVICE = "k3s"
TAIL = 8 << 20
LINE = re.compile(r'time="(?P<time>[^"]+)"\s+level=\w+\s+msg="(?P<msg>(?:[^"\\]|\\.)*)"')
SLACK = 1.0  # seconds: /proc's start time is counted in clock ticks from a boot time known to the second


def running_lines(lines: Iterable[str], component: str, since: float) -> Optional[Tuple[int, List[str]]]:
    """(line number, argv after the program) of the newest `Running <component> ...` line logged at or
    after `since` (epoch seconds), or None."""
    found = None
    prefix = f"Running {component} "
    for number, line in enumerate(lines, 1):
        match = LINE.search(line)
        if not match or prefix not in line:
            continue
        try:
            message = json.loads(f'"{match.group("msg")}"')  # logrus quotes like Go's strconv.Quote
            when = datetime.fromisoformat(match.group("time").replace("Z", "+00:00"))
        except ValueError:
            continue
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        if message.startswith(prefix) and when.timestamp() >= since - SLACK:
            found = (number, message[len(prefix):].split())
    return found


def _journal(since: float) -> bytes:
    """k3s's journal since `since`, as k3s wrote it (`--output cat`), at most TAIL bytes."""
    command = trusted_command(["journalctl", "--unit", f"{SERVICE}.service", "--since", f"@{int(since - SLACK)}",
                               "--output", "cat", "--no-pager", "--quiet"], "k3s's journal")
    try:
        done = subprocess.run(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                              env={"PATH": ":".join(SEARCH_PATH), "LC_ALL": "C"}, cwd="/", timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise CommandRefused("journalctl", f"k3s's journal could not be read: {exc}")
    return done.stdout[-TAIL:]


def read_node_tail(node: "Node", node_path: str) -> bytes:
    """The log's last TAIL bytes, when only root may have written it (its lines are verdicts)."""
    return read_tail_trusted(node.host(node.resolve(node_path)), TAIL, why="; k3s's live flags are not read from it")


def _refuse_spaced_values(state: "NodeState", spec: Component) -> None:
    """k3s logs the arguments joined by spaces, so an item whose value holds one cannot be read back:
    `audit-log-path=/a --profiling=false` reads as profiling off while the component runs with it on."""
    for entry in state.dist_config(spec.args).entries(spec.args.key) if spec.args else ():
        if entry.value and any(c.isspace() for c in entry.value):
            raise InputError(f"{state.node.display(entry.file)}:{entry.line}",
                             f"a value with a space: k3s's 'Running {spec.name}' line cannot tell its arguments apart")


def live_flags(state: "NodeState", spec: Component) -> "Optional[Flags]":
    """The component's flags as the running k3s logged them; None when k3s does not run (its
    configuration then says what the next start gives). A running k3s with no such line is an error,
    not an empty command line: k3s's defaults would go unseen."""
    from ...state import Flags

    process = state.process(SERVICE)
    if process is None:
        return None
    since = state.started_at(process)
    logs = state.component(SERVICE).logs
    if logs:
        where = logs[0]
        try:
            data = read_node_tail(state.node, where)
        except FileNotFoundError:
            raise InputError(state.node.display(where), "no such file: k3s's live flags are read from its log")
    else:
        where, data = "the k3s journal", _journal(since)
    found = running_lines(data.decode("utf-8", "replace").splitlines(), spec.name, since)
    if found is None:
        if spec.name == "etcd":  # embedded etcd logs no command line: its config file says it all
            return Flags({}, Evidence(detail=f"etcd inside k3s (pid {process.pid})"), True)
        raise InputError(where, f"no 'Running {spec.name}' line since k3s (pid {process.pid}) started")
    _refuse_spaced_values(state, spec)
    number, argv = found
    evidence = Evidence(file=where if logs else None, line=number if logs else None,
                        process=f"{spec.name} in k3s (pid {process.pid})", detail="its Running line")
    return Flags(flag_parser.effective(argv), evidence, True)  # a repeated list flag adds up

