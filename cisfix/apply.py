"""The one path of every change to a running component — fix, drift, edit, rollback, recover, resume, persist and the
Python API: hold the lock, recover unfinished transactions and gate what recovery restored
(`open_session`); apply each change as one transaction, gated when it restarts a component; verify
against the live component; commit — or roll back, gate the rollback the same way, and write HALT when
even that fails. A requested rollback (`rollback_gated`) is gated the same way.

Every "did the component come back" question goes through `_gate_component`, and the gate's evidence
rules live in `cisfix.gate`."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Set, Tuple

from . import status
from .atomic import Meta
from .commands import CommandRefused
from .engine import EditOutcome, PlannedChange, Session, describe_conflicts, file_changes
from .gate import Gate, Watch
from .halt import Halted, halt_file, refuse_if_halted, write_halt
from .health import Answer
from .interrupted import Recovered, left_over, unfinished_gates
from .journal import Journal, JournalWriteFailed, TxInfo
from .plugins import Plugins
from .settings import configured_changes
from .transaction import RollbackReport, Transaction, UndoNotRecorded, rollback_committed
from .types import Component, NodeInfo

# -> [(check id, audit status[, evidence[, reason]])] against the live node
Verify = Callable[[], List[Tuple[str, ...]]]


def component_of(info: NodeInfo, node_path: str) -> Optional[str]:
    """The component whose restart a change to this file needs, if any."""
    for component in info.components.values():
        if component.args and component.args.holds(node_path):
            return info.restarted_by(component.name)
    for component in info.components.values():
        if node_path == component.manifest or node_path == component.config or node_path in component.flag_files:
            return component.name
        if component.config_dir and node_path.startswith(component.config_dir.rstrip("/") + "/"):
            return component.name
    return None


def live_source(spec: Component) -> str:
    """What verification reads of a running component: the configuration it serves, or its argv."""
    if spec.live_config:
        return f"live configuration {spec.live_config.get('url')}"
    return "command line of the running process"


def fix_levels(info: NodeInfo) -> List[List[str]]:
    """The components in dependency levels, the order a fix takes them: each level after the levels of
    what its components depend on, names sorted within a level. A component that runs others (the
    kubelet runs the static pods) also comes after them, never beside them: its restart would disturb
    their gates. A dependency cycle is cut where it closes."""
    level: Dict[str, int] = {}

    def after(name: str) -> Set[str]:
        managed = {m for m, spec in info.components.items() if spec.managed_by == name and m != name}
        return (set(info.components[name].depends_on) | managed) & set(info.components)

    def visit(name: str, path: Tuple[str, ...]) -> int:
        if name not in level:
            level[name] = 1 + max((visit(d, path + (name,)) for d in sorted(after(name)) if d not in path),
                                  default=-1)
        return level[name]
    for name in sorted(info.components):
        visit(name, ())
    levels: List[List[str]] = [[] for _ in range(max(level.values(), default=-1) + 1)]
    for name in sorted(level):
        levels[level[name]].append(name)
    return [names for names in levels if names]


def fix_order(info: NodeInfo) -> List[str]:
    """The components in the order a fix takes them, one after another: level by level."""
    return [name for names in fix_levels(info) for name in names]


def restart_commands(info: NodeInfo, component: Optional[str], written: Sequence[str]) -> List[Tuple[str, ...]]:
    """How a person restarts the component once its files `written` (node paths) are put back: its own
    command, else that of the component that runs it (the kubelet restarts static pods from their
    manifests), after the reload command when one of them is a unit file."""
    spec = info.components.get(component) if component else None
    while spec is not None:
        if spec.restart:
            reload = [tuple(spec.reload)] if any(spec.reloads(path) for path in written) else []
            return reload + [tuple(spec.restart)]
        spec = info.components.get(spec.managed_by) if spec.managed_by else None
    return []


def _manifest_flags(text: Optional[bytes], component: str) -> Optional[Dict[str, Optional[str]]]:
    from .editors.manifest import read_flags

    return dict(read_flags(text.decode("utf-8"), None, fallback=component)) if text is not None else None


def _restarts(info: NodeInfo, component: str, planned: Sequence[PlannedChange]) -> bool:
    """Will the change restart the component? A static pod restarts when its decoded manifest
    changes (not for a comment or a chmod); a service restarts when we restart it."""
    spec = info.components.get(component)
    if spec is None:
        return False
    for p in planned:
        if p.after == p.before:
            continue
        if p.path == spec.manifest:
            from ruamel.yaml import YAML

            load = YAML(typ="safe").load
            if p.before is None or load(p.before) != load(p.after):
                return True
        elif p.path == spec.config or p.path in spec.flag_files or component_of(info, p.path) == component:
            return True
    return False


def apply_gated(session: Session, planned: Sequence[PlannedChange], outcome: EditOutcome, *, plugins: Plugins,
                gate: Gate, component: Optional[str], label: str, verify: Optional[Verify] = None,
                pre_gate: bool = True) -> EditOutcome:
    """One transaction for `planned`; gated when it restarts `component`. Fills in and returns `outcome`.
    Without `pre_gate` the component need not be healthy first (putting back a state it was healthy in)."""
    node, info = plugins.node, plugins.info
    changed = [p for p in planned if p.changed]
    gated = component is not None and gate.gates(component) and _restarts(info, component, changed)
    spec = info.components.get(component) if component else None
    manifest = next((p for p in changed if spec and p.path == spec.manifest), None)
    watch = None
    if gated:
        gate.require_restartable([component])
        if pre_gate:
            gate.require_healthy(component)
        watch = gate.watch(component, _manifest_flags(manifest.after, component) if manifest else None,
                           changed=configured_changes(gate.state(), spec, changed))
    # A journal that cannot record the begin raises JournalWriteFailed here: nothing was changed.
    tx = Transaction.begin(node, session.journal, session.log, file_changes(changed), label)
    outcome.txid = tx.txid
    if watch:
        try:
            session.journal.append("gate", tx.txid, component=component, phase="apply")
        except JournalWriteFailed as exc:  # before any file was written: nothing to gate
            return _undo(session, plugins, gate, tx, None, manifest, outcome, str(exc))
    try:
        tx.apply()
    except Exception as exc:
        return _undo(session, plugins, gate, tx, watch, manifest, outcome, f"apply failed: {exc}")
    if watch is None:
        return _commit(session, plugins, gate, tx, watch, manifest, outcome, outcome.reason)
    try:
        answer = _judge(session, plugins, gate, tx, watch, manifest, outcome, verify)
    except Exception as exc:  # a bug while judging the change: the files go back (gated) before it is reported
        _undo(session, plugins, gate, tx, watch, manifest, outcome, f"internal error while judging the change: {exc!r}")
        raise
    if not answer.healthy:
        return _undo(session, plugins, gate, tx, watch, manifest, outcome, answer.message)
    return _commit(session, plugins, gate, tx, watch, manifest, outcome, answer.message)


def _judge(session: Session, plugins: Plugins, gate: Gate, tx: Transaction, watch: Watch,
           manifest: Optional[PlannedChange], outcome: EditOutcome, verify: Optional[Verify]) -> Answer:
    """The gate's verdict on the restarted component, then the live checks' (`verify`)."""
    component = watch.component
    answer = _await(session, plugins, gate, tx.txid, watch, "apply", _paths(tx.files))
    if manifest:  # healthy means a new process carrying the manifest's intended flags was seen
        outcome.audit_verified = answer.healthy
    if answer.healthy and verify:
        verdicts = verify()
        session.journal.note("verified", tx.txid, component=component,
                             source=live_source(plugins.info.components[component]),
                             checks=[{"id": v[0], "status": v[1], **({"evidence": v[2]} if len(v) > 2 else {}),
                                      **({"reason": v[3]} if len(v) > 3 and v[1] != "PASS" else {})}
                                     for v in verdicts])
        failing = [v for v in verdicts if v[1] != "PASS"]
        outcome.audit_verified = not failing  # the live checks decide, whatever the flags said
        if failing:  # why the first one fails: a live configuration that could not be read says so here
            why = next((f" ({v[3]})" for v in failing if len(v) > 3 and v[3]), "")
            answer = Answer(False, f"healthy, but the live {component} does not verify: "
                                   f"{', '.join(v[0] for v in failing)}{why}")
    return answer


def _commit(session: Session, plugins: Plugins, gate: Gate, tx: Transaction, watch: Optional[Watch],
            manifest: Optional[PlannedChange], outcome: EditOutcome, reason: str) -> EditOutcome:
    """Commit; a commit the journal cannot record (a full disk) is undone — and gated — instead."""
    try:
        tx.commit()
    except JournalWriteFailed as exc:
        return _undo(session, plugins, gate, tx, watch, manifest, outcome, str(exc))
    outcome.record_backups(plugins.node, tx.txid)
    outcome.reason = reason
    return outcome


def _undo(session: Session, plugins: Plugins, gate: Gate, tx: Transaction, watch: Optional[Watch],
          manifest: Optional[PlannedChange], outcome: EditOutcome, reason: str) -> EditOutcome:
    """Roll back; when the change restarted a component, gate the rollback too — judged only on the pod
    started from the restored files, never on the failed one the kubelet may still be restarting."""
    component = watch.component if watch else None
    back_watch = None
    if watch:
        service = bool(plugins.info.components[component].restart)
        back_watch = watch.undo(gate.state(), _manifest_flags(manifest.before, component) if manifest else None,
                                fresh=service)
        # Noted, not required: the transaction is still open, so a journal that cannot take this record
        # leaves it to the next run's recovery — the files are undone (and gated) now all the same.
        session.journal.note("gate", tx.txid, component=component, phase="rollback")
    report = tx.rollback(reason)
    outcome.record_backups(plugins.node, tx.txid, made_only=True)  # what a person restores by hand from
    back = Answer(True, "")
    if back_watch:
        back = _await(session, plugins, gate, tx.txid, back_watch, "rollback", _paths(tx.files))
    if report.ok and back.healthy:
        healthy = f", {component} healthy again" if component else ""
        if report.unrecorded:
            outcome.reason = reason
            return outcome.not_recorded(plugins.node, report.unrecorded, undone=True, more=healthy)
        outcome.status, outcome.exit_code = status.REMEDIATION_FAILED_ROLLED_BACK, status.EXIT_ROLLED_BACK
        outcome.reason = f"{reason}; rolled back{healthy}"
        return outcome
    problem = describe_conflicts(plugins.node, report) if not report.ok else back.message
    try:
        write_halt(plugins.node, f"{reason}; the rollback did not bring it back: {problem}", tx.txid, tx.files,
                   restart_commands(plugins.info, component, _paths(tx.files)))
        see = f"see {halt_file(plugins.node)}"
    except Halted as exc:  # a full state disk: the report still says what a person must do
        see = str(exc)
    outcome.status, outcome.exit_code = status.REMEDIATION_FAILED_ROLLBACK_FAILED, status.EXIT_ROLLBACK_FAILED
    outcome.reason = f"{reason}; rollback failed: {problem}; {see}"
    outcome.unrecorded = report.unrecorded
    return outcome


def _paths(files: Sequence[dict]) -> List[str]:
    """The node paths of a transaction's files (its journal entries)."""
    return [entry["path"] for entry in files]


