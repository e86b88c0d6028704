"""`cisfix pause --reason WHY [--until TIME]` and `cisfix unpause`: stop fix and drift from changing the
node (they exit 0 saying so), and end that."""
from __future__ import annotations

import argparse
import time

from . import status
from .cli_context import AddCommand, load_node
from .errors import InputError


def add_command(command: AddCommand) -> None:
    pause = command("pause", cmd_pause, "stop fix and drift from changing anything (they exit 0 saying so)")
    pause.add_argument("--reason", required=True, help="why, for whoever finds the node paused")
    pause.add_argument("--until", metavar="TIME", help="until a time (2026-12-01T06:00Z) or for a duration "
                                                        "(90m, 2h, 1d); default: until `cisfix unpause`")
    pause.add_argument("--replace", action="store_true", help="replace a pause in force (someone else's reason "
                                                               "and end); without it a second pause is refused")
    command("unpause", cmd_unpause, "end a pause")


def cmd_pause(args: argparse.Namespace) -> int:
    from .pause import pause, pause_file, parse_until, read_pause

    if not args.reason.strip():
        raise InputError("--reason", "say why the node is paused")
    until = None if args.until is None else parse_until(args.until, time.time())
    node = load_node(args)
    current = read_pause(node)
    if current and not args.replace:  # someone else's reason and end are not silently lost
        raise InputError(pause_file(node), f"already {current.line()}; give --replace to replace it")
    print(pause(node, args.reason.strip(), until).line())
    return status.EXIT_OK


def cmd_unpause(args: argparse.Namespace) -> int:
    from .pause import unpause

    print("unpaused" if unpause(load_node(args)) else "not paused")
    return status.EXIT_OK
