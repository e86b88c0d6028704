"""Torture: kill -9 at random moments on a running lab node (fix, the health gate, rollback, recovery), at
every crash point of a multi-file plan that creates, mounts and chmods, and a full disk at every write
to the state folder. After each, no file is torn (each is as it was or as some transaction meant it),
and after recovery every file is what the journal says, no transaction is unfinished or phantom, and no
temp file is left. Bounded in time; prints its counts (kills, files checked, violations) and fails on
any violation. The attacks of another local user are in test_trust.py."""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Dict, List, Optional

import pytest

from cisfix.faults import POINTS
from cisfix.journal import Journal
from conftest import APISERVER, KUBELET_CONFIG, add_summary_line, run_cisfix

COUNTS: Counter = Counter()
VIOLATIONS: List[str] = []
POLICY = "/etc/kubernetes/audit-policy.yaml"
LAB_KILLS = 40
LAB_BUDGET = 150.0  # seconds for the random kills on the lab node


@pytest.fixture(scope="module", autouse=True)
def report(request):
    yield
    line = (f"torture: {COUNTS['kills']} kills, {COUNTS['enospc']} full-disk failures, "
            f"{COUNTS['files checked']} files checked, {len(VIOLATIONS)} violations")
    add_summary_line(request.config, line)


def violation(text: str) -> None:
    VIOLATIONS.append(text)
    pytest.fail(text)


def sha(path: Path) -> Optional[str]:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except FileNotFoundError:
        return None


def journal_of(state: Path) -> Journal:
    return Journal(state / "journal.jsonl")


def versions(journal: Journal) -> Dict[str, set]:
    """Every node path a transaction touched -> every sha256 it may rightly hold (None: absent)."""
    known: Dict[str, set] = {}
    for tx in journal.transactions().values():
        for f in tx.files:
            known.setdefault(f["path"], set()).update(
                {f["before"] and f["before"]["sha256"], f["after"]["sha256"]})
    return known


def check_not_torn(root: Path, journal: Journal, where: str) -> None:
    for path, shas in versions(journal).items():
        COUNTS["files checked"] += 1
        if sha(root / path.lstrip("/")) not in shas:
            violation(f"{where}: {path} is torn: neither as it was nor as any transaction meant it")


def check_recovered(root: Path, state: Path, where: str) -> None:
    """After a clean recovery: nothing unfinished or failed; each file holds the `after` of the last
    committed transaction that touched it, else what it held before the first; no record without a
    transaction; no temp file beside a file or among the backups."""
    journal = journal_of(state)
    txs = journal.transactions()
    bad = [f"{t} {tx.state}" for t, tx in txs.items() if tx.state not in ("committed", "rolled-back")]
    if bad:
        violation(f"{where}: transactions left {bad}")
    phantom = {r["txid"] for r in journal.records()} - set(txs)
    if phantom:
        violation(f"{where}: records without a transaction: {sorted(phantom)}")
    expected: Dict[str, Optional[str]] = {}
    for tx in txs.values():
        for f in tx.files:
            expected.setdefault(f["path"], f["before"] and f["before"]["sha256"])
            if tx.state == "committed":
                expected[f["path"]] = f["after"]["sha256"]
    for path, wanted in expected.items():
        COUNTS["files checked"] += 1
        if sha(root / path.lstrip("/")) != wanted:
            violation(f"{where}: {path} is not what the journal says it should be")
    strays = [str(p) for d in {(root / p.lstrip("/")).parent for p in expected} | {state}
              if d.is_dir() for p in (d.rglob("*.tmp") if d == state else d.glob(".*cisfix-*"))]
    if strays:
        violation(f"{where}: temp files left: {strays}")


# ---- a multi-file plan on a node tree: every crash point, a full disk at every step ----

