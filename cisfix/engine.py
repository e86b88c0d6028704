"""Edits from plan to disk: read, plan with an editor, show the diff, and apply inside one transaction.

A `Session` is a mutating run on a node: it holds the run lock and first recovers whatever an earlier
run left unfinished. Read-only work (planning, dry runs, history) needs neither.
"""
from __future__ import annotations

import difflib
from functools import partial
import fnmatch
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from . import status
from .atomic import Meta, sha256
from .changelog import CHANGE_LOG, ChangeLog
from .configcheck import refuse_invalid_settings
from .editors import distconfig
from .editors.distconfig import DIST_CONFIG
from .errors import CisfixError, EditError, InputError
from .halt import refuse_if_halted, write_halt
from .interrupted import Recovered
from .journal import Journal, TxInfo
from .lock import RunLock
from .node import Node
from .nodefile import decode_text, read_bytes, refuse_yaml_aliases, require_regular
from .plan import SetPath, UnsetPath
from .state import NodeState
from .retention import housekeeping
from .statedir import confined, prepare_state_dir
from .types import Change, Configure, CreateFile, EditFile, Editor, NodeInfo, SetMode
from .transaction import FileChange, RollbackReport, TransactionFailed, apply_changes, recover

PATH_OPS = (SetPath, UnsetPath)


@dataclass(frozen=True)
class PlannedChange:
    """One file's change, computed but not applied. `before` None: the file does not exist yet;
    `meta` None: mode and owner stay as they are."""

    path: str  # node path of the real file, symlinks resolved
    before: Optional[bytes]
    after: bytes
    before_meta: Optional[Meta]
    meta: Optional[Meta]
    notes: tuple
    shown: Optional[bytes] = None  # `after` as diffs show it: secret material replaced by a description

    @property
    def changed(self) -> bool:
        return self.after != self.before or (self.meta is not None and self.meta != self.before_meta)


class RecoveryConflict(CisfixError):
    exit_code = status.EXIT_ROLLBACK_FAILED


def describe_conflicts(node: Node, report: RollbackReport) -> str:
    return "; ".join(f"{node.display(c['path'])}: {c['reason']}, left untouched (backup: {c['backup']})"
                     for c in report.conflicts)


class Session:
    """Hold the run lock and recover unfinished transactions before any change; `on_recovered` (see
    `cisfix.apply.open_session`) gates the components recovery touched."""

    def __init__(self, node: Node, wait: float = 0.0, halt_check: bool = True,
                 on_recovered: Optional[Callable[["Session"], None]] = None, log: Optional[Path] = None) -> None:
        """`log`: the change log's host path when not `CHANGE_LOG` under the root (the Python API's
        `log_file`), its folder already checked by the caller."""
        self.node, self.halt_check, self.on_recovered = node, halt_check, on_recovered
        self.journal = Journal(node.state_dir / "journal.jsonl")
        if log is None:
            log = node.host(CHANGE_LOG)  # its folder may not lead out of the root; its name is never followed
            log = confined(node, log.parent) / log.name
        self.log = ChangeLog(log)
        self._lock = RunLock(node.state_dir / "lock", wait)
        self.recovered: List[RollbackReport] = []
        self.recovery: List[Recovered] = []  # what recovery did, as the run reports it (`cisfix.interrupted`)
        self.pruned: List[TxInfo] = []

    def __enter__(self) -> "Session":
        prepare_state_dir(self.node)  # a state folder that cannot be written: one line, exit 4
        self._lock.__enter__()
        try:
            if self.halt_check:
                refuse_if_halted(self.node)
            self.recovered = recover(self.node, self.journal, self.log)
            self.recovery = [Recovered.of(r) for r in self.recovered if r.ok]  # a conflict HALTs, and says so
            self._halt_on_conflicts()
            if self.on_recovered:
                self.on_recovered(self)  # prove what recovery touched healthy before anything else
            self.pruned = housekeeping(self.node, self.journal)
        except BaseException:
            self._lock.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self._lock.__exit__()

    def _halt_on_conflicts(self) -> None:
        """Files someone changed after cisfix did cannot be put back by recovery: a person must decide.
        HALT keeps every later run (recover and fix too, whose journal now says the transaction is done)
        from going on as if the node were as cisfix left it, until `cisfix resume`. This run reports the
        conflict itself (`refuse_if_recovery_failed`, or recover's report), exit 4."""
        failed = self.conflicts
        if not failed:
            return
        tx = self.journal.get(failed[0].txid)
        write_halt(self.node, "recovery of an unfinished transaction found files changed by someone else: "
                   + "; ".join(f"{r.txid}: {describe_conflicts(self.node, r)}" for r in failed),
                   failed[0].txid, tx.files if tx else [], ())

    @property
    def conflicts(self) -> List[RollbackReport]:
        """What this run's recovery could not undo: files changed by someone else since."""
        return [r for r in self.recovered if not r.ok]

    def refuse_if_recovery_failed(self) -> None:
        failed = self.conflicts
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