def _await(session: Session, plugins: Plugins, gate: Gate, txid: str, watch: Watch, phase: str,
           written: Sequence[str]) -> Answer:
    """After the watched component's files were written (`phase`: apply, rollback, recovery; `written`
    their node paths): restart it when it is a service — reloading its unit files first when one of them
    changed —, wait for the process the watch expects to be healthy and stable (the evidence rules are the
    gate's), and journal the answer."""
    spec = plugins.info.components[watch.component]
    answer: Optional[Answer] = None
    if spec.restart:
        try:
            answer = _restart(gate, watch.component, phase, reload=any(spec.reloads(path) for path in written))
        except CommandRefused as refused:
            # The files are as `phase` left them; the component was not restarted. Close its gate, so
            # that later runs do not wait for it, and say so: a person restarts it.
            session.journal.note("health", txid, component=watch.component, phase=phase, healthy=False,
                                 message=f"not restarted: {refused}")
            raise CommandRefused(refused.path, f"{refused.reason}; {phase} done, restart {watch.component} by hand")
    if answer is None:
        answer = gate.await_healthy(watch)
    timeline = {k: round(v, 3) for k, v in (("seen", answer.seen), ("healthySince", answer.healthy_since)) if v}
    if answer.healthy_since:
        timeline["stabilityWindow"] = gate.settings.stability
    session.journal.note("health", txid, component=watch.component, phase=phase, healthy=answer.healthy,
                         message=answer.message, **timeline)
    return answer


