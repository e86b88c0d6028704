"""Running audits: select the checks that apply to this node, run each against one NodeState, and
sum up. Audits read files and /proc once per run and never start a subprocess."""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

from . import status
from .errors import InputError
from .plugins import Plugins
from .state import NodeState
from .types import AUDIT_STATUSES, ERROR, FAIL, MANUAL, NOT_APPLICABLE, AuditResult, Check, CheckResult


def node_state(plugins: Plugins, live: bool = False) -> NodeState:
    """A view of the node; `live`: settings of running components from what they serve (their live
    configuration), for verifying a change."""
    proc = plugins.config.get("proc")
    return NodeState(plugins.node, plugins.info, Path(proc) if proc else None, live)


def select(plugins: Plugins, ids: Sequence[str] = (), node_type: str = "auto",
           level: Optional[int] = None) -> List[Check]:
    """The checks to run, in id order. Explicit ids must exist; levels are cumulative (2 includes 1)."""
    unknown = [i for i in ids if i not in plugins.checks]
    if unknown:
        raise InputError("--check", f"no such check: {', '.join(unknown)} (see `cisfix checks list`)")
    types = set(plugins.info.node_types) if node_type == "auto" else {node_type}
    chosen = [plugins.checks[i] for i in ids] if ids else [
        c for c in plugins.checks.values() if types & set(c.node_types) and (level is None or c.level <= level)]
    return sorted(chosen, key=lambda c: _natural(c.id))


def _natural(check_id: str) -> list:
    """Sort 1.2.10 after 1.2.9."""
    return [(0, int(p), "") if p.isdigit() else (1, 0, p) for p in check_id.replace("-", ".").split(".")]


def audit_one(state: NodeState, check: Check, audit: Optional[Callable[[NodeState], AuditResult]] = None) -> AuditResult:
    """The check's verdict (`audit`: its verify function instead of its audit, after a change)."""
    if check.component and not state.present(check.component):
        return AuditResult(NOT_APPLICABLE, reason=f"{check.component} is not on this node")
    if not check.automated:
        return AuditResult(MANUAL, reason=check.remediation or "review by hand")
    try:
        return (audit or check.audit)(state)
    except InputError:  # a node file the component would refuse (one line naming it, exit 2)
        raise
    except Exception as exc:  # a broken audit is one ERROR, not the end of the run
        return AuditResult(ERROR, reason=f"audit raised {type(exc).__name__}: {exc}")


def run_audits(plugins: Plugins, checks: Sequence[Check]) -> List[CheckResult]:
    state = node_state(plugins)
    results = []
    for check in checks:
        result = CheckResult(check, audit_one(state, check))
        plugins.pm.hook.cisfix_observe_result(result=result)
        results.append(result)
    return results


def summarize(results: Sequence[CheckResult]) -> Dict[str, int]:
    counts = {s: 0 for s in AUDIT_STATUSES}
    for r in results:
        counts[r.audit.status] = counts.get(r.audit.status, 0) + 1
    return counts


def exit_code(results: Sequence[CheckResult]) -> int:
    failing = any(r.check.automated and r.audit.status in (FAIL, ERROR) for r in results)
    return status.EXIT_STILL_FAILING if failing else status.EXIT_OK