def read_node_file(node: Node, node_path: str, missing_ok: bool = False) -> tuple:
    """Resolve symlinks inside the node and read the real file: (real node path, bytes or None)."""
    real = node.resolve(node_path)
    return real, read_bytes(node.host(real), node.display(node_path), missing_ok)


def require_regular_targets(node: Node, changes: Sequence[Change], info: NodeInfo) -> None:
    """Refuse a FIFO, socket, device or folder among the targets before the lock is taken: reading
    one would block (or never end) while every other run waits. A change of settings may touch any of
    its component's files."""
    for change in changes:
        if isinstance(change, Configure):
            spec = info.components.get(change.component)
            paths = [p for p in (spec.manifest, spec.config, *spec.flag_files) if p] if spec else []
        else:
            paths = [change.path]
        for path in map(node.node_path, paths):
            require_regular(node.host(node.resolve(path)), node.display(path))


def plan_changes(node: Node, changes: Sequence[Change], editors: Sequence[Editor] = (),
                 state: Optional[NodeState] = None) -> List[PlannedChange]:
    """Compute every file's new bytes and mode. Changes of settings (`Configure`) become edits of the
    files the layout says they live in (`state.info`); changes to the same file are combined in order,
    so a batch of plans touching one manifest becomes one edit of it. `editors` registered by plugins
    take the files that match their patterns."""
    from .settings import resolve

    state = state or NodeState(node, NodeInfo())
    groups: Dict[str, List[Change]] = {}
    for change in _one_per_component(changes):
        for edit in resolve(state, change) if isinstance(change, Configure) else [change]:
            groups.setdefault(node.resolve(node.node_path(edit.path)), []).append(edit)
    return [_plan_file(node, path, group, editors, state.info) for path, group in groups.items()]


def _one_per_component(changes: Sequence[Change]) -> List[Change]:
    """The changes of settings of one component as one, where the first of them was: its operations are
    then resolved in order, each against the files as the earlier ones leave them."""
    merged: List[Change] = []
    first: Dict[str, int] = {}
    for change in changes:
        if isinstance(change, Configure) and change.component in first:
            index = first[change.component]
            merged[index] = replace(merged[index], ops=merged[index].ops + change.ops)
            continue
        if isinstance(change, Configure):
            first[change.component] = len(merged)
        merged.append(change)
    return merged


def _plan_file(node: Node, path: str, changes: List[Change], editors: Sequence[Editor],
               info: NodeInfo) -> PlannedChange:
    # A distribution's drop-in cisfix owns is created by its first edit.
    creates = any(isinstance(c, CreateFile) or (isinstance(c, EditFile) and c.kind == DIST_CONFIG) for c in changes)
    real, before = read_node_file(node, path, missing_ok=creates)
    before_meta = Meta.of(os.stat(node.host(real))) if before is not None else None
    content, meta, notes, shown = before, None, [], None
    owners = NodeState(node, NodeInfo())
    for change in _coalesced(path, changes, editors):
        if isinstance(change, CreateFile):
            if content is not None and not change.replace:
                notes.append("exists; left as it is")
                continue
            content, meta = change.content, _meta(node, owners, change.mode, change.owner, None)
            shown = change.shown
            notes.append(f"created, mode {change.mode:04o}, owner {change.owner}")
        elif isinstance(change, SetMode):
            meta = _meta(node, owners, change.mode, change.owner, meta or before_meta)
            notes.append(f"mode {meta.mode:04o}, owner {owners.owner_name(meta.uid, meta.gid)}")
        else:
            if shown is not None:
                raise InputError(node.display(real), "cannot edit a file holding secret material in the same plan")
            if content is None and change.kind == DIST_CONFIG:
                content, meta = b"", _meta(node, owners, 0o600, "root:root", None)
                notes.append("created, mode 0600, owner root:root")
            content, more = _edit(node, real, content, change, editors, info)
            notes += more
    return PlannedChange(real, before, content, before_meta, meta, tuple(notes), shown)


