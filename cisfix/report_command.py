"""`cisfix report`: the node report an auditor reads — one self-contained HTML page (`--format html`, the
default) or its JSON document (`--format json`, what a fleet page is made from); `--fleet FILE...`
makes the fleet page from the JSON documents nodes wrote, on any machine (no node, no re-audit)."""
from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Optional, Sequence

from .cli_context import AddCommand, load_plugins
from .errors import InputError

if TYPE_CHECKING:  # pragma: no cover
    from .plugins import Plugins
    from .types import CheckResult


def add_command(command: AddCommand) -> None:
    report = command("report", cmd_report, "the node report an auditor reads: what was wrong, what cisfix changed "
                                           "and how it was proven safe, what is open, which risks were accepted")
    report.add_argument("--format", choices=("html", "json"), default="html",
                        help="html: one self-contained page (default); json: the node report document")
    report.add_argument("--output", metavar="FILE", help="write the report to FILE (atomically) instead of stdout")
    report.add_argument("--level", type=int, choices=(1, 2), help="1: level 1 only; 2: levels 1 and 2 (default)")
    report.add_argument("--fleet", nargs="+", metavar="REPORT.json",
                        help="the fleet page from node reports (`report --format json`) the nodes wrote; "
                             "reads only these files")


def cmd_report(args: argparse.Namespace) -> int:
    if args.fleet:
        if args.level:
            raise InputError("--level", "a fleet page shows the reports as the nodes wrote them; give --level "
                                        "to each node's `cisfix report --format json`")
        return _fleet(args)
    from .audit import require_benchmark

    plugins = load_plugins(args)
    require_benchmark(plugins)
    if args.format == "json":
        from .nodereport import build_report

        text = json.dumps(build_report(plugins, args.level), indent=1) + "\n"
    else:
        text = node_page(plugins, args.level)
    _emit(args, text, plugins)
    return 0


def node_page(plugins: "Plugins", level: Optional[int], results: "Optional[Sequence[CheckResult]]" = None) -> str:
    """The node's HTML page (`report`, and `audit --format html` with the audit it just ran)."""
    from .htmlreport import render_node
    from .nodereport import build_report

    return render_node(build_report(plugins, level, results))


def _fleet(args: argparse.Namespace) -> int:
    from .fleetreport import FLEET_FORMAT, read_fleet

    docs = read_fleet(args.fleet)
    if args.format == "json":
        text = json.dumps({"format": FLEET_FORMAT, "nodes": docs}, indent=1) + "\n"
    else:
        from .htmlreport import render_fleet

        text = render_fleet(docs)
    _emit(args, text, None)
    return 0


def _emit(args: argparse.Namespace, text: str, plugins: "Optional[Plugins]") -> None:
    if not args.output:
        sys.stdout.write(text)
        return
    from .node import Node
    from .outputfile import write_report

    node = plugins.node if plugins else Node(args.root, args.state_dir)
    write_report(args.output, text, node, plugins.info if plugins else None)
