#!/usr/bin/env python3
"""Benchmark: `cisfix fix` of N API-server flags, batched (one transaction, one restart) against
`--one-at-a-time`, on lab nodes whose API server takes a realistic while to start.

    .venv/bin/python tests/benchmarks/fix_batching.py [--flags 6] [--startup-delay 5] [--file-check-frequency 5s]

Prints wall time and API-server restarts for each mode and the ratios. Not a test: figures depend on
the machine; the defaults scale a real node down (20 s file check, 30-90 s start) to keep a run short.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cisfix.lab.control import Lab
from cisfix.lab.layout import read_events
from cisfix.lab.tree import create

FLAGS = [("profiling", "false"), ("audit-log-maxage", "30"), ("audit-log-maxbackup", "10"),
         ("audit-log-maxsize", "100"), ("event-ttl", "1h0m0s"), ("request-timeout", "1m0s"),
         ("min-request-timeout", "1800"), ("service-account-lookup", "true")]


def checks_dir(where: Path, count: int) -> Path:
    where.mkdir()
    docs = [f"apiVersion: cisfix/v1\nkind: Check\nid: BENCH-{i}\ntitle: --{name}\ncomponent: kube-apiserver\n"
            f"flag: {name}\nexpect: {{op: eq, value: '{value}'}}\nremediation: {{set: '{value}'}}\n"
            for i, (name, value) in enumerate(FLAGS[:count], 1)]
    (where / "bench.yaml").write_text("---\n".join(docs))
    return where


def run(root: Path, checks: Path, one_at_a_time: bool, stability: str) -> tuple:
    lab = Lab(root)
    since = time.time()
    started = time.monotonic()
    command = [sys.executable, "-m", "cisfix", "--root", str(root), "-p", "no:cisfix_cis", "--checks-dir", str(checks),
               "-q", "fix", "--stability-window", stability, "--timeout", "300"]
    result = subprocess.run(command + (["--one-at-a-time"] if one_at_a_time else []), capture_output=True, text=True)
    wall = time.monotonic() - started
    if result.returncode != 0:
        raise SystemExit(f"fix failed ({result.returncode}): {result.stdout}{result.stderr}")
    restarts = sum(1 for e in read_events(lab.layout, since, "kube-apiserver") if e["event"] == "pod-started")
    return wall, restarts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flags", type=int, default=6, choices=range(1, len(FLAGS) + 1))
    parser.add_argument("--startup-delay", type=float, default=5.0)
    parser.add_argument("--file-check-frequency", default="5s")
    parser.add_argument("--stability-window", default="5")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cisfix-bench-") as tmp:
        checks = checks_dir(Path(tmp) / "checks.d", args.flags)
        figures = {}
        for mode in ("batched", "one-at-a-time"):
            root = create(Path(tmp) / mode, file_check_frequency=args.file_check_frequency,
                          key_algorithm="ECDSA-P256", startup_delay=args.startup_delay).root
            lab = Lab(root)
            lab.start(wait=120)
            try:
                figures[mode] = run(root, checks, mode == "one-at-a-time", args.stability_window)
            finally:
                lab.stop()
    print(f"fix of {args.flags} API-server flags; API server start {args.startup_delay:.0f}s, kubelet file check "
          f"{args.file_check_frequency}, stability window {args.stability_window}s")
    for mode, (wall, restarts) in figures.items():
        print(f"  {mode:<14} {wall:7.1f} s  {restarts:2d} API-server restart(s)")
    (bw, br), (sw, sr) = figures["batched"], figures["one-at-a-time"]
    print(f"  one-at-a-time / batched: {sw / bw:.1f}x the time, {sr / max(br, 1):.1f}x the restarts")
    return 0


if __name__ == "__main__":
    sys.exit(main())
