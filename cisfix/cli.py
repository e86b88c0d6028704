"""The `cisfix` command line. Every command shares `--root`, `--state-dir`, `-v` and `-q`, the statuses
and the exit codes in `cisfix.status`."""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from typing import Callable, NoReturn, Optional, Sequence

from . import status
from .bounds import MAX_STABILITY, MAX_TIMEOUT, MAX_WAIT, bounded
from .errors import CisfixError, EditError, InputError

log = logging.getLogger("cisfix")


def _common_options(parser: argparse.ArgumentParser, subcommand: bool = False) -> None:
    """Global options, accepted before or after the command name. On a subcommand they have no default,
    so that they do not overwrite a value given before the command name."""
    def d(value: object) -> object:
        return argparse.SUPPRESS if subcommand else value

    parser.add_argument("--root", default=d("/"), help="the node's root directory (default /)")
    parser.add_argument("--state-dir", type=_state_dir, default=d(None),
                        help="journal, backups and lock (default <root>/var/lib/cisfix)")
    parser.add_argument("-v", "--verbose", action="count", default=d(0), help="more detail on stderr")
    parser.add_argument("-q", "--quiet", action="store_true", default=d(False), help="only errors on stderr")
    parser.add_argument("--checks-dir", action="append", default=d([]), metavar="DIR",
                        help="also load checks and plugin modules from DIR (repeatable)")
    parser.add_argument("--disable", action="append", default=d([]), metavar="ID", help="leave out a check (repeatable)")
    parser.add_argument("--benchmark", default=d(None), help="audit against this benchmark (see `cisfix benchmarks`)")
    parser.add_argument("-p", dest="plugin_options", action="append", default=d([]), metavar="no:NAME",
                        help="-p no:NAME blocks the plugin NAME (repeatable)")


def _state_dir(text: str) -> str:
    """A folder, or a path that does not exist yet: refused while parsing, so that no command (drift's
    textfile writer included) starts on it."""
    from pathlib import Path

    from .node import require_state_dir

    try:
        require_state_dir(Path(os.path.abspath(text)))
    except InputError as exc:
        raise argparse.ArgumentTypeError(str(exc))
    return text


def _key_value(text: str) -> tuple:
    name, sep, value = text.partition("=")
    name = name.lstrip("-")
    if not name:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return name, (value if sep else None)


def _key_item(text: str) -> tuple:
    name, value = _key_value(text)
    if value is None or value == "":
        raise argparse.ArgumentTypeError(f"expected NAME=ITEM, got {text!r}")
    return name, value


def _format_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--format", choices=("text", "json"), default="text")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> "NoReturn":
        # One line, like every other error, instead of argparse's usage block.
        self.exit(status.EXIT_INPUT, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def _gate_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--timeout", type=bounded(MAX_TIMEOUT), metavar="SECONDS",
                        help="per component: how long it may take to restart and become healthy (default 180, "
                             "at most a day)")
    parser.add_argument("--stability-window", type=bounded(MAX_STABILITY, zero=True), metavar="SECONDS",
                        help="how long it must then stay healthy without restarting (default 15, at most an hour "
                             "and less than the timeout)")


def wait_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--wait", type=bounded(MAX_WAIT, zero=True), default=0.0, metavar="SECONDS",
                        help="wait this long (at most a day) for another run's lock instead of exiting 5")


