"""`cisfix persist` (and `fix --persist`): keep the committed fixes where the node's installer regenerates
the fixed files from, so that its next upgrade does not silently revert them.

What the fixes changed is read from the journal: for every file, its content before the first committed
transaction of an unbroken run of them (the backup) against its content now. A file changed since by
anyone else (an upgrade, a person) is left out and said so. The layout (`cisfix_plan_persistence`)
says where each change belongs; this module does the I/O: it reads each API object through the API
server with the node's credentials (`cisfix.health.fetch`: client certificate, verified CA), shows the
change, and writes it with the resourceVersion it read — a conflict (HTTP 409) is read and updated
again, then reported. Files for the installer go to `<state>/persist/files`; where the API server
cannot be reached, or the node has no credentials, the YAML to merge elsewhere goes to
`<state>/persist/<object>.yaml` and the exit code says so.
"""
from __future__ import annotations

import difflib
import hashlib
import http.client
import json
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from . import status
from .errors import CisfixError
from .health import fetch
from .journal import Journal
from .nodefile import read_bytes
from .node import Node
from .outputfile import write_output_file
from .plugins import Plugins
from .state import NodeState
from .trust import read_trusted
from .types import ApiObject, NetChange, PersistPlan

ATTEMPTS = 3  # reads and writes of one object before its conflicts are reported
TIMEOUT = 10.0
MAX_ANSWER = 4 << 20  # the API server refuses objects over 3 MiB
FILES_DIR = "persist/files"


@dataclass
class ObjectOutcome:
    name: str
    status: str  # updated, unchanged, would-update, elsewhere, conflict, failed
    changes: List[str] = field(default_factory=list)
    conflicts: List[str] = field(default_factory=list)
    reason: str = ""
    diff: str = ""
    resource_version: Optional[str] = None
    file: Optional[str] = None  # the YAML written for a person to apply elsewhere

    def as_dict(self) -> dict:
        return dict(vars(self))