PLAN = """
import json, sys
from cisfix.engine import run_changes
from cisfix.errors import CisfixError
from cisfix.node import Node
from cisfix.plan import AddHostPathMount, SetFlag
from cisfix.types import CreateFile, EditFile, SetMode
changes = [
    CreateFile({policy!r}, b"apiVersion: audit.k8s.io/v1\\nkind: Policy\\nrules:\\n- level: Metadata\\n", 0o600),
    EditFile({apiserver!r}, (SetFlag("audit-policy-file", {policy!r}),
                            AddHostPathMount("audit", {policy!r}, {policy!r}, True, "File"))),
    SetMode({kubelet!r}, 0o600, "0:0"),
]
try:
    outcome = run_changes(Node(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else None), changes)
    print(json.dumps({{"exit": outcome.exit_code, "txid": outcome.txid}}))
except CisfixError as exc:
    print(json.dumps({{"exit": exc.exit_code, "txid": None, "error": str(exc)}}))
""".format(policy=POLICY, apiserver=APISERVER, kubelet=KUBELET_CONFIG)
PLAN_FILES = (POLICY, APISERVER, KUBELET_CONFIG)


def run_plan(node, fault: str = "", state: Optional[Path] = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "CISFIX_FAULT"}
    if fault:
        env["CISFIX_FAULT"] = fault
    return subprocess.run([sys.executable, "-c", PLAN, str(node.root), *([str(state)] if state else [])],
                          capture_output=True, text=True, env=env)


@pytest.fixture
def plan_node(node):
    """A node where the plan must create a file, mount it and change a mode *and* an owner."""
    if os.geteuid() == 0:
        os.chown(node.path(KUBELET_CONFIG), 65534, 65534)
    os.chmod(node.path(KUBELET_CONFIG), 0o644)
    return node


def metadata(node) -> Dict[str, tuple]:
    return {p: (s.st_mode, s.st_uid, s.st_gid) for p in PLAN_FILES
            for s in [node.path(p).stat() if node.path(p).exists() else None] if s}


def recover_cleanly(node, state: Path, where: str, *options: str) -> None:
    result = run_cisfix(node, "recover", *options)
    if result.returncode != 0 or "Traceback" in result.stderr:
        violation(f"{where}: recover exit {result.returncode}: {result.stderr.strip()}")
    check_recovered(Path(node.root), state, where)


def test_every_crash_point_across_a_multi_file_plan(plan_node):
    node = plan_node
    before, meta = node.snapshot(), metadata(node)
    for point in POINTS:
        for nth in range(1, 10):
            if point == "mid-rollback" or (point == "mid-metadata" and nth > 1):
                break  # reached while undoing: driven below, in recovery
            killed = run_plan(node, f"{point}@{nth}")
            if killed.returncode != -9:
                assert killed.returncode == 0 and nth > 1, (point, nth, killed.stderr)
                assert run_cisfix(node, "rollback", "--last").returncode == 0
                break
            COUNTS["kills"] += 1
            check_not_torn(node.root, journal_of(node.state_dir), f"{point}@{nth}")
            recover_cleanly(node, node.state_dir, f"{point}@{nth}")
            if node.snapshot() != before or metadata(node) != meta:
                violation(f"{point}@{nth}: recovery did not bring back every file, mode and owner")
    for point in ("mid-rollback", "mid-metadata"):  # a kill during recovery, finished by the next run
        assert run_plan(node, "before-commit").returncode == -9
        killed = run_cisfix(node, "recover", env={"CISFIX_FAULT": point})
        if killed.returncode != -9:
            violation(f"recovery was not killed at {point}: {killed.returncode} {killed.stderr}")
        COUNTS["kills"] += 2
        check_not_torn(node.root, journal_of(node.state_dir), f"recovery {point}")
        recover_cleanly(node, node.state_dir, f"recovery {point}")
        if node.snapshot() != before or metadata(node) != meta:
            violation(f"recovery {point}: not every file, mode and owner is back")


def check_full_disk_run(node, state: Path, result, where: str) -> None:
    """A run that met a full disk: a clean failure, and no txid that history does not list."""
    if "Traceback" in result.stderr or not result.stdout.strip():
        violation(f"{where}: {result.returncode} {result.stderr.strip()[-300:]}")
    out = json.loads(result.stdout)
    if out["exit"] not in (0, 3, 4):
        violation(f"{where}: exit {out['exit']} {out.get('error')}")
    txs = journal_of(state).transactions()
    if out["txid"] and out["txid"] not in txs:
        violation(f"{where}: reported txid {out['txid']} that history does not list")
    check_not_torn(node.root, journal_of(state), where)
    if out["exit"] != 0:
        COUNTS["enospc"] += 1


