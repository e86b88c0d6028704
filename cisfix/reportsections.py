"""The built-in sections of the node report, made through `cisfix_report_sections` as a plugin's are
(`cisfix.builtin`): plain text from the report document alone."""
from __future__ import annotations

from typing import Dict, List, Tuple

from .types import ReportSection


def drift_summary(report: dict) -> ReportSection:
    """Drift corrections counted by class and outcome, with the first and last time, and the checks
    flapping now."""
    drift = report["drift"]
    corrections = drift["corrections"]
    flapping = ", ".join(drift["flapping"]) or "none"
    if not corrections:
        return ReportSection("Drift summary",
                             f"cisfix has corrected no drift on this node.\nflapping checks: {flapping}")
    times: Dict[Tuple[str, str], List[str]] = {}
    for c in corrections:
        times.setdefault((c["class"], c["outcome"]), []).append(c["time"])
    total = drift.get("corrections_total", len(corrections))
    more = f" (the newest {len(corrections)} of {total})" if total > len(corrections) else ""
    lines = [f"{'class':<8} {'outcome':<34} {'count':>5}  first .. last{more}"]
    lines += [f"{cls:<8} {outcome:<34} {len(when):>5}  {min(when)} .. {max(when)}"
              for (cls, outcome), when in sorted(times.items())]
    return ReportSection("Drift summary", "\n".join(lines) + f"\nflapping checks: {flapping}")
