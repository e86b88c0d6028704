"""The fix engine: audit, plan the remediation of every failing automated check, group the plans by
component and apply each group as ONE gated transaction — one restart per component. The components of
one dependency level (the controller manager and the scheduler, say, which need only the API server)
are applied together and gated concurrently, one thread each; the next level starts when the whole level
is done. When a group fails its gate it is rolled back and bisected on its own, to find the change(s)
that break it; the rest is applied and each culprit is reported with the component's own error. The
other groups of its level never notice."""
from __future__ import annotations

import threading
from dataclasses import dataclass, field, replace
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from . import status
from .apply import apply_gated, fix_levels, open_session
from .config import CONFIG_PATH
from .configcheck import refuse_invalid_settings
from .settings import operators_setting
from .audit import audit_one, node_exceptions, node_state
from .engine import EditOutcome, Session, plan_changes, run_changes, unified_diff
from .gate import Gate
from .interrupted import Recovered, left_over
from .journal import Journal, JournalWriteFailed, fix_label
from .plugins import Plugins
from .remedy import remedy
from .state import NodeState
from .errors import CisfixError, InputError
from .types import ERROR, EXCEPTED, FAIL, NOT_APPLICABLE, PASS, Check, CheckResult, Configure, Plan

Item = Tuple[Check, Plan]


@dataclass
class FixPlan:
    """What a fix would do: the checks it remediates with their plans, and the checks it leaves."""

    planned: List[Item] = field(default_factory=list)
    skipped: List[CheckResult] = field(default_factory=list)
    compliant: List[CheckResult] = field(default_factory=list)

    @property
    def changes(self) -> list:
        return [change for _, plan in self.planned for change in plan.changes]


def plan_fix(plugins: Plugins, checks: Sequence[Check]) -> FixPlan:
    state = node_state(plugins)
    exceptions = node_exceptions(plugins)
    result = FixPlan()
    for check in checks:
        verdict = audit_one(state, check, exceptions)
        if verdict.status != FAIL:
            fix_status = {PASS: status.ALREADY_COMPLIANT, EXCEPTED: status.EXCEPTED,
                          NOT_APPLICABLE: status.NOT_APPLICABLE}.get(verdict.status, status.SKIPPED)
            result.compliant.append(CheckResult(check, verdict, fix_status))
            continue
        plan, reason = remedy(plugins, state, check)
        if reason:
            result.skipped.append(CheckResult(check, replace(verdict, reason=reason), status.SKIPPED))
            continue
        result.planned.append((check, plan))
    return result



def refuse_if_unreadable(plan: FixPlan) -> None:
    """A check that could not be audited (a broken or hostile node file, a failing audit) stops the
    fix before the lock and any change: the node is not what the plans assume."""
    errors = [r for r in plan.compliant if r.audit.status == ERROR]
    if errors:
        more = f" ({len(errors)} checks could not be audited)" if len(errors) > 1 else ""
        raise CisfixError(f"{errors[0].audit.reason}{more}; fix changes nothing on a node it cannot fully read")


def refuse_invalid_plans(state: NodeState, plan: FixPlan) -> None:
    """A remediation that would write a setting its component refuses or ignores (a plugin's or a
    checks.d document's typo) stops the fix before the lock, naming the check: the operator corrects
    the check; the rest of the fix is not attempted around it."""
    for check, item in plan.planned:
        try:
            refuse_invalid_settings(state, item.changes)
        except InputError as exc:
            raise InputError(f"check {check.id}", str(exc)) from None


def apply_fix(plugins: Plugins, plan: FixPlan, dry_run: bool = False, wait: float = 0.0) -> EditOutcome:
    """Apply every planned change as one transaction, without a health gate: for node trees with no
    live components (tests, plugin authors' fixtures)."""
    return run_changes(plugins.node, plan.changes, dry_run=dry_run, wait=wait, editors=plugins.editors(),
                       state=node_state(plugins),
                       label=fix_label(check.id for check, _ in plan.planned))