def test_a_full_disk_at_every_write_to_the_state_folder(plan_node):
    node = plan_node
    before = node.snapshot()
    for nth in range(1, 40):
        result = run_plan(node, f"enospc@{nth}")
        check_full_disk_run(node, node.state_dir, result, f"enospc@{nth}")
        recover_cleanly(node, node.state_dir, f"enospc@{nth}")
        if json.loads(result.stdout)["exit"] == 0:
            assert nth > 5  # every write of a whole transaction failed once
            break
        if node.snapshot() != before:
            violation(f"enospc@{nth}: a failed run changed the node")
    else:
        violation("the plan never completed")


@contextlib.contextmanager
def small_tmpfs(path: Path, size: str):
    path.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)],
                             capture_output=True, text=True)
    if mounted.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=True)


def test_a_really_full_tmpfs_state_folder(plan_node, tmp_path):
    node = plan_node
    with small_tmpfs(tmp_path / "state", "64k") as state:
        for free_pages in range(0, 10):
            filler = state / "filler"
            with contextlib.suppress(OSError), open(filler, "wb", buffering=0) as f:
                while True:
                    f.write(b"x" * 4096)
            with open(filler, "r+b") as f:  # give back exactly this many pages
                f.truncate(max(0, filler.stat().st_size - free_pages * 4096))
            result = run_plan(node, state=state)
            where = f"tmpfs, {free_pages} free pages"
            check_full_disk_run(node, state, result, where)
            filler.unlink()
            recover_cleanly(node, state, where, "--state-dir", str(state))
            if json.loads(result.stdout)["exit"] == 0:
                assert free_pages > 0
                return
    violation("the plan never fitted in 9 free pages")


def fill(state: Path, free_pages: int) -> None:
    """Leave exactly `free_pages` pages free on the tmpfs `state` (emptied first)."""
    for entry in state.iterdir():
        subprocess.run(["rm", "-rf", str(entry)], check=True)
    filler = state / "filler"
    with contextlib.suppress(OSError), open(filler, "wb", buffering=0) as f:
        while True:
            f.write(b"x" * 4096)
    with open(filler, "r+b") as f:
        f.truncate(max(0, filler.stat().st_size - free_pages * 4096))


def text_run_on_a_full_disk(root: Path, state: Path, free_pages: int) -> None:
    from cisfix.testing import build_node

    node = build_node(root)
    fill(state, free_pages)
    result = run_cisfix(node, "fix", "--state-dir", str(state))
    where = f"fix (text), {free_pages} free pages"
    lines = result.stdout.splitlines()
    if "Traceback" in result.stderr or not lines or not lines[-1].endswith(f"exit {result.returncode}"):
        violation(f"{where}: exit {result.returncode}, no closing line: {result.stdout[-300:]} {result.stderr[-300:]}")
    if result.returncode == 4 and not any("the journal cannot record changes, so the run stopped" in line
                                          for line in lines):
        violation(f"{where}: exit 4 without saying why")
    (state / "filler").unlink()
    recover_cleanly(node, state, where, "--state-dir", str(state))


