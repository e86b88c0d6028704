"""The node report document: what an auditor signs, as data (`cisfix report --format json`). The page
of `cisfix report` and `cisfix audit --format html` is rendered from it (`cisfix.htmlreport`), and a
fleet page from the documents the nodes wrote (`cisfix.fleetreport`), without node access.

It says what was wrong (the audit, with its evidence), what cisfix changed for each check (its
transactions from the journal: time, txid, the diff of every file, the gate's verdict and timeline),
what is still open (with the remediation), which risks someone accepted until when (exceptions), and
what drift corrected. Everything is read through the state folder's trusted readers (`cisfix.journal`,
`cisfix.events`, `cisfix.trust`); a diff is only ever made of content whose hash the journal recorded
for that transaction, and a file holding secret material shows as `fix --diff` showed it (its `shown`).
"""
from __future__ import annotations

import copy
import datetime
import socket
import time
from typing import Dict, List, Optional, Sequence

from .atomic import Meta, sha256
from .audit import node_exceptions, node_state, run_audits, select
from .errors import CisfixError, InputError
from .fleetreport import FORMAT, STATUSES
from .journal import Journal, TxInfo
from .judged import judged_against, judged_info
from .node import Node
from .nodefile import read_bytes
from .plugins import Plugins
from .remedy import remedy
from .reports import section, warnings_of
from .state import NodeState
from .statedir import WHY, UntrustedState
from .trust import read_trusted
from .types import FAIL, PASS, WARN, CheckResult, ReportSection

NEEDS_A_PERSON, FIXED_BY_CISFIX = "NEEDS_A_PERSON", "FIXED_BY_CISFIX"
SUMMARY = STATUSES + (FIXED_BY_CISFIX,)
MAX_CORRECTIONS = 200  # drift corrections listed (the newest); the events log grows without bound
MAX_SECTION_CHARS = 65536  # of a plugin section's text: the page stays small


def stamp(when: Optional[float]) -> Optional[str]:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(when)) if when else None


def build_report(plugins: Plugins, level: Optional[int] = None,
                 results: Optional[Sequence[CheckResult]] = None) -> dict:
    """The document for the node of `plugins`: audited now (levels up to `level`, None: all), or from
    the `results` of an audit that just ran (`audit --format html`)."""
    generated = time.time()
    state = node_state(plugins)
    if results is None:
        results = run_audits(plugins, select(plugins, (), "auto", level), state)
    node = plugins.node
    txs = list(Journal(node.state_dir / "journal.jsonl").transactions().values())
    exceptions = _exceptions(plugins)
    by_check: Dict[str, List[dict]] = {}
    other: List[dict] = []
    for tx in txs:
        change = _change(node, tx, txs)
        for check_id in tx.fixed_checks:
            by_check.setdefault(check_id, []).append(change)
        if not tx.fixed_checks:
            other.append(change)
    checks = [_check(plugins, state, r, by_check.get(r.check.id, []), exceptions) for r in results]
    summary = {s: 0 for s in SUMMARY}
    for c in checks:
        summary[c["status"]] += 1
        summary[FIXED_BY_CISFIX] += c["status"] == PASS and any(ch["state"] == "committed" for ch in c["changes"])
    judged = judged_against(judged_info(plugins, level, state))
    node_doc = _node(plugins, judged)
    doc = {
        "format": FORMAT,
        "generated": stamp(generated),
        "cisfix": judged["cisfix"],
        "node": node_doc,
        "benchmark": {"name": plugins.info.benchmark, "level": level, "title": _benchmark_title(plugins)},
        "warnings": list(warnings_of(plugins.info)),
        "halted": _halted(node),
        "paused": _paused(node),
        "summary": summary,
        "checks": checks,
        "exceptions": list(exceptions.values()),
        "drift": _drift(node),
        "other_changes": other,  # transactions no check asked for: `edit`, and the like
    }
    doc["sections"] = sections(plugins, doc)
    return doc


def _node(plugins: Plugins, judged: dict) -> dict:
    """The node as every report names it (`cisfix.judged`), with its root; the document needs a name,
    so an unnamed node is this machine (the root is /) or the root's folder."""
    node = plugins.node
    name = judged["node"]["name"] or (socket.gethostname() if str(node.root) == "/" else node.root.name)
    return {**judged["node"], "name": name, "root": str(node.root)}


def _benchmark_title(plugins: Plugins) -> Optional[str]:
    chosen = plugins.benchmarks.get(plugins.info.benchmark) if plugins.info.benchmark else None
    return getattr(chosen, "title", None)


