"""Filters of the cisfix role: how a node's `cisfix fix` ended, and the fleet report merged from every
node's reports. Runs on the controller; stdlib only.

A node's reports, as the role fetches them into <report dir>/nodes/: `<host>.audit.json` (`cisfix audit
--format json`: judged_against, summary, results), `<host>.report.json` (`cisfix report --format json`,
the node report document fleet.html is made from) and, in fix and drift mode, `<host>.fix.json` (`cisfix
fix --format json`: summary, restarts, results with each check's `fix` outcome, diff).

Persist mode reads `cisfix persist --format json` (objects, control_plane: the published files, the
control-plane nodes, those still waiting), `persist --install DIR --format json` (installed, present,
outcome) and `persist --check --format json` (ready, problems, reason).
"""
from __future__ import annotations

import json
import os
import shlex
from typing import Any, Dict, List, Mapping, Optional, Sequence

CHANGED = ("FIXED", "WOULD_FIX")
# The exit codes of an audit or a fix that ran to its end: 0 compliant (or nothing to do), 1 checks still
# failing. Every other code fails the node and stops the line: 2 to 6 are cisfix's own failures, 7 (from
# `fix --persist`) leaves the fixes where the next `kubeadm upgrade` drops them, 70 is a crash (the node's
# state is unknown), and a code nobody documented is no better.
OK_EXIT_CODES = (0, 1)
# What each exit code of `cisfix fix` means when it stops the line (README "Statuses and exit codes").
EXIT_MEANINGS = {
    2: "unhealthy before any change, or bad input; nothing was changed",
    3: "a change failed and was rolled back; the component is healthy again",
    4: "a rollback failed, recovery found a conflict, or the node is HALTed: manual intervention needed",
    5: "another cisfix run holds the lock",
    6: "a check is flapping and is no longer corrected",
    7: "the fixes could not be persisted: the API server could not be reached, or the node has no admin "
       "credentials",
    70: "cisfix failed with an internal error: the node's state is unknown",
}
# Options of `cisfix_args` (shared by audit and fix) that take a value, and those `cisfix report` takes too.
VALUED = ("--check", "--node-type", "--level", "--checks-dir", "--disable", "--benchmark", "-p", "--state-dir")
REPORT_OPTIONS = ("--level", "--checks-dir", "--disable", "--benchmark", "-p", "--state-dir")
# Cells of the fleet table that need a person or a fix run, ranked worst first.
NOT_GOOD = ("REMEDIATION_FAILED_ROLLBACK_FAILED", "REMEDIATION_FAILED_ROLLED_BACK", "REMEDIATION_FAILED",
            "ERROR", "FAIL", "WOULD_FIX", "WARN")


def _fix_report(result: Mapping[str, Any]) -> Optional[dict]:
    try:
        report = json.loads(result.get("stdout") or "")
    except ValueError:
        return None
    return report if isinstance(report, dict) else None


def cisfix_ran(result: Mapping[str, Any]) -> bool:
    """The audit or fix ran to its end (OK_EXIT_CODES): anything else fails the node."""
    return result.get("rc") in OK_EXIT_CODES


def cisfix_changed(result: Mapping[str, Any]) -> bool:
    """A node is changed when cisfix fixed a check (or, in a dry run, would fix one)."""
    report = _fix_report(result) or {}
    return any(r.get("fix") in CHANGED for r in report.get("results", []))


def cisfix_failure(result: Mapping[str, Any], host: str) -> str:
    """One line naming the node, the exit code's meaning and each failed check with its reason."""
    rc = result.get("rc")
    report = _fix_report(result) or {}
    failed = [f"{r['id']} {r['fix']}: {r.get('reason') or 'no reason given'}"
              for r in report.get("results", []) if str(r.get("fix", "")).startswith("REMEDIATION_FAILED")]
    stderr = [line for line in (result.get("stderr") or "").splitlines() if line.strip()]
    why = "; ".join(failed) or (stderr[-1] if stderr else "no output")
    return f"cisfix stopped the line on {host}: exit {rc} ({EXIT_MEANINGS.get(rc, 'unexpected exit code')}): {why}"


# What became of a ConfigMap `cisfix persist` writes that is no failure (the last two in a dry run).
PUBLISHED = ("created", "updated", "unchanged", "would-create", "would-update")


def _persisted(result: Mapping[str, Any]) -> dict:
    return _fix_report(result) or {}


