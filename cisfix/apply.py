"""Applying changes to one component, health-gated: apply, prove it came back healthy with the new
configuration and that the checks verify, commit — or roll back, gate the rollback the same way, and
write HALT when even that fails."""
from __future__ import annotations

import os
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from . import status
from .engine import EditOutcome, PlannedChange, Session, describe_conflicts, file_changes
from .gate import Gate
from .halt import write_halt
from .health import Answer
from .plugins import Plugins
from .transaction import Transaction
from .types import Component, NodeInfo


# -> [(check id, audit status[, evidence])] against the live node
Verify = Callable[[], List[Tuple[str, ...]]]


def component_of(info: NodeInfo, node_path: str) -> Optional[str]:
    """The component whose restart a change to this file needs, if any."""
    for component in info.components.values():
        if node_path == component.manifest or node_path == component.config or node_path in component.flag_files:
            return component.name
    return None


def live_source(spec: Component) -> str:
    """What verification reads of a running component: the configuration it serves, or its argv."""
    if spec.live_config:
        return f"live configuration {spec.live_config.get('url')}"
    return "command line of the running process"


def fix_order(info: NodeInfo) -> List[str]:
    """The components in the order a fix takes them: each after those it depends on, ties by name."""
    ordered: List[str] = []

    def visit(name: str, path: Tuple[str, ...]) -> None:
        if name in ordered or name in path or name not in info.components:
            return
        for dependency in sorted(info.components[name].depends_on):
            visit(dependency, path + (name,))
        ordered.append(name)
    for name in sorted(info.components):
        visit(name, ())
    return ordered


def restart_command(info: NodeInfo, component: Optional[str]) -> Tuple[str, ...]:
    """How a person restarts the component: its own command, else that of the component that runs it
    (the kubelet restarts static pods from their manifests)."""
    spec = info.components.get(component) if component else None
    while spec is not None:
        if spec.restart:
            return tuple(spec.restart)
        spec = info.components.get(spec.managed_by) if spec.managed_by else None
    return ()


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
    before = gate.process(component) if gated else None
    if gated:
        gate.require_healthy(component)
    tx = Transaction.begin(node, session.journal, session.log, file_changes(changed), label)
    outcome.txid = tx.txid
    try:
        tx.apply()
    except Exception as exc:
        return _undo(session, plugins, gate, tx, component if gated else None, manifest, outcome, f"apply failed: {exc}")
    if not gated:
        tx.commit()
        outcome.backup_path = str(node.state_dir / "backups" / tx.txid)
        return outcome
    if spec.restart:
        gate.restart(component)
    answer = gate.await_healthy(component, before, _manifest_flags(manifest.after, component) if manifest else None)
    session.journal.append("health", tx.txid, component=component, phase="apply", healthy=answer.healthy,
                           message=answer.message)
    if answer.healthy and verify:
        verdicts = verify()
        session.journal.append("verified", tx.txid, component=component, source=live_source(spec),
                               checks=[{"id": v[0], "status": v[1], **({"evidence": v[2]} if len(v) > 2 else {})}
                                       for v in verdicts])
        failing = [v[0] for v in verdicts if v[1] != "PASS"]
        outcome.audit_verified = not failing
        if failing:
            answer = Answer(False, f"healthy, but the live {component} does not verify: {', '.join(failing)}")
    if not answer.healthy:
        return _undo(session, plugins, gate, tx, component, manifest, outcome, answer.message)
    tx.commit()
    outcome.backup_path = str(node.state_dir / "backups" / tx.txid)
    outcome.reason = answer.message
    return outcome


def _undo(session: Session, plugins: Plugins, gate: Gate, tx: Transaction, component: Optional[str],
          manifest: Optional[PlannedChange], outcome: EditOutcome, reason: str) -> EditOutcome:
    """Roll back; when the change restarted a component, gate the rollback too."""
    report = tx.rollback(reason)
    back = Answer(True, "")
    if component:
        if gate.state().component(component).restart:
            gate.restart(component)
        back = gate.await_healthy(component, None, _manifest_flags(manifest.before, component) if manifest else None)
        session.journal.append("health", tx.txid, component=component, phase="rollback", healthy=back.healthy,
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
    outcome.backup_path = str(plugins.node.state_dir / "backups" / tx.txid)
    return outcome


def gate_recovered(session: Session, plugins: Plugins, gate: Gate) -> None:
    """After recovery restored files a crash left changed, gate the components they belong to; a
    component that does not come back healthy HALTs the node."""
    if plugins.config.get("offline"):
        return
    for report in session.recovered:
        components = {component_of(plugins.info, r["path"]) for r in report.restored
                      if r["action"] == "restored from backup"} - {None}
        order = fix_order(plugins.info)
        for component in sorted(components, key=lambda c: order.index(c) if c in order else len(order)):
            spec = plugins.info.components[component]
            if spec.restart:
                gate.restart(component)
            expected = None
            if spec.manifest:
                path = plugins.node.host(plugins.node.resolve(spec.manifest))
                expected = _manifest_flags(path.read_bytes(), component) if os.path.exists(path) else None
            answer = gate.await_healthy(component, None, expected)
            session.journal.append("health", report.txid, component=component, phase="recovery",
                                   healthy=answer.healthy, message=answer.message)
            if not answer.healthy:
                tx = session.journal.get(report.txid)
                write_halt(plugins.node, f"recovered {component}'s files, but it is not healthy: {answer.message}",
                           report.txid, tx.files if tx else [], restart_command(plugins.info, component))
