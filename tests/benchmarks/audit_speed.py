#!/usr/bin/env python3
"""Benchmark: a warm `cisfix audit`, and with `--lab` a no-op `cisfix drift`, against a warm `cisfix --version`.

    .venv/bin/python tests/benchmarks/audit_speed.py [--runs 7] [--lab]

Builds a kubeadm node tree (the plugin kit's, offline), or with `--lab` a running lab node, then times
each command `--runs` times after one warm-up run and prints the medians of wall and CPU time and their
ratios (target: each at most 3x `--version`). With `--lab` the node is then fixed (`fix --level 1`, the checks
that need a person accepted as risks) so that it is compliant and has a baseline, and `drift --level 1` is
timed on it; the benchmark fails if those drift runs write anything but the textfile (and the drift lock,
which holds the pid of its run; the lab's etcd writes its own data). Not a test: figures depend on the
machine and its load (CPU time less so). Children cache bytecode (PYTHONDONTWRITEBYTECODE unset), as on a node.
"""
from __future__ import annotations

import argparse
import datetime
import hashlib
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Tuple

ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
TEXTFILE = "var/lib/node_exporter/textfile/cisfix.prom"  # drift's default, under the root
LOCK = "var/lib/cisfix/drift.lock"  # its content is the pid of the run holding it, for a second run's message
ETCD_DATA = "var/lib/etcd/"  # the lab's running etcd writes its own data


def run(argv: List[str]) -> subprocess.CompletedProcess:
    return subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, check=False, env=ENV)


def timed(argv: List[str], runs: int, ok: Tuple[int, ...] = (0, 1)) -> Tuple[float, float]:
    """Medians of the wall time and of the CPU time (user + system: what the run costs, less sensitive to
    other load than the wall time) of `runs` runs after a warm-up."""
    run(argv)  # warm-up
    walls, cpus = [], []
    for _ in range(runs):
        before, start = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
        done = run(argv)
        walls.append(time.perf_counter() - start)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
        if done.returncode not in ok:
            sys.exit(f"{' '.join(argv)} failed ({done.returncode}): {done.stdout[-500:]}{done.stderr[-500:]}")
    return statistics.median(walls), statistics.median(cpus)


def make_compliant(cisfix: List[str], root: Path) -> None:
    """`fix --level 1` with the checks that need a person accepted as risks: a baseline, and nothing to do."""
    plan = run(cisfix + ["fix", "--level", "1", "--dry-run"])
    people = [line.split()[3] for line in plan.stdout.splitlines() if line.startswith("NEEDS A PERSON")]
    expires = (datetime.date.today() + datetime.timedelta(days=30)).isoformat()
    config = root / "etc/cisfix/config.yaml"
    config.write_text(config.read_text() + "exceptions:\n" + "".join(
        f"  - {{id: '{i}', reason: 'benchmark: needs a person', expires: {expires}}}\n" for i in people))
    done = run(cisfix + ["fix", "--level", "1", "--stability-window", "3"])
    if done.returncode != 0:
        sys.exit(f"fix --level 1 failed ({done.returncode}): {done.stdout[-1500:]}{done.stderr[-500:]}")


def snapshot(root: Path) -> Dict[str, Tuple[int, int, int, str]]:
    """Every file and folder cisfix could write but the textfile and the drift lock: mode, owner, and the
    bytes of a file, the names in a folder, the target of a link."""
    found = {}
    for top in [root / "etc", root / "var/lib"]:
        for p in [top, *top.rglob("*")]:
            name, st = str(p.relative_to(root)), p.lstat()
            if name in (TEXTFILE, LOCK) or name.startswith(ETCD_DATA):
                continue
            what = (os.readlink(p) if p.is_symlink() else sorted(os.listdir(p)) if p.is_dir()
                    else hashlib.sha256(p.read_bytes()).hexdigest())
            found[name] = (st.st_mode, st.st_uid, st.st_gid, str(what))
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--lab", action="store_true", help="a running lab node instead of an offline tree; "
                        "times a no-op drift too")
    args = parser.parse_args()
    cisfix = [sys.executable, "-m", "cisfix"]
    drift = None
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
        on_node = cisfix + ["--root", str(root)]
        try:
            version = timed(cisfix + ["--version"], args.runs)
            audit = timed(on_node + ["audit"], args.runs)
            if lab:
                make_compliant(on_node, root)
                run(on_node + ["drift", "--level", "1"])  # the first run after fix writes the baseline's state
                before = snapshot(root)
                drift = timed(on_node + ["drift", "--level", "1"], args.runs, ok=(0,))
                after = snapshot(root)
                changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
                if changed:
                    sys.exit(f"a no-op drift wrote more than the textfile: {', '.join(changed)}")
        finally:
            if lab:
                lab.stop()
    kind = "lab node" if args.lab else "offline tree"
    print(f"medians of {args.runs} warm runs        wall        cpu")
    rows = [("cisfix --version", version), (f"cisfix audit ({kind})", audit)]
    rows += [("cisfix drift (no-op, lab node)", drift)] if drift else []
    for name, (wall, cpu) in rows:
        ratios = "" if name == "cisfix --version" else f"   {wall / version[0]:4.1f}x {cpu / version[1]:4.1f}x (target <= 3x)"
        print(f"{name:<31} {wall * 1000:6.0f} ms  {cpu * 1000:6.0f} ms{ratios}")
    if drift:
        print(f"the drift runs wrote nothing but {TEXTFILE} (and {LOCK})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
