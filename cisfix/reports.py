"""The built-in report formats of `cisfix audit` (and `fix`): text, JSON, JUnit XML and the Prometheus
text format for node_exporter's textfile collector. Plugins add more through
`cisfix_register_report_formats`. Every format says what it judged against (`cisfix.judged`: the node,
its Kubernetes version and layout, the benchmark and level, the cisfix build) and carries the node's
warnings (`NodeInfo.warnings`, e.g. a benchmark chosen for a Kubernetes version newer than it covers): a
report read alone must not hide them."""
from __future__ import annotations

import json
import textwrap
import time
from itertools import groupby
from typing import Dict, List, Optional, Sequence, Tuple

from .judged import flat, header_lines, judged_against
from .types import CheckResult, NodeInfo, ReportFormat

WIDTH = 80


def section(check_id: str) -> str:
    """The group a check is reported under: `1.2` for 1.2.16, `ACME` for ACME-3."""
    parts = check_id.split(".")
    if len(parts) > 2 and all(p.isdigit() for p in parts[:2]):
        return ".".join(parts[:2])
    return check_id.split("-")[0] if "-" in check_id else parts[0]


def warnings_of(node_info: Optional[NodeInfo]) -> Tuple[str, ...]:
    return tuple(node_info.warnings) if node_info else ()


def warning_lines(node_info: Optional[NodeInfo]) -> List[str]:
    """`WARNING: ...` lines for a text report, wrapped to fit 80 columns."""
    return [line for w in warnings_of(node_info)
            for line in textwrap.wrap(f"WARNING: {w}", WIDTH, subsequent_indent="    ")]


def render_text(results: Sequence[CheckResult], summary: Dict[str, int], node_info: Optional[NodeInfo] = None) -> str:
    """Grouped by section, one wrapped line per check plus the details of those that are not PASS;
    fits an 80-column terminal. What it judged against comes first, then the warnings, which come again
    last, beside the summary."""
    lines: List[str] = header_lines(node_info) + warning_lines(node_info)
    for name, group in groupby(results, key=lambda r: section(r.check.id)):
        lines.append(f"== {name} ==")
        for r in group:
            status = r.status if r.status and r.status != "ALREADY_COMPLIANT" else r.audit.status
            head = f"[{status}] {r.check.id} {r.check.title}"
            lines += textwrap.wrap(head, WIDTH, subsequent_indent="    ")
            if r.audit.status != "PASS":
                detail = f"expected {r.audit.expected}, found {r.audit.actual}" if r.audit.expected else ""
                evidence = ", ".join(str(e) for e in r.audit.evidence)
                for text in filter(None, (detail, r.audit.reason, evidence)):
                    lines += textwrap.wrap(text, WIDTH, initial_indent="    ", subsequent_indent="    ")
    counts = ", ".join(f"{n} {status}" for status, n in summary.items() if n)
    lines.append(f"== {len(results)} checks: {counts or 'none'} ==")
    lines += warning_lines(node_info)
    return "\n".join(lines) + "\n"


def render_json(results: Sequence[CheckResult], summary: Dict[str, int], node_info: Optional[NodeInfo] = None) -> str:
    return json.dumps({"judged_against": judged_against(node_info), "summary": summary,
                       "warnings": list(warnings_of(node_info)), "results": [r.as_dict() for r in results]},
                      indent=2) + "\n"


