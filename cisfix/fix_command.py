"""`cisfix fix`: remediate failing checks, gated, and with `--persist` persist what was fixed."""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from typing import TYPE_CHECKING, Optional

from . import status
from .cli_context import AddCommand, build_gate, format_option, gate_options, load_node, load_plugins, wait_option
from .textfile import WHERE, run_with_textfile

if TYPE_CHECKING:
    from .metrics import RunMetrics
    from .node import Node


def add_command(command: AddCommand) -> None:
    fix = command("fix", cmd_fix, "remediate failing checks: one gated transaction per component, the "
                                  "components of one dependency level restarted and gated together")
    fix.add_argument("--check", action="append", default=[], metavar="ID", help="only this check (repeatable)")
    fix.add_argument("--node-type", choices=("auto", "master", "etcd", "worker"), default="auto")
    fix.add_argument("--level", type=int, choices=(1, 2), help="1: level 1 only; 2: levels 1 and 2 (default)")
    # A dry run writes nothing, not even metrics: its audit is the node before the changes it shows.
    dry_run_or_textfile = fix.add_mutually_exclusive_group()
    dry_run_or_textfile.add_argument("--dry-run", action="store_true",
                                     help="print the plan and the diffs, change nothing")
    dry_run_or_textfile.add_argument("--textfile", nargs="?", const="", metavar="FILE",
                                     help="at the end of every run, whatever its outcome, write drift's "
                                          "Prometheus textfile: FILE, " + WHERE)
    fix.add_argument("--diff", action="store_true", help="print the diffs and apply")
    fix.add_argument("--sequential", action="store_true",
                     help="one component at a time, in dependency order, instead of a level's together")
    fix.add_argument("--one-at-a-time", action="store_true",
                     help="one transaction (and restart) per check, one component at a time")
    wait_option(fix)
    fix.add_argument("--persist", action="store_true",
                     help="after a fix that rolled nothing back, persist the fixes as `cisfix persist` does")
    fix.add_argument("--force", action="store_true", help="with --persist: as `cisfix persist --force`")
    fix.add_argument("--first-control-plane", action="store_true",
                     help="this node makes what every control-plane node must share (the encryption key), where "
                          "it has several: once, on one node; the others install it (`persist --install`)")
    gate_options(fix)
    format_option(fix)


def cmd_fix(args: argparse.Namespace) -> int:
    node = load_node(args)  # a root that is not a node: one line, exit 2, and no textfile under it
    if args.textfile is None:
        return _fix(args, node)
    return run_with_textfile(args, node, args.textfile, lambda run: _fix(args, node, run))


