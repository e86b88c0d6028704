"""`cisfix persist`: keep the committed fixes where the node's installer regenerates them from."""
from __future__ import annotations

import argparse
import json

from .cli_context import AddCommand, format_option, load_plugins, wait_option


def add_command(command: AddCommand) -> None:
    persist = command("persist", cmd_persist, "keep the committed fixes where the node's installer regenerates "
                                              "them from (kubeadm: ClusterConfiguration, kubelet-config, patch files)")
    persist.add_argument("--dry-run", action="store_true", help="show what would change, change nothing")
    persist.add_argument("--diff", action="store_true", help="show the changes and apply them")
    persist.add_argument("--force", action="store_true",
                         help="replace values someone else set there (default: report them and keep them)")
    wait_option(persist)
    format_option(persist)


def cmd_persist(args: argparse.Namespace) -> int:
    from .pause import going_ahead
    from .persist import print_report, run_persist

    plugins = load_plugins(args, for_changes=not args.dry_run)
    paused = going_ahead(plugins.node, "persist")
    if paused and args.format != "json":
        print(paused)
    report = run_persist(plugins, args.force, args.dry_run, args.wait)
    if args.format == "json":
        print(json.dumps({**({"paused": paused} if paused else {}), **report.as_dict()}, indent=2))
    else:
        print_report(report, args.quiet, args.diff or args.dry_run)
    return report.exit_code