def _restart(gate: Gate, component: str, phase: str, reload: bool) -> Optional[Answer]:
    """Restart a service, reloading its unit files first when one of them changed. A reload that fails stops
    a change (`apply`) before the restart, which would run the unit as systemd still holds it: the answer
    says so. An undo restarts it all the same: the files are back to what systemd last loaded, or close."""
    failed = gate.reload(component) if reload else None
    if failed and phase == "apply":
        return Answer(False, failed)
    gate.restart(component)
    return None


def _restored(plugins: Plugins, report: RollbackReport) -> Set[str]:
    """The components whose files an undo put back."""
    return {component_of(plugins.info, r["path"]) for r in report.restored
            if r["action"] == "restored from backup"} - {None}


def _gate_components(session: Session, plugins: Plugins, gate: Gate, pending: Dict[str, Set[str]],
                     phase: str) -> Optional[Tuple[str, str, Answer]]:
    """Prove healthy, in dependency order, every component of `pending` (txid -> components) whose files
    were put back. The first that does not come back, as (txid, component, answer); None when all did."""
    order = fix_order(plugins.info)
    txs = session.journal.transactions()
    for txid, components in pending.items():
        written = _paths(txs[txid].files) if txid in txs else []
        for component in sorted(components, key=lambda c: order.index(c) if c in order else len(order)):
            if not gate.gates(component):
                continue
            # Which pod directory the restored manifest's pod uses is unknown here, so only processes
            # carrying the restored flags are evidence: the failed pod's crashes are not.
            spec = plugins.info.components[component]
            watch = Watch.after_recovery(gate.state(), component, _expected_flags(plugins, component),
                                         fresh=bool(spec.restart))
            answer = _await(session, plugins, gate, txid, watch, phase, written)
            if not answer.healthy:
                return txid, component, answer
    return None


