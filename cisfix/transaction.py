"""Transactions: the one place that knows how to back up, apply, commit and undo changes to node files.

A transaction covers one or more files (content, mode and owner). Its life, every step announced in the
journal and fsync'd before it is taken:

    begin -> backup (each existing file) -> applied (each file) -> commit
                     \\ on failure, or on recovery after a crash: rollback-begin -> restored... ->
                       rolled-back | rollback-failed

Undoing follows one rule per file, whether after a failure, after a crash (`recover`) or on request
(`rollback TXID`): a file that holds what cisfix wrote is restored from its backup; a file that holds
what it held before is left alone (its mode and owner put back if a crash came between `chown` and
`chmod`); anything else was changed by someone else meanwhile, so it is not touched and is reported as
a conflict with the path of its backup.

Nothing is undone that the journal cannot record. A requested rollback and recovery write their
`rollback-begin` record before touching a file, and refuse (`UndoNotRecorded`, exit 4) when they cannot:
the journal never says "committed" of files that are back as before. A transaction that fails while it
runs (a full disk met halfway) is undone all the same — it is still open in the journal, whose `begin`
covers files anywhere between before and after — and the next run's recovery confirms it; its report
says so (`unrecorded`) instead of "rolled back".
"""
from __future__ import annotations

import os
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional, Sequence

from .atomic import Meta, fsync_dir, make_folders, remove_strays, remove_strays_under, set_meta, sha256, write_atomic
from .changelog import ChangeLog
from .errors import CisfixError, InputError
from .faults import crash_point, fail_point
from .journal import Journal, JournalWriteFailed, TxInfo
from .node import Node
from . import status


@dataclass(frozen=True)
class FileChange:
    """One file's intended state. `content` None keeps the content (a mode/owner change); `meta` None
    keeps the mode and owner (a new file gets 0600, owned by the caller). `expected_sha256` is the hash
    of the content the plan was made from (None: the file did not exist); the change is refused if the
    file differs when the transaction begins or just before it is replaced."""

    path: str
    content: Optional[bytes]
    expected_sha256: Optional[str]
    meta: Optional[Meta] = None
    shown: Optional[bytes] = None  # the content as diffs show it, when it holds secret material


@dataclass
class RollbackReport:
    txid: str
    restored: List[dict] = field(default_factory=list)  # {path, action}
    conflicts: List[dict] = field(default_factory=list)  # {path, reason, backup}
    unrecorded: Optional[str] = None  # why the journal could not record the undoing, if it could not

    @property
    def ok(self) -> bool:
        return not self.conflicts


class ConcurrentChange(InputError):
    """The target changed between the read that planned the edit and its replacement."""


class UndoNotRecorded(CisfixError):
    """The journal cannot record an undo (a full disk, an immutable journal): nothing was undone."""

    exit_code = status.EXIT_ROLLBACK_FAILED

    @classmethod
    def of(cls, journal: Journal, txid: str, why: str) -> "UndoNotRecorded":
        return cls(f"{journal.path}: cannot write the journal ({why}), so nothing of transaction {txid} was "
                   "undone; make room for it (or make it writable), then run again")


class TransactionFailed(CisfixError):
    """Applying failed; the transaction was rolled back (see `report` for how well)."""

    def __init__(self, cause: BaseException, report: RollbackReport) -> None:
        super().__init__(str(cause))
        self.cause = cause
        self.report = report
        self.exit_code = status.EXIT_ROLLED_BACK if report.ok else status.EXIT_ROLLBACK_FAILED


def new_txid() -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + secrets.token_hex(3)


def _state_of(path: Path) -> Optional[dict]:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    return {"sha256": sha256(data), **Meta.of(os.stat(path)).as_dict()}


def _mkdir_private(directory: Path) -> None:
    """Create `directory` and any missing parents with mode 0700 (backups are readable by root only),
    each made durable in its parent before the backup inside it is journaled."""
    missing = []
    while not directory.exists():
        missing.append(directory)
        directory = directory.parent
    for d in reversed(missing):
        d.mkdir(mode=0o700)
        os.chmod(d, 0o700)  # mkdir's mode is filtered by the umask
        fsync_dir(d.parent)


