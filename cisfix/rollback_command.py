"""`cisfix rollback TXID|--last`: undo a committed transaction; and how an undo is reported (`recover`'s
too)."""
from __future__ import annotations

import argparse
import json
import sys

from . import status
from .cli_context import AddCommand, build_gate, format_option, gate_options, load_node, load_plugins, wait_option
from .errors import InputError


def add_command(command: AddCommand) -> None:
    rollback = command("rollback", cmd_rollback, "undo a committed transaction")
    which = rollback.add_mutually_exclusive_group(required=True)
    which.add_argument("txid", nargs="?", help="the transaction to undo (see `cisfix history`)")
    which.add_argument("--last", action="store_true", help="the most recent committed transaction")
    wait_option(rollback)
    gate_options(rollback)
    format_option(rollback)


def cmd_rollback(args: argparse.Namespace) -> int:
    from .apply import open_session, rollback_gated
    from .halt import halt_file

    node = load_node(args)
    plugins = load_plugins(args)
    gate = build_gate(args, plugins)
    with open_session(plugins, gate, args.wait) as session:
        session.refuse_if_recovery_failed()
        first = say_first(node, session, "rollback", args)
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
        code = max(code, print_undo_reports(node, [report], args, "", first))
    if after:
        print(f"cisfix: {after}", file=sys.stderr)
    if halt_file(node).exists():
        print(f"cisfix: error: a component is not healthy after the rollback; see {halt_file(node)}", file=sys.stderr)
        return status.EXIT_ROLLBACK_FAILED
    return code


def say_first(node, session, command: str, args: argparse.Namespace) -> dict:
    """What a command a person gives says before anything else, once its session is open: that the node
    is paused (the command goes ahead; `cisfix.pause.going_ahead`), and what recovery undid (a change:
    also with -q). With --format json, the keys of its JSON object that say it."""
    from .interrupted import recovery_lines
    from .pause import going_ahead

    paused = going_ahead(node, command)
    if getattr(args, "format", "text") == "json":
        recovered = [r.as_dict(node) for r in session.recovery]
        return {**({"paused": paused} if paused else {}), **({"recovered": recovered} if recovered else {})}
    for line in ([paused] if paused else []) + recovery_lines(node, session.recovery):
        print(line)
    return {}


def print_undo_reports(node, reports, args: argparse.Namespace, nothing: str, first: dict) -> int:
    """The undoing's report; `first`: the JSON keys `say_first` gave."""
    from .engine import describe_conflicts

    # An undo the journal could not record to its end (a full disk met halfway) is not "rolled back":
    # the transaction stays unfinished in the journal, and the next run's recovery finishes it.
    code = status.EXIT_OK if all(r.ok and not r.unrecorded for r in reports) else status.EXIT_ROLLBACK_FAILED
    if args.format == "json":
        transactions = [{"txid": r.txid, "ok": r.ok, "recorded": not r.unrecorded, "restored": r.restored,
                         "conflicts": r.conflicts} for r in reports]
        print(json.dumps({**first, "success": code == 0, "transactions": transactions}, indent=2))
        return code
    if not reports and nothing and not args.quiet:
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
