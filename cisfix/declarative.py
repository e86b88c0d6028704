"""Declarative checks: `*.yaml` files in a checks.d directory, validated against `check.schema.json`.

Each document becomes a `cisfix.Check` whose audit, remediation and verification the core builds from
the document's target (`flag`, `configPath` or `file`), `expect` and `remediation`. A file may hold
several documents; an invalid document is reported as `FILE:LINE: what is wrong` and left out, the
others load.
"""
from __future__ import annotations

import re
import stat
from typing import Any, Callable, List, Sequence, Tuple, Union

from .plan import AddFlagItem, RemoveFlag, RemoveFlagItem, SetFlag, SetSetting
from .schema import DocumentError, load_documents, validate
from .state import NodeState
from .types import FAIL, PASS, WARN, AuditResult, Check, Configure, Evidence, Plan, SetMode
from .yamlvalues import plain

UNSET = "<unset>"


def load_checks(text: str, source: str) -> Tuple[List[Check], List[str]]:
    """The checks of one file and its problems (`source:LINE: message`)."""
    try:
        docs = load_documents(text)
    except DocumentError as exc:
        return [], [f"{source}:{exc.line}: {exc.message}"]
    checks, errors = [], []
    for doc in docs:
        problems = validate(doc, "check")
        if problems:
            line, message = problems[0]
            errors.append(f"{source}:{line}: {message}")
        else:
            checks.append(to_check(plain(doc), source))
    return checks, errors