def build_parser() -> argparse.ArgumentParser:
    from .version import version_string

    parser = _Parser(prog="cisfix", description="Audit and safely fix CIS Kubernetes "
                                     "Benchmark findings on a Kubernetes node.")
    parser.add_argument("--version", action="version", version=version_string())
    _common_options(parser)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True

    def command(name: str, handler: Callable, help: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help, description=help)
        _common_options(sub, subcommand=True)
        sub.set_defaults(handler=handler)
        return sub

    edit = command("edit", cmd_edit, "change flags of a static pod manifest or paths of a YAML config file")
    edit.add_argument("file", help="node path of the file: a static pod manifest, a flag file or a YAML config file")
    edit.add_argument("--flag", type=_key_value, action="append", default=[], metavar="NAME=VALUE",
                      help="set --NAME=VALUE on the component's command line (NAME alone: a bare flag)")
    edit.add_argument("--unflag", action="append", default=[], metavar="NAME", help="remove --NAME")
    edit.add_argument("--flag-add", type=_key_item, action="append", default=[], metavar="NAME=ITEM",
                      help="add ITEM to the comma-separated value of --NAME")
    edit.add_argument("--flag-drop", type=_key_item, action="append", default=[], metavar="NAME=ITEM",
                      help="remove ITEM from the comma-separated value of --NAME")
    edit.add_argument("--set", type=_key_value, action="append", default=[], metavar="PATH=VALUE",
                      help='set a dotted YAML path (a."b.c" for a key with dots); VALUE is a YAML flow value: '
                           'a scalar (quote it to force a string), [A, B] or {key: value}')
    edit.add_argument("--unset", action="append", default=[], metavar="PATH",
                      help='delete a dotted YAML path (a."b.c" for a key with dots)')
    edit.add_argument("--component", help="the container to edit, when neither its label nor the file name says")
    edit.add_argument("--kind", help="the document to edit in a multi-document YAML file, by its kind")
    edit.add_argument("--dry-run", action="store_true", help="print the diff, change nothing")
    edit.add_argument("--diff", action="store_true", help="print the diff and apply")
    edit.add_argument("--no-health-gate", action="store_true", help="do not wait for the component's health")
    _gate_options(edit)
    wait_option(edit)
    _format_option(edit)

    recover = command("recover", cmd_recover, "finish or undo what an interrupted run left unfinished")
    wait_option(recover)
    _gate_options(recover)
    _format_option(recover)

    rollback = command("rollback", cmd_rollback, "undo a committed transaction")
    which = rollback.add_mutually_exclusive_group(required=True)
    which.add_argument("txid", nargs="?", help="the transaction to undo (see `cisfix history`)")
    which.add_argument("--last", action="store_true", help="the most recent committed transaction")
    wait_option(rollback)
    _gate_options(rollback)
    _format_option(rollback)

    prune = command("prune", cmd_prune, "remove finished transactions and their backups past the retention")
    prune.add_argument("--dry-run", action="store_true", help="list what would be pruned, change nothing")
    wait_option(prune)

    history = command("history", cmd_history, "list transactions, their state, files, hashes and backups")
    _format_option(history)

    audit = command("audit", cmd_audit, "audit the node with every check that applies to it")
    audit.add_argument("--check", action="append", default=[], metavar="ID", help="only this check (repeatable)")
    audit.add_argument("--node-type", choices=("auto", "master", "etcd", "worker"), default="auto")
    audit.add_argument("--level", type=int, choices=(1, 2), help="1: level 1 only; 2: levels 1 and 2 (default)")
    audit.add_argument("--format", default="text",
                       help="text, json, junit, prometheus, kube-bench, or a format a plugin registers")
    audit.add_argument("--output", metavar="FILE", help="write the report to FILE (atomically) instead of stdout")

    fix = command("fix", cmd_fix, "remediate failing checks: one gated transaction per component, the "
                                  "components of one dependency level restarted and gated together")
    fix.add_argument("--check", action="append", default=[], metavar="ID", help="only this check (repeatable)")
    fix.add_argument("--node-type", choices=("auto", "master", "etcd", "worker"), default="auto")
    fix.add_argument("--level", type=int, choices=(1, 2), help="1: level 1 only; 2: levels 1 and 2 (default)")
    fix.add_argument("--dry-run", action="store_true", help="print the plan and the diffs, change nothing")
    fix.add_argument("--diff", action="store_true", help="print the diffs and apply")
    fix.add_argument("--sequential", action="store_true",
                     help="one component at a time, in dependency order, instead of a level's together")
    fix.add_argument("--one-at-a-time", action="store_true",
                     help="one transaction (and restart) per check, one component at a time")
    wait_option(fix)
    fix.add_argument("--persist", action="store_true",
                     help="after a fix that rolled nothing back, persist the fixes as `cisfix persist` does")
    fix.add_argument("--force", action="store_true", help="with --persist: as `cisfix persist --force`")
    _gate_options(fix)
    _format_option(fix)

    persist = command("persist", cmd_persist, "keep the committed fixes where the node's installer regenerates "
                                              "them from (kubeadm: ClusterConfiguration, kubelet-config, patch files)")
    persist.add_argument("--dry-run", action="store_true", help="show what would change, change nothing")
    persist.add_argument("--diff", action="store_true", help="show the changes and apply them")
    persist.add_argument("--force", action="store_true",
                         help="replace values someone else set there (default: report them and keep them)")
    wait_option(persist)
    _format_option(persist)

    resume = command("resume", cmd_resume, "clear HALT once the node has been repaired by hand and every "
                                            "component answers healthy")
    resume.add_argument("--force", action="store_true",
                        help="clear HALT even when components do not answer healthy (it names them)")
    wait_option(resume)
    _gate_options(resume)

    checks = command("checks", None, "list, show and validate checks; print the check schema")
    checks_commands = checks.add_subparsers(dest="checks_command", metavar="SUBCOMMAND", parser_class=_Parser)
    checks_commands.required = True
    listing = checks_commands.add_parser("list", help="every loaded check")
    listing.set_defaults(handler=cmd_checks_list)
    _format_option(listing)
    show = checks_commands.add_parser("show", help="one check in full")
    show.add_argument("id")
    show.set_defaults(handler=cmd_checks_show)
    validate = checks_commands.add_parser("validate", help="validate declarative check files (exit 2 if invalid)")
    validate.add_argument("files", nargs="+", metavar="FILE")
    validate.set_defaults(handler=cmd_checks_validate)
    checks_commands.add_parser("schema", help="print the JSON Schema of declarative checks").set_defaults(
        handler=cmd_checks_schema)

    plugins = command("plugins", cmd_plugins, "loaded plugins: name, version, source, number of checks")
    _format_option(plugins)

    benchmarks = command("benchmarks", cmd_benchmarks, "benchmarks the plugins implement, and the node's")
    _format_option(benchmarks)

    from .health_command import add_command as add_health_command

    add_health_command(command)

    from .paths_command import add_command as add_paths_command

    add_paths_command(command)

    from .drift_command import add_commands as add_drift_commands

    add_drift_commands(command)

    from .lab.cli import add_commands as add_lab_commands

    add_lab_commands(commands, lambda sub: _common_options(sub, subcommand=True))
    return parser


