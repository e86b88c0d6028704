"""`cisfix persist` (and `fix --persist`): keep the committed fixes where the node's installer regenerates
the fixed files from, so that its next upgrade does not silently revert them.

What the fixes changed is read from the journal: for every file, its content before the first committed
transaction of an unbroken run of them (the backup) against its content now. A file changed since by
anyone else (an upgrade, a person) is left out and said so. The layout (`cisfix_plan_persistence`)
says where each change belongs; this module does the I/O: it reads each API object through the API
server with the node's credentials (`cisfix.health.fetch`: client certificate, verified CA and server
name, one deadline per request), believes the answer only when it is exactly the ConfigMap asked for,
shows the change, and writes it with the resourceVersion it read — a conflict (HTTP 409) is read and
updated again, then reported. Files for the installer go to `<state>/persist/files`; where the API
server cannot be reached, its answer is refused, or the node has no credentials, the YAML to merge
elsewhere goes to `<state>/persist/<object>.yaml` and the exit code says so (7). What a server says is
shown escaped and cut (`server_text`).
"""
from __future__ import annotations

import difflib
import hashlib
import http.client
import json
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from . import status
from .bounds import MAX_NESTING, nesting_depth
from .errors import CisfixError, InputError
from .health import CredentialRefused, fetch, server_text
from .journal import Journal
from .nodefile import read_bytes
from .node import Node
from .outputfile import write_output_file
from .plugins import Plugins
from .state import NodeState
from .trust import read_trusted
from .types import ApiObject, NetChange, PersistPlan

ATTEMPTS = 3  # reads and writes of one object before its conflicts are reported
TIMEOUT = 10.0  # for each request as a whole: connecting, sending and reading the answer
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
    recovered: List[dict] = field(default_factory=list)  # what recovery undid first (`Recovered.as_dict`)

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
                "files_usage": self.files_usage, "notes": self.notes, "exit_code": self.exit_code,
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


# ---- API objects ----

def _diff(name: str, old: Dict[str, str], new: Dict[str, str]) -> str:
    """A unified diff of the data, each line escaped: what is there came from the server."""
    out = []
    for key in sorted(set(old) | set(new)):
        out += difflib.unified_diff(old.get(key, "").splitlines(), new.get(key, "").splitlines(),
                                    f"a/{name} {key}", f"b/{name} {key}", lineterm="")
    return "".join(server_text(line, None) + "\n" for line in out)


class RefusedAnswer(ValueError):
    """The API server answered something other than the ConfigMap asked for; nothing of it is used."""


_JSON_TYPES = {dict: "an object", list: "a list", str: "a string", int: "a number", float: "a number",
               bool: "a boolean", type(None): "null"}


def _json(data: bytes) -> Any:
    try:
        return json.loads(data.decode("utf-8"))
    except RecursionError:  # json nests on the interpreter's stack
        raise RefusedAnswer("JSON nested deeper than any object the API server holds") from None
    except ValueError:
        raise RefusedAnswer(f"not JSON: {server_text(data, 60)!s}") from None


def configmap(name: str, data: bytes) -> dict:
    """The answer decoded as the ConfigMap `name` ("namespace/name") exactly, or RefusedAnswer saying
    what it is instead: a write is only ever made of a ConfigMap that was read whole."""
    answer = _json(data)
    if not isinstance(answer, dict):
        raise RefusedAnswer(f"{_JSON_TYPES.get(type(answer), 'a value')}, not a ConfigMap")
    if (answer.get("apiVersion"), answer.get("kind")) != ("v1", "ConfigMap"):
        raise RefusedAnswer(f"apiVersion {server_text(repr(answer.get('apiVersion')), 40)} kind "
                            f"{server_text(repr(answer.get('kind')), 40)}, not a v1 ConfigMap")
    if nesting_depth(answer) > MAX_NESTING:  # a ConfigMap nests a dozen levels (its managedFields)
        raise RefusedAnswer(f"nested more than {MAX_NESTING} levels deep, deeper than a ConfigMap is")
    metadata = answer.get("metadata")
    version = metadata.get("resourceVersion") if isinstance(metadata, dict) else None
    if not isinstance(version, str) or not version:
        raise RefusedAnswer("a ConfigMap without metadata.resourceVersion: it could not be written back safely")
    namespace, _, wanted = name.partition("/")
    if (metadata.get("namespace"), metadata.get("name")) != (namespace, wanted):
        raise RefusedAnswer(f"the ConfigMap {server_text(str(metadata.get('namespace')), 60)}/"
                            f"{server_text(str(metadata.get('name')), 60)}, not {name}")
    values = answer.get("data")
    if values is None:  # a ConfigMap without data omits the field
        answer["data"] = {}
    elif not isinstance(values, dict) or not all(isinstance(v, str) for v in values.values()):
        raise RefusedAnswer("its data is not a map of strings to strings")
    return answer