class Transaction:
    """An open transaction. Use `Transaction.begin`, then `apply`, then `commit` or `rollback`."""

    def __init__(self, node: Node, journal: Journal, log: ChangeLog, txid: str, files: List[dict],
                 changes: Sequence[FileChange]) -> None:
        self.node, self.journal, self.log = node, journal, log
        self.txid, self.files, self.changes = txid, files, changes

    @classmethod
    def begin(cls, node: Node, journal: Journal, log: ChangeLog, changes: Sequence[FileChange],
              label: str) -> "Transaction":
        txid = new_txid()
        files = []
        for change in changes:
            before = _state_of(node.host(change.path))
            if (before and before["sha256"]) != change.expected_sha256:
                raise ConcurrentChange(node.display(change.path), "changed since it was read; nothing was written")
            after_meta = change.meta or (Meta.from_dict(before) if before else Meta(0o600, os.getuid(), os.getgid()))
            after = {"sha256": sha256(change.content) if change.content is not None else before["sha256"],
                     **after_meta.as_dict()}
            backup = f"backups/{txid}{change.path}" if before else None
            entry = {"path": change.path, "before": before, "after": after, "backup": backup}
            if change.shown is not None:  # what a report shows of it later: never the secret itself
                entry["shown"] = change.shown.decode("utf-8", "replace")
            files.append(entry)
        journal.append("begin", txid, label=label, pid=os.getpid(), files=files)
        crash_point("after-begin")
        return cls(node, journal, log, txid, files, changes)

    def backup_path(self, entry: dict) -> Optional[Path]:
        return self.node.state_dir / entry["backup"] if entry["backup"] else None

    def apply(self) -> None:
        """Back up every existing file, then bring each to its intended state."""
        for entry in self.files:
            backup = self.backup_path(entry)
            if backup:
                _mkdir_private(backup.parent)
                fail_point("backup-write")
                write_atomic(backup, self.node.host(entry["path"]).read_bytes(),
                             Meta(0o600, os.geteuid(), os.getegid()))
                self.journal.append("backup", self.txid, path=entry["path"])
        crash_point("after-backup")
        for entry, change in zip(self.files, self.changes):
            self._apply_one(entry, change)
        crash_point("before-commit")

    def _apply_one(self, entry: dict, change: FileChange) -> None:
        target = self.node.host(entry["path"])
        before_sha = entry["before"] and entry["before"]["sha256"]

        def unchanged_since_begin() -> None:
            if (_state_of(target) or {}).get("sha256") != before_sha:
                raise ConcurrentChange(self.node.display(entry["path"]), "changed by someone else during the edit")

        meta = Meta.from_dict(entry["after"])
        if change.content is not None:
            if entry["before"] is None:  # a new file, e.g. the first drop-in of a config.yaml.d not made yet
                make_folders(target.parent)
            write_atomic(target, change.content, meta, check_before_replace=unchanged_since_begin)
        else:
            unchanged_since_begin()
            set_meta(target, meta)
        crash_point("after-replace")
        self.journal.append("applied", self.txid, path=entry["path"], sha256=entry["after"]["sha256"])

    def commit(self) -> None:
        """Record the commit. If it cannot be recorded (a full disk) JournalWriteFailed is raised and the
        transaction is still open: the caller undoes it (and gates the undo, if it restarted something)."""
        self.journal.append("commit", self.txid)
        for entry in self.files:
            self.log.write("REMEDIATION", self.txid, entry["path"], "applied and committed")

    def rollback(self, reason: str) -> RollbackReport:
        return rollback(self.node, self.journal, self.log, self.txid, self.files, reason)


def apply_changes(node: Node, journal: Journal, log: ChangeLog, changes: Sequence[FileChange],
                  label: str) -> str:
    """Run a whole transaction; on any failure roll it back and raise TransactionFailed."""
    tx = Transaction.begin(node, journal, log, changes, label)
    try:
        tx.apply()
        tx.commit()
    except BaseException as exc:  # an interrupt, too, is undone at once rather than at the next run
        report = tx.rollback(f"failed: {exc or type(exc).__name__}")
        if isinstance(exc, Exception):
            raise TransactionFailed(exc, report) from exc
        raise
    return tx.txid