@dataclass
class FixReport:
    results: List[CheckResult]
    diff: str = ""  # what was applied (or, in a dry run, would be)
    restarts: Dict[str, int] = field(default_factory=dict)  # component -> transactions that restarted it
    unrecorded: str = ""  # why the journal could not record a change: the run stopped there (exit 4)
    # Changes made in the operator's own configuration files (where a distribution's file decides a
    # flag, it is changed there rather than overridden in cisfix's drop-in): "FILE: what".
    placed: List[str] = field(default_factory=list)
    config: str = CONFIG_PATH  # the node configuration file as the operator reaches it (under --root)
    recovered: List[Recovered] = field(default_factory=list)  # what an interrupted run left, undone first

    def transactions(self) -> List[dict]:
        """Each transaction the run began, with its checks and whether it was committed."""
        txs: Dict[str, dict] = {}
        for r in self.results:
            if r.txid:
                tx = txs.setdefault(r.txid, {"txid": r.txid, "committed": r.status == status.FIXED, "checks": []})
                tx["checks"].append(r.check.id)
        return list(txs.values())

    def by_outcome(self) -> Dict[str, List[CheckResult]]:
        """The results as a person reads them: changed, failed, needing a person (an automated check
        that still fails: no safe fix, vetoed, HALT), excepted, compliant, and the rest (manual
        recommendations and checks that do not apply)."""
        groups: Dict[str, List[CheckResult]] = {k: [] for k in (
            "changed", "failed", "needs a person", "excepted", "compliant", "manual or not applicable")}
        for r in self.results:
            if r.status in (status.FIXED, status.WOULD_FIX):
                key = "changed"
            elif r.status.startswith(status.REMEDIATION_FAILED):
                key = "failed"
            elif r.status == status.EXCEPTED:
                key = "excepted"
            elif r.status == status.ALREADY_COMPLIANT:
                key = "compliant"
            elif r.check.automated and r.audit.status in (FAIL, ERROR):
                key = "needs a person"
            else:
                key = "manual or not applicable"
            groups[key].append(r)
        return groups

    def why(self) -> str:
        """One line saying why the exit code is not 0 (empty when it is)."""
        code, groups = self.exit_code, self.by_outcome()
        if code == status.EXIT_OK:
            return ""
        if self.unrecorded:
            return f"exit {code}: the journal cannot record changes, so the run stopped: {self.unrecorded}"
        if groups["failed"]:
            return (f"exit {code}: {len(groups['failed'])} change(s) failed: "
                    + ", ".join(f"{r.check.id} ({r.status})" for r in groups["failed"]))
        people = groups["needs a person"]
        return (f"exit {code}: {len(people)} check(s) still fail and need a person: "
                + ", ".join(r.check.id for r in people)
                + f"; fix them by hand, or record an accepted risk under `exceptions:` in {self.config}")

    @property
    def exit_code(self) -> int:
        statuses = {r.status for r in self.results}
        if status.REMEDIATION_FAILED_ROLLBACK_FAILED in statuses or self.unrecorded:
            return status.EXIT_ROLLBACK_FAILED
        if status.REMEDIATION_FAILED_ROLLED_BACK in statuses:
            return status.EXIT_ROLLED_BACK
        failing = any(r.check.automated and r.audit.status == FAIL and r.status not in (status.FIXED, status.WOULD_FIX)
                      for r in self.results)
        return status.EXIT_STILL_FAILING if failing else status.EXIT_OK


Group = Tuple[Optional[str], List[Item]]


def group_by_component(plugins: Plugins, planned: Sequence[Item]) -> List[List[Group]]:
    """Plans grouped by the component they restart (a service that runs others restarts them all: one
    group), the groups by dependency level (see `fix_levels`); plans that restart nothing (file modes, say) form the last level, alone."""
    groups: Dict[Optional[str], List[Item]] = {}
    for check, plan in planned:
        configured = [c.component for c in plan.changes if isinstance(c, Configure)]
        component = next(iter(configured), check.component)
        component = plugins.info.restarted_by(component) if component else None  # RKE2, k3s: their service
        groups.setdefault(component if component in plugins.info.components else None, []).append((check, plan))
    levels = [[(name, groups[name]) for name in names if name in groups] for names in fix_levels(plugins.info)]
    return [level for level in levels if level] + ([[(None, groups[None])]] if None in groups else [])