def render_junit(results: Sequence[CheckResult], summary: Dict[str, int], node_info: Optional[NodeInfo] = None) -> str:
    """One testcase per check: FAIL and ERROR fail, WARN, MANUAL and EXCEPTED are skipped (a person's call).
    What it judged against (node, kubernetes_version, distribution, layout, benchmark, level,
    cisfix_version, commit: "" where unknown) and the warnings are properties of every testsuite, where CI
    systems show suite properties."""
    from xml.sax.saxutils import escape, quoteattr  # imports urllib.request: only for this format

    failures = sum(r.audit.status == "FAIL" for r in results)
    errors = sum(r.audit.status == "ERROR" for r in results)
    skipped = sum(r.audit.status in ("WARN", "MANUAL", "EXCEPTED") for r in results)
    out = ['<?xml version="1.0" encoding="UTF-8"?>',
           f'<testsuites name="cisfix" tests="{len(results)}" failures="{failures}" errors="{errors}" skipped="{skipped}">']
    for name, group in groupby(results, key=lambda r: section(r.check.id)):
        group = list(group)
        out.append(f'  <testsuite name={quoteattr(name)} tests="{len(group)}" '
                   f'failures="{sum(r.audit.status == "FAIL" for r in group)}" '
                   f'errors="{sum(r.audit.status == "ERROR" for r in group)}" '
                   f'skipped="{sum(r.audit.status in ("WARN", "MANUAL", "EXCEPTED") for r in group)}">')
        out.append("    <properties>")
        out += [f'      <property name="{key}" value={quoteattr(value)}/>' for key, value in flat(node_info).items()]
        out += [f'      <property name="warning" value={quoteattr(w)}/>' for w in warnings_of(node_info)]
        out.append("    </properties>")
        for r in group:
            a = r.audit
            message = f"expected {a.expected}, found {a.actual}" if a.expected else a.reason
            body = "\n".join(filter(None, (a.reason, *(str(e) for e in a.evidence), r.check.remediation)))
            out.append(f'    <testcase classname={quoteattr("cisfix." + name)} name={quoteattr(f"{r.check.id} {r.check.title}")}>')
            tag = {"FAIL": "failure", "ERROR": "error", "WARN": "skipped", "MANUAL": "skipped",
                   "EXCEPTED": "skipped"}.get(a.status)
            if tag:
                out.append(f"      <{tag} message={quoteattr(message or a.status)}>{escape(body)}</{tag}>")
            out.append("    </testcase>")
        out.append("  </testsuite>")
    out.append("</testsuites>")
    return "\n".join(out) + "\n"


def label_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def render_prometheus(results: Sequence[CheckResult], summary: Dict[str, int],
                      node_info: Optional[NodeInfo] = None) -> str:
    """For node_exporter's textfile collector: what the audit judged against (an info metric: its labels
    name the node, versions, benchmark and build), one series per check and status, counts, warnings (a
    count that alerts can use, and one series per warning with its text), a timestamp."""
    judged = ",".join(f'{key}="{label_value(value)}"' for key, value in flat(node_info).items())
    lines = ["# HELP cisfix_audit_info What the audit judged against: the node, its Kubernetes version, "
             "distribution and layout, the benchmark and level, the cisfix build.",
             "# TYPE cisfix_audit_info gauge", f"cisfix_audit_info{{{judged}}} 1",
             "# HELP cisfix_check_status Audit verdict of a check: 1 for the status it has.",
             "# TYPE cisfix_check_status gauge"]
    for r in results:
        labels = (f'id="{label_value(r.check.id)}",status="{r.audit.status}",level="{r.check.level}",'
                  f'benchmark="{label_value(r.check.benchmark)}",automated="{str(r.check.automated).lower()}",'
                  f'component="{label_value(r.check.component or "")}"')
        lines.append(f"cisfix_check_status{{{labels}}} 1")
    lines += ["# HELP cisfix_checks Number of checks per audit status.", "# TYPE cisfix_checks gauge"]
    lines += [f'cisfix_checks{{status="{status}"}} {n}' for status, n in summary.items()]
    lines += ["# HELP cisfix_warnings Number of warnings about this audit (e.g. no benchmark covers the node's version).",
              "# TYPE cisfix_warnings gauge", f"cisfix_warnings {len(warnings_of(node_info))}",
              "# HELP cisfix_warning A warning about this audit, in its message label.", "# TYPE cisfix_warning gauge"]
    lines += [f'cisfix_warning{{message="{label_value(w)}"}} 1' for w in warnings_of(node_info)]
    lines += ["# HELP cisfix_audit_timestamp_seconds When the audit ran (Unix time).",
              "# TYPE cisfix_audit_timestamp_seconds gauge", f"cisfix_audit_timestamp_seconds {time.time():.3f}"]
    return "\n".join(lines) + "\n"


FORMATS = [
    ReportFormat("text", render_text, "grouped by section, with a summary; fits 80 columns"),
    ReportFormat("json", render_json, '{"judged_against": {...}, "summary": {...}, "warnings": [...], "results": [...]}'),
    ReportFormat("junit", render_junit, "JUnit XML for a CI system's test view"),
    ReportFormat("prometheus", render_prometheus, "Prometheus text format for node_exporter's textfile collector"),
]
