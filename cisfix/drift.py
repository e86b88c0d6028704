"""Unattended drift correction (`cisfix drift`): enforce the node's *baseline* — the checks cisfix fixed
and committed here (from the journal), with the node configuration's accepted risks — not every check.

For each baseline check that no longer holds, the drift is classified by comparing the check's files
with what cisfix last committed to them:

- `upgrade`: the file was regenerated with another image tag than the one cisfix committed against
  (`kubeadm upgrade` rewrites the manifests from its ClusterConfiguration and drops hand edits), or it
  has no image of its own (the kubelet's config) and changed while the node's images did;
- `boot`: a file the layout says a boot step rewrites (`Component.boot_owned`: AL2023's nodeadm, GKE's
  startup scripts) changed;
- `manual`: the bytes (or mode, owner) differ from what cisfix committed, same version;
- `unknown`: cisfix's files are as it committed them (something else overrides them), or the check
  was never fixed by cisfix (`--all`).

Corrections go through the same gated engine as `fix` (`cisfix.fix.run_fix`: one transaction per
component). The flap guard stops correcting a check corrected `flapLimit` times within `flapWindow`
hours: it is FLAPPING until `cisfix drift --reset ID`, or until a whole window passes with no drift of it.
What the guard needs between runs (counters, flapping checks, resets) is `<state>/drift.json`.
"""
from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Dict, List, Optional, Sequence, Tuple

from . import status
from .atomic import Meta, sha256, write_atomic
from .apply import recover_left
from .audit import run_audits
from .config import CONFIG_PATH
from .events import EventLog
from .identity import is_installer
from .interrupted import Recovered
from .journal import Journal, TxInfo
from .node import Node
from .plugins import Plugins
from .state import NodeState
from .statedir import UntrustedState, is_timestamp, load_state_json, prepare_state_dir, writing_state
from .trust import read_trusted
from .types import ERROR, FAIL, Check, CheckResult

if TYPE_CHECKING:  # pragma: no cover
    from .fix import FixReport
    from .gate import Gate

UPGRADE, BOOT, MANUAL, UNKNOWN = "upgrade", "boot", "manual", "unknown"
FLAP_LIMIT, FLAP_WINDOW_HOURS = 3, 24.0
_IMAGE = re.compile(rb"^\s*-?\s*image:\s*[\"']?([^\"'\s#]+)", re.M)
_STATE_WHY = "; drift.json must be root's own file in the state folder"


@dataclass
class Drift:
    check: Check
    cls: str
    file: Optional[str]  # the node path that changed, when one did
    found: str  # what the audit found instead

    def as_event(self) -> dict:
        return {"id": self.check.id, "class": self.cls, "file": self.file, "found": self.found}


def committed_fixes(journal: Journal) -> Tuple[Dict[str, TxInfo], Dict[str, Tuple[TxInfo, dict]]]:
    """The baseline: check id -> the last committed transaction that fixed it; and node path -> (the last committed transaction that wrote it, its file entry)."""
    fixed: Dict[str, TxInfo] = {}
    written: Dict[str, Tuple[TxInfo, dict]] = {}
    for tx in journal.transactions().values():
        if tx.state != "committed":
            continue
        for check_id in tx.fixed_checks:
            fixed[check_id] = tx
        for entry in tx.files:
            written[entry["path"]] = (tx, entry)
    return fixed, written


def _images(data: bytes) -> List[bytes]:
    return _IMAGE.findall(data)


def _committed_against(node: Node, entry: dict) -> Optional[bytes]:
    """The file as it was before cisfix last committed to it (its backup): the version cisfix's change
    was made against, since cisfix changes flags and modes, never image tags."""
    backup = node.state_dir / entry["backup"] if entry["backup"] else None
    return backup.read_bytes() if backup and backup.is_file() else None


