#!/usr/bin/env python3
"""Benchmark: `cisfix fix --level 1` on fresh lab nodes against the node's own limit, one restart cycle
(start + stability window) per dependency level, measured on the same run.

    .venv/bin/python tests/benchmarks/fix_speed.py [--distributions kubeadm rke2 k3s] [--versions 1.32]
        [--modes level one-at-a-time] [--startup-delay 8] [--file-check-frequency 5s] [--stability-window 15]

kubeadm: for each version and mode, a fresh lab node (a real node's timings, its components taking
`--startup-delay` seconds to serve, the kubelet re-listing every `--file-check-frequency`) is fixed once.
Printed per run: the wall time of `fix`; each restarted component's own cycle — from its start (the
lab's pod-started event; the kubelet's process start time in /proc) to the moment it served (its own "Serving
securely" / "Kubelet started" log line) plus the stability window; the per-level limit (the longest
cycle of each dependency level, summed over the levels fix restarted); their ratio (target <= 1.15x);
how long after its start the gate first looked at each component's new process (target < 1 s); the
starts of each component and whether all are healthy at the end, and the load average (cisfix's own
work — start-up, audit, planning — slows with the machine's load; the components' cycles, mostly
waiting, do not).

rke2, k3s (one service, `rke2-server` or `k3s`, restarts the whole control plane): for each version and mode,
a fresh lab node at the lab's own timings (components serving some 15 s after the service starts, unless
`--startup-delay` says otherwise). The node's own limit is measured on it first: one run of its restart
program, timed until every component is healthy again (`lab status`, probed as cisfix's gate probes), plus
the stability window. Then `fix` runs on the same node. Printed per run: that cycle, the wall time of
`fix`, the ratio (target <= 1.15x for mode "level", which needs one restart for all its flags), the
service's restarts (the journal's gates, the lab init's unit starts) and where fix's time went, from its
journal: before its first restart (start-up, audit, planning, the pre-gate), inside its gates (the
restart program, the components' start, the stability window), and outside them after the first (live
verification, commits, the next transactions' planning, the final report).

Not a test: figures depend on the machine and its load.
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
from cisfix.lab import k3s_tree, rke2tree
from cisfix.lab.control import Lab
from cisfix.lab.layout import read_events
from cisfix.lab.tree import create
from cisfix.layouts.kubeadm.paths import COMPONENTS
from cisfix.types import NodeInfo

KLOG = re.compile(r"^[IWEF](\d{4} \d{2}:\d{2}:\d{2}\.\d{6})\s+(\d+) ")
SERVING = ("Serving securely on", "Kubelet started")
PID = re.compile(r"\(pid (\d+)\)")
SERVICES = {"rke2": "rke2-server", "k3s": "k3s"}  # the unit whose restart restarts the whole control plane
VERSIONS = {"kubeadm": ["1.31", "1.32"], "rke2": ["1.32"], "k3s": ["1.32"]}  # k3s's lab starts at 1.32
KUBEADM_STARTUP_DELAY = 8.0


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


def journal(lab: Lab, since: float = 0.0) -> List[dict]:
    """cisfix's journal records on the lab node written since `since` (epoch seconds)."""
    path = lab.layout.host("/var/lib/cisfix/journal.jsonl")
    records = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
    return [r for r in records if r["time"] >= since]


def applied(records: List[dict], record_type: str) -> List[dict]:
    """The records of one type about changes being applied (not rolled back)."""
    return [r for r in records if r["type"] == record_type and r.get("phase") == "apply"]


def run_fix(root: Path, mode: str, args: argparse.Namespace) -> float:
    """`cisfix fix --level 1` in `mode` on the lab at `root`; its wall time in seconds."""
    command = [sys.executable, "-m", "cisfix", "--root", str(root), "-q", "fix", "--level", "1",
               "--stability-window", str(args.stability_window), "--timeout", "300"]
    command += {"level": [], "sequential": ["--sequential"], "one-at-a-time": ["--one-at-a-time"]}[mode]
    started = time.monotonic()
    result = subprocess.run(command, capture_output=True, text=True)
    wall = time.monotonic() - started
    if result.returncode not in (0, 1):
        sys.exit(f"fix failed ({result.returncode}): {result.stdout[-2000:]}{result.stderr[-2000:]}")
    return wall


