"""From failing audits to one transaction: ask each failing check for its plan, let plugins veto it,
and apply what remains through the engine. (Health gating and batching per component build on this.)"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import List, Sequence, Tuple

from . import status
from .audit import audit_one, node_state
from .engine import EditOutcome, run_changes
from .plugins import Plugins
from .types import FAIL, Check, CheckResult, Plan


@dataclass
class FixPlan:
    """What a fix would do: the checks it remediates with their plans, and the checks it skips."""

    planned: List[Tuple[Check, Plan]] = field(default_factory=list)
    skipped: List[CheckResult] = field(default_factory=list)
    compliant: List[CheckResult] = field(default_factory=list)

    @property
    def changes(self) -> list:
        return [change for _, plan in self.planned for change in plan.changes]


def plan_fix(plugins: Plugins, checks: Sequence[Check]) -> FixPlan:
    state = node_state(plugins)
    result = FixPlan()
    for check in checks:
        verdict = audit_one(state, check)
        if verdict.status != FAIL:
            result.compliant.append(CheckResult(check, verdict, status.ALREADY_COMPLIANT))
            continue
        plan = check.remediate(state) if check.remediate else Plan(manual="no automatic remediation")
        veto = None if plan.manual else plugins.pm.hook.cisfix_veto_plan(check=check, plan=plan, node_info=plugins.info)
        if plan.manual or veto:
            reason = plan.manual or f"vetoed: {veto}"
            result.skipped.append(CheckResult(check, replace(verdict, reason=reason), status.SKIPPED))
            continue
        result.planned.append((check, plan))
    return result


def apply_fix(plugins: Plugins, plan: FixPlan, dry_run: bool = False, wait: float = 0.0) -> EditOutcome:
    """Apply every planned change as one transaction (no health gate: for nodes without live components)."""
    return run_changes(plugins.node, plan.changes, dry_run=dry_run, wait=wait, editors=plugins.editors(),
                       label="fix " + ",".join(check.id for check, _ in plan.planned))