class Fixer:
    """Applies a FixPlan group by group through the gate, bisecting failed groups."""

    def __init__(self, plugins: Plugins, gate: Gate, session: Session,
                 observe: Callable[[CheckResult], None]) -> None:
        self.plugins, self.gate, self.session, self.observe = plugins, gate, session, observe
        self.results: Dict[str, CheckResult] = {}
        self.restarts: Dict[str, int] = {}
        self.diffs: Dict[str, str] = {}  # txid -> diff of what that committed transaction applied
        self.placed: List[str] = []  # see FixReport.placed
        # Why no group starts another transaction, once one must not: a failed rollback (HALT), or a
        # journal that cannot record what happens.
        self.stopped = ""
        self.unrecorded = ""
        self._recording = threading.Lock()  # one group's results (and what observers print) at a time

    def fix_level(self, groups: Sequence[Group], one_at_a_time: bool) -> None:
        """The groups of one dependency level, each in a thread of its own: applied together, gated
        concurrently, each committed or rolled back (and bisected) on its own. Returns when all are done;
        the first error any group raised is raised then."""
        if len(groups) == 1:
            self.fix_group(*groups[0], one_at_a_time)
            return
        errors: List[BaseException] = []

        def fix_one(component: Optional[str], items: List[Item]) -> None:
            try:
                self.fix_group(component, items, one_at_a_time)
            except BaseException as exc:  # raised in the caller's thread below
                errors.append(exc)
        # Daemon threads: an interrupt ends the run at once, as with one component — transactions it cut
        # short stay unfinished in the journal, and the next run's recovery undoes and gates them.
        threads = [threading.Thread(target=fix_one, args=group, name=f"cisfix-gate-{group[0]}", daemon=True)
                   for group in groups]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if errors:
            raise errors[0]

    def attempt(self, component: Optional[str], items: Sequence[Item]) -> EditOutcome:
        """One gated transaction for these checks' changes, planned against the node as it is now."""
        node = self.plugins.node
        planned = plan_changes(node, [c for _, plan in items for c in plan.changes], self.plugins.editors(),
                               self.gate.state())
        ids = [check.id for check, _ in items]
        outcome = EditOutcome(status.FIXED, "applied and committed",
                              changes=[f"{node.display(p.path)}: {n}" for p in planned if p.changed for n in p.notes],
                              diff="".join(unified_diff(node, p) for p in planned if p.changed))
        if not any(p.changed for p in planned):
            outcome.status = status.ALREADY_COMPLIANT
            return outcome
        theirs = [f"{node.display(p.path)}: {n}" for p in planned if p.changed and operators_setting(self.plugins.info, p.path)
                  for n in p.notes]

        def verify() -> List[Tuple[str, ...]]:
            state = self.gate.state(live=True)
            verdicts = [(check.id, audit_one(state, check, audit=check.verify or check.audit)) for check, _ in items]
            return [(i, v.status, [str(e) for e in v.evidence], v.reason) for i, v in verdicts]

        try:
            outcome = apply_gated(self.session, planned, outcome, plugins=self.plugins, gate=self.gate,
                                  component=component, label=fix_label(ids), verify=verify)
        except JournalWriteFailed as exc:  # the transaction could not begin: nothing was changed
            outcome.not_recorded(node, exc.reason, undone=False)
        if theirs and outcome.status == status.FIXED:
            with self._recording:
                self.placed += theirs
        if component and outcome.txid:
            self.restarts[component] = self.restarts.get(component, 0) + (
                1 if outcome.status == status.FIXED else 2)
        if outcome.unrecorded:
            self.unrecorded = self.unrecorded or outcome.reason
            self.stopped = "the journal cannot record changes"
        elif outcome.status == status.REMEDIATION_FAILED_ROLLBACK_FAILED:
            self.stopped = "the node is HALTed"
        return outcome

    def record(self, items: Sequence[Item], outcome: EditOutcome) -> None:
        state = self.gate.state()  # one read of the node for the verdicts after this outcome
        results = []
        for check, plan in items:
            verdict = audit_one(state, check)
            reason = outcome.reason if outcome.status != status.FIXED else "; ".join(plan.notes) or verdict.reason
            results.append(CheckResult(check, replace(verdict, reason=reason), outcome.status, outcome.txid))
        with self._recording:
            if outcome.status == status.FIXED and outcome.txid:
                self.diffs[outcome.txid] = outcome.diff
            for result in results:
                self.results[result.check.id] = result
                self.observe(result)

    def skip(self, items: Sequence[Item]) -> None:
        self.record(items, EditOutcome(status.SKIPPED, f"not attempted: {self.stopped}"))

    def fix_group(self, component: Optional[str], items: List[Item], one_at_a_time: bool) -> None:
        if self.stopped:
            self.skip(items)
            return
        if one_at_a_time:
            for item in items:
                if self.stopped:
                    self.skip([item])
                else:
                    self.record([item], self.attempt(component, [item]))
            return
        outcome = self.attempt(component, items)
        if outcome.status in (status.FIXED, status.ALREADY_COMPLIANT) or self.stopped or len(items) == 1:
            self.record(items, outcome)
            return
        self.bisect(component, items, [], outcome)

    def bisect(self, component: Optional[str], suspects: List[Item], carried: List[Item],
               failure: EditOutcome) -> None:
        """`suspects` failed together (with `carried`, believed good, not yet applied). Try half of the
        suspects with the carried ones; keep what passes, narrow down what fails."""
        if self.stopped:
            self.skip(suspects + carried)
            return
        if len(suspects) == 1:
            self.record(suspects, failure)
            if carried:
                outcome = self.attempt(component, carried)
                if outcome.status in (status.FIXED, status.ALREADY_COMPLIANT) or len(carried) == 1 or self.stopped:
                    self.record(carried, outcome)
                else:
                    self.bisect(component, carried, [], outcome)
            return
        half, rest = suspects[:len(suspects) // 2], suspects[len(suspects) // 2:]
        outcome = self.attempt(component, half + carried)
        if outcome.status in (status.FIXED, status.ALREADY_COMPLIANT):
            self.record(half + carried, outcome)
            self.bisect(component, rest, [], failure)
        else:
            self.bisect(component, half, carried + rest, outcome)


def run_fix(plugins: Plugins, checks: Sequence[Check], gate: Gate, *, dry_run: bool = False,
            one_at_a_time: bool = False, sequential: bool = False, wait: float = 0.0) -> FixReport:
    """Fix the failing checks: level by level, a level's components together. `sequential`: one
    component after another, in dependency order; `one_at_a_time`: that, and one check per transaction."""
    observe = lambda result: plugins.pm.hook.cisfix_observe_result(result=result)  # noqa: E731
    plan = plan_fix(plugins, checks)
    node = plugins.node
    shown = node.display(CONFIG_PATH)
    refuse_if_unreadable(plan)
    state = node_state(plugins)
    refuse_invalid_plans(state, plan)
    for result in plan.compliant + plan.skipped:
        observe(result)
    if dry_run:
        planned = plan_changes(node, plan.changes, plugins.editors(), state)
        results = [CheckResult(check, audit_one(state, check), status.WOULD_FIX) for check, _ in plan.planned]
        return FixReport(plan.compliant + plan.skipped + results,
                         "".join(unified_diff(node, p) for p in planned if p.changed), config=shown)
    if not plan.planned and not left_over(Journal(node.state_dir / "journal.jsonl")):
        return FixReport(plan.compliant + plan.skipped, config=shown)  # compliant: no lock, no write, no restart
    levels = group_by_component(plugins, plan.planned)
    gate.require_restartable(component for level in levels for component, _ in level)
    with open_session(plugins, gate, wait) as session:
        session.refuse_if_recovery_failed()
        fixer = Fixer(plugins, gate, session, observe)
        if session.recovered:  # the node changed under the audit: plan again
            plan = plan_fix(plugins, checks)
            refuse_invalid_plans(node_state(plugins), plan)
            levels = group_by_component(plugins, plan.planned)
        for level in levels:
            for together in ([[group] for group in level] if sequential or one_at_a_time else [level]):
                fixer.fix_level(together, one_at_a_time)
    return FixReport(plan.compliant + plan.skipped + list(fixer.results.values()), "".join(fixer.diffs.values()),
                     restarts=fixer.restarts, unrecorded=fixer.unrecorded, placed=fixer.placed, config=shown,
                     recovered=session.recovery)
