"""`cisfix health [--component NAME]...`: probe components of the node as the gate's pre-check does, and
change nothing. Fleet tooling runs it on the *other* control-plane nodes before touching one (their API
servers answer /readyz, every etcd member is healthy), with each node's own credentials under `--root`.

Exit 0 when every component asked about is healthy, 2 otherwise (one line per unhealthy component), and
2 for a component the node's layout does not know (one line naming those it knows)."""
from __future__ import annotations

import argparse
import json

from . import status
from .cli_context import AddCommand, format_option, load_plugins

DEFAULT_COMPONENTS = ("kube-apiserver", "etcd")


def cmd_health(args: argparse.Namespace) -> int:
    from .errors import InputError
    from .gate import Gate

    gate = Gate(load_plugins(args))
    known = gate.plugins.info.components
    unknown = [c for c in args.component if c not in known]
    if unknown:  # nothing to probe is not "healthy"
        raise InputError(f"--component {unknown[0]}", f"no such component; known: {', '.join(sorted(known))}")
    state = gate.state()
    # By default the API server and etcd — where the node has them (k3s on SQLite has no etcd to call healthy).
    chosen = args.component or [c for c in DEFAULT_COMPONENTS if c in known]
    answers = {component: gate.check(component, state) for component in chosen}
    healthy = all(a.healthy for a in answers.values())
    if args.format == "json":
        print(json.dumps({"healthy": healthy, "components": {
            c: {"healthy": a.healthy, "message": a.message} for c, a in answers.items()}}, indent=2))
    else:
        for component, answer in answers.items():
            if not (args.quiet and answer.healthy):
                print(f"{component}: {'healthy' if answer.healthy else 'UNHEALTHY'}: {answer.message}")
    return status.EXIT_OK if healthy else status.EXIT_INPUT


def add_command(command: AddCommand) -> None:
    health = command("health", cmd_health, "probe components with the node's credentials; change nothing")
    health.add_argument("--component", action="append", default=[], metavar="NAME",
                        help=f"a component to probe (repeatable; default {', '.join(DEFAULT_COMPONENTS)})")
    format_option(health)