def _halt_for(session: Session, plugins: Plugins, failure: Tuple[str, str, Answer], phase: str) -> None:
    txid, component, answer = failure
    tx = session.journal.get(txid)
    files = tx.files if tx else []
    write_halt(plugins.node, f"restored {component}'s files ({phase}), but it is not healthy: {answer.message}",
               txid, files, restart_commands(plugins.info, component, _paths(files)))


def _expected_flags(plugins: Plugins, component: str) -> Optional[Dict[str, Optional[str]]]:
    """The flags the component's manifest now gives: what its next process must carry."""
    path = plugins.info.components[component].manifest
    if not path:
        return None
    host = plugins.node.host(plugins.node.resolve(path))
    return _manifest_flags(host.read_bytes(), component) if os.path.exists(host) else None


def gate_recovered(session: Session, plugins: Plugins, gate: Gate) -> None:
    """After a crash, prove healthy every component whose files recovery restored, or whose gate the crash
    cut short; a component that does not come back healthy HALTs the node. What recovery did, and what it
    proved, is the session's `recovery`, for the run to report."""
    pending = unfinished_gates(session.journal.transactions().values())
    undone = {r.txid for r in session.recovered}
    recovery = [Recovered(txid, None, sorted(c)) for txid, c in pending.items() if txid not in undone]
    for report in session.recovered:
        pending.setdefault(report.txid, set()).update(_restored(plugins, report))
    for recovered in session.recovery:
        recovered.components = sorted(pending[recovered.txid]
                                      | {component_of(plugins.info, p) for p in recovered.undone} - {None})
        recovery.append(recovered)
    failure = _gate_components(session, plugins, gate, pending, "recovery")
    if failure:
        _halt_for(session, plugins, failure, "recovery")
        return
    for recovered in recovery:
        recovered.healthy = sorted(c for c in pending.get(recovered.txid, ()) if gate.gates(c))
    session.recovery = recovery


