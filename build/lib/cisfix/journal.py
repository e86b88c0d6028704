"""The write-ahead journal: `<state>/journal.jsonl`, one JSON record per line, fsync'd before the step it
announces is taken.

Record types (field `type`), each with `v` (format version), `time` and `txid`:

- `begin`: `files`, a list of {path, before, after, backup}; `before`/`after` are {sha256, mode, uid,
  gid} or null for a file that does not exist. Written before anything else happens.
- `backup`: `path` — the backup of that file is on disk and fsync'd.
- `applied`: `path`, `sha256` — the file now holds its new content and mode.
- `commit`: the transaction is complete.
- `rollback-begin`: `reason`; undoing starts (of an unfinished or of a committed transaction).
- `restored`: `path`, `action` — one file is back as it was.
- `rolled-back`: every file is as before.
- `rollback-failed`: `conflicts`, a list of {path, reason, backup} — files left untouched.

Later record types (health, verification) may be added; readers ignore types they do not know.
A torn last line (a crash mid-append) is ignored on reading and cut off before the next append.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

from .errors import CisfixError

VERSION = 1

# The state a transaction is in after its last record of these types.
_STATE_AFTER = {
    "begin": "open",
    "commit": "committed",
    "rollback-begin": "rolling-back",
    "rolled-back": "rolled-back",
    "rollback-failed": "rollback-failed",
}
UNFINISHED = ("open", "rolling-back")


class JournalCorrupt(CisfixError):
    pass


@dataclass
class TxInfo:
    """A transaction as the journal tells it."""

    txid: str
    time: float
    label: str
    files: List[dict]
    state: str = "open"
    records: List[dict] = field(default_factory=list)

    @property
    def unfinished(self) -> bool:
        return self.state in UNFINISHED


class Journal:
    def __init__(self, path: Path) -> None:
        self.path = path

    def append(self, record_type: str, txid: str, **fields: object) -> dict:
        record = {"v": VERSION, "type": record_type, "time": round(time.time(), 6), "txid": txid, **fields}
        line = (json.dumps(record, sort_keys=True) + "\n").encode()
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            self._cut_torn_tail(fd)
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)
        return record

    @staticmethod
    def _cut_torn_tail(fd: int) -> None:
        size = os.fstat(fd).st_size
        if size == 0 or os.pread(fd, 1, size - 1) == b"\n":
            return
        # Find the end of the last complete line and drop what follows it.
        chunk = min(size, 1 << 20)
        tail = os.pread(fd, chunk, size - chunk)
        cut = tail.rfind(b"\n")
        os.ftruncate(fd, (size - chunk + cut + 1) if cut >= 0 else 0)

    def records(self) -> List[dict]:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return []
        # The last piece is empty, or a torn line whose step never started.
        lines = raw.split(b"\n")[:-1]
        records = []
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except ValueError:
                raise JournalCorrupt(f"{self.path}:{number}: not a JSON record; the journal is damaged")
        return records

    def transactions(self) -> Dict[str, TxInfo]:
        """Every transaction in the journal, oldest first."""
        txs: Dict[str, TxInfo] = {}
        for record in self.records():
            txid = record.get("txid")
            if record.get("type") == "begin":
                txs[txid] = TxInfo(txid, record["time"], record.get("label", ""), record["files"])
            tx = txs.get(txid)
            if tx is None:
                continue
            tx.records.append(record)
            tx.state = _STATE_AFTER.get(record["type"], tx.state)
        return txs

    def get(self, txid: str) -> Optional[TxInfo]:
        return self.transactions().get(txid)