@dataclass
class PersistReport:
    objects: List[ObjectOutcome] = field(default_factory=list)
    files_dir: Optional[str] = None
    files: List[str] = field(default_factory=list)
    files_usage: str = ""
    notes: List[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        """7 when something must be applied elsewhere, 1 when a conflict or failure is left, else 0."""
        if any(o.status == "elsewhere" for o in self.objects):
            return status.EXIT_APPLY_ELSEWHERE
        if any(o.conflicts or o.status in ("conflict", "failed") for o in self.objects):
            return status.EXIT_STILL_FAILING
        return status.EXIT_OK

    def as_dict(self) -> dict:
        return {"objects": [o.as_dict() for o in self.objects], "files_dir": self.files_dir, "files": self.files,
                "files_usage": self.files_usage, "notes": self.notes, "exit_code": self.exit_code}


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


# ---- API objects ----

def _diff(name: str, old: Dict[str, str], new: Dict[str, str]) -> str:
    out = []
    for key in sorted(set(old) | set(new)):
        out += difflib.unified_diff(old.get(key, "").splitlines(True), new.get(key, "").splitlines(True),
                                    f"a/{name} {key}", f"b/{name} {key}")
    return "".join(out)


def _call(obj: ApiObject, state: NodeState, method: str, body: Optional[dict] = None) -> Tuple[int, dict]:
    code, data = fetch(obj.url, state, dict(obj.credentials or {}), TIMEOUT, limit=MAX_ANSWER + 1, method=method,
                       body=json.dumps(body).encode() if body is not None else None)
    if len(data) > MAX_ANSWER:
        raise ValueError(f"its answer is larger than {MAX_ANSWER >> 20} MiB, more than any object it may hold")
    try:
        answer = json.loads(data.decode("utf-8"))
    except ValueError:
        answer = {}
    return code, answer if isinstance(answer, dict) else {}


def persist_object(obj: ApiObject, state: NodeState, force: bool, dry_run: bool) -> ObjectOutcome:
    if obj.credentials is None:
        return ObjectOutcome(obj.name, "elsewhere", reason="this node has no admin credentials for the API server")
    conflicts_seen = 0
    for _ in range(ATTEMPTS):
        try:
            code, current = _call(obj, state, "GET")
        except (OSError, ssl.SSLError, http.client.HTTPException, ValueError) as exc:
            return ObjectOutcome(obj.name, "elsewhere", reason=f"the API server cannot be reached: {exc}")
        if code != 200:
            return ObjectOutcome(obj.name, "elsewhere", reason=f"the API server answered HTTP {code}: "
                                                                f"{current.get('message', '')}".rstrip(": "))
        data = {str(k): str(v) for k, v in (current.get("data") or {}).items()}
        update = obj.update(data, force)
        version = (current.get("metadata") or {}).get("resourceVersion")
        outcome = ObjectOutcome(obj.name, "unchanged", list(update.changes), list(update.conflicts),
                                resource_version=version, diff=_diff(obj.name, data, dict(update.data)))
        if dict(update.data) == data:
            return outcome
        if dry_run:
            outcome.status = "would-update"
            return outcome
        try:
            code, written = _call(obj, state, "PUT", {**current, "data": dict(update.data)})
        except (OSError, ssl.SSLError, http.client.HTTPException, ValueError) as exc:
            return ObjectOutcome(obj.name, "failed", reason=f"writing it failed: {exc}")
        if code == 200:
            outcome.status, outcome.resource_version = "updated", (written.get("metadata") or {}).get("resourceVersion")
            return outcome
        if code != 409:
            return ObjectOutcome(obj.name, "failed", reason=f"the API server refused the update: HTTP {code} "
                                                             f"{written.get('message', '')}".rstrip())
        conflicts_seen += 1
    return ObjectOutcome(obj.name, "conflict", reason=f"someone else changed it while cisfix wrote it "
                                                      f"({conflicts_seen} times, HTTP 409); run persist again")


# ---- the command ----

def _write(target: Path, data: bytes) -> None:
    """Write a file of the state folder (0600, as every output file is) unless it holds `data` already."""
    if target.exists() and read_trusted(target) == data:
        return
    write_output_file(target, data, "persist's file", mode=0o600)


def run_persist(plugins: Plugins, force: bool = False, dry_run: bool = False, wait: float = 0.0) -> PersistReport:
    from .audit import node_state
    from .engine import Session

    node = plugins.node
    if dry_run:
        return _persist(plugins, Journal(node.state_dir / "journal.jsonl"), node_state(plugins), force, True)
    with Session(node, wait) as session:
        return _persist(plugins, session.journal, node_state(plugins), force, False)


def _persist(plugins: Plugins, journal: Journal, state: NodeState, force: bool, dry_run: bool) -> PersistReport:
    node = plugins.node
    changes, notes = net_changes(node, journal)
    plan: Optional[PersistPlan] = plugins.pm.hook.cisfix_plan_persistence(node_info=plugins.info, state=state,
                                                                          changes=changes)
    if plan is None:
        raise CisfixError(f"no layout plugin knows where a {plugins.info.distribution} node keeps its configuration; "
                          "nothing to persist into")
    report = PersistReport(notes=notes + list(plan.notes))
    if plan.files:
        directory = node.state_dir / FILES_DIR
        report.files_dir, report.files = str(directory), sorted(plan.files)
        report.files_usage = plan.files_usage.format(dir=directory)
        if not dry_run:
            for name, data in plan.files.items():
                _write(directory / name, data)
    for obj in plan.objects:
        outcome = persist_object(obj, state, force, dry_run)
        if outcome.status == "elsewhere":
            target = node.state_dir / "persist" / f"{obj.name.replace('/', '_')}.yaml"
            outcome.file = str(target)
            if not dry_run:
                _write(target, obj.offline)
        report.objects.append(outcome)
    return report


def print_report(report: PersistReport, quiet: bool, show_diff: bool) -> None:
    import sys

    for o in report.objects:
        if show_diff and o.diff:
            sys.stdout.write(o.diff)
        version = f" (resourceVersion {o.resource_version})" if o.resource_version else ""
        if not quiet or o.status not in ("updated", "unchanged"):
            print(f"{o.name}: {o.status}{version}{': ' + o.reason if o.reason else ''}")
        for line in o.changes if not quiet else ():
            print(f"    {line}")
        for line in o.conflicts:
            print(f"    CONFLICT {line}")
        if o.file:
            print(f"    the YAML to merge there is in {o.file}")
    if report.files and not quiet:
        print(f"files for the installer in {report.files_dir}: {', '.join(report.files)} (use: {report.files_usage})")
    for note in report.notes if not quiet else ():
        print(f"note: {note}")