def _fix(args: argparse.Namespace, node: "Node", run: Optional["RunMetrics"] = None) -> int:
    """The fix; `run`, when a textfile is asked for, gets what it reports (the audit after the fix)."""
    from .audit import require_benchmark, select
    from .fix import run_fix
    from .judged import judged_against, judged_info
    from .pause import read_pause

    paused = read_pause(node)
    if paused and not args.dry_run:
        if run is not None:
            _audit_while_paused(args, node, run)
        print(paused.line())
        return status.EXIT_OK
    if paused and args.format != "json":  # a dry run still shows the plan, first saying it would not apply now
        print(f"{paused.line()} — a real fix would change nothing now")
    plugins = load_plugins(args, for_changes=True, node=node)
    if args.first_control_plane:  # for this run only: a setting copied to every node would make a key on each
        plugins.info = replace(plugins.info, first_control_plane=True)
    require_benchmark(plugins)
    checks = select(plugins, args.check, args.node_type, args.level)
    judged = judged_info(plugins, args.level)  # the node's name as it is before any change
    if run is not None:
        run.node_info = judged
    report = run_fix(plugins, checks, build_gate(args, plugins), dry_run=args.dry_run,
                     one_at_a_time=args.one_at_a_time, sequential=args.sequential, wait=args.wait)
    if run is not None:
        run.results = report.results
    # Persist what is committed once the fix has ended well (fixed, or failing only where a person must act).
    persisted = None
    if args.persist and not args.dry_run and report.exit_code in (status.EXIT_OK, status.EXIT_STILL_FAILING):
        from .persist import run_persist

        persisted = run_persist(load_plugins(args, for_changes=True), args.force, wait=args.wait)
    code = report.exit_code if report.exit_code or persisted is None else persisted.exit_code
    if args.format == "json":
        unrecorded = {"unrecorded": report.unrecorded} if report.unrecorded else {}
        recovered = [r.as_dict(plugins.node) for r in report.recovered]
        print(json.dumps({"judged_against": judged_against(judged), "summary": _fix_summary(report.results),
                          "warnings": list(plugins.info.warnings),
                          **({"paused": paused.line()} if paused else {}),
                          **({"recovered": recovered} if recovered else {}),
                          "restarts": report.restarts, "transactions": report.transactions(), **unrecorded,
                          "results": [r.as_dict() for r in report.results],
                          "diff": report.diff, **({"persist": persisted.as_dict()} if persisted else {})}, indent=2))
        return code
    from .interrupted import recovery_lines
    from .reports import warning_lines

    # First, even before a long diff: what recovery undid (a change, so also with -q), then the warnings.
    for line in recovery_lines(plugins.node, report.recovered) + warning_lines(plugins.info):
        print(line)
    if (args.dry_run or args.diff) and report.diff:
        sys.stdout.write(report.diff)
    _print_fix_text(report, args.quiet, args.dry_run)
    if persisted:
        from .persist import print_report

        print_report(persisted, args.quiet, args.diff)
    return code


def _audit_while_paused(args: argparse.Namespace, node: "Node", run: "RunMetrics") -> None:
    """Paused, fix changes nothing; its textfile still says what the node is (as drift's does)."""
    from .audit import require_benchmark, run_audits, select
    from .judged import judged_info

    plugins = load_plugins(args, for_changes=True, node=node)
    require_benchmark(plugins)
    run.paused, run.node_info = True, judged_info(plugins, args.level)
    run.results = run_audits(plugins, select(plugins, args.check, args.node_type, args.level))


def _print_fix_text(report, quiet: bool, dry_run: bool) -> None:
    """One line per change made or failed and per check that needs a person (with what to do), counts
    for the rest, and a closing line: `fixed 19 · needs a person 2 · excepted 4 · exit 1`. Quiet: the
    changes made or failed, and when the exit code is not 0, one line saying why."""
    from .audit import natural_order

    groups = report.by_outcome()
    shown = groups["changed"] + groups["failed"] + ([] if quiet else groups["needs a person"])
    for r in sorted(shown, key=lambda r: natural_order(r.check.id)):
        label = "NEEDS A PERSON" if r in groups["needs a person"] else r.status
        tx = f" [txid {r.txid}]" if r.txid else ""
        print(f"{label:<34} {r.check.id:<10} {r.check.title}{tx}")
        if r.status not in (status.FIXED, status.WOULD_FIX) and r.audit.reason:
            print(f"{'':<34} {r.audit.reason}")
    for line in report.placed:
        print(f"{'':<34} changed where the operator set it: {line}")
    if quiet:
        if report.why():
            print(report.why())
        return
    for key in ("excepted", "compliant", "manual or not applicable"):
        if groups[key]:
            print(f"{len(groups[key])} {key}" + (": " + ", ".join(r.check.id for r in groups[key])
                                                 if key == "excepted" else ""))
    if report.why():
        print(report.why())
    failed = f" · failed {len(groups['failed'])}" if groups["failed"] else ""
    print(f"{'would fix' if dry_run else 'fixed'} {len(groups['changed'])}{failed} · needs a person "
          f"{len(groups['needs a person'])} · excepted {len(groups['excepted'])} · exit {report.exit_code}")


def _fix_summary(results) -> dict:
    counts: dict = {}
    for r in results:
        counts[r.status] = counts.get(r.status, 0) + 1
    return counts
