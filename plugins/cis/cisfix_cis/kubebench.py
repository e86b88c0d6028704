"""Audit results as kube-bench's JSON: `Controls[]` (one per benchmark part: master, etcd,
controlplane, node, policies), each with `tests[]` (one per group) holding `results[]`, per-level totals
and the top-level `Totals`. Statuses as kube-bench gives them: a failing unscored ("Manual")
recommendation and a check that needs a human are WARN. Results of checks outside the CIS benchmarks are
left out, as are checks whose component is not on the node (NOT_APPLICABLE): kube-bench has no place
for them — except in the benchmarks derived for a distribution or provider (RKE2, k3s, EKS, GKE, AKS), where
kube-bench lists every check and reports those that cannot apply there (its `skip` checks) as INFO:
NOT_APPLICABLE is INFO there. Their parts and groups carry kube-bench's ids and texts for them. The
node's warnings (a benchmark chosen for a newer Kubernetes) are a top-level `Warnings` list, present only
when there are some. What the audit judged against goes where kube-bench puts it, each control's `version`
(the benchmark) and `detected_version` (the Kubernetes minor version); kube-bench has no place for the
node's name, the level or the build, so, to keep its structure, only the other formats carry them."""
from __future__ import annotations

import json
from typing import Dict, List, Optional, Sequence

from cisfix.types import ERROR, FAIL, MANUAL, NOT_APPLICABLE, PASS, CheckResult, NodeInfo

from .checks import ALL_DERIVED, benchmarks, sections, specs_for

TOTALS = ("pass", "fail", "warn", "info")


def status_of(result: CheckResult, scored: bool) -> str:
    status = result.audit.status
    if status == PASS:
        return "PASS"
    if status == NOT_APPLICABLE:
        return "INFO"
    if status == FAIL and scored:
        return "FAIL"
    return "WARN"  # unscored failures, MANUAL, WARN, ERROR


def _result(result: CheckResult, scored: bool) -> dict:
    audit = result.audit
    reason = audit.reason if audit.status != ERROR else f"ERROR: {audit.reason}"
    return {
        "test_number": result.check.id,
        "test_desc": result.check.title,
        "audit": result.check.target,
        "AuditEnv": "",
        "AuditConfig": "",
        "type": "manual" if not result.check.automated else "",
        "remediation": result.check.remediation,
        "test_info": [result.check.remediation] if result.check.remediation else [],
        "status": status_of(result, scored),
        "actual_value": audit.actual,
        "scored": scored,
        "IsMultiple": False,
        "expected_result": audit.expected if audit.status != MANUAL else "",
        "reason": reason,
        "evidence": [str(e) for e in audit.evidence],
    }


def _count(results: List[dict]) -> Dict[str, int]:
    return {key: sum(1 for r in results if r["status"] == key.upper()) for key in TOTALS}


def report(results: Sequence[CheckResult], node_info: Optional[NodeInfo] = None) -> dict:
    controls: Dict[str, dict] = {}
    for result in results:
        benchmark = result.check.benchmark
        spec = specs_for(benchmark).get(result.check.id) if benchmark in benchmarks() else None
        if spec is None or (result.audit.status == NOT_APPLICABLE and benchmark not in ALL_DERIVED):
            continue  # kube-bench has no place for these
        part = spec.id.split(".")[0]
        parts, groups, _ = sections(benchmark)
        node_type, text = parts[part]
        control = controls.setdefault(part, {"id": part, "version": benchmark, "detected_version": _version(node_info),
                                             "text": text, "node_type": node_type, "tests": {}})
        group = control["tests"].setdefault(spec.section, {"section": spec.section, "type": "",
                                                           "desc": groups[spec.section], "results": []})
        group["results"].append(_result(result, spec.scored))
    out, totals = [], {f"total_{k}": 0 for k in TOTALS}
    for part in sorted(controls, key=int):
        control = controls[part]
        tests = list(control.pop("tests").values())
        for group in tests:
            group.update(_count(group["results"]))
        control["tests"] = tests
        counts = _count([r for g in tests for r in g["results"]])
        for key in TOTALS:
            control[f"total_{key}"] = counts[key]
            totals[f"total_{key}"] += counts[key]
        out.append(control)
    warnings = list(node_info.warnings) if node_info else []
    return {"Controls": out, "Totals": totals, **({"Warnings": warnings} if warnings else {})}


def _version(node_info: Optional[NodeInfo]) -> str:
    """kube-bench's `detected_version`: the node's Kubernetes minor version."""
    version = (node_info.version if node_info else None) or ""
    return ".".join(version.lstrip("v").split(".")[:2])


def render(results: Sequence[CheckResult], summary: dict, node_info: NodeInfo) -> str:
    return json.dumps(report(results, node_info), indent=2) + "\n"
