"""`cisfix drift`: the entry point for timers.

`drift` is silent when nothing happened; it prints one line per correction or problem (with `-q`
nothing else), writes the Prometheus textfile atomically at the end of every run — whatever its
outcome — and stands aside (one line, exit 0) while paused or while `kubeadm upgrade|init|join` runs;
on a HALTed node it exits 4."""
from __future__ import annotations

import argparse
import json
import random
import sys
import time
from typing import TYPE_CHECKING, List, Sequence

from . import status
from .cli_context import AddCommand, build_gate, format_option, gate_options, load_node, load_plugins, wait_option
from .errors import InputError
from .textfile import WHERE, run_with_textfile

if TYPE_CHECKING:  # the metrics import the audit: every command (and --version) would pay for it
    from .metrics import RunMetrics
    from .node import Node

EPILOG = """exit codes: 0 nothing to correct, every drift corrected, paused or standing aside for kubeadm;
1 checks fail that cisfix never fixed on this node (see --all) or a correction did not make its check pass;
2 bad input (nothing was changed), or a check could not be audited (CANNOT AUDIT: the other drifts are still
corrected); 3 a correction failed and was rolled back; 4 the node is HALTed, a rollback failed or the state
folder cannot be trusted or written; 5 another cisfix run holds the lock; 6 a check is FLAPPING: corrected FLAPLIMIT
times within the window, no longer corrected until `cisfix drift --reset ID` (or until a whole window passes
with no drift of it); 70 an internal error (a bug). Where several apply: 4, then 3, 2, 6, 1.
A textfile that cannot be written (one line on stderr says why) turns 0 into 2."""


def add_command(command: AddCommand) -> None:
    from .bounds import MAX_WAIT, bounded

    drift = command("drift", cmd_drift, "enforce the baseline (what cisfix fixed here, and the accepted risks): "
                                        "classify and correct drift, guard against flapping; for timers")
    drift.epilog = EPILOG
    drift.formatter_class = argparse.RawDescriptionHelpFormatter
    drift.add_argument("--all", action="store_true", help="enforce every automated check, as `fix` does")
    drift.add_argument("--level", type=int, choices=(1, 2), help="1: level 1 only; 2: levels 1 and 2 (default)")
    drift.add_argument("--node-type", choices=("auto", "master", "etcd", "worker"), default="auto")
    drift.add_argument("--reset", action="append", default=[], metavar="ID",
                       help="forget that this check flaps and correct it again (repeatable)")
    drift.add_argument("--textfile", metavar="FILE", help="the Prometheus textfile, " + WHERE)
    drift.add_argument("--random-delay", type=bounded(MAX_WAIT, zero=True), default=0.0, metavar="SECONDS",
                       help="first sleep a random time up to SECONDS (at most a day), to spread a fleet's runs")
    wait_option(drift)
    gate_options(drift)
    format_option(drift)


def cmd_drift(args: argparse.Namespace) -> int:
    node = load_node(args)  # a root that is not a node is one line, exit 2: no textfile written under it (or the cwd)
    if args.random_delay > 0:
        time.sleep(random.uniform(0, args.random_delay))
    return run_with_textfile(args, node, args.textfile, lambda run: _drift(args, node, run))


def _drift(args: argparse.Namespace, node: "Node", run: RunMetrics) -> int:
    from .audit import node_state, require_benchmark, run_audits, select
    from .drift import DriftState, run_drift, standing_aside
    from .halt import Halted, halt_file, refuse_if_halted
    from .interrupted import recovery_lines
    from .judged import judged_against, judged_info
    from .pause import read_pause
    from .reports import warning_lines

    plugins = load_plugins(args, for_changes=True, node=node)
    require_benchmark(plugins)
    state = node_state(plugins)  # one view of the node: its name, kubeadm's processes, the audit
    run.node_info = judged_info(plugins, args.level, state)
    node = plugins.node
    unknown = [i for i in args.reset if i not in plugins.checks]
    if unknown:
        raise InputError("--reset", f"no such check: {', '.join(unknown)}")
    checks = select(plugins, (), args.node_type, args.level)
    gate = build_gate(args, plugins)  # its settings are checked before the lock is taken
    with _drift_lock(node, args.wait):
        run.halted = halt_file(node).exists() or halt_file(node).is_symlink()
        paused = read_pause(node)
        run.paused = paused is not None
        if args.wait:  # the lock may have been waited for: what ran meanwhile is read again
            state = node_state(plugins)
        aside = None if paused else standing_aside(state)
        if run.halted or paused or aside:
            run.results = run_audits(plugins, checks, state)
            _counters(run, DriftState(node))
            if run.halted:
                try:
                    refuse_if_halted(node)
                except Halted as exc:
                    print(f"cisfix: error: {exc}", file=sys.stderr)
                    return exc.exit_code
            line = paused.line() if paused else aside
            print(json.dumps({"exit_code": 0, "standing_aside": line}) if args.format == "json" else line)
            return status.EXIT_OK
        report = run_drift(plugins, checks, gate, enforce_all=args.all, resets=args.reset, wait=args.wait, state=state)
        run.results = report.results
        _counters(run, report.state, report.baseline)
        if args.format == "json":
            recovered = {"recovered": [r.as_dict(node) for r in report.recovered]} if report.recovered else {}
            print(json.dumps({"judged_against": judged_against(run.node_info), **_as_json(report), **recovered,
                              "warnings": list(plugins.info.warnings)}, indent=2))
        else:
            recovered, lines = recovery_lines(node, report.recovered), _lines(report, args.quiet)
            # A timer's run stays silent when nothing happened; what recovery undid comes first, and the
            # warning rides with any other output and is always in the textfile and the JSON.
            for line in (recovered + warning_lines(plugins.info) + lines) if recovered or lines else ():
                print(line)
        return report.exit_code


