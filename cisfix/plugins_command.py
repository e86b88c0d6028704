"""`cisfix plugins`: the loaded plugins, their versions, sources and numbers of checks."""
from __future__ import annotations

import argparse
import json

from .cli_context import AddCommand, format_option, load_plugins


def add_command(command: AddCommand) -> None:
    plugins = command("plugins", cmd_plugins, "loaded plugins: name, version, source, number of checks")
    format_option(plugins)


def cmd_plugins(args: argparse.Namespace) -> int:
    plugins = load_plugins(args, require_node=False).plugins()
    if args.format == "json":
        print(json.dumps([p.__dict__ for p in plugins], indent=2))
    else:
        for p in plugins:
            print(f"{p.name:<28} {p.version:<10} {p.checks:>4} checks  {p.source}")
    return 0