def _node(args: argparse.Namespace, require_node: bool = True):
    """The node of `--root`. Commands that read or change it refuse a root that is not a node, before
    anything (a lock, a state folder) is created there."""
    from .builtin import not_a_node_reason
    from .node import Node

    node = Node(args.root, args.state_dir)
    reason = not_a_node_reason(node) if require_node else None
    if reason:
        raise CisfixError(f"{node.root} does not look like a Kubernetes node: {reason}")
    return node


def _edit_ops(args: argparse.Namespace) -> tuple:
    """The edit's operations, every one refused here (one line, before anything is locked or read) when
    it could not be honoured: text that is no UTF-8, a path too deep or malformed, a value nested too
    deep, a number no configuration holds, `--set PATH` without a value."""
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    from .bounds import MAX_NESTING, MAX_PATH_KEYS, nesting_depth, non_finite
    from .editors.config import split_path
    from .nodefile import refuse_yaml_aliases
    from .plan import AddFlagItem, RemoveFlag, RemoveFlagItem, SetFlag, SetPath, UnsetPath
    from .shown import shown

    def utf8(option: str, *texts: Optional[str]) -> None:
        for text in texts:
            try:
                (text or "").encode("utf-8")
            except UnicodeEncodeError:  # bytes that are no UTF-8 reach argv as surrogate escapes
                raise InputError(f"{option} {shown(text.encode('utf-8', 'surrogateescape'))}", "not UTF-8 text")

    def yaml_path(option: str, path: str) -> str:
        utf8(option, path)
        try:
            keys = len(split_path(path))
        except EditError as exc:
            raise InputError(f"{option} {shown(path)}", str(exc))
        if keys > MAX_PATH_KEYS:
            raise InputError(f"{option} {shown(path)}", f"path has {keys} keys, more than the {MAX_PATH_KEYS} accepted")
        return path

    def flow_value(path: str, text: Optional[str]) -> object:
        """A YAML flow value: a scalar, `[A, B]` or `{memory.available: 100Mi}`, nested at most
        MAX_NESTING deep (deeper, the parser and the editors run out of recursion), its numbers finite."""
        yaml_path("--set", path)
        if text is None:
            raise InputError(f"--set {path}", "--set needs PATH=VALUE (--unset PATH removes a path)")
        utf8(f"--set {path}", text)
        refuse_yaml_aliases(text, f"--set {path}")
        too_deep = InputError(f"--set {path}", f"value is nested more than {MAX_NESTING} deep")
        try:
            value = YAML(typ="safe", pure=True).load(text)
        except YAMLError as exc:
            problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            raise InputError(f"--set {path}", f"value is not valid YAML: {problem}")
        except RecursionError:
            raise too_deep from None
        if nesting_depth(value) > MAX_NESTING:
            raise too_deep
        number = non_finite(value)
        if number is not None:
            raise InputError(f"--set {path}", f"value holds the number {number}; only finite numbers are accepted")
        return value

    for name, value in [*args.flag, *args.flag_add, *args.flag_drop, *((n, None) for n in args.unflag)]:
        utf8("--flag", name, value)
    ops: list = [SetFlag(n, v) for n, v in args.flag]
    ops += [RemoveFlag(n.lstrip("-")) for n in args.unflag]
    ops += [AddFlagItem(n, i) for n, i in args.flag_add]
    ops += [RemoveFlagItem(n, i) for n, i in args.flag_drop]
    ops += [SetPath(p, flow_value(p, v)) for p, v in args.set]
    ops += [UnsetPath(yaml_path("--unset", p)) for p in args.unset]
    return tuple(ops)