def load() -> str:
    """The machine's load, which slows cisfix's own work (start-up, audit, planning) more than the cycles."""
    return f"load average after {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"


def cycles(lab: Lab, since: float, window: float) -> Dict[str, dict]:
    """Each component the fix restarted and judged healthy: the pid judged, its start, when it served,
    when the gate first saw it (from the journal's health record)."""
    events = read_events(lab.layout, since)
    logs = klog_lines(lab)
    found = {}
    for record in journal(lab):
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
    startup_delay = KUBEADM_STARTUP_DELAY if args.startup_delay is None else args.startup_delay
    root = create(scratch / f"{version}-{mode}", version=version, key_algorithm="ECDSA-P256",
                  startup_delay=startup_delay, file_check_frequency=args.file_check_frequency).root
    lab = Lab(root)
    lab.start(wait=300)
    try:
        since = time.time()
        wall = run_fix(root, mode, args)
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
          f"ratio {wall / limit:.2f}x (target <= 1.15x); all healthy: {figures['healthy']}; {load()}")
    for level in figures["levels"]:
        cells = []
        for c in level:
            f = figures["found"][c]
            noticed = f"{f['seen'] - f['started']:.2f} s" if f["seen"] else "?"
            cells.append(f"{c} cycle {f['cycle']:.1f} s (start→serving {f['served'] - f['started']:.1f} s), "
                         f"gate saw it {noticed} after its start")
        print("    level: " + "; ".join(cells))
    print("    starts: " + ", ".join(f"{c} {n}" for c, n in figures["starts"].items()))


def service_lab(distribution: str, version: str, mode: str, args: argparse.Namespace, scratch: Path) -> Lab:
    """A fresh, started RKE2 or k3s lab at the lab's own timings (or `--startup-delay`)."""
    path = scratch / f"{distribution}-{version}-{mode}"
    timing = {} if args.startup_delay is None else {"startup_delay": args.startup_delay}
    layout = (rke2tree.create(path, version=version, **timing) if distribution == "rke2"
              else k3s_tree.create(path, version, **timing))
    lab = Lab(layout.root)
    lab.start(wait=300)
    return lab


def restart_cycle(lab: Lab, service: str, window: float) -> dict:
    """One restart cycle of the node, its own limit: the restart program cisfix runs, then every component
    healthy again (the service a new process), plus the stability window cisfix's gate waits."""
    before = {name: s.pid for name, s in lab.status().items()}
    started = time.monotonic()
    subprocess.run(lab.node_config()["components"][service]["restart"], check=True, capture_output=True,
                   timeout=300)
    returned = time.monotonic() - started
    status = lab.wait_healthy(300)  # looks every 0.1 s, probing as the gate does
    healthy = time.monotonic() - started
    if status[service].pid in (None, before[service]):  # the program returns once the new service is ready
        sys.exit(f"{service} was not restarted by its restart program")
    return {"program": returned, "healthy": healthy, "cycle": healthy + window,
            "new": sorted(name for name, s in status.items() if s.pid != before[name])}


def fix_timeline(records: List[dict], since: float, wall: float) -> dict:
    """Where fix's wall time went, from its journal: inside its gates (restart program until the gate first
    saw the new service; then until every component was healthy; then the stability window) and outside
    them (start-up, audit, planning and the pre-gate before the first gate; after it, live verification,
    commits, the next transactions' planning and pre-gates, the report)."""
    gates, health = applied(records, "gate"), {r["txid"]: r for r in applied(records, "health")}
    inside = {"program": 0.0, "healthy": 0.0, "window": 0.0}
    for gate in gates:
        verdict = health[gate["txid"]]
        seen, stable = verdict.get("seen", gate["time"]), verdict.get("healthySince", verdict["time"])
        inside["program"] += seen - gate["time"]
        inside["healthy"] += stable - seen
        inside["window"] += verdict["time"] - stable
    first = gates[0]["time"] - since if gates else wall
    return {"before": first, **inside, "after": wall - first - sum(inside.values())}