def _coalesced(path: str, changes: List[Change], editors: Sequence[Editor]) -> List[Change]:
    """Consecutive edits of one file in the same terms (component, kind) as one edit, their operations in
    order: the file is parsed and self-checked once, not once per check (a fix of 15 API-server flags
    would spend seconds re-parsing one manifest). Not when a plugin editor may claim the file: which
    editor takes an edit depends on its operations."""
    if any(fnmatch.fnmatch(path, p) for e in editors for p in e.patterns):
        return changes
    merged: List[Change] = []
    for change in changes:
        last = merged[-1] if merged else None
        if (isinstance(change, EditFile) and isinstance(last, EditFile)
                and (last.component, last.kind) == (change.component, change.kind)):
            merged[-1] = replace(last, ops=last.ops + change.ops)
        else:
            merged.append(change)
    return merged


def _meta(node: Node, owners: NodeState, mode: Optional[int], owner: Optional[str],
          current: Optional[Meta]) -> Meta:
    """The new mode (at most `mode`: bits beyond it are removed, none are added to an existing file)
    and owner."""
    base = current or Meta(0o600, 0, 0)
    new_mode = base.mode if mode is None else (mode if current is None else base.mode & mode)
    ids = owners.owner_ids(owner) if owner else (base.uid, base.gid)
    if ids is None:
        raise InputError(owner, "no such user or group on the node")
    return Meta(new_mode, *ids)


def _edit(node: Node, path: str, content: Optional[bytes], edit: EditFile, editors: Sequence[Editor],
          info: NodeInfo) -> Tuple[bytes, List[str]]:
    from .editors import flagfile
    from .editors.config import edit_paths
    from .settings import FLAG_FILE
    from .editors.manifest import edit_flags

    if content is None:
        raise InputError(node.display(path), "no such file")
    text = decode_text(content, node.display(path))
    flag_ops = [op for op in edit.ops if not isinstance(op, PATH_OPS)]
    path_ops = [op for op in edit.ops if isinstance(op, PATH_OPS)]
    notes: List[str] = []
    plugin_editor = next((e for e in editors if any(fnmatch.fnmatch(path, p) for p in e.patterns)
                          and all(isinstance(op, e.op_types) for op in edit.ops)), None)
    try:
        if plugin_editor:
            result = plugin_editor.edit(text, list(edit.ops))
            return result.text.encode("utf-8"), list(result.notes)
        if edit.kind == DIST_CONFIG:
            result = distconfig.edit(text, list(edit.ops))
            return result.text.encode("utf-8"), list(result.notes)
        refuse_yaml_aliases(text, node.display(path))
        if flag_ops and (edit.kind == FLAG_FILE or any(path in c.flag_files for c in info.components.values())):
            result = flagfile.edit(text, flag_ops)
            text, notes = result.text, notes + list(result.notes)
        elif flag_ops:
            result = edit_flags(text, flag_ops, edit.component, fallback=_component_from_name(path))
            text, notes = result.text, notes + list(result.notes)
        if path_ops:
            result = edit_paths(text, path_ops, None if edit.kind == FLAG_FILE else edit.kind)
            text, notes = result.text, notes + list(result.notes)
    except EditError as exc:
        raise InputError(node.display(path), str(exc))
    return text.encode("utf-8"), notes


def _component_from_name(node_path: str) -> str:
    return os.path.basename(node_path).split(".", 1)[0]