def as_text(value: Any) -> str:
    """How Kubernetes spells a value on a command line: booleans lower-case."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def to_check(doc: dict, source: str) -> Check:
    audit = _auditor(doc)
    remediation = doc.get("remediation")
    target = (f"flag --{doc['flag']}" if "flag" in doc else
              f"config {doc['configPath']}" if "configPath" in doc else f"file {doc['file']}")
    return Check(
        id=doc["id"], title=doc["title"], audit=audit, benchmark=doc.get("benchmark", ""),
        level=doc.get("level", 1), node_types=tuple(doc.get("nodeTypes", ("master",))),
        automated=doc.get("automated", True), component=doc.get("component"), target=target,
        remediate=_remediator(doc, remediation) if remediation else None, verify=audit,
        remediation=doc.get("remediationText", ""), overrides=tuple(doc.get("overrides", ())), source=source)


# ---- audits ----

def _auditor(doc: dict) -> Callable[[NodeState], AuditResult]:
    expect = doc["expect"]
    if "flag" in doc:
        def audit_flag(state: NodeState) -> AuditResult:
            present, value, evidence = state.settings(doc["component"]).setting(doc["flag"], None)
            return compare(expect, present, value, (evidence,))
        return audit_flag
    if "configPath" in doc:
        def audit_config(state: NodeState) -> AuditResult:
            settings = state.settings(doc["component"])
            if settings.config is None:
                return AuditResult(WARN, _expected(expect), "no config file",
                                   reason=f"{doc['component']} has no config file on this node")
            present, value, evidence = settings.setting(None, doc["configPath"])
            return compare(expect, present, value, (evidence,))
        return audit_config
    return lambda state: audit_files(state, doc["file"], expect)


def _expected(expect: dict) -> str:
    op = expect["op"]
    if op in ("present", "absent"):
        return op
    if op == "owner":
        return f"owner {expect['owner']}"
    text = f"{op} {as_text(expect['value'])}"
    return text + (f", owner {expect['owner']}" if "owner" in expect else "")


def compare(expect: dict, present: bool, actual: Any, evidence: Tuple[Evidence, ...] = ()) -> AuditResult:
    """Apply an `expect` block to a flag or config value."""
    op, wanted = expect["op"], expect.get("value")
    if not present and "default" in expect:
        present, actual = True, expect["default"]
    shown = as_text(actual) if present and actual is not None else ("set" if present else UNSET)
    if op in ("present", "absent"):
        ok = present == (op == "present")
    elif not present:
        ok = op in ("noteq", "nothas")  # an unset value is not the forbidden one
    elif op == "eq":
        ok = as_text(actual) == as_text(wanted)
    elif op == "noteq":
        ok = as_text(actual) != as_text(wanted)
    elif op in ("gte", "lte"):
        try:
            number, limit = float(as_text(actual)), float(as_text(wanted))
        except ValueError:
            return AuditResult(FAIL, _expected(expect), shown, evidence, "not a number")
        ok = number >= limit if op == "gte" else number <= limit
    elif op in ("has", "nothas"):
        items = [item.strip() for item in as_text(actual).split(",")]
        ok = (as_text(wanted) in items) == (op == "has")
    elif op == "regex":
        ok = re.search(as_text(wanted), as_text(actual)) is not None
    else:
        return AuditResult(FAIL, _expected(expect), shown, evidence, f"op {op} applies to files only")
    return AuditResult(PASS if ok else FAIL, _expected(expect), shown, evidence)


def audit_files(state: NodeState, patterns: Union[str, Sequence[str]], expect: dict) -> AuditResult:
    """Mode and owner of every file matching `patterns` (one or several), each file counted once even
    when two patterns match it. A finding shows what the check is about: the mode, the owner, or both."""
    patterns = (patterns,) if isinstance(patterns, str) else tuple(patterns)
    paths: List[str] = []
    for pattern in patterns:
        matched = state.glob(pattern) if any(c in pattern for c in "*?[") else [pattern]
        paths += [p for p in matched if p not in paths]
    found = [(p, st) for p, st in ((p, state.stat(p)) for p in paths) if st is not None]
    if expect["op"] in ("present", "absent"):
        ok = bool(found) == (expect["op"] == "present")
        return AuditResult(PASS if ok else FAIL, expect["op"], ", ".join(p for p, _ in found) or "none",
                           tuple(Evidence(file=p) for p, _ in found))
    if not found:
        return AuditResult(WARN, _expected(expect), "no such file", reason=f"{', '.join(patterns)} does not exist")
    allowed = int(expect["value"], 8) if expect["op"] == "mode" else 0o7777
    # A user or group unknown on the node owns nothing: (-1, -1) never matches.
    owner = (state.owner_ids(expect["owner"]) or (-1, -1)) if "owner" in expect else None
    bad, actual = [], []
    for path, st in found:
        mode = stat.S_IMODE(st.st_mode)
        ids = (st.st_uid, st.st_gid)
        mode_text = f"{mode:03o}" if expect["op"] == "mode" else ""
        owner_text = state.owner_name(*ids) if owner is not None else ""
        actual.append(" ".join(filter(None, (mode_text, owner_text))))
        if mode & ~allowed or (owner is not None and ids != owner):
            detail = ", ".join(filter(None, (mode_text and f"mode {mode_text}", owner_text and f"owner {owner_text}")))
            bad.append(Evidence(file=path, detail=detail))
    shown = actual[0] if len(actual) == 1 else f"{len(bad)} of {len(found)} files differ"
    return AuditResult(FAIL if bad else PASS, _expected(expect), shown,
                       tuple(bad) or tuple(Evidence(file=p) for p, _ in found))


# ---- remediations ----

def _remediator(doc: dict, remediation: dict) -> Callable[[NodeState], Plan]:
    def plan(state: NodeState) -> Plan:
        if "file" in doc:
            mode = remediation.get("mode")
            paths = state.glob(doc["file"]) if any(c in doc["file"] for c in "*?[") else [doc["file"]]
            return Plan(tuple(SetMode(p, int(mode, 8) if mode else None, remediation.get("owner"))
                              for p in paths if state.stat(p) is not None))
        if "flag" in doc:
            return Plan((Configure(doc["component"], (_flag_op(doc["flag"], remediation),)),))
        value = None if "unset" in remediation else remediation["set"]
        return Plan((Configure(doc["component"], (SetSetting(None, doc["configPath"], value),)),))
    return plan


def _flag_op(flag: str, remediation: dict) -> Any:
    if "unset" in remediation:
        return RemoveFlag(flag)
    if "add" in remediation:
        return AddFlagItem(flag, remediation["add"])
    if "remove" in remediation:
        return RemoveFlagItem(flag, remediation["remove"])
    return SetFlag(flag, as_text(remediation["set"]))
