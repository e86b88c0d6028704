"""Running audits: select the checks that apply to this node, run each against one NodeState, and
sum up. Audits read files and /proc once per run and never start a subprocess."""
from __future__ import annotations

import datetime
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Dict, List, Mapping, Optional, Sequence

from . import status
from .config import CONFIG_PATH
from .errors import InputError
from .plugins import Plugins, require_checks
from .state import NodeState
from .types import (AUDIT_STATUSES, ERROR, EXCEPTED, FAIL, MANUAL, NOT_APPLICABLE, PASS, AuditResult, Check,
                    CheckResult)


def node_state(plugins: Plugins, live: bool = False) -> NodeState:
    """A view of the node; `live`: settings of running components from what they serve (their live
    configuration), for verifying a change."""
    proc = plugins.config.get("proc")
    return NodeState(plugins.node, plugins.info, Path(proc) if proc else None, live)


def require_benchmark(plugins: Plugins) -> None:
    """Plugins implement benchmarks, but none was chosen for this node: auditing without one would
    report a handful of passes and exit 0. Say why, and how to choose one."""
    if plugins.info.benchmark or not plugins.benchmarks:
        return
    version = plugins.info.version
    if not version:
        _refuse_unreadable_manifest(plugins)
    why = (f"Kubernetes {version} is not covered by any benchmark" if version else
           "the Kubernetes version is unknown (no control-plane manifest names an image tag)")
    raise InputError("benchmark", f"none chosen: {why}; give --benchmark NAME (known: "
                                  f"{', '.join(sorted(plugins.benchmarks))}) or `version:` in "
                                  f"{plugins.node.display(CONFIG_PATH)}")


def _refuse_unreadable_manifest(plugins: Plugins) -> None:
    """A manifest that cannot be read may be what hides the version: name it, its line and why (a
    --benchmark would only audit its checks as ERRORs)."""
    state = node_state(plugins)
    for component in plugins.info.components.values():
        if component.manifest:
            try:
                state.yaml(component.manifest)
            except InputError as exc:
                raise InputError(exc.path, f"{exc.reason}; the Kubernetes version, and so the benchmark, "
                                           f"is unknown until this file is fixed") from None


def select(plugins: Plugins, ids: Sequence[str] = (), node_type: str = "auto",
           level: Optional[int] = None) -> List[Check]:
    """The checks to run, in id order. Explicit ids must exist; levels are cumulative (2 includes 1)."""
    require_checks("--check", ids, plugins.checks)
    types = set(plugins.info.node_types) if node_type == "auto" else {node_type}
    chosen = [plugins.checks[i] for i in ids] if ids else [
        c for c in plugins.checks.values() if types & set(c.node_types) and (level is None or c.level <= level)]
    return sorted(chosen, key=lambda c: natural_order(c.id))


def natural_order(check_id: str) -> list:
    """Sort 1.2.10 after 1.2.9."""
    return [(0, int(p), "") if p.isdigit() else (1, 0, p) for p in check_id.replace("-", ".").split(".")]


@dataclass(frozen=True)
class AcceptedRisk:
    """An accepted risk from the node configuration: the check is EXCEPTED until `expires`."""

    id: str
    reason: str
    expires: datetime.date
    by: str = ""  # who accepted it, when the configuration says (`by:`)


def node_exceptions(plugins: Plugins) -> Dict[str, AcceptedRisk]:
    """The `exceptions` of the node configuration, by check id (validated by its schema but dates)."""
    found: Dict[str, AcceptedRisk] = {}
    for entry in plugins.config.get("exceptions", ()):
        try:
            expires = datetime.date.fromisoformat(str(entry["expires"])[:10])
        except ValueError:
            raise InputError(plugins.node.display(CONFIG_PATH),
                             f"exception {entry['id']}: expires: {entry['expires']!r} is not a date (YYYY-MM-DD)")
        found[entry["id"]] = AcceptedRisk(entry["id"], entry["reason"], expires, entry.get("by", ""))
    return found


def apply_exception(verdict: AuditResult, exception: Optional[AcceptedRisk],
                    today: Optional[datetime.date] = None) -> AuditResult:
    """A failing (or manual) verdict of an excepted check is EXCEPTED while the exception holds; after
    its expiry it stays a FAIL, with a note saying so. PASS, ERROR and NOT_APPLICABLE are never excepted."""
    if exception is None or verdict.status in (PASS, ERROR, NOT_APPLICABLE):
        return verdict
    if (today or datetime.date.today()) < exception.expires:
        return replace(verdict, status=EXCEPTED,
                       reason=f"excepted until {exception.expires}: {exception.reason}")
    note = f"exception expired on {exception.expires} ({exception.reason})"
    return replace(verdict, reason=f"{note}; {verdict.reason}" if verdict.reason else note)


def audit_one(state: NodeState, check: Check, exceptions: Mapping[str, AcceptedRisk] = {},
              audit: Optional[Callable[[NodeState], AuditResult]] = None) -> AuditResult:
    """The check's verdict (`audit`: its verify function instead of its audit, after a change), with the
    node's accepted risks applied."""
    return apply_exception(_audit(state, check, audit), exceptions.get(check.id))


def _audit(state: NodeState, check: Check, audit: Optional[Callable[[NodeState], AuditResult]]) -> AuditResult:
    if check.component and not state.present(check.component):
        return AuditResult(NOT_APPLICABLE, reason=f"{check.component} is not on this node")
    if not check.automated:
        return AuditResult(MANUAL, reason=check.remediation or "review by hand")
    try:
        return (audit or check.audit)(state)
    except InputError as exc:  # a node file that cannot be read: FILE:LINE: reason
        return AuditResult(ERROR, reason=str(exc))
    except Exception as exc:  # a broken audit is one ERROR, not the end of the run
        return AuditResult(ERROR, reason=f"audit raised {type(exc).__name__}: {exc}")


def run_audits(plugins: Plugins, checks: Sequence[Check], state: Optional[NodeState] = None) -> List[CheckResult]:
    """`state`: the view to audit (and later plan) with, when the caller goes on to use it."""
    state = state or node_state(plugins)
    exceptions = node_exceptions(plugins)
    results = []
    for check in checks:
        result = CheckResult(check, audit_one(state, check, exceptions))
        plugins.pm.hook.cisfix_observe_result(result=result)
        results.append(result)
    return results


def summarize(results: Sequence[CheckResult]) -> Dict[str, int]:
    counts = {s: 0 for s in AUDIT_STATUSES}
    for r in results:
        counts[r.audit.status] = counts.get(r.audit.status, 0) + 1
    return counts


def exit_code(results: Sequence[CheckResult]) -> int:
    """2 when a check could not be audited (a broken node file or audit), else 1 when one fails."""
    if any(r.audit.status == ERROR for r in results):
        return status.EXIT_INPUT
    failing = any(r.check.automated and r.audit.status == FAIL for r in results)
    return status.EXIT_STILL_FAILING if failing else status.EXIT_OK