def _gate(args: argparse.Namespace, plugins):
    from .gate import gate_settings, make_gate, progress_printer

    settings = gate_settings(plugins.config, args.timeout, args.stability_window)
    return make_gate(plugins, settings, progress_printer(args.quiet))


def cmd_edit(args: argparse.Namespace) -> int:
    from functools import partial

    from .apply import apply_gated, component_of, open_session
    from .audit import node_state
    from .engine import run_changes
    from .settings import edit_change

    ops = _edit_ops(args)
    if not ops:
        raise InputError(args.file, "nothing to do: give --flag, --unflag, --flag-add, --flag-drop, --set or --unset")
    plugins = _plugins(args, for_changes=not args.dry_run)
    node = plugins.node
    path = node.node_path(args.file)
    plugins = _plugins(args)  # the layout says which editor a file takes, gated or not
    edit = edit_change(plugins.info, path, ops, args.component, args.kind)
    gate = _gate(args, plugins)
    component = None if args.no_health_gate else component_of(plugins.info, node.resolve(path))
    options = {"editors": plugins.editors(), "state": node_state(plugins),
               "session": partial(open_session, plugins, gate, args.wait),
               "applier": partial(apply_gated, plugins=plugins, gate=gate, component=component, label=f"edit {path}")}
    outcome = run_changes(node, [edit], dry_run=args.dry_run, wait=args.wait, **options)
    if args.format == "json":
        print(json.dumps(outcome.as_dict(), indent=2))
        return outcome.exit_code
    if (args.dry_run or args.diff) and outcome.diff:
        sys.stdout.write(outcome.diff)
    if not args.quiet:
        for note in outcome.changes:
            print(f"  {note}")
        tx = f" [txid {outcome.txid}]" if outcome.txid else ""
        print(f"{outcome.status}: {outcome.reason}{tx}")
    elif outcome.exit_code:
        print(f"{outcome.status}: {outcome.reason}", file=sys.stderr)
    return outcome.exit_code


