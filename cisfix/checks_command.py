"""`cisfix checks list|show|validate|schema`: the loaded checks, one in full, declarative check files
validated, the check schema."""
from __future__ import annotations

import argparse
import json
import sys

from . import status
from .cli_context import AddCommand, Parser, format_option, load_plugins
from .errors import InputError


def add_command(command: AddCommand) -> None:
    checks = command("checks", None, "list, show and validate checks; print the check schema")
    checks_commands = checks.add_subparsers(dest="checks_command", metavar="SUBCOMMAND", parser_class=Parser)
    checks_commands.required = True
    listing = checks_commands.add_parser("list", help="every loaded check")
    listing.set_defaults(handler=cmd_checks_list)
    format_option(listing)
    show = checks_commands.add_parser("show", help="one check in full")
    show.add_argument("id")
    show.set_defaults(handler=cmd_checks_show)
    validate = checks_commands.add_parser("validate", help="validate declarative check files (exit 2 if invalid)")
    validate.add_argument("files", nargs="+", metavar="FILE")
    validate.set_defaults(handler=cmd_checks_validate)
    checks_commands.add_parser("schema", help="print the JSON Schema of declarative checks").set_defaults(
        handler=cmd_checks_schema)


def _check_dict(check) -> dict:
    return {"id": check.id, "title": check.title, "benchmark": check.benchmark, "level": check.level,
            "node_types": list(check.node_types), "automated": check.automated, "component": check.component,
            "target": check.target, "remediable": check.remediate is not None, "source": check.source}


def cmd_checks_list(args: argparse.Namespace) -> int:
    from .audit import select

    plugins = load_plugins(args, require_node=False)
    checks = select(plugins, ids=sorted(plugins.checks))
    if args.format == "json":
        print(json.dumps([_check_dict(c) for c in checks], indent=2))
    else:
        for c in checks:
            print(f"{c.id:<12} L{c.level} {','.join(c.node_types):<20} {c.title}")
    return status.EXIT_INPUT if plugins.errors else 0


def cmd_checks_show(args: argparse.Namespace) -> int:
    plugins = load_plugins(args, require_node=False)
    check = plugins.checks.get(args.id)
    if check is None:
        raise InputError(args.id, "no such check (see `cisfix checks list`)")
    for key, value in _check_dict(check).items():
        print(f"{key + ':':<12} {', '.join(value) if isinstance(value, list) else value}")
    if check.remediation:
        print(f"remediation: {check.remediation}")
    return 0


def cmd_checks_validate(args: argparse.Namespace) -> int:
    from .declarative import load_checks

    from pathlib import Path

    from .nodefile import decode_text, read_bytes

    errors = []
    for name in args.files:
        try:  # read as a node file is: a regular file, bounded, never blocking, UTF-8 text
            text = decode_text(read_bytes(Path(name), name, missing_ok=False), name)
        except InputError as exc:
            errors.append(str(exc))
            continue
        checks, problems = load_checks(text, name)
        errors += problems
        if not args.quiet and not problems:
            print(f"{name}: {len(checks)} valid check(s)")
    for error in errors:
        print(error, file=sys.stderr)
    return status.EXIT_INPUT if errors else 0


def cmd_checks_schema(args: argparse.Namespace) -> int:
    from .schema import schema_text

    sys.stdout.write(schema_text("check"))
    return 0