def node_upgraded(node: Node, written: Dict[str, Tuple[TxInfo, dict]]) -> bool:
    """Whether any manifest cisfix committed to now runs other images than then: the node was upgraded,
    and files with no image of their own (the kubelet's config, which `kubeadm upgrade` rewrites too)
    changed with it."""
    for path, (_, entry) in written.items():
        before = _committed_against(node, entry)
        host = node.host(path)
        if before and _images(before) and host.is_file() and _images(host.read_bytes()) != _images(before):
            return True
    return False


def classify(node: Node, result: CheckResult, fix_tx: Optional[TxInfo],
             written: Dict[str, Tuple[TxInfo, dict]], upgraded: bool, package_owned: frozenset = frozenset(),
             boot_owned: Callable[[str], bool] = lambda path: False) -> Drift:
    """`upgraded`: the node's images changed since cisfix committed (`node_upgraded`). A file of
    `package_owned` (the layout's `Component.package_owned`) that changed was reinstalled by its package's
    upgrade — nobody else rewrites it — so its drift is an upgrade's; one `boot_owned` says (the layout's
    `Component.boot_owned`) was rewritten by the node's boot step."""
    found = str(result.audit.actual or result.audit.reason or "fails")
    if fix_tx is None:
        return Drift(result.check, UNKNOWN, None, found)
    for entry in fix_tx.files:
        path = entry["path"]
        _, last = written[path]
        host = node.host(path)
        try:
            data, meta = host.read_bytes(), Meta.of(os.stat(host))
        except FileNotFoundError:
            return Drift(result.check, MANUAL, path, f"{found} ({path} was removed)")
        after = last["after"]
        if sha256(data) == after["sha256"] and meta == Meta.from_dict(after):
            continue
        if path in package_owned:
            return Drift(result.check, UPGRADE, path, found)
        if boot_owned(path):
            return Drift(result.check, BOOT, path, found)
        before = _committed_against(node, last)
        if before is None:
            return Drift(result.check, UNKNOWN, path, found)
        regenerated = _images(data) != _images(before) if _images(before) else upgraded
        return Drift(result.check, UPGRADE if regenerated else MANUAL, path, found)
    return Drift(result.check, UNKNOWN, None, found)


def _valid_state(data: object) -> bool:
    def mapping(key: str, valid) -> bool:
        value = data.get(key, {})  # type: ignore[union-attr]
        return isinstance(value, dict) and all(isinstance(k, str) and valid(v) for k, v in value.items())

    return isinstance(data, dict) and all((
        mapping("detected", lambda v: isinstance(v, int)), mapping("corrections", lambda v: isinstance(v, int)),
        mapping("drifted", lambda v: isinstance(v, str)), mapping("resets", is_timestamp),
        mapping("flapping", lambda v: isinstance(v, dict) and is_timestamp(v.get("since"))
                and is_timestamp(v.get("lastDrift")))))


class DriftState:
    """`<state>/drift.json`: counters for the metrics, the checks drifted at the end of the last run (so
    a drift is counted once, not at every run it lasts), flapping checks and resets."""

    def __init__(self, node: Node) -> None:
        self.path = node.state_dir / "drift.json"
        try:
            data = load_state_json(read_trusted(self.path, UntrustedState, _STATE_WHY))
        except FileNotFoundError:
            data = {}
        except ValueError:
            data = None
        if not _valid_state(data):
            raise UntrustedState(self.path, "not a drift state cisfix wrote" + _STATE_WHY)
        self.detected: Dict[str, int] = data.get("detected", {})  # "id class" -> count
        self.corrections: Dict[str, int] = data.get("corrections", {})  # "id outcome" -> count
        self.drifted: Dict[str, str] = data.get("drifted", {})  # id -> class
        self.flapping: Dict[str, dict] = data.get("flapping", {})  # id -> {since, lastDrift}
        self.resets: Dict[str, float] = data.get("resets", {})  # id -> time
        self._saved = self._data()

    def _data(self) -> dict:
        """A copy: what the run changes is compared with what was read."""
        return json.loads(json.dumps({"detected": self.detected, "corrections": self.corrections,
                                      "drifted": self.drifted, "flapping": self.flapping, "resets": self.resets}))

    def save(self, node: Node) -> None:
        data = self._data()
        if data == self._saved:
            return  # a run with no drift writes nothing
        prepare_state_dir(node)
        with writing_state(self.path):
            write_atomic(self.path, json.dumps(data, sort_keys=True).encode() + b"\n",
                         Meta(0o600, os.geteuid(), os.getegid()))
        self._saved = data

    @staticmethod
    def key(*parts: str) -> str:
        return " ".join(parts)