def _print_reports(node, reports, args: argparse.Namespace, nothing: str) -> int:
    from .engine import describe_conflicts

    # An undo the journal could not record to its end (a full disk met halfway) is not "rolled back":
    # the transaction stays unfinished in the journal, and the next run's recovery finishes it.
    code = status.EXIT_OK if all(r.ok and not r.unrecorded for r in reports) else status.EXIT_ROLLBACK_FAILED
    if args.format == "json":
        transactions = [{"txid": r.txid, "ok": r.ok, "recorded": not r.unrecorded, "restored": r.restored,
                         "conflicts": r.conflicts} for r in reports]
        print(json.dumps({"success": code == 0, "transactions": transactions}, indent=2))
        return code
    if not reports and not args.quiet:
        print(nothing)
    for r in reports:
        for x in r.restored:
            if not args.quiet:
                print(f"{r.txid}: {node.display(x['path'])}: {x['action']}")
        if r.conflicts:
            print(f"{r.txid}: CONFLICT {describe_conflicts(node, r)}", file=sys.stderr)
        elif r.unrecorded:
            print(f"{r.txid}: files put back, but the journal cannot record it ({r.unrecorded}); the transaction "
                  "stays unfinished until a run's recovery can", file=sys.stderr)
        elif not args.quiet:
            print(f"{r.txid}: rolled back")
    return code


def cmd_recover(args: argparse.Namespace) -> int:
    from .apply import open_session

    node = _node(args)
    plugins = _plugins(args)
    # What recovery restored is gated: a component that does not come back HALTs the node (exit 4).
    with open_session(plugins, _gate(args, plugins), args.wait) as session:
        return _print_reports(node, session.recovered, args, "nothing to recover")


def cmd_rollback(args: argparse.Namespace) -> int:
    from .apply import open_session, rollback_gated
    from .halt import halt_file

    node = _node(args)
    plugins = _plugins(args)
    gate = _gate(args, plugins)
    with open_session(plugins, gate, args.wait) as session:
        session.refuse_if_recovery_failed()
        txs = session.journal.transactions()
        if args.last:
            committed = [tx for tx in txs.values() if tx.state == "committed"]
            if not committed:
                raise InputError(session.journal.path, "no committed transaction to roll back")
            tx = committed[-1]
        else:
            tx = txs.get(args.txid)
            if tx is None:
                raise InputError(session.journal.path, f"no transaction {args.txid}")
        report, code, after = rollback_gated(session, plugins, gate, tx)
        code = max(code, _print_reports(node, [report], args, ""))
    if after:
        print(f"cisfix: {after}", file=sys.stderr)
    if halt_file(node).exists():
        print(f"cisfix: error: a component is not healthy after the rollback; see {halt_file(node)}", file=sys.stderr)
        return status.EXIT_ROLLBACK_FAILED
    return code


