"""Applying changes to one component, health-gated: apply, prove it came back healthy with the new
configuration and that the checks verify, commit — or roll back, gate the rollback the same way, and
write HALT when even that fails."""
from __future__ import annotations

import os
from typing import Callable, Dict, List, Optional, Sequence, Set, Tuple

from . import status
from .engine import EditOutcome, PlannedChange, Session, describe_conflicts, file_changes
from .gate import Gate, Watch
from .halt import write_halt
from .journal import Journal
from .health import Answer
from .plugins import Plugins
from .transaction import Transaction
from .types import NodeInfo

# Component order of a fix: what others depend on first.
ORDER = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet")

Verify = Callable[[], List[Tuple[str, str]]]  # -> [(check id, audit status)] against the live node


def component_of(info: NodeInfo, node_path: str) -> Optional[str]:
    """The component whose restart a change to this file needs, if any."""
    for component in info.components.values():
        if node_path == component.manifest or node_path == component.config or node_path in component.flag_files:
            return component.name
    return None


def restart_command(info: NodeInfo, component: Optional[str]) -> Tuple[str, ...]:
    """How a person restarts the component: its own command, else the kubelet's (which restarts
    static pods from their manifests)."""
    for name in (component, "kubelet"):
        spec = info.components.get(name) if name else None
        if spec and spec.restart:
            return tuple(spec.restart)
    return ("systemctl", "restart", "kubelet")


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
        elif p.path == spec.config or p.path in spec.flag_files:
            return True
    return False


def apply_gated(session: Session, planned: Sequence[PlannedChange], outcome: EditOutcome, *, plugins: Plugins,
                gate: Gate, component: Optional[str], label: str, verify: Optional[Verify] = None) -> EditOutcome:
    """One transaction for `planned`; gated when it restarts `component`. Fills in and returns `outcome`."""
    node, info = plugins.node, plugins.info
    changed = [p for p in planned if p.changed]
    gated = component is not None and not plugins.config.get("offline") and _restarts(info, component, changed)
    spec = info.components.get(component) if component else None
    manifest = next((p for p in changed if spec and p.path == spec.manifest), None)
    watch = None
    if gated:
        gate.require_healthy(component)
        watch = gate.watch(component, _manifest_flags(manifest.after, component) if manifest else None)
    tx = Transaction.begin(node, session.journal, session.log, file_changes(changed), label)
    outcome.txid = tx.txid
    if watch:
        session.journal.append("gate", tx.txid, component=component, phase="apply")
    try:
        tx.apply()
    except Exception as exc:
        return _undo(session, plugins, gate, tx, watch, manifest, outcome, f"apply failed: {exc}")
    if watch is None:
        tx.commit()
        outcome.record_backups(node, tx.txid)
        return outcome
    if spec.restart:
        gate.restart(component)
    answer = gate.await_healthy(watch)
    session.journal.note("health", tx.txid, component=component, phase="apply", healthy=answer.healthy,
                         message=answer.message)
    if manifest:  # healthy means a new process carrying the manifest's intended flags was seen
        outcome.audit_verified = answer.healthy
    if answer.healthy and verify:
        verdicts = verify()
        session.journal.note("verified", tx.txid, checks=[{"id": i, "status": s} for i, s in verdicts])
        failing = [i for i, s in verdicts if s != "PASS"]
        outcome.audit_verified = not failing  # the live checks decide, whatever the flags said
        if failing:
            answer = Answer(False, f"healthy, but the live {component} does not verify: {', '.join(failing)}")
    if not answer.healthy:
        return _undo(session, plugins, gate, tx, watch, manifest, outcome, answer.message)
    tx.commit()
    outcome.record_backups(node, tx.txid)
    outcome.reason = answer.message
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
        session.journal.append("gate", tx.txid, component=component, phase="rollback")
    report = tx.rollback(reason)
    back = Answer(True, "")
    if back_watch:
        if back_watch.fresh:
            gate.restart(component)
        back = gate.await_healthy(back_watch)
        session.journal.note("health", tx.txid, component=component, phase="rollback", healthy=back.healthy,
                             message=back.message)
    if report.ok and back.healthy:
        outcome.status, outcome.exit_code = status.REMEDIATION_FAILED_ROLLED_BACK, status.EXIT_ROLLED_BACK
        outcome.reason = f"{reason}; rolled back" + (f", {component} healthy again" if component else "")
        return outcome
    problem = describe_conflicts(plugins.node, report) if not report.ok else back.message
    write_halt(plugins.node, f"{reason}; the rollback did not bring it back: {problem}", tx.txid, tx.files,
               restart_command(plugins.info, component))
    outcome.status, outcome.exit_code = status.REMEDIATION_FAILED_ROLLBACK_FAILED, status.EXIT_ROLLBACK_FAILED
    outcome.reason = f"{reason}; rollback failed: {problem}; see {plugins.node.state_dir / 'HALT'}"
    outcome.record_backups(plugins.node, tx.txid)
    return outcome


def interrupted_gates(journal: Journal) -> Dict[str, Set[str]]:
    """Components whose gate a crash cut short after their files were finished (a rollback restored, a
    commit never reached): txid -> components. A `gate` record opens a gate, a `health` record closes it."""
    pending: Dict[str, Set[str]] = {}
    for tx in journal.transactions().values():
        opened: Dict[str, bool] = {}
        for record in tx.records:
            if record["type"] in ("gate", "health"):
                opened[record.get("component")] = record["type"] == "gate"
        components = {c for c, still_open in opened.items() if still_open and c}
        if components and not tx.unfinished:
            pending[tx.txid] = components
    return pending


def gate_recovered(session: Session, plugins: Plugins, gate: Gate) -> None:
    """After a crash, prove healthy every component whose files recovery restored, or whose gate the crash
    cut short; a component that does not come back healthy HALTs the node."""
    if plugins.config.get("offline"):
        return
    pending = interrupted_gates(session.journal)
    for report in session.recovered:
        pending.setdefault(report.txid, set()).update(
            {component_of(plugins.info, r["path"]) for r in report.restored if r["action"] == "restored from backup"}
            - {None})
    for txid, components in pending.items():
        for component in sorted(components, key=lambda c: ORDER.index(c) if c in ORDER else len(ORDER)):
            spec = plugins.info.components.get(component)
            if spec is None:
                continue
            expected = None
            if spec.manifest:
                path = plugins.node.host(plugins.node.resolve(spec.manifest))
                expected = _manifest_flags(path.read_bytes(), component) if os.path.exists(path) else None
            watch = Watch.after_recovery(gate.state(), component, expected, fresh=bool(spec.restart))
            if spec.restart:
                gate.restart(component)
            answer = gate.await_healthy(watch)
            session.journal.note("health", txid, component=component, phase="recovery",
                                 healthy=answer.healthy, message=answer.message)
            if not answer.healthy:
                tx = session.journal.get(txid)
                write_halt(plugins.node, f"recovered {component}'s files, but it is not healthy: {answer.message}",
                           txid, tx.files if tx else [], restart_command(plugins.info, component))
