"""`cisfix audit`: audit the node with every check that applies to it, in any report format."""
from __future__ import annotations

import argparse
import sys

from . import status
from .cli_context import AddCommand, load_plugins
from .errors import InputError


def add_command(command: AddCommand) -> None:
    audit = command("audit", cmd_audit, "audit the node with every check that applies to it")
    audit.add_argument("--check", action="append", default=[], metavar="ID", help="only this check (repeatable)")
    audit.add_argument("--node-type", choices=("auto", "master", "etcd", "worker"), default="auto")
    audit.add_argument("--level", type=int, choices=(1, 2), help="1: level 1 only; 2: levels 1 and 2 (default)")
    audit.add_argument("--format", default="text",
                       help="text, json, junit, prometheus, kube-bench, or a format a plugin registers")
    audit.add_argument("--output", metavar="FILE", help="write the report to FILE (atomically) instead of stdout")


def cmd_audit(args: argparse.Namespace) -> int:
    from .audit import exit_code, node_state, require_benchmark, run_audits, select, summarize
    from .judged import judged_info

    plugins = load_plugins(args)
    formats = plugins.report_formats()
    if args.format not in formats:
        raise InputError(f"--format {args.format}", f"unknown format; choose from {', '.join(sorted(formats))}")
    require_benchmark(plugins)
    state = node_state(plugins)
    results = run_audits(plugins, select(plugins, args.check, args.node_type, args.level), state)
    report = formats[args.format](results, summarize(results), judged_info(plugins, args.level, state))
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