def cmd_fix(args: argparse.Namespace) -> int:
    from .audit import require_benchmark, select
    from .fix import run_fix
    from .pause import read_pause

    paused = None if args.dry_run else read_pause(_node(args))
    if paused:
        print(paused.line())
        return status.EXIT_OK
    plugins = _plugins(args, for_changes=True)
    require_benchmark(plugins)
    checks = select(plugins, args.check, args.node_type, args.level)
    report = run_fix(plugins, checks, _gate(args, plugins), dry_run=args.dry_run,
                     one_at_a_time=args.one_at_a_time, sequential=args.sequential, wait=args.wait)
    # Persist what is committed once the fix has ended well (fixed, or failing only where a person must act).
    persisted = None
    if args.persist and not args.dry_run and report.exit_code in (status.EXIT_OK, status.EXIT_STILL_FAILING):
        from .persist import run_persist

        persisted = run_persist(_plugins(args, for_changes=True), args.force, wait=args.wait)
    code = report.exit_code if report.exit_code or persisted is None else persisted.exit_code
    if args.format == "json":
        unrecorded = {"unrecorded": report.unrecorded} if report.unrecorded else {}
        print(json.dumps({"summary": _fix_summary(report.results), "warnings": list(plugins.info.warnings),
                          "restarts": report.restarts, "transactions": report.transactions(), **unrecorded,
                          "results": [r.as_dict() for r in report.results],
                          "diff": report.diff, **({"persist": persisted.as_dict()} if persisted else {})}, indent=2))
        return code
    from .reports import warning_lines

    for line in warning_lines(plugins.info):  # first, even before a long diff
        print(line)
    if (args.dry_run or args.diff) and report.diff:
        sys.stdout.write(report.diff)
    _print_fix_text(report, args.quiet, args.dry_run)
    if persisted:
        from .persist import print_report

        print_report(persisted, args.quiet, args.diff)
    return code


def cmd_persist(args: argparse.Namespace) -> int:
    from .persist import print_report, run_persist

    report = run_persist(_plugins(args, for_changes=not args.dry_run), args.force, args.dry_run, args.wait)
    if args.format == "json":
        print(json.dumps(report.as_dict(), indent=2))
    else:
        print_report(report, args.quiet, args.diff or args.dry_run)
    return report.exit_code


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


def cmd_resume(args: argparse.Namespace) -> int:
    """Clear HALT once every component of the node answers healthy; with --force, without that proof,
    naming what was not proven."""
    from .apply import open_session
    from .halt import Halted, clear_halt, halt_file, halt_reason

    node = _node(args)
    plugins = _plugins(args)
    gate = _gate(args, plugins)
    with open_session(plugins, gate, args.wait, halt_check=False) as session:
        session.refuse_if_recovery_failed()  # this run's recovery has just HALTed the node
        path = halt_file(node)
        if halt_reason(node) is None:
            print("not halted")
            return status.EXIT_OK
        unhealthy = gate.unhealthy()
        unproven = "; ".join(f"{component} ({' '.join(answer.message.split())})"
                             for component, answer in unhealthy.items())
        if unhealthy and not args.force:
            raise Halted(f"{path} kept: not healthy: {unproven}; repair the node, or clear HALT anyway with "
                         "`cisfix resume --force`")
        reason = clear_halt(node)
        forced = f"; forced, not proven healthy: {unproven}" if unhealthy else ""
        session.log.write("RESUME", "-", str(path),
                          f"HALT cleared by the operator{forced}; it said: {(reason or '')[:200]}")
    print(f"HALT cleared ({path} removed)")
    if unhealthy:
        print(f"cisfix: warning: HALT cleared without proof of health: {unproven}", file=sys.stderr)
    return status.EXIT_OK


def cmd_prune(args: argparse.Namespace) -> int:
    from .engine import Session
    from .journal import Journal
    from .retention import prune_node

    node = _node(args)
    if args.dry_run:
        pruned = prune_node(node, Journal(node.state_dir / "journal.jsonl"), dry_run=True)
    else:
        with Session(node, args.wait) as session:
            pruned = session.pruned + prune_node(node, session.journal)
    verb = "would prune" if args.dry_run else "pruned"
    for tx in pruned:
        if not args.quiet:
            print(f"{verb} {tx.txid}  {tx.state:<12} {tx.label}")
    if not args.quiet:
        print(f"{verb} {len(pruned)} transaction(s) and their backups")
    return 0


