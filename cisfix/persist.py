"""`cisfix persist` (and `fix --persist`): keep the committed fixes where the node's installer regenerates
the fixed files from, so that its next upgrade does not silently revert them.

What the fixes changed is read from the journal: for every file, its content before the first committed
transaction of an unbroken run of them (the backup) against its content now. A file changed since by
anyone else (an upgrade, a person) is left out and said so. The layout (`cisfix_plan_persistence`)
says where each change belongs; this module writes it: each API object through `cisfix.apiobjects`
(the node's credentials, answers believed only when they are exactly the ConfigMap asked for, writes
with the resourceVersion read). Files for the installer go to `<state>/persist/files`; where the API
server cannot be reached, its answer is refused, or the node has no credentials, the YAML to merge
elsewhere goes to `<state>/persist/<object>.yaml` and the exit code says so (7). What every other
control-plane node must hold before its upgrade is published, and waited for, by
`cisfix.persist_nodes` (exit 7 until every one confirmed). Fixed files the distribution's packages own
(`Component.package_owned`) are named: their package upgrade undoes the fix, and drift re-applies it.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from . import status
from .apiobjects import ObjectOutcome, persist_object
from .controlplane import PATCH_FILES
from .errors import CisfixError
from .journal import Journal
from .nodefile import read_bytes
from .node import Node
from .outputfile import write_output_file
from .persist_nodes import ControlPlane, print_control_plane, publication, published_earlier
from .plugins import Plugins
from .state import NodeState
from .trust import read_trusted
from .types import NetChange, PersistPlan


@dataclass
class PersistReport:
    objects: List[ObjectOutcome] = field(default_factory=list)
    files_dir: Optional[str] = None
    files: List[str] = field(default_factory=list)
    files_usage: str = ""
    notes: List[str] = field(default_factory=list)
    recovered: List[dict] = field(default_factory=list)  # what recovery undid first (`Recovered.as_dict`)
    control_plane: Optional[ControlPlane] = None
    package_owned: List[str] = field(default_factory=list)  # fixed files a package upgrade reinstalls
    shown: Dict[str, str] = field(default_factory=dict)  # name -> content of the files a person pastes (show_files)

    @property
    def exit_code(self) -> int:
        """7 when something must be applied elsewhere (another control-plane node still lacks the files
        its upgrade needs), 1 when a conflict or failure is left, else 0."""
        if any(o.status == "elsewhere" for o in self.objects) or (self.control_plane and self.control_plane.pending):
            return status.EXIT_APPLY_ELSEWHERE
        if any(o.conflicts or o.status in ("conflict", "failed") for o in self.objects):
            return status.EXIT_STILL_FAILING
        return status.EXIT_OK

    def as_dict(self) -> dict:
        return {"objects": [o.as_dict() for o in self.objects], "files_dir": self.files_dir, "files": self.files,
                "files_usage": self.files_usage, "notes": self.notes, "exit_code": self.exit_code,
                "control_plane": self.control_plane.as_dict() if self.control_plane else None,
                "package_owned": self.package_owned, **({"shown": self.shown} if self.shown else {}),
                **({"recovered": self.recovered} if self.recovered else {})}


# ---- what the committed fixes changed ----

def _sha(data: Optional[bytes]) -> Optional[str]:
    return hashlib.sha256(data).hexdigest() if data is not None else None


def net_changes(node: Node, journal: Journal) -> Tuple[List[NetChange], List[str]]:
    """Every file the committed transactions changed, before the first of an unbroken run of them and
    now; and notes on files left out (changed since by someone else, backup pruned)."""
    runs: Dict[str, Tuple[dict, Optional[str]]] = {}  # path -> (first entry of the run, sha after the last)
    for tx in journal.transactions().values():
        if tx.state != "committed":
            continue
        for entry in tx.files:
            before, after = (entry["before"] or {}).get("sha256"), (entry["after"] or {}).get("sha256")
            run = runs.get(entry["path"])
            runs[entry["path"]] = (run[0] if run and run[1] == before else entry, after)
    changes, notes = [], []
    for path, (first, last) in runs.items():
        shown = node.display(path)
        now = read_bytes(node.host(path), shown)
        if _sha(now) != last:
            notes.append(f"{shown}: changed since cisfix last fixed it (an upgrade or a person); nothing of it persisted")
            continue
        before = None
        if first["before"] is not None:
            try:
                before = read_trusted(node.state_dir / first["backup"])
            except FileNotFoundError:
                notes.append(f"{shown}: the backup of its state before the fixes was pruned; nothing of it persisted")
                continue
        if before != now:
            changes.append(NetChange(path, before, now))
    return changes, notes


# ---- the command ----

def _write(target: Path, data: bytes) -> None:
    """Write a file of the state folder (0600, as every output file is) unless it holds `data` already."""
    if target.exists() and read_trusted(target) == data:
        return
    write_output_file(target, data, "persist's file", mode=0o600)


def run_persist(plugins: Plugins, force: bool = False, dry_run: bool = False, wait: float = 0.0) -> PersistReport:
    from .apply import open_session
    from .audit import node_state
    from .gate import gate_settings, make_gate

    node = plugins.node
    if dry_run:
        return _persist(plugins, Journal(node.state_dir / "journal.jsonl"), node_state(plugins), force, True)
    # Recovery first, gated as every run's is: what it put back is proven healthy before the API server is asked.
    with open_session(plugins, make_gate(plugins, gate_settings(plugins.config)), wait) as session:
        report = _persist(plugins, session.journal, node_state(plugins), force, False)
        report.recovered = [r.as_dict(node) for r in session.recovery]
        return report


def package_owned(plugins: Plugins, journal: Journal) -> List[str]:
    """The files committed fixes changed (content or mode) that the distribution's packages own: their
    next upgrade reinstalls them as shipped, and only `cisfix drift` puts the fix back."""
    owned = plugins.info.package_owned()
    touched = {entry["path"] for tx in journal.transactions().values() if tx.state == "committed" for entry in tx.files}
    return sorted(owned & touched)


def _persist(plugins: Plugins, journal: Journal, state: NodeState, force: bool, dry_run: bool) -> PersistReport:
    node = plugins.node
    changes, notes = net_changes(node, journal)
    # cisfix's own files (persist's patch files `persist --install` put there) are no fixes to persist.
    changes = [c for c in changes if node.state_dir not in node.host(c.path).parents]
    plan: Optional[PersistPlan] = plugins.pm.hook.cisfix_plan_persistence(node_info=plugins.info, state=state,
                                                                          changes=changes)
    if plan is None:
        raise CisfixError(f"no layout plugin knows where a {plugins.info.distribution} node keeps its configuration; "
                          "nothing to persist into")
    report = PersistReport(notes=notes + list(plan.notes), package_owned=package_owned(plugins, journal))
    report.notes += [f"{node.display(p)}: owned by its package, whose upgrade reinstalls it as shipped: re-applied by "
                     "drift after the package upgrade (`cisfix drift`)" for p in report.package_owned]
    if plan.files:
        directory = node.state_dir / PATCH_FILES
        report.files_dir, report.files = str(directory), sorted(plan.files)
        report.files_usage = plan.files_usage.format(dir=directory)
        if plan.show_files:
            report.shown = {name: data.decode("utf-8", "replace") for name, data in sorted(plan.files.items())}
        if not dry_run:
            for name, data in plan.files.items():
                _write(directory / name, data)
    for name in plan.retired_files:
        retired = node.state_dir / PATCH_FILES / name
        if retired.is_file() and not retired.is_symlink() and name not in plan.files:
            report.notes.append(f"{retired}: {'would be ' if dry_run else ''}removed, a format an earlier cisfix "
                                "wrote; `--patches` must no longer apply it")
            if not dry_run:
                retired.unlink()
    published = publication(plugins, state, plan, report.notes, dry_run)
    for obj in plan.objects + ((published.obj,) if published else ()):
        outcome = persist_object(obj, state, force, dry_run)
        if outcome.status == "elsewhere":
            target = node.state_dir / "persist" / f"{obj.name.replace('/', '_')}.yaml"
            outcome.file = str(target)
            if not dry_run:
                _write(target, obj.offline)
        report.objects.append(outcome)
    if published:
        report.control_plane = published.confirmations(report.objects[-1])
    elif any(c.before is None for c in changes):
        # Files its fixes created, yet none the persisted configuration names: kubeadm regenerated the
        # manifests (this node's own upgrade). The list it published then still tells who lacks them.
        report.control_plane = published_earlier(plugins, state, plan.cluster)
    return report


def print_report(report: PersistReport, quiet: bool, show_diff: bool) -> None:
    import sys

    for recovered in report.recovered:  # first; a change, so also with -q
        print(recovered["message"])
    for o in report.objects:
        if show_diff and o.diff:
            sys.stdout.write(o.diff)
        version = f" (resourceVersion {o.resource_version})" if o.resource_version else ""
        if not quiet or o.status not in ("updated", "created", "unchanged"):
            print(f"{o.name}: {o.status}{version}{': ' + o.reason if o.reason else ''}")
        for line in o.changes if not quiet else ():
            print(f"    {line}")
        for line in o.conflicts:
            print(f"    CONFLICT {line}")
        if o.file:
            print(f"    the YAML to merge there is in {o.file}")
    if report.files and not quiet:
        print(f"files for the installer in {report.files_dir}: {', '.join(report.files)} (use: {report.files_usage})")
    for name, text in report.shown.items() if not quiet else ():
        print(f"--- {name}")
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
    if report.control_plane:
        print_control_plane(report.control_plane)
    for note in report.notes if not quiet else ():
        print(f"note: {note}")
