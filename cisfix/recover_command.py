"""`cisfix recover`: finish or undo what an interrupted run left unfinished."""
from __future__ import annotations

import argparse

from .cli_context import AddCommand, build_gate, format_option, gate_options, load_node, load_plugins, wait_option
from .rollback_command import print_undo_reports, say_first


def add_command(command: AddCommand) -> None:
    recover = command("recover", cmd_recover, "finish or undo what an interrupted run left unfinished")
    wait_option(recover)
    gate_options(recover)
    format_option(recover)


def cmd_recover(args: argparse.Namespace) -> int:
    from .apply import open_session

    node = load_node(args)
    plugins = load_plugins(args)
    # What recovery restored is gated: a component that does not come back HALTs the node (exit 4).
    with open_session(plugins, build_gate(args, plugins), args.wait) as session:
        first = say_first(node, session, "recover", args)
        return print_undo_reports(node, session.recovered, args, "" if session.recovery else "nothing to recover",
                                  first)
