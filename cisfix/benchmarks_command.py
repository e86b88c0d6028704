"""`cisfix benchmarks`: the benchmarks the plugins implement, and the one chosen for the node."""
from __future__ import annotations

import argparse
import json

from .cli_context import AddCommand, format_option, load_plugins


def add_command(command: AddCommand) -> None:
    benchmarks = command("benchmarks", cmd_benchmarks, "benchmarks the plugins implement, and the node's")
    format_option(benchmarks)


def cmd_benchmarks(args: argparse.Namespace) -> int:
    plugins = load_plugins(args, require_node=False)
    chosen = plugins.info.benchmark
    if args.format == "json":
        print(json.dumps({"node": {"version": plugins.info.version, "benchmark": chosen,
                                   "warnings": list(plugins.info.warnings)},
                          "benchmarks": [{**b.__dict__, "versions": list(b.versions)} for b in plugins.benchmarks.values()]},
                         indent=2))
        return 0
    for b in plugins.benchmarks.values():
        mark = "*" if b.name == chosen else " "
        print(f"{mark} {b.name:<12} Kubernetes {', '.join(b.versions):<20} {b.title}")
    print(f"node: Kubernetes {plugins.info.version or 'unknown'}, benchmark {chosen or 'none chosen'}")
    for warning in plugins.info.warnings:
        print(f"WARNING: {warning}")
    return 0
