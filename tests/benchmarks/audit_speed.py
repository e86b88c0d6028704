#!/usr/bin/env python3
"""Benchmark: a warm `cisfix audit` of a whole node against a warm `cisfix --version`, side by side.

    .venv/bin/python tests/benchmarks/audit_speed.py [--runs 7] [--lab]

Builds a kubeadm node tree (the plugin kit's, offline), or with `--lab` a running lab node, then times
each command `--runs` times after one warm-up run and prints the medians and their ratio (target: the
audit at most 5x `--version`). Not a test: figures depend on the machine and its load.
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import List


def timed(argv: List[str], runs: int) -> float:
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)  # warm-up
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        done = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False)
        times.append(time.perf_counter() - start)
        if done.returncode not in (0, 1):
            sys.exit(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.decode()[-500:]}")
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--lab", action="store_true", help="audit a running lab node instead of an offline tree")
    args = parser.parse_args()
    cisfix = [sys.executable, "-m", "cisfix"]
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch) / "node"
        lab = None
        if args.lab:
            from cisfix.lab.control import Lab
            from cisfix.lab.tree import create

            lab = Lab(create(root).root)
            lab.start(wait=60)
        else:
            from cisfix.testing import build_node

            build_node(root)
        try:
            version = timed(cisfix + ["--version"], args.runs)
            audit = timed(cisfix + ["--root", str(root), "audit"], args.runs)
        finally:
            if lab:
                lab.stop()
    kind = "lab node" if args.lab else "offline tree"
    print(f"cisfix --version            {version * 1000:7.0f} ms (median of {args.runs}, warm)")
    print(f"cisfix audit ({kind:<12}) {audit * 1000:7.0f} ms (median of {args.runs}, warm)")
    print(f"ratio                       {audit / version:7.1f}x (target <= 5x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
