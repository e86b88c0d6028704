"""`<state>/events.jsonl`: one JSON line per correction `cisfix drift` made or attempted (time, check,
class, txid, outcome, and what was found), fsync'd, and the same line to syslog/journald when the node
has one. The flap guard counts corrections here, so it is read and written only as root's own file in
the trusted state folder, like the journal (`cisfix.journal.open_state_file`)."""
from __future__ import annotations

import json
import os
import syslog
from pathlib import Path
from typing import List

from .journal import JournalCorrupt, JournalWriteFailed, open_state_file
from .statedir import is_timestamp, load_state_json

WHAT = "the drift events log"


class EventLog:
    def __init__(self, path: Path) -> None:
        self.path = path

    def append(self, event: dict) -> None:
        line = (json.dumps(event, sort_keys=True) + "\n").encode()
        fd = open_state_file(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, WHAT)
        try:
            written = os.write(fd, line)
            os.fsync(fd)
        except OSError as exc:
            raise JournalWriteFailed(self.path, exc.strerror or str(exc))
        finally:
            os.close(fd)
        if written != len(line):
            raise JournalWriteFailed(self.path, f"short write, {written} of {len(line)} bytes")
        _to_syslog(event)

    def read(self) -> List[dict]:
        """Every event, oldest first. A torn last line (a crash mid-append) is ignored; any other line
        that is not an event is refused naming its line."""
        if not self.path.parent.exists() and not self.path.parent.is_symlink():
            return []  # no state folder yet: cisfix never changed this node
        try:
            fd = open_state_file(self.path, os.O_RDONLY, WHAT)
        except FileNotFoundError:
            return []
        try:
            chunks = []
            while True:
                chunk = os.read(fd, 1 << 20)
                if not chunk:
                    break
                chunks.append(chunk)
        finally:
            os.close(fd)
        data = b"".join(chunks)
        events = []
        for number, line in enumerate(data.split(b"\n")[:-1], 1):
            try:
                event = load_state_json(line)
            except ValueError:
                event = None
            if not isinstance(event, dict) or not is_timestamp(event.get("time")) \
                    or not all(isinstance(event.get(k), str) for k in ("id", "class", "outcome")):
                raise JournalCorrupt(f"{self.path}:{number}", "not a drift event; the events log is damaged")
            events.append(event)
        return events


def _to_syslog(event: dict) -> None:
    """To the local syslog socket (journald listens on it) when there is one."""
    if not os.path.exists("/dev/log"):
        return
    syslog.openlog("cisfix", syslog.LOG_PID, syslog.LOG_DAEMON)
    priority = syslog.LOG_NOTICE if event.get("outcome") == "FIXED" else syslog.LOG_WARNING
    syslog.syslog(priority, f"drift {event['id']} class={event.get('class')} outcome={event.get('outcome')} "
                            f"txid={event.get('txid')}")
