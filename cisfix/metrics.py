"""The Prometheus textfile an unattended run (`cisfix drift`, `cisfix fix --textfile`) writes atomically at
its end (`cisfix.textfile`), for node_exporter's textfile collector: the audit's series
(`cisfix.reports.render_prometheus`, so both files never disagree on a metric's labels) plus the state
of the run:

- `cisfix_compliance_state`: 0 compliant, 1 non-compliant, 2 compliant but for accepted risks, 3 error
  (a check could not be audited, bad input, the node needs a person, or the run audited nothing);
- `cisfix_drift_detected_total{id,class}`, `cisfix_corrections_total{id,outcome}`: counters;
- `cisfix_flapping{id}` for every check of the baseline; `cisfix_paused`, `cisfix_halted`;
- `cisfix_last_run_timestamp_seconds`, `cisfix_last_run_duration_seconds`, `cisfix_last_run_exit_code`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

from . import status
from .audit import summarize
from .reports import label_value, render_prometheus
from .types import ERROR, EXCEPTED, FAIL, CheckResult, NodeInfo


@dataclass
class RunMetrics:
    started: float
    finished: float = 0.0
    exit_code: int = 0
    results: Sequence[CheckResult] = ()
    detected: Dict[str, int] = field(default_factory=dict)  # "id class" -> count
    corrections: Dict[str, int] = field(default_factory=dict)  # "id outcome" -> count
    flapping: Dict[str, bool] = field(default_factory=dict)  # id -> flapping
    paused: bool = False
    halted: bool = False
    node_info: Optional[NodeInfo] = None  # its warnings (no benchmark covers the node's version) are carried


def compliance_state(results: Sequence[CheckResult], exit_code: int) -> int:
    if not results:  # the run stopped before any audit (locked, HALTed, bad input): unknown, never "compliant"
        return 3
    if exit_code in (status.EXIT_INPUT, status.EXIT_ROLLBACK_FAILED) or any(r.audit.status == ERROR for r in results):
        return 3
    if any(r.check.automated and r.audit.status == FAIL for r in results):
        return 1
    return 2 if any(r.audit.status == EXCEPTED for r in results) else 0


def _family(name: str, kind: str, help_text: str, samples: List[str]) -> List[str]:
    return [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}", *samples]


def _counter(name: str, labels: str, counts: Dict[str, int]) -> List[str]:
    first, second = labels.split(",")
    out = []
    for key, value in sorted(counts.items()):
        check_id, _, other = key.rpartition(" ")
        out.append(f'{name}{{{first}="{label_value(check_id)}",{second}="{label_value(other)}"}} {value}')
    return out


def render(run: RunMetrics) -> str:
    text = render_prometheus(run.results, summarize(run.results), run.node_info) if run.results else ""
    lines = _family("cisfix_compliance_state", "gauge",
                    "0 compliant, 1 non-compliant, 2 compliant but for accepted risks, 3 error.",
                    [f"cisfix_compliance_state {compliance_state(run.results, run.exit_code)}"])
    lines += _family("cisfix_drift_detected_total", "counter", "Drifts of baseline checks detected, by class.",
                     _counter("cisfix_drift_detected_total", "id,class", run.detected))
    lines += _family("cisfix_corrections_total", "counter", "Corrections of drift, by outcome.",
                     _counter("cisfix_corrections_total", "id,outcome", run.corrections))
    lines += _family("cisfix_flapping", "gauge", "1 while a check flaps and is no longer corrected.",
                     [f'cisfix_flapping{{id="{label_value(i)}"}} {int(f)}' for i, f in sorted(run.flapping.items())])
    lines += _family("cisfix_paused", "gauge", "1 while `cisfix pause` holds.", [f"cisfix_paused {int(run.paused)}"])
    lines += _family("cisfix_halted", "gauge", "1 while the node is HALTed and needs a person.",
                     [f"cisfix_halted {int(run.halted)}"])
    lines += _family("cisfix_last_run_timestamp_seconds", "gauge", "When the last run ended (Unix time).",
                     [f"cisfix_last_run_timestamp_seconds {run.finished:.3f}"])
    lines += _family("cisfix_last_run_duration_seconds", "gauge", "How long the last run took.",
                     [f"cisfix_last_run_duration_seconds {max(0.0, run.finished - run.started):.3f}"])
    lines += _family("cisfix_last_run_exit_code", "gauge", "The exit code of the last run.",
                     [f"cisfix_last_run_exit_code {run.exit_code}"])
    return text + "\n".join(lines) + "\n"