def open_session(plugins: Plugins, gate: Gate, wait: float = 0.0, halt_check: bool = True,
                 log: Optional[Path] = None) -> Session:
    """A mutating run: the lock, recovery, and the components recovery touched (or whose gate a crash
    cut short) proven healthy — one that is not has HALTed the node, and the run goes no further.
    `log`: another change log than the node's (`Session`)."""
    def gate_then_check(session: Session) -> None:
        gate_recovered(session, plugins, gate)
        if halt_check and not session.conflicts:  # a conflict HALTed the node; the command says so
            refuse_if_halted(plugins.node)
    return Session(plugins.node, wait, halt_check, on_recovered=gate_then_check, log=log)


def recover_left(plugins: Plugins, gate: Gate, wait: float = 0.0) -> List[Recovered]:
    """Recover, gated, what an interrupted run left, if it left anything: for a run that may change
    nothing else (`drift` with no drift) and must not leave it open."""
    if not left_over(Journal(plugins.node.state_dir / "journal.jsonl")):
        return []
    with open_session(plugins, gate, wait) as session:
        session.refuse_if_recovery_failed()
        return session.recovery


def rollback_gated(session: Session, plugins: Plugins, gate: Gate, tx: TxInfo) -> Tuple[RollbackReport, int, str]:
    """Undo a committed transaction as the operator asked, gated like any change (a `gate` record first,
    so that a crash in between is gated by the next run). When a restored component does not come back
    healthy, the transaction's files are put back as they were before the rollback, gated in turn: exit 3
    when that brings the component back, HALT (exit 4) when not. Returns the report, the exit code and
    what happened after the rollback, if anything did."""
    kept = _files_now(plugins.node, tx)
    touched = {component_of(plugins.info, f["path"]) for f in tx.files} - {None}
    try:
        for component in sorted(c for c in touched if gate.gates(c)):
            session.journal.append("gate", tx.txid, component=component, phase="rollback")
    except JournalWriteFailed as exc:
        raise UndoNotRecorded.of(session.journal, tx.txid, exc.reason) from exc
    report = rollback_committed(plugins.node, session.journal, session.log, tx)
    if not report.ok or report.unrecorded:
        return report, status.EXIT_ROLLBACK_FAILED, ""
    failure = _gate_components(session, plugins, gate, {tx.txid: touched}, "rollback")
    if failure is None:
        return report, status.EXIT_OK, ""
    _, component, answer = failure
    now = _files_now(plugins.node, tx)
    planned = [PlannedChange(path, now[path][0], data, now[path][1], meta, ("put back: its rollback did not come back",))
               for path, (data, meta) in kept.items()]
    outcome = EditOutcome(status.FIXED, "")
    apply_gated(session, planned, outcome, plugins=plugins, gate=gate, component=component,
                label=f"undo the rollback of {tx.txid}: {answer.message}", pre_gate=False)
    if outcome.status == status.FIXED:
        return report, status.EXIT_ROLLED_BACK, (
            f"{component} did not come back after the rollback ({answer.message}); the transaction's files "
            f"were put back and {component} is healthy again [txid {outcome.txid}]")
    return report, status.EXIT_ROLLBACK_FAILED, outcome.reason


def _files_now(node, tx: TxInfo) -> Dict[str, Tuple[Optional[bytes], Optional[Meta]]]:
    """The transaction's files as they are: bytes and mode/owner, None for a file that does not exist."""
    files = {}
    for f in tx.files:
        host = node.host(f["path"])
        try:
            files[f["path"]] = (host.read_bytes(), Meta.of(os.stat(host)))
        except FileNotFoundError:
            files[f["path"]] = (None, None)
    return files