def cisfix_persist_waiting(result: Mapping[str, Any]) -> bool:
    """`cisfix persist` published everything, and its exit 7 says only that other control-plane nodes have
    not yet confirmed they hold the files: what persist mode goes on to do. An exit 7 for anything else
    (the API server not reached, the nodes not listed, a ConfigMap to merge elsewhere) is a failure."""
    report = _persisted(result)
    control_plane = report.get("control_plane") or {}
    return (result.get("rc") == 7 and bool(control_plane.get("waiting")) and not control_plane.get("reason")
            and not any(o.get("status") == "elsewhere" for o in report.get("objects", [])))


def cisfix_persist_changed(result: Mapping[str, Any]) -> bool:
    """`cisfix persist` wrote a ConfigMap (created or updated) or, with --dry-run (check mode), would write
    one; unchanged ones leave the node `ok`."""
    return any(o.get("status") in ("created", "updated", "would-create", "would-update")
               for o in _persisted(result).get("objects", []))


def cisfix_install_changed(result: Mapping[str, Any]) -> bool:
    """`cisfix persist --install` created files (or narrowed a mode): its transaction committed."""
    report = _persisted(result)
    return bool(report.get("installed")) or (report.get("outcome") or {}).get("status") == "FIXED"


def cisfix_persist_failure(result: Mapping[str, Any], host: str, command: str) -> str:
    """One line naming the node, the persist command, its exit code and why: the nodes still waiting, the
    files missing, the ConfigMaps not written, else the last line cisfix wrote to stderr."""
    report = _persisted(result)
    control_plane = report.get("control_plane") or {}
    why = [f"{o.get('name')}: {o.get('status')}" + (f": {o['reason']}" if o.get("reason") else "")
           for o in report.get("objects", []) if o.get("status") not in PUBLISHED]
    why += [o for o in (control_plane.get("reason"), report.get("reason")) if o]
    if control_plane.get("waiting") and not control_plane.get("reason"):
        why.append(f"not confirmed to hold the files: {', '.join(control_plane['waiting'])}")
    why += report.get("problems") or []
    stderr = [line for line in (result.get("stderr") or "").splitlines() if line.strip()]
    return (f"cisfix {command} failed on {host}: exit {result.get('rc')}: "
            + ("; ".join(why) or (stderr[-1] if stderr else "no output")))


def cisfix_unaudited(hostvars: Mapping[str, Any], hosts: Sequence[str]) -> List[str]:
    """Hosts whose audit did not run to its end (OK_EXIT_CODES) in this play."""
    def audited(host: str) -> bool:
        audit = hostvars[host].get("cisfix_audit") if host in hostvars else None
        return isinstance(audit, Mapping) and cisfix_ran(audit)
    return [h for h in dict.fromkeys(hosts) if not audited(h)]


def cisfix_report_options(args: str) -> str:
    """The options of `cisfix_args` that `cisfix report` takes too: the node report covers the checks
    the audit loaded (--checks-dir, --disable, --benchmark, -p) at its level, every one of them (there is
    no --check or --node-type to narrow a report)."""
    words, kept = shlex.split(args or ""), []
    while words:
        word = words.pop(0)
        name, given = word.split("=", 1)[0], "=" in word
        option = [word] + ([words.pop(0)] if name in VALUED and not given and words else [])
        if name in REPORT_OPTIONS:
            kept += option
    return " ".join(shlex.quote(w) for w in kept)


def cisfix_node_reports(report_dir: str, hosts: Sequence[str]) -> List[str]:
    """The node report documents the nodes wrote (<report dir>/nodes/<host>.report.json), in inventory
    order: what fleet.html is made from. A node without one (not reached, or its report failed: the
    play's output says why) is left out."""
    paths = (os.path.join(report_dir, "nodes", f"{host}.report.json") for host in dict.fromkeys(hosts))
    return [path for path in paths if os.path.isfile(path)]


def _load(path: str) -> Optional[dict]:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        return None
    except ValueError as exc:
        return {"error": f"{path}: not JSON: {exc}"}
    return data if isinstance(data, dict) else {"error": f"{path}: not a JSON object"}


