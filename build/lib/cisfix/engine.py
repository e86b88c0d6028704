"""Edits from plan to disk: read, plan with an editor, show the diff, and apply inside one transaction.

A `Session` is a mutating run on a node: it holds the run lock and first recovers whatever an earlier
run left unfinished. Read-only work (planning, dry runs, history) needs neither.
"""
from __future__ import annotations

import difflib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional, Sequence

from . import status
from .atomic import sha256
from .changelog import ChangeLog
from .errors import CisfixError, EditError, InputError
from .journal import Journal
from .lock import RunLock
from .node import Node
from .plan import AddFlagItem, RemoveFlag, RemoveFlagItem, SetFlag, SetPath, UnsetPath
from .transaction import FileChange, RollbackReport, TransactionFailed, apply_changes, recover

FLAG_OPS = (SetFlag, RemoveFlag, AddFlagItem, RemoveFlagItem)
PATH_OPS = (SetPath, UnsetPath)


@dataclass(frozen=True)
class FileEdit:
    """What to change in one file. `component` names the manifest's container when neither its
    `component` label nor the file name does; `kind` picks a document in a multi-document file."""

    path: str
    ops: tuple
    component: Optional[str] = None
    kind: Optional[str] = None


@dataclass(frozen=True)
class PlannedEdit:
    path: str  # node path of the real file, symlinks resolved
    before: bytes
    after: bytes
    notes: tuple

    @property
    def changed(self) -> bool:
        return self.before != self.after


class RecoveryConflict(CisfixError):
    exit_code = status.EXIT_ROLLBACK_FAILED


def describe_conflicts(node: Node, report: RollbackReport) -> str:
    return "; ".join(f"{node.display(c['path'])}: {c['reason']}, left untouched (backup: {c['backup']})"
                     for c in report.conflicts)


class Session:
    """Hold the run lock and recover unfinished transactions before any change."""

    def __init__(self, node: Node, wait: float = 0.0) -> None:
        self.node = node
        self.journal = Journal(node.state_dir / "journal.jsonl")
        self.log = ChangeLog(node.host("/var/log/cisfix.log"))
        self._lock = RunLock(node.state_dir / "lock", wait)
        self.recovered: List[RollbackReport] = []

    def __enter__(self) -> "Session":
        _require_writable(self.node.state_dir.parent if not self.node.state_dir.exists() else self.node.state_dir,
                          "state directory")
        self._lock.__enter__()
        try:
            self.recovered = recover(self.node, self.journal, self.log)
        except BaseException:
            self._lock.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self._lock.__exit__()

    def refuse_if_recovery_failed(self) -> None:
        failed = [r for r in self.recovered if not r.ok]
        if failed:
            raise RecoveryConflict("recovery of an unfinished transaction found files changed by someone else: "
                                   + "; ".join(describe_conflicts(self.node, r) for r in failed))


def _require_writable(directory: Path, what: str) -> None:
    probe = directory
    while not probe.exists():
        probe = probe.parent
    if not os.access(probe, os.W_OK):
        reason = "read-only file system" if _read_only_fs(probe) else "directory is not writable"
        raise InputError(probe, f"{what}: {reason}; nothing was changed")


def _read_only_fs(path: Path) -> bool:
    return bool(os.statvfs(path).f_flag & os.ST_RDONLY)


def read_node_file(node: Node, node_path: str) -> tuple:
    """Resolve symlinks inside the node and read the real file: (real node path, bytes)."""
    real = node.resolve(node_path)
    host = node.host(real)
    try:
        return real, host.read_bytes()
    except FileNotFoundError:
        raise InputError(node.display(node_path), "no such file")
    except IsADirectoryError:
        raise InputError(node.display(node_path), "is a directory, not a file")
    except OSError as exc:
        raise InputError(node.display(node_path), exc.strerror or str(exc))


def plan_edit(node: Node, edit: FileEdit) -> PlannedEdit:
    from .editors.config import edit_paths
    from .editors.manifest import edit_flags

    real, before = read_node_file(node, edit.path)
    try:
        text = before.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(node.display(edit.path), f"not UTF-8 text (byte {exc.start})")
    flag_ops = [op for op in edit.ops if isinstance(op, FLAG_OPS)]
    path_ops = [op for op in edit.ops if isinstance(op, PATH_OPS)]
    notes: list = []
    try:
        if flag_ops:
            result = edit_flags(text, flag_ops, edit.component, fallback=_component_from_name(real))
            text, notes = result.text, notes + list(result.notes)
        if path_ops:
            result = edit_paths(text, path_ops, edit.kind)
            text, notes = result.text, notes + list(result.notes)
    except EditError as exc:
        raise InputError(node.display(edit.path), str(exc))
    return PlannedEdit(real, before, text.encode("utf-8"), tuple(notes))


