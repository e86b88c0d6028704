"""Pause, like `puppet agent --disable "msg"`: `<state>/PAUSE` says who paused cisfix, why and until
when. While it holds, the unattended runs — `fix`, `drift` and the Python API's scripts — change nothing,
say so in one line and exit 0 (a script's result is SKIPPED); a command a person gives by hand goes ahead,
its first line saying who paused the node (`going_ahead`).

PAUSE is root's own file in the trusted state folder (`cisfix.statedir`): one another user could have
written is refused (exit 4), as the journal is, because it silences every correction on the node.
"""
from __future__ import annotations

import datetime
import json
import os
import pwd
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from .atomic import Meta, fsync_dir, write_atomic
from .errors import InputError
from .node import Node
from .statedir import LATEST, UntrustedState, is_timestamp, load_state_json, prepare_state_dir, writing_state
from .trust import read_trusted

WHY = "; PAUSE must be root's own file in the state folder, remove it by hand"


@dataclass(frozen=True)
class Pause:
    who: str
    reason: str
    since: float
    until: Optional[float]  # None: until `cisfix unpause`

    def holds(self, now: float) -> bool:
        return self.until is None or now < self.until

    def line(self) -> str:
        until = f" until {_stamp(self.until)}" if self.until is not None else " until `cisfix unpause`"
        return f"paused by {self.who} since {_stamp(self.since)}{until}: {self.reason}"


def _stamp(when: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(when))


def pause_file(node: Node) -> Path:
    return node.state_dir / "PAUSE"


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION = re.compile(r"([0-9]+(?:\.[0-9]+)?)([smhd])", re.ASCII)  # not "²h": str.isdigit takes that


def parse_until(text: str, now: float) -> float:
    """`--until`: an ISO 8601 time (UTC when it names no zone) or a duration such as 90m, 2h, 1d; it
    must end after now and no later than the latest time a PAUSE may hold (`read_pause` refuses any
    other), so that every pause given is one that later runs read."""
    duration = _DURATION.fullmatch(text)
    if duration:
        until = now + float(duration[1]) * _UNITS[duration[2]]
    else:
        try:
            when = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise InputError(f"--until {text}", "expected a time (2026-12-01T06:00Z) or a duration (90m, 2h, 1d)")
        if when.tzinfo is None:
            when = when.replace(tzinfo=datetime.timezone.utc)
        until = when.timestamp()
    if until <= now:  # 0s: a pause that has already ended would only say "paused" and change nothing
        raise InputError(f"--until {text}", "a pause must last longer than that" if duration else "that time has passed")
    if until > LATEST:
        raise InputError(f"--until {text}", f"that is after {_stamp(LATEST)}, the latest a pause may end; "
                                            "leave --until out to pause until unpause")
    return until


def who_am_i() -> str:
    """The person behind the command: the sudo user when there is one."""
    user = os.environ.get("SUDO_USER")
    if not user:
        try:
            user = pwd.getpwuid(os.getuid()).pw_name
        except KeyError:
            user = f"uid {os.getuid()}"
    return user


def read_pause(node: Node) -> Optional[Pause]:
    """The pause in force, if any (an expired one is ignored)."""
    path = pause_file(node)
    try:
        data = read_trusted(path, UntrustedState, WHY)
    except FileNotFoundError:
        return None
    try:
        fields = load_state_json(data)
        pause = Pause(str(fields["who"]), str(fields["reason"]), float(fields["since"]),
                      None if fields["until"] is None else float(fields["until"]))
        if not is_timestamp(pause.since) or not (pause.until is None or is_timestamp(pause.until)):
            raise ValueError("a time no date can say")
    except (ValueError, KeyError, TypeError):
        raise UntrustedState(path, "not a pause cisfix wrote" + WHY)
    return pause if pause.holds(time.time()) else None


def going_ahead(node: Node, command: str) -> Optional[str]:
    """The first line of a command a person gives by hand (edit, rollback, recover, resume, persist, prune)
    while the node is paused: it goes ahead — a pause holds back the unattended runs, fix, drift and
    scripts — but says who paused the node, why and until when. None when not paused."""
    paused = read_pause(node)
    if paused is None:
        return None
    return f"{paused.line()} — {command} goes ahead: a pause holds back only fix, drift and scripts"


def pause(node: Node, reason: str, until: Optional[float]) -> Pause:
    prepare_state_dir(node)
    record = Pause(who_am_i(), reason, time.time(), until)
    with writing_state(pause_file(node)):
        write_atomic(pause_file(node), json.dumps(record.__dict__).encode() + b"\n",
                     Meta(0o600, os.geteuid(), os.getegid()))
    return record


def unpause(node: Node) -> bool:
    """Remove PAUSE; False when there was none."""
    path = pause_file(node)
    if not path.exists() and not path.is_symlink():
        return False
    prepare_state_dir(node)
    with writing_state(path):
        path.unlink()
        fsync_dir(path.parent)
    return True