def cmd_history(args: argparse.Namespace) -> int:
    from .journal import Journal
    import time

    node = _node(args)
    txs = Journal(node.state_dir / "journal.jsonl").transactions()
    entries = []
    for tx in txs.values():
        files = [{"path": f["path"],
                  "backup": str(node.state_dir / f["backup"]) if f["backup"] else None,
                  "sha256_before": f["before"] and f["before"]["sha256"],
                  "sha256_after": f["after"]["sha256"]} for f in tx.files]
        entries.append({"txid": tx.txid, "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(tx.time)),
                        "state": tx.state, "label": tx.label, "files": files})
    if args.format == "json":
        print(json.dumps(entries, indent=2))
        return 0
    if not entries and not args.quiet:
        print("no transactions")
    for e in entries:
        print(f"{e['txid']}  {e['time']}  {e['state']:<15}  {e['label']}")
        for f in e["files"]:
            print(f"    {node.display(f['path'])}  backup {f['backup'] or '-'}")
    return 0


def _plugins(args: argparse.Namespace, require_node: bool = True, for_changes: bool = False):
    """Load plugins and checks. A plugin that raises while loading is bad input naming its file and
    line; with `for_changes` (fix, edit) so is any checks.d document that did not load: a run must
    not change a node under a configuration it could only partly read."""
    import traceback

    from .plugins import Plugins

    blocked = []
    for option in args.plugin_options:
        if not option.startswith("no:"):
            raise InputError(f"-p {option}", "expected -p no:NAME")
        blocked.append(option[3:])
    node = _node(args, require_node)
    try:
        plugins = Plugins(node, args.checks_dir, blocked, args.disable, args.benchmark)
    except CisfixError:
        raise
    except Exception as exc:
        frame = traceback.extract_tb(exc.__traceback__)[-1]
        raise InputError(f"{frame.filename}:{frame.lineno}", f"plugin failed to load: {type(exc).__name__}: {exc}")
    if for_changes and plugins.errors:
        more = f" (and {len(plugins.errors) - 1} more)" if len(plugins.errors) > 1 else ""
        raise CisfixError(f"{plugins.errors[0]}{more}: invalid configuration, refusing to change the node")
    for error in plugins.errors:
        print(f"cisfix: error: {error}", file=sys.stderr)
    return plugins


def cmd_audit(args: argparse.Namespace) -> int:
    from .audit import exit_code, require_benchmark, run_audits, select, summarize

    plugins = _plugins(args)
    formats = plugins.report_formats()
    if args.format not in formats:
        raise InputError(f"--format {args.format}", f"unknown format; choose from {', '.join(sorted(formats))}")
    require_benchmark(plugins)
    results = run_audits(plugins, select(plugins, args.check, args.node_type, args.level))
    report = formats[args.format](results, summarize(results), plugins.info)
    if args.output:
        _write_report(args.output, report, plugins)
    else:
        sys.stdout.write(report)
    # Checks that did not load are bad input even though the rest ran.
    return status.EXIT_INPUT if plugins.errors else exit_code(results)


def _write_report(path: str, text: str, plugins) -> None:
    """Atomically and 0644 (a collector such as node_exporter's textfile reads it, as another user), never
    through a link nor into a folder others can change, never among the static pods."""
    from .outputfile import managed_places, write_output_file

    write_output_file(path, text.encode("utf-8"), "the --output file", keep_out=managed_places(plugins.node, plugins.info))


def _check_dict(check) -> dict:
    return {"id": check.id, "title": check.title, "benchmark": check.benchmark, "level": check.level,
            "node_types": list(check.node_types), "automated": check.automated, "component": check.component,
            "target": check.target, "remediable": check.remediate is not None, "source": check.source}


def cmd_checks_list(args: argparse.Namespace) -> int:
    from .audit import select

    plugins = _plugins(args, require_node=False)
    checks = select(plugins, ids=sorted(plugins.checks))
    if args.format == "json":
        print(json.dumps([_check_dict(c) for c in checks], indent=2))
    else:
        for c in checks:
            print(f"{c.id:<12} L{c.level} {','.join(c.node_types):<20} {c.title}")
    return status.EXIT_INPUT if plugins.errors else 0


