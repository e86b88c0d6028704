"""The CIS Kubernetes Benchmark, as a cisfix plugin (registered by default, like any other plugin).

`catalog` holds the recommendations of v1.11 and v1.12 as data; `audits`, `fixes` and `apiserver` are the
builders it uses; `kubelet` reads the kubelet's effective configuration; `kubebench` renders results as
kube-bench's JSON.
"""
from __future__ import annotations

from typing import List, Optional

from cisfix.markers import hookimpl
from cisfix.types import Benchmark, Check, NodeInfo, ReportFormat

from .catalog import BENCHMARKS


@hookimpl
def cisfix_register_benchmarks() -> List[Benchmark]:
    return [Benchmark(name, title, versions) for name, (title, versions) in BENCHMARKS.items()]


@hookimpl
def cisfix_register_checks(node_info: NodeInfo) -> Optional[List[Check]]:
    if node_info.benchmark not in BENCHMARKS:
        return None
    from .checks import checks_for

    return checks_for(node_info.benchmark)


@hookimpl
def cisfix_register_report_formats() -> List[ReportFormat]:
    from .kubebench import render

    return [ReportFormat("kube-bench", render, "kube-bench's JSON (Controls, tests, results, Totals)")]
