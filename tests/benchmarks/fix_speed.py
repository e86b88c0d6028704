#!/usr/bin/env python3
"""Benchmark: `cisfix fix --level 1` on fresh lab nodes against the node's own limit, one restart cycle
(start + stability window) per dependency level, measured on the same run.

    .venv/bin/python tests/benchmarks/fix_speed.py [--versions 1.31 1.32] [--modes level one-at-a-time]
        [--startup-delay 8] [--file-check-frequency 5s] [--stability-window 15]

For each version and mode, a fresh lab node (a real node's timings, its components taking
`--startup-delay` seconds to serve, the kubelet re-listing every `--file-check-frequency`) is fixed once.
Printed per run: the wall time of `fix`; each restarted component's own cycle — from its start (the
lab's pod-started event; the kubelet's process start time in /proc) to the moment it served (its own "Serving
securely" / "Kubelet started" log line) plus the stability window; the per-level limit (the longest
cycle of each dependency level, summed over the levels fix restarted); their ratio (target <= 1.15x);
how long after its start the gate first looked at each component's new process (target < 1 s); the
starts of each component and whether all are healthy at the end, and the load average (cisfix's own
work — start-up, audit, planning — slows with the machine's load; the components' cycles, mostly
waiting, do not). Not a test: figures depend on the machine and its load.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from cisfix.apply import fix_levels
from cisfix.lab.control import Lab
from cisfix.lab.layout import read_events
from cisfix.lab.tree import create
from cisfix.layouts.kubeadm.paths import COMPONENTS
from cisfix.types import NodeInfo

KLOG = re.compile(r"^[IWEF](\d{4} \d{2}:\d{2}:\d{2}\.\d{6})\s+(\d+) ")
SERVING = ("Serving securely on", "Kubelet started")
PID = re.compile(r"\(pid (\d+)\)")


def klog_lines(lab: Lab) -> List[Tuple[float, int, str]]:
    """(epoch seconds, pid, line) of every klog line the node's components wrote."""
    year = time.localtime().tm_year
    found = []
    for path in [lab.layout.log_dir / "kubelet.log", *lab.layout.host("/var/log/pods").glob("*/*/*.log")]:
        for line in path.read_text(errors="replace").splitlines():
            match = KLOG.match(line)
            if match:
                stamp, fraction = match.group(1).split(".")
                when = time.mktime(time.strptime(f"{year}{stamp}", "%Y%m%d %H:%M:%S")) + int(fraction) / 1e6
                found.append((when, int(match.group(2)), line))
    return found


def process_start(pid: int) -> Optional[float]:
    """When a running process started (epoch seconds): /proc/<pid>/stat field 22, in clock ticks since
    boot, against /proc/uptime (10 ms precision; btime has only whole seconds)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    ticks = int(stat.rsplit(")", 1)[1].split()[19])
    uptime = float(Path("/proc/uptime").read_text().split()[0])
    return time.time() - (uptime - ticks / os.sysconf("SC_CLK_TCK"))


def cycles(lab: Lab, since: float, window: float) -> Dict[str, dict]:
    """Each component the fix restarted and judged healthy: the pid judged, its start, when it served,
    when the gate first saw it (from the journal's health record)."""
    events = read_events(lab.layout, since)
    logs = klog_lines(lab)
    found = {}
    journal = lab.layout.host("/var/lib/cisfix/journal.jsonl")
    for record in (json.loads(line) for line in journal.read_text().splitlines()):
        if record["type"] != "health" or not record.get("healthy") or record.get("phase") != "apply":
            continue
        pid = int(PID.search(record["message"]).group(1))
        component = record["component"]
        started = next((e["time"] for e in events if e["event"] == "pod-started" and e["component"] == component
                        and f"pid {pid}" in e["message"]), None)
        started = started or process_start(pid)  # the kubelet, still running
        served = next((when for when, p, line in logs if p == pid and any(s in line for s in SERVING)), None)
        if started is None or served is None:
            sys.exit(f"{component} pid {pid}: start or serving time not found in the lab's events and logs")
        found[component] = {"pid": pid, "started": started, "served": served, "seen": record.get("seen"),
                            "cycle": served - started + window, "stable": record["time"]}
    return found


def run(version: str, mode: str, args: argparse.Namespace, scratch: Path) -> dict:
    root = create(scratch / f"{version}-{mode}", version=version, key_algorithm="ECDSA-P256",
                  startup_delay=args.startup_delay, file_check_frequency=args.file_check_frequency).root
    lab = Lab(root)
    lab.start(wait=300)
    try:
        since = time.time()
        command = [sys.executable, "-m", "cisfix", "--root", str(root), "-q", "fix", "--level", "1",
                   "--stability-window", str(args.stability_window), "--timeout", "300"]
        command += {"level": [], "sequential": ["--sequential"], "one-at-a-time": ["--one-at-a-time"]}[mode]
        started = time.monotonic()
        result = subprocess.run(command, capture_output=True, text=True)
        wall = time.monotonic() - started
        if result.returncode not in (0, 1):
            sys.exit(f"fix failed ({result.returncode}): {result.stdout[-2000:]}{result.stderr[-2000:]}")
        found = cycles(lab, since, args.stability_window)
        starts = {c: sum(1 for e in read_events(lab.layout, since, c) if e["event"] in ("pod-started", "restarted"))
                  for c in COMPONENTS if c != "kubelet"}
        starts["kubelet"] = len({p for when, p, line in klog_lines(lab) if when >= since and "Kubelet started" in line})
        healthy = all(s.healthy for s in lab.status().values())
    finally:
        lab.stop()
    levels = [[c for c in level if c in found] for level in fix_levels(NodeInfo(components=COMPONENTS))]
    limit = sum(max(found[c]["cycle"] for c in level) for level in levels if level)
    return {"wall": wall, "limit": limit, "found": found, "levels": [lv for lv in levels if lv],
            "starts": starts, "healthy": healthy}


def report(version: str, mode: str, figures: dict) -> None:
    wall, limit = figures["wall"], figures["limit"]
    print(f"{version} fix --level 1 ({mode}): {wall:6.1f} s; per-level limit {limit:6.1f} s; "
          f"ratio {wall / limit:.2f}x (target <= 1.15x); all healthy: {figures['healthy']}; "
          f"load average after {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    for level in figures["levels"]:
        cells = []
        for c in level:
            f = figures["found"][c]
            noticed = f"{f['seen'] - f['started']:.2f} s" if f["seen"] else "?"
            cells.append(f"{c} cycle {f['cycle']:.1f} s (start→serving {f['served'] - f['started']:.1f} s), "
                         f"gate saw it {noticed} after its start")
        print("    level: " + "; ".join(cells))
    print("    starts: " + ", ".join(f"{c} {n}" for c, n in figures["starts"].items()))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--versions", nargs="+", default=["1.31", "1.32"])
    parser.add_argument("--modes", nargs="+", default=["level", "one-at-a-time"],
                        choices=["level", "sequential", "one-at-a-time"])
    parser.add_argument("--startup-delay", type=float, default=8.0)
    parser.add_argument("--file-check-frequency", default="5s")
    parser.add_argument("--stability-window", type=float, default=15.0)
    args = parser.parse_args()
    print(f"components start in {args.startup_delay:.0f} s, kubelet re-list {args.file_check_frequency}, "
          f"stability window {args.stability_window:.0f} s", flush=True)
    with tempfile.TemporaryDirectory(prefix="cisfix-fix-speed-") as scratch:
        for version in args.versions:
            for mode in args.modes:
                report(version, mode, run(version, mode, args, Path(scratch)))
                sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
