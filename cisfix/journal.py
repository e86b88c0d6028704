"""The write-ahead journal: `<state>/journal.jsonl`, one JSON record per line, fsync'd before the step it
announces is taken.

Record types (field `type`), each with `v` (format version), `time`, `txid` and `check`:

- `begin`: `label`, `pid`, `files`, a list of {path, before, after, backup}; `before`/`after` are
  {sha256, mode, uid, gid} or null for a file that does not exist; `shown`, for a file whose new content
  holds secret material (a generated key), is that content as diffs show it (`CreateFile.shown`), so a
  report of the change later shows what `fix --diff` showed. Written before anything else happens.
  `pid` (here and in `rollback-begin`) names the process working on the transaction: an interrupted
  run names what it left (`cisfix.interrupted`).
- `backup`: `path` — the backup of that file is on disk and fsync'd.
- `applied`: `path`, `sha256` — the file now holds its new content and mode.
- `commit`: the transaction is complete.
- `rollback-begin`: `reason`, `pid`; undoing starts (of an unfinished or of a committed transaction).
- `restored`: `path`, `action` — one file is back as it was.
- `rolled-back`: every file is as before.
- `rollback-failed`: `conflicts`, a list of {path, reason, backup} — files left untouched.

Records that announce no step: `gate` (`component`, `phase`: a gate opens), `health` (`component`,
`phase`, `healthy`, `message`; a healthy verdict on a restart adds `seen` and `healthySince`, when the gate
first saw the judged process and when it first answered healthy, and `stabilityWindow`, the seconds it
then had to stay healthy), `verified`. Later record types may be
added; readers ignore types they do not know.

Trust and integrity. Records are read only from a journal that is a regular file (never through a
symlink), owned by root and writable by no one else, in a trusted state folder (`cisfix.statedir`).
`check` is the sha256 of the record's other fields (canonical JSON), so a cut or altered record is
detected as such. Every `path` is a normalised absolute node path and every `backup` is exactly
`backups/<txid><path>`, relative to the state folder: a record can never make root read a backup from,
or restore a file to, anywhere else. A torn last line (a crash mid-append) is ignored on reading and
cut off before the next append; a short write (a full disk) is undone at once and fails the step before
it is taken.

Format 1 (before checksums) is read as it is when it comes before every format-2 record (a journal of
an older cisfix, continued by this one); compaction (`cisfix prune`) rewrites it as format 2.
"""
from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import posixpath
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterable, List, Optional

from . import status
from .atomic import Meta, write_atomic
from .errors import CisfixError
from .faults import fail_point
from .statedir import WHY, UntrustedState, load_state_json
from .trust import require_trusted_dir, require_trusted_file

VERSION = 2
_TXID = re.compile(r"\d{8}T\d{6}Z-[0-9a-f]{6}")
_SHA256 = re.compile(r"[0-9a-f]{64}")

# The state a transaction is in after its last record of these types.
_STATE_AFTER = {
    "begin": "open",
    "commit": "committed",
    "rollback-begin": "rolling-back",
    "rolled-back": "rolled-back",
    "rollback-failed": "rollback-failed",
}
UNFINISHED = ("open", "rolling-back")
# One append at a time in this process: a fix gates a level's components from several threads, and an
# append's torn-tail cut must never see another thread's record half written.
_APPEND_LOCK = threading.Lock()


class JournalCorrupt(UntrustedState):
    """A record was cut, altered or forged: nothing is believed, a person must look (exit 4)."""


class JournalWriteFailed(CisfixError):
    """A record could not be written in full (a full disk, an immutable file): the step it announces
    is not taken, and a person must make room for the journal (exit 4)."""

    exit_code = status.EXIT_ROLLBACK_FAILED

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path}: cannot write the journal: {reason}; that step was not taken")
        self.reason = reason


FIX_LABEL = "fix "  # a `fix` transaction's label names the checks it remedied


def fix_label(check_ids: Iterable[str]) -> str:
    return FIX_LABEL + ",".join(check_ids)


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

    @property
    def fixed_checks(self) -> List[str]:
        """The checks a `fix` transaction remedied (its label is `fix_label`'s): what `drift` enforces."""
        return self.label[len(FIX_LABEL):].split(",") if self.label.startswith(FIX_LABEL) else []