def unified_diff(node: Node, planned: PlannedChange) -> str:
    def lines(data: Optional[bytes]) -> list:
        if data is None:
            return []
        out = [line.replace("\r\n", "\n") for line in data.decode("utf-8", "replace").splitlines(keepends=True)]
        if out and not out[-1].endswith("\n"):
            out[-1] += "\n\\ No newline at end of file\n"
        return out

    label = node.display(planned.path)
    after = planned.after if planned.shown is None else planned.shown
    text = "".join(difflib.unified_diff(lines(planned.before), lines(after), f"a{label}", f"b{label}"))
    old, new = planned.before_meta, planned.meta
    if new is None or old is None or new == old:
        return text
    owners = NodeState(node, NodeInfo())
    if new.mode != old.mode:
        text = (text or f"--- a{label}\n+++ b{label}\n") + f"mode {old.mode:04o} → {new.mode:04o}\n"
    if (new.uid, new.gid) != (old.uid, old.gid):
        text = (text or f"--- a{label}\n+++ b{label}\n") + \
            f"owner {owners.owner_name(old.uid, old.gid)} → {owners.owner_name(new.uid, new.gid)}\n"
    return text


@dataclass
class EditOutcome:
    """The result every command reports, as text or as one JSON object. The dict keeps the older
    runner's contract: `changes_made` counts the changes that stayed applied (none after a rollback),
    `backup_path` is the backup file of a one-file change (the transaction's backup folder otherwise;
    `backup_dir` always) — of a failed change too, when it made one — and `message` is `reason`."""

    status: str
    reason: str = ""
    txid: Optional[str] = None
    backup_dir: Optional[str] = None
    backup_path: Optional[str] = None
    changes: List[str] = field(default_factory=list)  # one line per change: "FILE: what"
    diff: str = ""
    exit_code: int = status.EXIT_OK
    audit_verified: Optional[bool] = None  # None: nothing was gated or verified
    unrecorded: Optional[str] = None  # why the journal could not record what happened: no run goes further
    original_path: Optional[str] = None  # the file changed, as the caller reaches it (the Python API's one file)
    recovered: List[dict] = field(default_factory=list)  # what recovery undid first (`Recovered.as_dict`)

    def not_recorded(self, node: Node, why: str, undone: bool, more: str = "") -> "EditOutcome":
        """The journal could not record the change or its undoing (a full disk): exit 4, a person makes
        room. `undone`: its files were put back (`more` says how it went), the transaction is still open in
        the journal and the next run's recovery confirms it; else nothing was written."""
        self.status, self.exit_code, self.unrecorded = status.REMEDIATION_FAILED, status.EXIT_ROLLBACK_FAILED, why
        journal = node.state_dir / "journal.jsonl"
        self.reason = (f"{self.reason}; the files were put back{more}, but {journal} cannot record it ({why}): "
                       "the transaction stays open until a run's recovery can" if undone
                       else f"{journal}: cannot write the journal ({why}); nothing was changed")
        return self

    def record_backups(self, node: Node, txid: str, made_only: bool = False) -> None:
        """`made_only`: only when the transaction got as far as backing a file up (a failed one may not)."""
        folder = node.state_dir / "backups" / txid
        if made_only and not folder.is_dir():
            return
        files = [Path(d, f) for d, _, names in os.walk(folder) for f in names]
        self.backup_dir = str(folder)
        self.backup_path = str(files[0] if len(files) == 1 else folder)

    @property
    def changes_kept(self) -> int:
        """How many changes are on disk now: all of a commit (or of a failed rollback), none otherwise."""
        kept = (status.FIXED, status.REMEDIATION_FAILED_ROLLBACK_FAILED)
        return len(self.changes) if self.status in kept else 0

    def as_dict(self) -> dict:
        return {
            "success": self.exit_code == status.EXIT_OK,
            "status": self.status,
            "reason": self.reason,
            "message": self.reason,
            "txid": self.txid,
            "original_path": self.original_path,
            "backup_path": self.backup_path,
            "backup_dir": self.backup_dir,
            "changes_made": self.changes_kept,
            "changes": self.changes,
            "audit_verified": self.audit_verified,
            "diff": self.diff,
            **({"recovered": self.recovered} if self.recovered else {}),
        }