@dataclass
class DriftReport:
    results: List[CheckResult]  # the audit of the selected checks, before any correction
    corrected: List[Tuple[Drift, CheckResult]] = field(default_factory=list)
    flapping: Dict[str, List[dict]] = field(default_factory=dict)  # id -> its corrections in the window
    unenforced: List[CheckResult] = field(default_factory=list)  # failing, never fixed by cisfix
    unaudited: List[CheckResult] = field(default_factory=list)  # ERROR: whether they drifted is unknown
    fix: Optional[FixReport] = None
    baseline: List[str] = field(default_factory=list)
    state: Optional[DriftState] = None
    config: str = CONFIG_PATH  # the node configuration file as the operator reaches it (under --root)
    recovered: List[Recovered] = field(default_factory=list)  # what an interrupted run left, undone first

    @property
    def restarts(self) -> Dict[str, int]:
        return self.fix.restarts if self.fix else {}

    @property
    def exit_code(self) -> int:
        """4, then 3, 2 (a check could not be audited, as `fix` and `audit` say), 6, 1."""
        codes = [self.fix.exit_code if self.fix else status.EXIT_OK]
        if self.unenforced:
            codes.append(status.EXIT_STILL_FAILING)
        if self.flapping:
            codes.append(status.EXIT_FLAPPING)
        if self.unaudited:
            codes.append(status.EXIT_INPUT)
        return status.worst(*codes)


@dataclass
class _Run:
    """What one drift run works with."""

    node: Node
    state: DriftState
    events: List[dict]  # the corrections logged so far
    now: float
    limit: int
    window: float  # seconds
    package_owned: frozenset = frozenset()  # the layout's package-owned files (`NodeInfo.package_owned`)
    boot_owned: Callable[[str], bool] = lambda path: False  # `NodeInfo.boot_owned`

    def history(self, check_id: str) -> List[dict]:
        """The check's corrections that count for the flap guard: in the window, after its last reset."""
        since = max(self.now - self.window, self.state.resets.get(check_id, 0.0))
        return [e for e in self.events if e["id"] == check_id and e["time"] >= since]


def run_drift(plugins: Plugins, checks: Sequence[Check], gate: Gate, *, enforce_all: bool = False,
              resets: Sequence[str] = (), wait: float = 0.0, state: Optional[NodeState] = None) -> DriftReport:
    """`state`: the run's view of the node so far, audited unless recovery changes the node first (a
    timer's run reads the node once)."""
    node = plugins.node
    guard = plugins.config.get("drift", {})
    log = EventLog(node.state_dir / "events.jsonl")
    run = _Run(node, DriftState(node), log.read(), time.time(), guard.get("flapLimit", FLAP_LIMIT),
               guard.get("flapWindowHours", FLAP_WINDOW_HOURS) * 3600, plugins.info.package_owned(),
               plugins.info.boot_owned)
    for check_id in resets:
        run.state.flapping.pop(check_id, None)
        run.state.resets[check_id] = run.now
    recovered = recover_left(plugins, gate, wait)  # the audit then sees the node as recovery left it
    fixed, written = committed_fixes(Journal(node.state_dir / "journal.jsonl"))
    report = DriftReport(run_audits(plugins, checks, None if recovered else state), baseline=sorted(set(fixed) & {c.id for c in checks}),
                         config=plugins.node.display(CONFIG_PATH),
                         state=run.state, recovered=recovered)
    drifts = _detect(run, report, fixed, written, enforce_all)
    _end_flapping(run, report)
    if drifts:
        _correct(plugins, gate, run, report, drifts, log, wait)
    run.state.save(node)
    return report