def cmd_checks_show(args: argparse.Namespace) -> int:
    plugins = _plugins(args, require_node=False)
    check = plugins.checks.get(args.id)
    if check is None:
        raise InputError(args.id, "no such check (see `cisfix checks list`)")
    for key, value in _check_dict(check).items():
        print(f"{key + ':':<12} {', '.join(value) if isinstance(value, list) else value}")
    if check.remediation:
        print(f"remediation: {check.remediation}")
    return 0


def cmd_checks_validate(args: argparse.Namespace) -> int:
    from .declarative import load_checks

    from pathlib import Path

    from .nodefile import decode_text, read_bytes

    errors = []
    for name in args.files:
        try:  # read as a node file is: a regular file, bounded, never blocking, UTF-8 text
            text = decode_text(read_bytes(Path(name), name, missing_ok=False), name)
        except InputError as exc:
            errors.append(str(exc))
            continue
        checks, problems = load_checks(text, name)
        errors += problems
        if not args.quiet and not problems:
            print(f"{name}: {len(checks)} valid check(s)")
    for error in errors:
        print(error, file=sys.stderr)
    return status.EXIT_INPUT if errors else 0


def cmd_checks_schema(args: argparse.Namespace) -> int:
    from .schema import schema_text

    sys.stdout.write(schema_text("check"))
    return 0


def cmd_plugins(args: argparse.Namespace) -> int:
    plugins = _plugins(args, require_node=False).plugins()
    if args.format == "json":
        print(json.dumps([p.__dict__ for p in plugins], indent=2))
    else:
        for p in plugins:
            print(f"{p.name:<28} {p.version:<10} {p.checks:>4} checks  {p.source}")
    return 0


def cmd_benchmarks(args: argparse.Namespace) -> int:
    plugins = _plugins(args, require_node=False)
    chosen = plugins.info.benchmark
    if args.format == "json":
        print(json.dumps({"node": {"version": plugins.info.version, "benchmark": chosen,
                                   "warnings": list(plugins.info.warnings)},
                          "benchmarks": [{**b.__dict__, "versions": list(b.versions)} for b in plugins.benchmarks.values()]},
                         indent=2))
        return 0
    for b in plugins.benchmarks.values():
        mark = "*" if b.name == chosen else " "
        print(f"{mark} {b.name:<12} Kubernetes {', '.join(b.versions):<20} {b.title}")
    print(f"node: Kubernetes {plugins.info.version or 'unknown'}, benchmark {chosen or 'none chosen'}")
    for warning in plugins.info.warnings:
        print(f"WARNING: {warning}")
    return 0


def _setup_logging(args: argparse.Namespace) -> None:
    level = logging.ERROR if args.quiet else logging.DEBUG if args.verbose else logging.WARNING
    logging.basicConfig(level=level, format="cisfix: %(message)s", stream=sys.stderr)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _setup_logging(args)
    try:
        return args.handler(args)
    except CisfixError as exc:
        if args.command == "edit" and args.format == "json":
            from .engine import EditOutcome

            failed = EditOutcome(status.REMEDIATION_FAILED, str(exc), exit_code=exc.exit_code)
            print(json.dumps(failed.as_dict(), indent=2))
        print(f"cisfix: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("cisfix: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`| head`); the work is done, so say nothing more.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as exc:  # a bug: its own exit code, so that no caller mistakes it for an outcome
        return internal_error(exc, args.verbose)


def internal_error(exc: BaseException, verbose: int) -> int:
    """One line naming the failure as cisfix's own (the traceback with -v), and exit 70."""
    import traceback

    if verbose:
        traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)  # CPython 3.9's form
    where = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
    at = f" at {os.path.basename(where.filename)}:{where.lineno}" if where else ""
    hint = "" if verbose else "; rerun with -v for the traceback"
    message = " ".join(str(exc).split())[:300]
    print(f"cisfix: internal error (exit {status.EXIT_INTERNAL}): {type(exc).__name__}{at}: {message}{hint}; "
          f"please report it", file=sys.stderr)
    return status.EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