def _checksum(record: dict) -> str:
    body = {k: v for k, v in record.items() if k != "check"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def seal(record: dict) -> dict:
    """The record as format 2, with the checksum of its content."""
    body = {k: v for k, v in record.items() if k != "check"}
    body["v"] = VERSION
    return {**body, "check": _checksum(body)}


def _line(record: dict) -> bytes:
    return (json.dumps(record, sort_keys=True) + "\n").encode()


class Journal:
    def __init__(self, path: Path) -> None:
        self.path = path

    def _open(self, flags: int) -> int:
        return open_state_file(self.path, flags, "the journal")

    def append(self, record_type: str, txid: str, **fields: object) -> dict:
        with _APPEND_LOCK:  # the lock also orders the records' times as their lines
            return self._append(record_type, txid, fields)

    def _append(self, record_type: str, txid: str, fields: Dict[str, object]) -> dict:
        record = seal({"type": record_type, "time": round(time.time(), 6), "txid": txid, **fields})
        line = _line(record)
        fd = self._open(os.O_RDWR | os.O_CREAT | os.O_APPEND)
        try:
            self._cut_torn_tail(fd)
            size = os.fstat(fd).st_size
            try:
                fail_point("journal-write", fd, line)
                written = os.write(fd, line)
                if written != len(line):
                    raise OSError(errno.ENOSPC, f"short write, {written} of {len(line)} bytes")
                os.fsync(fd)
            except OSError as exc:
                _undo_append(fd, size)
                raise JournalWriteFailed(self.path, exc.strerror or str(exc)) from exc
        finally:
            os.close(fd)
        return record

    def note(self, record_type: str, txid: str, **fields: object) -> None:
        """A record that announces no step (a health verdict, a verification): on a full disk it is
        left out with a warning rather than failing a transaction that is otherwise sound."""
        try:
            self.append(record_type, txid, **fields)
        except JournalWriteFailed as exc:
            logging.getLogger("cisfix").warning("%s record of %s not kept: %s", record_type, txid, exc)

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

    def _raw(self) -> bytes:
        try:
            fd = self._open(os.O_RDONLY)
        except FileNotFoundError:
            return b""
        try:
            chunks = []
            while True:
                chunk = os.read(fd, 1 << 20)
                if not chunk:
                    return b"".join(chunks)
                chunks.append(chunk)
        finally:
            os.close(fd)

    def records(self) -> List[dict]:
        if not self.path.parent.exists() and not self.path.parent.is_symlink():
            return []
        # The last piece is empty, or a torn line whose step never started.
        lines = self._raw().split(b"\n")[:-1]
        records = []
        sealed = False
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            where = f"{self.path}:{number}"
            try:
                record = load_state_json(line)
            except ValueError:
                raise JournalCorrupt(where, "not a JSON record; the journal is damaged")
            if not isinstance(record, dict):
                raise JournalCorrupt(where, "not a journal record; the journal is damaged")
            version = record.get("v")
            if version == VERSION:
                if record.get("check") != _checksum(record):
                    raise JournalCorrupt(where, "checksum mismatch: the record was cut or altered")
                sealed = True
            elif version != 1 or sealed or "check" in record:
                raise JournalCorrupt(where, f"record of format {version!r} where cisfix writes format {VERSION}")
            else:
                _relative_conflict_backups(record)
            _validate(record, where)
            records.append(record)
        return records

    def transactions(self) -> Dict[str, TxInfo]:
        """Every transaction in the journal, oldest first."""
        txs: Dict[str, TxInfo] = {}
        for record in self.records():
            txid = record["txid"]
            if record["type"] == "begin":
                txs[txid] = TxInfo(txid, record["time"], record.get("label", ""), record["files"])
            tx = txs.get(txid)
            if tx is None:
                continue
            tx.records.append(record)
            tx.state = _STATE_AFTER.get(record["type"], tx.state)
        return txs

    def get(self, txid: str) -> Optional[TxInfo]:
        return self.transactions().get(txid)

    def compact(self, txids: Iterable[str]) -> None:
        """Rewrite the journal with only these transactions' records (in format 2), atomically."""
        keep = set(txids)
        data = b"".join(_line(seal(r)) for r in self.records() if r["txid"] in keep)
        write_atomic(self.path, data, Meta(0o600, os.geteuid(), os.getegid()))


def open_state_file(path: Path, flags: int, what: str) -> int:
    """Open a record file of the state folder (the journal, the drift events) itself — never a symlink,
    never a FIFO that would block — and check it is root's alone. A missing file raises FileNotFoundError."""
    require_trusted_dir(path.parent, UntrustedState, WHY)
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise JournalCorrupt(path, f"is a symbolic link; {what} must be a file of its own")
        if exc.errno == errno.EISDIR:
            raise JournalCorrupt(path, f"is a directory, not {what} file")
        if exc.errno == errno.ENOENT:
            raise
        raise JournalWriteFailed(path, exc.strerror or str(exc))
    try:
        st = require_trusted_file(fd, path, JournalCorrupt, f"; {what} must be root's alone")
        if st.st_mode & 0o077:
            raise JournalCorrupt(path, f"mode {st.st_mode & 0o7777:04o}, not 0600; {what} must be root's alone")
    except BaseException:
        os.close(fd)
        raise
    return fd


def _undo_append(fd: int, size: int) -> None:
    """Cut off the part of a record a failed write left (truncating frees space, so it works on a full
    disk); should even that fail, the unterminated line is a torn tail that readers ignore."""
    try:
        os.ftruncate(fd, size)
        os.fsync(fd)
    except OSError:
        pass


def _relative_conflict_backups(record: dict) -> None:
    """Format 1 named a conflict's backup by its absolute path; format 2 by its path in the state folder."""
    for conflict in record.get("conflicts", []) if isinstance(record.get("conflicts"), list) else []:
        if isinstance(conflict, dict) and isinstance(conflict.get("backup"), str) and isinstance(conflict.get("path"), str):
            relative = f"backups/{record.get('txid')}{conflict['path']}"
            if conflict["backup"].endswith("/" + relative):
                conflict["backup"] = relative


def _node_path(value: object) -> bool:
    return (isinstance(value, str) and value.startswith("/") and not value.startswith("//")
            and "\0" not in value and posixpath.normpath(value) == value and value != "/")


def _validate(record: dict, where: str) -> None:
    """Refuse a record that names anything but node paths and this transaction's own backups."""
    txid = record.get("txid")
    if not isinstance(txid, str) or not _TXID.fullmatch(txid):
        raise JournalCorrupt(where, f"invalid transaction id {txid!r}")
    if not isinstance(record.get("type"), str) or not isinstance(record.get("time"), (int, float)):
        raise JournalCorrupt(where, "a record needs a type and a time")
    entries = record.get("files") if record["type"] == "begin" else record.get("conflicts", [])
    if record["type"] == "begin" and (not isinstance(entries, list) or not entries):
        raise JournalCorrupt(where, "a begin record needs its files")
    if "path" in record:
        entries = [*entries, {"path": record["path"]}]
    for entry in entries if isinstance(entries, list) else [None]:
        if not isinstance(entry, dict) or not _node_path(entry.get("path")):
            raise JournalCorrupt(where, f"{entry!r}: not an absolute node path")
        backup = entry.get("backup")
        if backup is not None and backup != f"backups/{txid}{entry['path']}":
            raise JournalCorrupt(where, f"backup {backup!r} is not this transaction's backup of {entry['path']}")
        for side in ("before", "after") if record["type"] == "begin" else ():
            _validate_state(entry.get(side), where, entry["path"], allow_none=side == "before")
        if record["type"] == "begin" and (entry.get("before") is None) != (backup is None):
            raise JournalCorrupt(where, f"{entry['path']}: a file that existed needs a backup, a new one none")


def _validate_state(state: object, where: str, path: str, allow_none: bool) -> None:
    if state is None and allow_none:
        return
    try:
        ok = bool(_SHA256.fullmatch(state["sha256"])) and Meta.from_dict(state) is not None
    except (TypeError, KeyError, ValueError):
        ok = False
    if not ok:
        raise JournalCorrupt(where, f"{path}: invalid before/after state {state!r}")