def _detect(run: _Run, report: DriftReport, fixed: Dict[str, TxInfo], written: Dict[str, Tuple[TxInfo, dict]],
            enforce_all: bool) -> List[Drift]:
    """Classify every failing check of the baseline (every automated one with `enforce_all`), count each
    drift once, and hold back the flapping ones; the rest is to be corrected."""
    state, drifts = run.state, []
    upgraded: Optional[bool] = None  # read only when something drifted
    for result in report.results:
        check = result.check
        if result.audit.status == ERROR:
            report.unaudited.append(result)
            continue
        if result.audit.status != FAIL or not check.automated:
            continue
        if check.id not in fixed and not enforce_all:
            report.unenforced.append(result)
            continue
        if upgraded is None:
            upgraded = node_upgraded(run.node, written)
        drift = classify(run.node, result, fixed.get(check.id), written, upgraded, run.package_owned, run.boot_owned)
        if check.id not in state.drifted:
            key = state.key(check.id, drift.cls)
            state.detected[key] = state.detected.get(key, 0) + 1
        state.drifted[check.id] = drift.cls
        history = run.history(check.id)
        if check.id in state.flapping or len(history) >= run.limit:
            state.flapping.setdefault(check.id, {"since": run.now})["lastDrift"] = run.now
            report.flapping[check.id] = history
        else:
            drifts.append(drift)
    failing = {r.check.id for r in report.results if r.audit.status in (FAIL, ERROR)}  # ERROR: maybe still drifted
    for check_id in [i for i in state.drifted if i not in failing]:
        del state.drifted[check_id]
    return drifts


def _end_flapping(run: _Run, report: DriftReport) -> None:
    """A flapping check that holds now stays FLAPPING until a whole window passes with no drift of it."""
    for check_id, flap in list(run.state.flapping.items()):
        if check_id in report.flapping:
            continue
        if run.now - flap["lastDrift"] >= run.window:
            del run.state.flapping[check_id]
        else:
            report.flapping[check_id] = run.history(check_id)


def _correct(plugins: Plugins, gate: Gate, run: _Run, report: DriftReport, drifts: List[Drift], log: EventLog,
             wait: float) -> None:
    """Through the engine `fix` uses (one gated transaction per component); one event per correction."""
    from .fix import run_fix  # the engine, only when something drifted

    by_id = {d.check.id: d for d in drifts}
    report.fix = run_fix(plugins, [d.check for d in drifts], gate, wait=wait)
    for result in report.fix.results:
        drift = by_id.get(result.check.id)
        if drift is None or result.status not in (status.FIXED, *status.FAILED):
            continue  # compliant again meanwhile, or no safe fix: nothing was changed
        report.corrected.append((drift, result))
        log.append({"time": round(time.time(), 3), **drift.as_event(), "txid": result.txid, "outcome": result.status})
        key = run.state.key(result.check.id, result.status)
        run.state.corrections[key] = run.state.corrections.get(key, 0) + 1
        if result.status == status.FIXED:
            run.state.drifted.pop(result.check.id, None)


def standing_aside(state: NodeState) -> Optional[str]:
    """Why a drift run must not touch the node now: `kubeadm upgrade`, `init` or `join` is running
    (it writes the same files and restarts the same components) — the node's kubeadm, by the rule of
    `cisfix.identity`, not any process that calls itself so."""
    for process in state.processes():
        argv = process.argv
        if not argv or os.path.basename(argv[0]) != "kubeadm" or not is_installer(state.proc_dir, process, "kubeadm"):
            continue
        words = [a for a in argv[1:] if not a.startswith("-")][:2]  # `kubeadm --config F init` too
        verb = next((w for w in words if w in ("upgrade", "init", "join")), None)
        if verb:
            return f"kubeadm {verb} is running (pid {process.pid}); drift stands aside until it ends"
    return None