def run_service(distribution: str, version: str, mode: str, args: argparse.Namespace, scratch: Path) -> dict:
    """On a fresh RKE2 or k3s lab: one measured restart cycle, then `fix` in `mode`."""
    service = SERVICES[distribution]
    lab = service_lab(distribution, version, mode, args, scratch)
    try:
        cycle = restart_cycle(lab, service, args.stability_window)
        starts, before = lab.restarts(service), {name: s.pid for name, s in lab.status().items()}
        since = time.time()  # right before fix: the timeline's "before" is fix's alone
        wall = run_fix(lab.root, mode, args)
        records = journal(lab, since)
        after = lab.status()
        healthy = all(s.healthy for s in after.values())
        unit_starts = lab.restarts(service) - starts
    finally:
        lab.stop()
    return {"service": service, "cycle": cycle, "wall": wall, "gates": len(applied(records, "gate")),
            "unit_starts": unit_starts, "timeline": fix_timeline(records, since, wall), "healthy": healthy,
            "new": sorted(name for name, s in after.items() if s.pid != before[name])}


def report_service(distribution: str, version: str, mode: str, figures: dict) -> None:
    cycle, wall, timeline = figures["cycle"], figures["wall"], figures["timeline"]
    print(f"{distribution} {version} fix --level 1 ({mode}): {wall:6.1f} s; restart cycle {cycle['cycle']:6.1f} s; "
          f"ratio {wall / cycle['cycle']:.2f}x (target <= 1.15x for level); {figures['service']} restarts: "
          f"{figures['gates']} gated, {figures['unit_starts']} unit starts; all healthy: {figures['healthy']}; {load()}")
    print(f"    cycle: restart program {cycle['program']:.1f} s, all healthy {cycle['healthy']:.1f} s after the "
          f"restart, + window {cycle['cycle'] - cycle['healthy']:.0f} s; new processes: {', '.join(cycle['new'])}")
    print(f"    fix: {timeline['before']:.1f} s before its first restart (start-up, audit, planning, pre-gate); "
          f"in its gates {timeline['program']:.1f} s restart program, {timeline['healthy']:.1f} s to healthy, "
          f"{timeline['window']:.1f} s stability window; {timeline['after']:.1f} s outside them after the first "
          f"(verify, commit, the next plans, report); "
          f"new processes: {', '.join(figures['new'])}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--distributions", nargs="+", default=["kubeadm", "rke2", "k3s"],
                        choices=["kubeadm", "rke2", "k3s"])
    parser.add_argument("--versions", nargs="+", help="default: kubeadm 1.31 1.32, rke2 and k3s 1.32")
    parser.add_argument("--modes", nargs="+", default=["level", "one-at-a-time"],
                        choices=["level", "sequential", "one-at-a-time"])
    parser.add_argument("--startup-delay", type=float,
                        help=f"default: kubeadm {KUBEADM_STARTUP_DELAY:.0f}, rke2 and k3s the lab's own (15)")
    parser.add_argument("--file-check-frequency", default="5s")
    parser.add_argument("--stability-window", type=float, default=15.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cisfix-fix-speed-") as scratch:
        for distribution in args.distributions:
            versions = args.versions or VERSIONS[distribution]
            if distribution == "kubeadm":
                delay = KUBEADM_STARTUP_DELAY if args.startup_delay is None else args.startup_delay
                print(f"components start in {delay:.0f} s, kubelet re-list {args.file_check_frequency}, "
                      f"stability window {args.stability_window:.0f} s", flush=True)
            else:
                delay = "the lab's own" if args.startup_delay is None else f"{args.startup_delay:.0f} s"
                print(f"{distribution}: components serve after {delay} start-up delay, "
                      f"stability window {args.stability_window:.0f} s", flush=True)
            for version in versions:
                for mode in args.modes:
                    if distribution == "kubeadm":
                        report(version, mode, run(version, mode, args, Path(scratch)))
                    else:
                        report_service(distribution, version, mode,
                                       run_service(distribution, version, mode, args, Path(scratch)))
                    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