def _check(plugins: Plugins, state: NodeState, result: CheckResult, changes: List[dict],
           exceptions: Dict[str, dict]) -> dict:
    check, verdict = result.check, result.audit
    status, why_not = verdict.status, ""
    if status == FAIL:
        why_not = _needs_a_person(plugins, state, result)
        status = NEEDS_A_PERSON if why_not else FAIL
    elif status == WARN:  # the audit could not decide: a person looks
        status, why_not = NEEDS_A_PERSON, verdict.reason
    elif status not in STATUSES:  # a plugin's audit said something no report knows
        status, why_not = "ERROR", f"the audit returned status {verdict.status!r}"
    still_open = status not in (PASS, "NOT_APPLICABLE")
    return {
        "id": check.id, "title": check.title, "section": section(check.id), "level": check.level,
        "status": status, "automated": check.automated, "component": check.component,
        "evidence": [str(e) for e in verdict.evidence],
        "expected": verdict.expected, "actual": verdict.actual,
        "reason": verdict.reason or (f"expected {verdict.expected}, found {verdict.actual}"
                                     if verdict.expected else ""),
        "remediation": _remediation(check.id, check.remediation, status, why_not) if still_open else None,
        "needs_a_person": why_not or None,  # why cisfix does not fix it
        "exception": exceptions.get(check.id),
        "changes": changes,
    }


def _remediation(check_id: str, text: str, status: str, why_not: str) -> Optional[str]:
    """What to do about an open check: the benchmark's text, else how cisfix fixes it, else why it does not."""
    if text:
        return text
    if status == FAIL:
        return f"`cisfix fix --check {check_id}` fixes it (with --dry-run: shows the change first)"
    return why_not or None


def _needs_a_person(plugins: Plugins, state: NodeState, result: CheckResult) -> str:
    """Why a fix would leave this failing check to a person ("": it would fix it)."""
    if not result.check.automated:
        return "no automatic remediation"
    try:
        return remedy(plugins, state, result.check)[1]
    except CisfixError as exc:
        return str(exc)
    except Exception as exc:  # a broken remediation: the report still shows the check
        return f"remediation raised {type(exc).__name__}: {exc}"


def _exceptions(plugins: Plugins) -> Dict[str, dict]:
    today = datetime.date.today()
    return {risk.id: {"id": risk.id, "reason": risk.reason, "who": risk.by or None,
                      "expires": risk.expires.isoformat(), "expired": today >= risk.expires}
            for risk in node_exceptions(plugins).values()}


def _halted(node: Node) -> Optional[str]:
    from .halt import halt_reason

    reason = halt_reason(node)
    return None if reason is None else reason or "(no reason recorded)"


def _paused(node: Node) -> Optional[dict]:
    from .pause import read_pause

    paused = read_pause(node)
    return None if paused is None else {"by": paused.who, "since": stamp(paused.since),
                                        "until": stamp(paused.until), "reason": paused.reason}


# ---- what cisfix changed: transactions from the journal ----

def _change(node: Node, tx: TxInfo, txs: Sequence[TxInfo]) -> dict:
    return {"txid": tx.txid, "time": stamp(tx.time), "label": tx.label, "state": tx.state,
            "files": [_file(node, tx, entry, txs) for entry in tx.files], "gate": _gate(tx)}


def _file(node: Node, tx: TxInfo, entry: dict, txs: Sequence[TxInfo]) -> dict:
    before, after = entry["before"], entry["after"]
    old = Meta.from_dict(before) if before else None
    new = Meta.from_dict(after)
    doc = {"path": entry["path"], "diff": None, "note": None,
           "mode": f"{old.mode:04o} -> {new.mode:04o}" if old and old.mode != new.mode else None,
           "owner": f"{old.uid}:{old.gid} -> {new.uid}:{new.gid}" if old and (old.uid, old.gid) != (new.uid, new.gid)
           else None}
    try:
        if before and before["sha256"] == after["sha256"]:  # mode and owner only: the content is never read
            content_before = content_after = b""
        else:
            content_before = (_shown(txs, entry["path"], before["sha256"]) or _backup(node, entry)) if before else None
            content_after = entry["shown"].encode() if "shown" in entry else _content(node, tx, entry, txs)
    except _Unavailable as why:
        doc["note"] = f"diff not shown: {why}"
        return doc
    from .engine import PlannedChange, unified_diff  # the fix engine's diff, only where there is a change

    planned = PlannedChange(entry["path"], content_before, content_after, old, new, ())
    doc["diff"] = unified_diff(node, planned)
    return doc


def _shown(txs: Sequence[TxInfo], path: str, sha: str) -> Optional[bytes]:
    """The content `sha` of `path` as diffs show it, when a transaction wrote it holding secret material
    (a generated key replaced later shows as it did when it was written, on both sides of a diff)."""
    return next((e["shown"].encode() for tx in txs for e in tx.files
                 if e["path"] == path and "shown" in e and e["after"]["sha256"] == sha), None)


class _Unavailable(Exception):
    """The content a diff needs is not there as the journal recorded it."""


