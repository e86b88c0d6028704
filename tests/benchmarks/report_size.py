#!/usr/bin/env python3
"""Benchmark: size and render time of the HTML report, a node's page and a fleet's, against the targets
(node page <= 1 MB; fleet page of 500 nodes <= 10 MB and <= 10 s).

    .venv/bin/python tests/benchmarks/report_size.py [--nodes 500] [--unfixed 0.2] [--runs 3] [--browser]

Synthetic node report documents (tests/report_docs.py): about 130 checks each, the fixed nodes with a
committed, gated transaction per component and its diff (nodes of one cluster share most diffs), a
share `--unfixed` of nodes before `fix` (a fifth of the automated checks FAIL, each with its evidence).
Prints the medians of `--runs` renders and their ratio to the targets. Not a test: the figures depend on
the machine and its load. `--browser`: also the time headless Chromium takes to load the fleet page
and serialise its DOM (tests/browser.py; no target in the issue, printed for reference).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from report_docs import node_doc  # noqa: E402

from cisfix.htmlreport import render_fleet, render_node  # noqa: E402

MB = 1_000_000


def timed(render: Callable[[], str], runs: int) -> Tuple[int, float]:
    times, size = [], 0
    for _ in range(runs):
        start = time.perf_counter()
        size = len(render().encode("utf-8"))
        times.append(time.perf_counter() - start)
    return size, statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=500)
    parser.add_argument("--unfixed", type=float, default=0.2, help="share of nodes not yet fixed")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--browser", action="store_true", help="also time Chromium loading the fleet page")
    args = parser.parse_args()
    every = max(1, round(1 / args.unfixed)) if args.unfixed > 0 else 0
    docs = [node_doc(f"node-{i:04d}", seed=i, fixed=not every or i % every != 0) for i in range(args.nodes)]
    checks = sum(len(d["checks"]) for d in docs) / len(docs)
    changes = sum(1 for d in docs for c in d["checks"] for _ in c["changes"]) / len(docs)
    print(f"{args.nodes} synthetic nodes: {checks:.0f} checks and {changes:.1f} fixed checks per node on average, "
          f"{sum(not any(c['changes'] for c in d['checks']) for d in docs)} not yet fixed")
    for label, render, size_target, time_target in (
            ("node page (fixed node)", lambda: render_node(docs[1]), 1 * MB, 1.0),
            ("node page (unfixed node)", lambda: render_node(docs[0]), 1 * MB, 1.0),
            (f"fleet page ({args.nodes} nodes)", lambda: render_fleet(docs), 10 * MB, 10.0)):
        size, seconds = timed(render, args.runs)
        print(f"{label:28} {size / MB:8.3f} MB ({size / size_target:5.1%} of {size_target // MB} MB)   "
              f"{seconds:7.3f} s ({seconds / time_target:5.1%} of {time_target:g} s)")
    if args.browser:
        import browser

        with tempfile.TemporaryDirectory() as tmp:
            page = Path(tmp) / "fleet.html"
            page.write_text(render_fleet(docs), encoding="utf-8")
            start = time.perf_counter()
            seen = browser.render(page, timeout=300)
            print(f"{'Chromium loads the fleet page':28} {time.perf_counter() - start:7.1f} s "
                  f"({len(seen.console)} console messages, {len(seen.requests)} requests)")


if __name__ == "__main__":
    main()
