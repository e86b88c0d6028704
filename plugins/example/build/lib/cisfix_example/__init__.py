"""An example cisfix plugin: one check, written in Python, with its audit, remediation and verification.

EXAMPLE-1: the scheduler must not expose its profiling endpoint (`--profiling=false`). kubeadm leaves
profiling on, so a fresh kubeadm node fails this check and the remediation sets the flag.
"""
from __future__ import annotations

import cisfix

COMPONENT = "kube-scheduler"


def audit(state: "cisfix.NodeState") -> "cisfix.AuditResult":
    """Read the flag the way the scheduler sees it: its running process first, else its manifest."""
    flags = state.flags(COMPONENT)
    actual = flags.get("profiling", "true (default)")
    status = cisfix.PASS if actual == "false" else cisfix.FAIL
    return cisfix.AuditResult(status, expected="false", actual=actual, evidence=(flags.evidence,))


def remediate(state: "cisfix.NodeState") -> "cisfix.Plan":
    """A plan, not a write: cisfix applies it inside a transaction and restarts nothing else."""
    manifest = state.component(COMPONENT).manifest
    if manifest is None or state.read(manifest) is None:
        return cisfix.Plan(manual=f"{COMPONENT} has no static pod manifest on this node")
    return cisfix.Plan(changes=(cisfix.EditFile(manifest, (cisfix.SetFlag("profiling", "false"),), COMPONENT),))


def verify(state: "cisfix.NodeState") -> "cisfix.AuditResult":
    """After the restart the live process must carry the flag; the manifest alone proves nothing."""
    result = audit(state)
    if result.status == cisfix.PASS and not state.flags(COMPONENT).running:
        return cisfix.AuditResult(cisfix.WARN, "false", result.actual, result.evidence,
                                  reason=f"{COMPONENT} is not running; only its manifest was checked")
    return result


@cisfix.hookimpl
def cisfix_register_checks(node_info: "cisfix.NodeInfo"):
    return [cisfix.Check(
        id="EXAMPLE-1",
        title="Ensure the scheduler's profiling endpoint is disabled",
        benchmark="example",
        level=1,
        node_types=("master",),
        component=COMPONENT,
        target="flag --profiling",
        audit=audit,
        remediate=remediate,
        verify=verify,
        remediation="Set --profiling=false in /etc/kubernetes/manifests/kube-scheduler.yaml.",
    )]