def cisfix_fleet_report(report_dir: str, hosts: Sequence[str]) -> Dict[str, Any]:
    """{"nodes": {host: {"audit": summary, "fix": summary, "restarts", "error", "judged_against"}}, "checks":
    {id: {"title", "nodes": {host: {"status", "fix"?}}}}}: per node and check, the status after this run (a
    fix report's verdict where the node was fixed, else the audit's); per node, what its audit judged
    against (node name, Kubernetes version, benchmark and level, cisfix build)."""
    nodes: Dict[str, dict] = {}
    checks: Dict[str, dict] = {}
    for host in dict.fromkeys(hosts):
        audit = _load(os.path.join(report_dir, "nodes", f"{host}.audit.json"))
        fix = _load(os.path.join(report_dir, "nodes", f"{host}.fix.json"))
        errors = [r["error"] for r in (audit, fix) if r and "error" in r]
        if audit is None:
            errors.insert(0, "no audit report (the node failed or was not reached)")
        nodes[host] = {"audit": (audit or {}).get("summary"), "fix": (fix or {}).get("summary"),
                       "restarts": (fix or {}).get("restarts"), "error": "; ".join(errors) or None,
                       "judged_against": (audit or {}).get("judged_against")}
        for report in (audit, fix):
            for r in (report or {}).get("results", []):
                cell = {"status": r.get("status")}
                if r.get("fix"):
                    cell["fix"] = r["fix"]
                checks.setdefault(r["id"], {"title": r.get("title", ""), "nodes": {}})["nodes"][host] = cell
    return {"nodes": nodes, "checks": checks}


def _cell(cell: Optional[Mapping[str, str]]) -> str:
    if not cell:
        return "-"
    fix = cell.get("fix")
    return fix if fix and fix not in ("ALREADY_COMPLIANT", "SKIPPED") else cell.get("status") or "-"


def _natural(check_id: str) -> list:
    """1.2.10 after 1.2.9, as cisfix orders checks (the controller need not have cisfix installed)."""
    return [(0, int(p), "") if p.isdigit() else (1, 0, p) for p in check_id.replace("-", ".").split(".")]


def cisfix_fleet_table(fleet: Mapping[str, Any]) -> str:
    """A check × node table of statuses, failures first (the worst, then the most nodes), then a line per
    node: its audit summary, what was fixed, and its error if it had one."""
    hosts = list(fleet["nodes"])
    rows = []
    for check_id, check in fleet["checks"].items():
        cells = [_cell(check["nodes"].get(h)) for h in hosts]
        ranks = [NOT_GOOD.index(c) for c in cells if c in NOT_GOOD]
        order = (min(ranks) if ranks else len(NOT_GOOD), -len(ranks), _natural(check_id))
        rows.append((order, [check_id, *cells, check["title"][:60]]))
    header = ["CHECK", *hosts, "TITLE"]
    table = [header] + [cells for _, cells in sorted(rows, key=lambda row: row[0])]
    widths = [max(len(line[i]) for line in table) for i in range(len(header) - 1)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(line, widths)) + "  " + line[-1] for line in table]
    lines.append("")
    for host, node in fleet["nodes"].items():
        parts = [", ".join(f"{n} {s}" for s, n in (node["audit"] or {}).items() if n) or "not audited"]
        if node["fix"]:
            parts.append("fix: " + ", ".join(f"{n} {s}" for s, n in node["fix"].items()))
        if node.get("judged_against"):
            parts.append(_judged(node["judged_against"]))
        if node["error"]:
            parts.append(f"ERROR: {node['error']}")
        lines.append(f"{host}: " + "; ".join(parts))
    return "\n".join(line.rstrip() for line in lines) + "\n"


def _judged(judged: Mapping[str, Any]) -> str:
    """`against cis-1.11 level 1, Kubernetes 1.31.2, cisfix 0.1.0 (commit 0123456789ab)`"""
    node, benchmark, build = (judged.get(k) or {} for k in ("node", "benchmark", "cisfix"))
    level = f"level {benchmark['level']}" if benchmark.get("level") else "all levels"
    commit = f" (commit {build['commit']})" if build.get("commit") else ""
    return (f"against {benchmark.get('name') or 'no benchmark'} {level}, Kubernetes "
            f"{node.get('kubernetes_version') or 'unknown'}, cisfix {build.get('version') or '?'}{commit}")


class FilterModule:
    def filters(self) -> dict:
        return {"cisfix_ran": cisfix_ran, "cisfix_changed": cisfix_changed, "cisfix_failure": cisfix_failure,
                "cisfix_unaudited": cisfix_unaudited, "cisfix_fleet_report": cisfix_fleet_report,
                "cisfix_fleet_table": cisfix_fleet_table, "cisfix_report_options": cisfix_report_options,
                "cisfix_node_reports": cisfix_node_reports, "cisfix_persist_waiting": cisfix_persist_waiting,
                "cisfix_persist_changed": cisfix_persist_changed, "cisfix_install_changed": cisfix_install_changed,
                "cisfix_persist_failure": cisfix_persist_failure}