def test_a_fix_that_fills_the_state_folder_still_reports_what_it_committed(tmp_path):
    """`fix --format json` on a tmpfs state folder with fewer and fewer free pages: the report is always
    printed, its transactions are what history says, a run cut short exits 4, and once there is room
    recovery and history agree with the files."""
    from cisfix.testing import build_node

    cut_short = []
    with small_tmpfs(tmp_path / "state", "256k") as state:
        for free_pages in range(0, 40):
            node = build_node(tmp_path / f"node-{free_pages}")
            fill(state, free_pages)
            result = run_cisfix(node, "fix", "--format", "json", "--state-dir", str(state))
            where = f"fix, {free_pages} free pages"
            if "Traceback" in result.stderr or not result.stdout.strip():
                violation(f"{where}: exit {result.returncode}, no report: {result.stderr.strip()[-300:]}")
            report = json.loads(result.stdout)
            history = {t: tx.state for t, tx in journal_of(state).transactions().items()}
            for tx in report["transactions"]:  # committed in the report if and only if in history
                if tx["txid"] not in history or tx["committed"] != (history[tx["txid"]] == "committed"):
                    violation(f"{where}: {tx} but history says {history.get(tx['txid'])}")
            # 1: done, with checks that need a person (this node has some); 3: a change undone and recorded
            if result.returncode not in (1, 3, 4) or (result.returncode == 4) != bool(report.get("unrecorded")):
                violation(f"{where}: exit {result.returncode}, unrecorded {report.get('unrecorded')!r}")
            check_not_torn(node.root, journal_of(state), where)
            committed = [tx for tx in report["transactions"] if tx["committed"]]
            still_full = run_cisfix(node, "recover", "--state-dir", str(state))  # the disk is still full
            now = {t: tx.state for t, tx in journal_of(state).transactions().items()}
            for said in (line.split(":")[0] for line in still_full.stdout.splitlines() if line.endswith(": rolled back")):
                if now.get(said) != "rolled-back":
                    violation(f"{where}: recover said {said} rolled back, history says {now.get(said)}")
            if still_full.returncode not in (0, 4) or "Traceback" in still_full.stderr or \
                    (still_full.returncode == 0 and any(tx.unfinished for tx in journal_of(state).transactions().values())):
                violation(f"{where}: recover on the full disk: exit {still_full.returncode} {still_full.stderr[-300:]}")
            (state / "filler").unlink()
            COUNTS["enospc"] += result.returncode != 1
            recover_cleanly(node, state, where, "--state-dir", str(state))
            if committed and result.returncode == 4:
                if not cut_short:  # the same run in text: the report, and its closing line, are printed too
                    text_run_on_a_full_disk(tmp_path / f"node-{free_pages}-text", state, free_pages)
                cut_short.append(free_pages)
            if result.returncode == 1:
                break
        else:
            violation("the fix never fitted in 39 free pages")
    assert cut_short, "no run committed some transactions and was then cut short by the full disk"


# ---- random kills on a running lab node ----

GATE = ("--timeout", "40", "--stability-window", "1")


def lab_command(rng: random.Random) -> List[str]:
    choice = rng.choice(["fix", "fix", "edit", "edit", "rollback", "recover"])
    if choice == "fix":
        return ["fix", "--level", "1", *GATE]
    if choice == "edit":
        component = rng.choice(["kube-scheduler", "kube-apiserver", "kube-controller-manager"])
        flag = rng.choice(["profiling=false", "profiling=true", "contention-profiling=false"])
        return ["edit", f"/etc/kubernetes/manifests/{component}.yaml", "--flag", flag, *GATE]
    if choice == "rollback":
        return ["rollback", "--last"]
    return ["recover", *GATE]


def test_random_kills_on_a_lab_node(make_lab):
    lab = make_lab()
    root, state = Path(lab.root), Path(lab.root) / "var/lib/cisfix"
    rng = random.Random(int(os.environ.get("CISFIX_TORTURE_SEED", "20261130")))
    kills, started = Counter(), time.monotonic()
    def run_and_maybe_kill(args: List[str], longest: float) -> bool:
        proc = subprocess.Popen([sys.executable, "-m", "cisfix", "--root", str(root), *args],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            proc.wait(timeout=rng.uniform(0.3, longest))
            killed = False
        except subprocess.TimeoutExpired:
            proc.kill()
            kills[args[0]] += 1
            COUNTS["kills"] += 1
            killed = True
        _, err = proc.communicate()
        if "Traceback" in err:
            violation(f"{args}: {err.strip()[-400:]}")
        check_not_torn(root, journal_of(state), f"kill during {args[0]}")
        return killed

    while sum(kills.values()) < LAB_KILLS and time.monotonic() - started < LAB_BUDGET:
        args = lab_command(rng)
        # Rollbacks are quick: kill them sooner. A kill of a change is often followed by a kill of
        # the recovery that restores it and gates the restart.
        if run_and_maybe_kill(args, 1.5 if args[0] == "rollback" else 4.0) and args[0] in ("fix", "edit"):
            if rng.random() < 0.5:
                run_and_maybe_kill(["recover", *GATE], 3.0)
        if sum(kills.values()) % 8 == 7:
            recover_cleanly(lab, state, f"after {dict(kills)} kills", *GATE)
    recover_cleanly(lab, state, "at the end", *GATE)
    if (state / "HALT").exists():
        violation(f"the lab node was HALTed: {(state / 'HALT').read_text()[:300]}")
    print(f"lab kills by command: {dict(kills)} in {time.monotonic() - started:.0f}s")
    assert sum(kills.values()) >= LAB_KILLS, f"only {dict(kills)} kills in {LAB_BUDGET}s"