def _undo_file(node: Node, entry: dict) -> str:
    """Put one file back as it was before the transaction; return what was done, or raise _Conflict."""
    target = node.host(entry["path"])
    remove_strays(target)
    before, after, now = entry["before"], entry["after"], _state_of(target)
    if before is None:
        if now is None:
            return "absent, as before"
        if now["sha256"] != after["sha256"]:
            raise _Conflict("created by cisfix but changed since")
        target.unlink()
        fsync_dir(target.parent)
        return "removed"
    if now is None:
        raise _Conflict("deleted since cisfix changed it")
    if now["sha256"] == before["sha256"]:
        if now == before:
            return "unchanged, as before"
        if _between(Meta.from_dict(now), Meta.from_dict(before), Meta.from_dict(after)):
            set_meta(target, Meta.from_dict(before))
            return "mode and owner restored"
        raise _Conflict("mode or owner changed since cisfix changed it")
    if now["sha256"] != after["sha256"]:
        raise _Conflict("changed since cisfix wrote it")
    backup = node.state_dir / entry["backup"]
    try:
        data = backup.read_bytes()
    except OSError as exc:
        raise _Conflict(f"its backup {backup} cannot be read: {exc.strerror}")
    if sha256(data) != before["sha256"]:
        raise _Conflict(f"its backup {backup} is damaged")
    write_atomic(target, data, Meta.from_dict(before))
    return "restored from backup"


def _between(now: Meta, before: Meta, after: Meta) -> bool:
    """Is `now` what cisfix leaves on its way from `before` to `after` or back? A mode and owner change
    is `chown` then `chmod`; a crash between them leaves some ids changed and the mode not yet (or with
    the setuid/setgid bits that `chown` clears already gone)."""
    return (now.uid in (before.uid, after.uid) and now.gid in (before.gid, after.gid)
            and now.mode in (before.mode, after.mode, before.mode & ~0o6000, after.mode & ~0o6000))


class _Conflict(Exception):
    pass


def rollback(node: Node, journal: Journal, log: ChangeLog, txid: str, files: List[dict],
             reason: str, announced: bool = False) -> RollbackReport:
    """Undo a transaction's files, last first. Safe to repeat: a crash here is finished by the next run.
    `announced`: touch no file unless the journal has recorded that the undoing begins (UndoNotRecorded);
    else (a transaction failing as it runs, still open in the journal) undo it whatever the journal says."""
    report = RollbackReport(txid)

    def record(record_type: str, **fields: object) -> None:
        if report.unrecorded is None:
            try:
                journal.append(record_type, txid, **fields)
            except JournalWriteFailed as exc:
                report.unrecorded = exc.reason

    record("rollback-begin", reason=reason, pid=os.getpid())  # who undoes it, for an interrupt to name
    if announced and report.unrecorded is not None:
        raise UndoNotRecorded.of(journal, txid, report.unrecorded)
    journaled_conflicts = []
    for index, entry in enumerate(reversed(files)):
        try:
            action = _undo_file(node, entry)
        except _Conflict as conflict:
            backup = str(node.state_dir / entry["backup"]) if entry["backup"] else None
            report.conflicts.append({"path": entry["path"], "reason": str(conflict), "backup": backup})
            journaled_conflicts.append({"path": entry["path"], "reason": str(conflict), "backup": entry["backup"]})
            log.write("ROLLBACK", txid, entry["path"], f"CONFLICT {conflict}; left untouched; backup {backup}")
            continue
        if index == 0:
            crash_point("mid-rollback")
        record("restored", path=entry["path"], action=action)
        log.write("ROLLBACK", txid, entry["path"], action)
        report.restored.append({"path": entry["path"], "action": action})
    if report.conflicts:
        record("rollback-failed", conflicts=journaled_conflicts)
    else:
        record("rolled-back")
    return report


def recover(node: Node, journal: Journal, log: ChangeLog) -> List[RollbackReport]:
    """Undo every transaction a crash left unfinished (begun but not committed, or half rolled back),
    and remove the temp files a crash left among the backups."""
    remove_strays_under(node.state_dir / "backups")
    return [rollback(node, journal, log, tx.txid, tx.files, "recovery of an unfinished transaction", announced=True)
            for tx in journal.transactions().values() if tx.unfinished]


def rollback_committed(node: Node, journal: Journal, log: ChangeLog, tx: TxInfo) -> RollbackReport:
    if tx.state not in ("committed", "rollback-failed"):
        raise InputError(tx.txid, f"transaction is {tx.state}; there is nothing to roll back")
    return rollback(node, journal, log, tx.txid, tx.files, "requested by the operator", announced=True)