def _backup(node: Node, entry: dict) -> bytes:
    """The file as it was before the transaction: its backup, read as the state folder's own file, and
    only if it is what the journal says it backed up."""
    path = node.state_dir / entry["backup"]
    try:
        data = read_trusted(path, UntrustedState, WHY)
    except FileNotFoundError:
        raise _Unavailable("its backup is gone (pruned)")
    except InputError as exc:
        raise _Unavailable(f"its backup cannot be read: {exc.reason}")
    if sha256(data) != entry["before"]["sha256"]:
        raise _Unavailable(f"its backup {path} does not hold what the journal recorded")
    return data


def _content(node: Node, tx: TxInfo, entry: dict, txs: Sequence[TxInfo]) -> bytes:
    """The file as the transaction left it: the file now, or a later transaction's backup of it —
    whichever holds exactly what the journal says this one wrote."""
    wanted = entry["after"]["sha256"]
    try:
        now = read_bytes(node.host(entry["path"]), node.display(entry["path"]))
    except InputError:
        now = None
    if now is not None and sha256(now) == wanted:
        return now
    for later in txs:
        if later.time < tx.time or later.txid == tx.txid:
            continue
        for other in later.files:
            if other["path"] == entry["path"] and other["before"] and other["before"]["sha256"] == wanted:
                try:
                    return _backup(node, other)
                except _Unavailable:
                    continue
    raise _Unavailable("the file has changed since and no backup holds what this transaction wrote")


def _gate(tx: TxInfo) -> dict:
    """The gate's records of the transaction: the components it waited for, its verdict on the applied
    change, when it saw the restarted process and since when it was healthy, the stability window, and
    the live verification."""
    gates = [r for r in tx.records if r["type"] == "gate"]
    health = [r for r in tx.records if r["type"] == "health"]
    applied = [r for r in health if r.get("phase") == "apply"]
    verified = [c for r in tx.records if r["type"] == "verified" for c in r.get("checks") or ()
                if isinstance(c, dict)]
    components = sorted({str(r.get("component")) for r in gates + health if r.get("component")})
    if applied:
        verdict = "healthy" if all(r.get("healthy") is True for r in applied) else "unhealthy"
    else:
        verdict = "none"
    seen = [r["seen"] for r in applied if isinstance(r.get("seen"), (int, float))]
    since = [r["healthySince"] for r in applied if isinstance(r.get("healthySince"), (int, float))]
    windows = [r["stabilityWindow"] for r in applied if isinstance(r.get("stabilityWindow"), (int, float))]
    messages = [f"{r.get('phase')}: {r.get('component')}: {r.get('message')}" for r in health if r.get("message")]
    if gates and not applied:
        messages.append("the gate opened but recorded no verdict (the run was interrupted)")
    return {"components": components, "verdict": verdict, "restart_seen": stamp(min(seen)) if seen else None,
            "healthy_since": stamp(max(since)) if since else None,
            "stability_window": max(windows) if windows else None,
            "verified": all(c.get("status") == PASS for c in verified) if verified else None,
            "verified_checks": [{"id": str(c.get("id")), "status": str(c.get("status"))} for c in verified],
            "message": "; ".join(messages)}


# ---- drift ----

def _drift(node: Node) -> dict:
    from .drift import DriftState
    from .events import EventLog

    events = EventLog(node.state_dir / "events.jsonl").read()
    state = DriftState(node)

    def correction(e: dict) -> dict:
        return {"time": stamp(e["time"]), "check": e["id"], "class": e["class"], "file": e.get("file"),
                "found": e.get("found"), "outcome": e["outcome"], "txid": e.get("txid")}

    flapping = {check_id: [correction(e) for e in events
                           if e["id"] == check_id and e["time"] >= state.resets.get(check_id, 0.0)][-20:]
                for check_id in sorted(state.flapping)}
    return {"corrections": [correction(e) for e in events[-MAX_CORRECTIONS:]], "corrections_total": len(events),
            "flapping": flapping}


# ---- sections plugins add ----

def sections(plugins: Plugins, doc: dict) -> List[dict]:
    """The sections of every `cisfix_report_sections` implementation, in registration order (the built-in
    drift summary first), as plain text; a plugin returning anything else is named."""
    arguments = {"report": doc, "node_info": plugins.info}
    out = []
    for impl in plugins.pm.hook.cisfix_report_sections.get_hookimpls():  # in registration order
        answer = impl.function(*[copy.deepcopy(arguments[name]) for name in impl.argnames])
        for item in answer or ():
            if not isinstance(item, ReportSection) or not isinstance(item.title, str) or not isinstance(item.text, str):
                raise InputError(f"plugin {impl.plugin_name}",
                                 f"cisfix_report_sections returned {type(item).__name__}, "
                                 "not a cisfix.ReportSection of text")
            text = item.text if len(item.text) <= MAX_SECTION_CHARS else item.text[:MAX_SECTION_CHARS] + "\n[cut]"
            out.append({"title": item.title[:200], "text": text, "html": None, "plugin": impl.plugin_name})
    return out
