#!/usr/bin/env python3
"""Benchmark: `cisfix report` (the node's page, and its JSON document) on a lab node after `fix --level 1`,
beside `cisfix audit` of the same node.

    .venv/bin/python tests/benchmarks/node_report_speed.py [--runs 7]

Starts a lab node, fixes it (so the report has transactions, diffs and gate records to show), then times
each command `--runs` times after a warm-up and prints the medians and the page's size (targets, issue 23:
at most 1 s and 1 MB). Not a test: figures depend on the machine and its load.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

from audit_speed import timed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    from cisfix.lab.control import Lab
    from cisfix.lab.tree import create

    with tempfile.TemporaryDirectory() as scratch:
        lab = Lab(create(Path(scratch) / "node").root)
        lab.start(wait=60)
        try:
            cisfix = [sys.executable, "-m", "cisfix", "--root", str(lab.root)]
            subprocess.run(cisfix + ["fix", "--level", "1", "--stability-window", "1"], capture_output=True, check=False)
            audit, audit_cpu = timed(cisfix + ["audit", "--format", "json"], args.runs)
            document, document_cpu = timed(cisfix + ["report", "--format", "json"], args.runs)
            page, page_cpu = timed(cisfix + ["report"], args.runs)
            size = len(subprocess.run(cisfix + ["report"], capture_output=True, check=False).stdout)
        finally:
            lab.stop()
    print(f"medians of {args.runs} warm runs   wall        cpu")
    print(f"cisfix audit --format json   {audit * 1000:7.0f} ms {audit_cpu * 1000:7.0f} ms")
    print(f"cisfix report --format json  {document * 1000:7.0f} ms {document_cpu * 1000:7.0f} ms")
    print(f"cisfix report (html)         {page * 1000:7.0f} ms {page_cpu * 1000:7.0f} ms, {size / 1e6:.2f} MB "
          "(targets: 1000 ms, 1 MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