def _message(data: bytes) -> str:
    """What a refusing server said (its Status message, else its text), escaped and cut."""
    try:
        status = _json(data)
    except RefusedAnswer:
        status = None
    message = status.get("message") if isinstance(status, dict) else None
    return server_text(message if isinstance(message, str) else data.strip())


def _call(obj: ApiObject, state: NodeState, method: str, body: Optional[dict] = None) -> Tuple[int, bytes]:
    code, data = fetch(obj.url, state, dict(obj.credentials or {}), TIMEOUT, limit=MAX_ANSWER + 1, method=method,
                       body=json.dumps(body).encode() if body is not None else None)
    if len(data) > MAX_ANSWER:
        raise RefusedAnswer(f"larger than {MAX_ANSWER >> 20} MiB, more than any object it may hold")
    return code, data


def _refused(obj: ApiObject, exc: RefusedAnswer, stage: str = "") -> ObjectOutcome:
    return ObjectOutcome(obj.name, "elsewhere", reason=f"the API server's answer{stage} is refused: {exc}")


def persist_object(obj: ApiObject, state: NodeState, force: bool, dry_run: bool) -> ObjectOutcome:
    if obj.credentials is None:
        return ObjectOutcome(obj.name, "elsewhere",
                             reason=obj.refused or "this node has no admin credentials for the API server")
    conflicts_seen = 0
    for _ in range(ATTEMPTS):
        try:
            code, answer = _call(obj, state, "GET")
            if code != 200:
                return ObjectOutcome(obj.name, "elsewhere", reason=f"the API server answered HTTP {code}: "
                                                                    f"{_message(answer)}".rstrip(": "))
            current = configmap(obj.name, answer)
        except RefusedAnswer as exc:
            return _refused(obj, exc)
        except CredentialRefused as exc:
            return ObjectOutcome(obj.name, "elsewhere", reason=f"the node's admin credentials are refused: {exc}")
        except (OSError, ssl.SSLError, http.client.HTTPException, ValueError) as exc:
            return ObjectOutcome(obj.name, "elsewhere",
                                 reason=f"the API server cannot be reached: {server_text(str(exc))}")
        data = dict(current["data"])
        try:
            update = obj.update(data, force)
        except InputError as exc:  # what the ConfigMap holds is not what the layout can read
            return _refused(obj, RefusedAnswer(server_text(str(exc))))
        version = current["metadata"]["resourceVersion"]
        outcome = ObjectOutcome(obj.name, "unchanged", list(update.changes), list(update.conflicts),
                                resource_version=version, diff=_diff(obj.name, data, dict(update.data)))
        if dict(update.data) == data:
            return outcome
        if dry_run:
            outcome.status = "would-update"
            return outcome
        try:
            code, answer = _call(obj, state, "PUT", {**current, "data": dict(update.data)})
            if code == 200:
                written = configmap(obj.name, answer)
                outcome.status, outcome.resource_version = "updated", written["metadata"]["resourceVersion"]
                return outcome
        except RefusedAnswer as exc:
            return _refused(obj, exc, " to the update")
        except (OSError, ssl.SSLError, http.client.HTTPException, ValueError) as exc:
            return ObjectOutcome(obj.name, "failed", reason=f"writing it failed: {server_text(str(exc))}")
        if code != 409:
            return ObjectOutcome(obj.name, "failed", reason=f"the API server refused the update: HTTP {code} "
                                                             f"{_message(answer)}".rstrip())
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

    for recovered in report.recovered:  # first; a change, so also with -q
        print(recovered["message"])
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
