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
                       help="text, json, junit, prometheus, kube-bench, html (the node report's page, as "
                            "`cisfix report`), or a format a plugin registers")
    audit.add_argument("--output", metavar="FILE", help="write the report to FILE (atomically) instead of stdout")


def cmd_audit(args: argparse.Namespace) -> int:
    from .audit import exit_code, node_state, require_benchmark, run_audits, select, summarize
    from .judged import judged_info

    plugins = load_plugins(args)
    formats = plugins.report_formats()
    if args.format not in formats and args.format != "html":
        raise InputError(f"--format {args.format}",
                         f"unknown format; choose from {', '.join(sorted([*formats, 'html']))}")
    require_benchmark(plugins)
    state = node_state(plugins)
    results = run_audits(plugins, select(plugins, args.check, args.node_type, args.level), state)
    if args.format == "html":  # the node report's page: it needs the journal and more than the results
        from .report_command import node_page

        report = node_page(plugins, args.level, results)
    else:
        report = formats[args.format](results, summarize(results), judged_info(plugins, args.level, state))
    if args.output:
        from .outputfile import write_report

        write_report(args.output, report, plugins.node, plugins.info)
    else:
        sys.stdout.write(report)
    # Checks that did not load are bad input even though the rest ran.
    return status.EXIT_INPUT if plugins.errors else exit_code(results)