def _component_from_name(node_path: str) -> str:
    name = os.path.basename(node_path)
    return name.split(".", 1)[0]


def unified_diff(node: Node, planned: PlannedEdit) -> str:
    def lines(data: bytes) -> list:
        out = [line.replace("\r\n", "\n") for line in data.decode("utf-8").splitlines(keepends=True)]
        if out and not out[-1].endswith("\n"):
            out[-1] += "\n\\ No newline at end of file\n"
        return out

    label = node.display(planned.path)
    return "".join(difflib.unified_diff(lines(planned.before), lines(planned.after), f"a{label}", f"b{label}"))


@dataclass
class EditOutcome:
    """The result every command reports, as text or as one JSON object."""

    status: str
    reason: str = ""
    txid: Optional[str] = None
    backup_path: Optional[str] = None
    changes_made: List[str] = field(default_factory=list)
    diff: str = ""
    exit_code: int = status.EXIT_OK

    def as_dict(self) -> dict:
        return {
            "success": self.exit_code == status.EXIT_OK,
            "status": self.status,
            "reason": self.reason,
            "txid": self.txid,
            "backup_path": self.backup_path,
            "changes_made": self.changes_made,
            "audit_verified": None,
            "diff": self.diff,
        }


def run_edits(node: Node, edits: Sequence[FileEdit], *, dry_run: bool = False, wait: float = 0.0,
              label: str = "edit") -> EditOutcome:
    """Plan every edit, then apply all changed files as one transaction (or only show them)."""
    if dry_run:
        return _outcome_of_plan(node, [plan_edit(node, edit) for edit in edits], dry_run=True)
    with Session(node, wait) as session:
        session.refuse_if_recovery_failed()  # and plan only once the node is as recovery left it
        planned = [plan_edit(node, edit) for edit in edits]
        outcome = _outcome_of_plan(node, planned, dry_run=False)
        if outcome.status != status.FIXED:
            return outcome
        changed = [p for p in planned if p.changed]
        for p in changed:
            _require_writable(node.host(p.path).parent, "target directory")
        changes = [FileChange(p.path, p.after, sha256(p.before)) for p in changed]
        try:
            outcome.txid = apply_changes(node, session.journal, session.log, changes,
                                         f"{label} {' '.join(p.path for p in changed)}")
        except TransactionFailed as failure:
            return _failed(node, failure, outcome)
    outcome.backup_path = str(node.state_dir / "backups" / outcome.txid)
    return outcome


def _outcome_of_plan(node: Node, planned: List[PlannedEdit], dry_run: bool) -> EditOutcome:
    changed = [p for p in planned if p.changed]
    if not changed:
        return EditOutcome(status.ALREADY_COMPLIANT, "nothing to change")
    diff = "".join(unified_diff(node, p) for p in changed)
    notes = [f"{node.display(p.path)}: {note}" for p in changed for note in p.notes]
    if dry_run:
        return EditOutcome(status.WOULD_FIX, "dry run: nothing was written", changes_made=notes, diff=diff)
    return EditOutcome(status.FIXED, "applied and committed", changes_made=notes, diff=diff)


def _failed(node: Node, failure: TransactionFailed, planned: EditOutcome) -> EditOutcome:
    cause = failure.cause
    reason = f"{cause.filename}: {cause.strerror}" if isinstance(cause, OSError) and cause.filename else str(cause)
    report = failure.report
    planned.txid = report.txid
    if report.ok:
        planned.status, planned.exit_code = status.REMEDIATION_FAILED_ROLLED_BACK, status.EXIT_ROLLED_BACK
        planned.reason = f"{reason}; rolled back, nothing changed"
    else:
        planned.status, planned.exit_code = status.REMEDIATION_FAILED_ROLLBACK_FAILED, status.EXIT_ROLLBACK_FAILED
        planned.reason = f"{reason}; rollback failed: {describe_conflicts(node, report)}"
        planned.backup_path = str(node.state_dir / "backups" / report.txid)
    return planned
