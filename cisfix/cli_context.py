"""What every command of the `cisfix` command line shares: the common options (`--root`, `--state-dir`,
`-v`, `-q`, ...), the options several commands take (`--format`, `--wait`, the gate's), the one-line
parser error, and the node, plugins and health gate of a run built from the parsed arguments."""
from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING, Callable, NoReturn, Optional

from . import status
from .bounds import MAX_STABILITY, MAX_TIMEOUT, MAX_WAIT, bounded
from .errors import CisfixError, InputError

if TYPE_CHECKING:  # pragma: no cover (every command's parser imports this module: it stays light)
    from .gate import Gate
    from .node import Node
    from .plugins import Plugins

# How a command module registers itself: `command(name, handler, help)` adds the subcommand with the
# common options and returns its parser, for the module to add its own options.
AddCommand = Callable[[str, Optional[Callable[[argparse.Namespace], int]], str], argparse.ArgumentParser]


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> "NoReturn":
        # One line, like every other error, instead of argparse's usage block.
        self.exit(status.EXIT_INPUT, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def common_options(parser: argparse.ArgumentParser, subcommand: bool = False) -> None:
    """Global options, accepted before or after the command name. On a subcommand they have no default,
    so that they do not overwrite a value given before the command name."""
    def d(value: object) -> object:
        return argparse.SUPPRESS if subcommand else value

    parser.add_argument("--root", default=d("/"), help="the node's root directory (default /)")
    parser.add_argument("--state-dir", type=_state_dir, default=d(None),
                        help="journal, backups and lock (default <root>/var/lib/cisfix)")
    parser.add_argument("-v", "--verbose", action="count", default=d(0), help="more detail on stderr")
    parser.add_argument("-q", "--quiet", action="store_true", default=d(False), help="only errors on stderr")
    parser.add_argument("--checks-dir", action="append", default=d([]), metavar="DIR",
                        help="also load checks and plugin modules from DIR (repeatable)")
    parser.add_argument("--disable", action="append", default=d([]), metavar="ID", help="leave out a check (repeatable)")
    parser.add_argument("--benchmark", default=d(None), help="audit against this benchmark (see `cisfix benchmarks`)")
    parser.add_argument("-p", dest="plugin_options", action="append", default=d([]), metavar="no:NAME",
                        help="-p no:NAME blocks the plugin NAME (repeatable)")


def _state_dir(text: str) -> str:
    """A folder, or a path that does not exist yet: refused while parsing, so that no command (drift's
    textfile writer included) starts on it."""
    from pathlib import Path

    from .node import require_state_dir

    try:
        require_state_dir(Path(os.path.abspath(text)))
    except InputError as exc:
        raise argparse.ArgumentTypeError(str(exc))
    return text


def format_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--format", choices=("text", "json"), default="text")


def gate_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--timeout", type=bounded(MAX_TIMEOUT), metavar="SECONDS",
                        help="per component: how long it may take to restart and become healthy (default 180, "
                             "at most a day)")
    parser.add_argument("--stability-window", type=bounded(MAX_STABILITY, zero=True), metavar="SECONDS",
                        help="how long it must then stay healthy without restarting (default 15, at most an hour "
                             "and less than the timeout)")


def wait_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--wait", type=bounded(MAX_WAIT, zero=True), default=0.0, metavar="SECONDS",
                        help="wait this long (at most a day) for another run's lock instead of exiting 5")


def load_node(args: argparse.Namespace, require_node: bool = True) -> "Node":
    """The node of `--root`. Commands that read or change it refuse a root that is not a node, before
    anything (a lock, a state folder) is created there."""
    from .builtin import require_a_node
    from .node import Node

    node = Node(args.root, args.state_dir)
    if require_node:
        require_a_node(node)
    return node


def load_plugins(args: argparse.Namespace, require_node: bool = True, for_changes: bool = False,
                 node: Optional["Node"] = None) -> "Plugins":
    """Load plugins and checks. A plugin that raises while loading is bad input naming its file and
    line; with `for_changes` (fix, edit) so is any checks.d document that did not load: a run must
    not change a node under a configuration it could only partly read. `node`: the run's node, when the
    command loaded (and checked) it already."""
    import traceback

    from .plugins import Plugins

    blocked = []
    for option in args.plugin_options:
        if not option.startswith("no:"):
            raise InputError(f"-p {option}", "expected -p no:NAME")
        blocked.append(option[3:])
    node = node or load_node(args, require_node)
    try:
        plugins = Plugins(node, args.checks_dir, blocked, args.disable, args.benchmark)
    except CisfixError:
        raise
    except Exception as exc:
        frame = traceback.extract_tb(exc.__traceback__)[-1]
        raise InputError(f"{frame.filename}:{frame.lineno}", f"plugin failed to load: {type(exc).__name__}: {exc}")
    if for_changes and plugins.errors:
        more = f" (and {len(plugins.errors) - 1} more)" if len(plugins.errors) > 1 else ""
        raise CisfixError(f"{plugins.errors[0]}{more}: invalid configuration, refusing to change the node")
    for error in plugins.errors:
        print(f"cisfix: error: {error}", file=sys.stderr)
    return plugins


def build_gate(args: argparse.Namespace, plugins: "Plugins") -> "Gate":
    """The health gate of a run, with `--timeout` and `--stability-window` over the node configuration's."""
    from .gate import gate_settings, make_gate, progress_printer

    settings = gate_settings(plugins.config, args.timeout, args.stability_window)
    return make_gate(plugins, settings, progress_printer(args.quiet))


def internal_error(exc: BaseException, verbose: int) -> int:
    """One line naming the failure as cisfix's own (the traceback with -v), and exit 70."""
    import traceback

    if verbose:
        traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)  # CPython 3.9's form
    where = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
    at = f" at {os.path.basename(where.filename)}:{where.lineno}" if where else ""
    hint = "" if verbose else "; rerun with -v for the traceback"
    message = " ".join(str(exc).split())[:300]
    print(f"cisfix: internal error (exit {status.EXIT_INTERNAL}): {type(exc).__name__}{at}: {message}{hint}; "
          f"please report it", file=sys.stderr)
    return status.EXIT_INTERNAL
