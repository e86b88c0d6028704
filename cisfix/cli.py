"""The `cisfix` command line: the parser and the dispatch. Each command lives in its own module
(`cisfix/<name>_command.py`, registered by its `add_command`) and builds on `cisfix.cli_context`, which
every command shares: the common options `--root`, `--state-dir`, `-v`, `-q`, ..., the node, plugins and
health gate of a run. Statuses and exit codes are in `cisfix.status`."""
from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Callable, Optional, Sequence

from .cli_context import Parser, common_options, internal_error
from .errors import CisfixError


def build_parser() -> argparse.ArgumentParser:
    from . import (audit_command, benchmarks_command, checks_command, drift_command, edit_command, fix_command,
                   health_command, history_command, paths_command, pause_command, persist_command, plugins_command,
                   prune_command, recover_command, report_command, resume_command, rollback_command)
    from .lab.cli import add_commands as add_lab_commands
    from .version import version_string

    parser = Parser(prog="cisfix", description="Audit and safely fix CIS Kubernetes "
                                    "Benchmark findings on a Kubernetes node.")
    parser.add_argument("--version", action="version", version=version_string())
    common_options(parser)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    commands.required = True

    def command(name: str, handler: Optional[Callable[[argparse.Namespace], int]],
                help: str) -> argparse.ArgumentParser:  # an AddCommand (cisfix.cli_context)
        sub = commands.add_parser(name, help=help, description=help)
        common_options(sub, subcommand=True)
        sub.set_defaults(handler=handler)
        return sub

    # In the order `cisfix --help` lists them.
    for module in (edit_command, recover_command, rollback_command, prune_command, history_command, audit_command,
                   report_command, fix_command, persist_command, resume_command, checks_command, plugins_command,
                   benchmarks_command, health_command, paths_command, drift_command, pause_command):
        module.add_command(command)
    add_lab_commands(commands, lambda sub: common_options(sub, subcommand=True))
    return parser


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
        print(f"cisfix: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        # A transaction it left open is in the journal: the line names it, and the next mutating run undoes it.
        from .interrupted import interrupt_line

        print(interrupt_line(args.root, args.state_dir), file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`| head`); the work is done, so say nothing more.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as exc:  # a bug: its own exit code, so that no caller mistakes it for an outcome
        return internal_error(exc, args.verbose)


if __name__ == "__main__":
    sys.exit(main())