Applier = Callable[["Session", List[PlannedChange], "EditOutcome"], "EditOutcome"]


def run_changes(node: Node, changes: Sequence[Change], *, dry_run: bool = False, wait: float = 0.0,
                label: str = "edit", editors: Sequence[Editor] = (), applier: Optional[Applier] = None,
                session: Optional[Callable[[], "Session"]] = None, state: Optional[NodeState] = None) -> EditOutcome:
    """Plan every change, then apply all changed files as one transaction (or only show them).
    `applier` replaces the plain transaction (the health-gated one does); `session` opens the run
    (`cisfix.apply.open_session`: recovery gated), else a plain Session."""
    require_regular_targets(node, changes, state.info if state else NodeInfo())
    refuse_invalid_settings(state or NodeState(node, NodeInfo()), changes)  # before the lock, dry run or not
    if dry_run:
        return _outcome_of_plan(node, plan_changes(node, changes, editors, state), dry_run=True)
    with (session or partial(Session, node, wait))() as opened:
        opened.refuse_if_recovery_failed()  # and plan only once the node is as recovery left it
        planned = plan_changes(node, changes, editors, state)
        outcome = _outcome_of_plan(node, planned, dry_run=False)
        outcome.recovered = [r.as_dict(node) for r in opened.recovery]
        if outcome.status != status.FIXED:
            return outcome
        for p in planned:
            if p.changed:
                _require_writable(node.host(p.path).parent, "target directory")
        return (applier or partial(apply_plain, label=label))(opened, planned, outcome)


def apply_plain(session: Session, planned: List[PlannedChange], outcome: EditOutcome, label: str) -> EditOutcome:
    """One transaction, no health gate."""
    node = session.node
    changed = [p for p in planned if p.changed]
    try:
        outcome.txid = apply_changes(node, session.journal, session.log, file_changes(changed),
                                     f"{label} {' '.join(p.path for p in changed)}")
    except TransactionFailed as failure:
        return _failed(node, failure, outcome)
    outcome.record_backups(node, outcome.txid)
    return outcome


def file_changes(planned: Sequence[PlannedChange]) -> List[FileChange]:
    """The transaction's files, new ones first: a manifest that mounts a new file must never be seen
    by the kubelet before that file exists."""
    ordered = sorted((p for p in planned if p.changed), key=lambda p: p.before is not None)
    return [FileChange(p.path, p.after if p.after != p.before else None,
                       sha256(p.before) if p.before is not None else None, p.meta, p.shown) for p in ordered]


def _outcome_of_plan(node: Node, planned: List[PlannedChange], dry_run: bool) -> EditOutcome:
    changed = [p for p in planned if p.changed]
    if not changed:
        return EditOutcome(status.ALREADY_COMPLIANT, "nothing to change")
    diff = "".join(unified_diff(node, p) for p in changed)
    notes = [f"{node.display(p.path)}: {note}" for p in changed for note in p.notes]
    if dry_run:
        return EditOutcome(status.WOULD_FIX, "dry run: nothing was written", changes=notes, diff=diff)
    return EditOutcome(status.FIXED, "applied and committed", changes=notes, diff=diff)


def _failed(node: Node, failure: TransactionFailed, planned: EditOutcome) -> EditOutcome:
    cause = failure.cause
    reason = f"{cause.filename}: {cause.strerror}" if isinstance(cause, OSError) and cause.filename else str(cause)
    report = failure.report
    planned.txid = report.txid
    if report.ok and report.unrecorded:
        planned.reason = reason
        return planned.not_recorded(node, report.unrecorded, undone=True)
    if report.ok:
        planned.status, planned.exit_code = status.REMEDIATION_FAILED_ROLLED_BACK, status.EXIT_ROLLED_BACK
        planned.reason = f"{reason}; rolled back, nothing changed"
        planned.record_backups(node, report.txid, made_only=True)
    else:
        planned.status, planned.exit_code = status.REMEDIATION_FAILED_ROLLBACK_FAILED, status.EXIT_ROLLBACK_FAILED
        planned.reason = f"{reason}; rollback failed: {describe_conflicts(node, report)}"
        planned.record_backups(node, report.txid)
    return planned
