"""`cisfix persist`: keep the committed fixes where the node's installer regenerates them from."""
from __future__ import annotations

import argparse
import json

from .cli_context import AddCommand, format_option, load_plugins, wait_option


def add_command(command: AddCommand) -> None:
    persist = command("persist", cmd_persist, "keep the committed fixes where the node's installer regenerates "
                                              "them from (kubeadm: ClusterConfiguration, kubelet-config, patch files)")
    mode = persist.add_mutually_exclusive_group()
    mode.add_argument("--dry-run", action="store_true", help="show what would change, change nothing")
    mode.add_argument("--check", action="store_true",
                      help="on any control-plane node: does it hold every file published in kube-system/"
                           "cisfix-control-plane-files (exit 0: ready for `kubeadm upgrade node`, 1: not)? "
                           "Changes nothing on the node; records the verdict there for the publishing node")
    mode.add_argument("--install", metavar="DIR",
                      help="install the bundle DIR copied from the publishing node's <state>/persist/control-plane, "
                           "each file checked against the published list first (one transaction, undone by rollback)")
    persist.add_argument("--diff", action="store_true", help="show the changes and apply them")
    persist.add_argument("--force", action="store_true",
                         help="replace values someone else set there (default: report them and keep them)")
    wait_option(persist)
    format_option(persist)


def cmd_persist(args: argparse.Namespace) -> int:
    from .pause import going_ahead
    from .persist import print_report, run_persist

    if args.check or args.install:
        return _cluster_command(args)
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


def _cluster_command(args: argparse.Namespace) -> int:
    """--check (reads the node, records its verdict in the cluster) and --install DIR (a change)."""
    from functools import partial

    from .pause import going_ahead
    from .persist_nodes import check, install, print_check, print_install

    plugins = load_plugins(args, for_changes=bool(args.install))
    if args.check:
        report, show = check(plugins), print_check
    else:
        paused = going_ahead(plugins.node, "persist --install")
        if paused and args.format != "json":
            print(paused)
        report, show = install(plugins, args.install, args.wait), partial(print_install, node=plugins.node)
    if args.format == "json":
        print(json.dumps(report.as_dict(), indent=2))
    else:
        show(report)
    return report.exit_code