def _drift_lock(node, wait: float):
    """Drift runs never overlap (a timer and a person, two cron lines): their flap guard reads and writes
    `drift.json` and `events.jsonl` around the fix, which takes the run lock only for its changes."""
    from contextlib import nullcontext

    from .lock import RunLock
    from .statedir import prepare_state_dir

    if not node.state_dir.exists():
        return nullcontext()  # cisfix never changed this node: no baseline, nothing to guard yet
    return RunLock(prepare_state_dir(node) / "drift.lock", wait)


def _counters(run: RunMetrics, state, baseline: Sequence[str] = ()) -> None:
    run.detected, run.corrections = dict(state.detected), dict(state.corrections)
    run.flapping = {check_id: check_id in state.flapping for check_id in {*baseline, *state.flapping}}


def _lines(report, quiet: bool) -> List[str]:
    lines = []
    for drift, result in report.corrected:
        where = f", {drift.file}" if drift.file else ""
        tx = f" [txid {result.txid}]" if result.txid else ""
        word = "CORRECTED" if result.status == status.FIXED else result.status
        lines.append(f"{word} {drift.check.id} ({drift.cls}{where}; found {drift.found}) {drift.check.title}{tx}")
        if result.status != status.FIXED and result.audit.reason:
            lines.append(f"    {result.audit.reason}")
    for check_id, history in sorted(report.flapping.items()):
        past = "; ".join(f"{_stamp(e['time'])} {e['class']} {e.get('file') or '-'} found {e.get('found')} "
                         f"-> {e['outcome']}" for e in history)
        lines.append(f"FLAPPING {check_id}: corrected {len(history)} time(s) in the window ({past or 'none left'}); "
                     f"not corrected until `cisfix drift --reset {check_id}`")
    for result in report.unaudited:
        lines.append(f"CANNOT AUDIT {result.check.id} {result.check.title}: {result.audit.reason}")
    if not quiet:
        for result in report.unenforced:
            lines.append(f"NOT ENFORCED {result.check.id} {result.check.title} (never fixed by cisfix here)")
    why = _why(report)
    if why:
        lines.append(why)
    return lines


def _why(report) -> str:
    code = report.exit_code
    if code == status.EXIT_OK:
        return ""
    if report.fix and report.fix.exit_code in (status.EXIT_ROLLED_BACK, status.EXIT_ROLLBACK_FAILED):
        return report.fix.why()
    if code == status.EXIT_INPUT:
        return (f"exit 2: {len(report.unaudited)} check(s) could not be audited, so whether they drifted is "
                f"unknown: {', '.join(r.check.id for r in report.unaudited)}")
    if code == status.EXIT_FLAPPING:
        return f"exit 6: {len(report.flapping)} check(s) flapping: {', '.join(sorted(report.flapping))}"
    ids = [r.check.id for r in report.unenforced]
    if report.fix and report.fix.exit_code:
        return report.fix.why()
    # Some of these only a person can fix (1.2.5 on kubeadm): say how to tell, not just "run fix".
    return (f"exit 1: {len(ids)} failing check(s) cisfix never fixed on this node: {', '.join(ids)}; "
            f"`cisfix fix --dry-run` shows which of them it can fix (then `cisfix fix`, or `cisfix drift --all`); "
            f"fix the others by hand, or accept the risk under `exceptions:` in {report.config}")


def _stamp(when: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(when))


def _as_json(report) -> dict:
    return {"exit_code": report.exit_code, "baseline": report.baseline, "restarts": report.restarts,
            "corrections": [{**drift.as_event(), "txid": result.txid, "outcome": result.status}
                            for drift, result in report.corrected],
            "flapping": report.flapping, "unenforced": [r.check.id for r in report.unenforced],
            "unaudited": {r.check.id: r.audit.reason for r in report.unaudited}}
