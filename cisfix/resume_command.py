"""`cisfix resume [--force]`: clear HALT once the node has been repaired and its components answer healthy."""
from __future__ import annotations

import argparse
import sys

from . import status
from .cli_context import AddCommand, build_gate, gate_options, load_node, load_plugins, wait_option


def add_command(command: AddCommand) -> None:
    resume = command("resume", cmd_resume, "clear HALT once the node has been repaired by hand and every "
                                            "component answers healthy")
    resume.add_argument("--force", action="store_true",
                        help="clear HALT even when components do not answer healthy (it names them)")
    wait_option(resume)
    gate_options(resume)


def cmd_resume(args: argparse.Namespace) -> int:
    """Clear HALT once every component of the node answers healthy; with --force, without that proof,
    naming what was not proven."""
    from .apply import open_session
    from .halt import Halted, clear_halt, halt_file, halt_reason
    from .rollback_command import say_first

    node = load_node(args)
    plugins = load_plugins(args)
    gate = build_gate(args, plugins)
    with open_session(plugins, gate, args.wait, halt_check=False) as session:
        session.refuse_if_recovery_failed()  # this run's recovery has just HALTed the node
        say_first(node, session, "resume", args)
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
