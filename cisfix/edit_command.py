"""`cisfix edit FILE --flag ... --set ...`: change one file of the node as a gated transaction."""
from __future__ import annotations

import argparse
import json
import sys
from typing import Optional

from . import status
from .cli_context import AddCommand, build_gate, format_option, gate_options, load_plugins, wait_option
from .errors import CisfixError, EditError, InputError


def add_command(command: AddCommand) -> None:
    edit = command("edit", cmd_edit, "change flags of a static pod manifest or paths of a YAML config file")
    edit.add_argument("file", help="node path of the file (a host path under --root names the node path under it): "
                                     "a static pod manifest, a flag file or a YAML config file")
    edit.add_argument("--flag", type=_key_value, action="append", default=[], metavar="NAME=VALUE",
                      help="set --NAME=VALUE on the component's command line (NAME alone: a bare flag)")
    edit.add_argument("--unflag", action="append", default=[], metavar="NAME", help="remove --NAME")
    edit.add_argument("--flag-add", type=_key_item, action="append", default=[], metavar="NAME=ITEM",
                      help="add ITEM to the comma-separated value of --NAME")
    edit.add_argument("--flag-drop", type=_key_item, action="append", default=[], metavar="NAME=ITEM",
                      help="remove ITEM from the comma-separated value of --NAME")
    edit.add_argument("--set", type=_key_value, action="append", default=[], metavar="PATH=VALUE",
                      help='set a dotted YAML path (a."b.c" for a key with dots); VALUE is a YAML flow value: '
                           'a scalar (quote it to force a string), [A, B] or {key: value}')
    edit.add_argument("--unset", action="append", default=[], metavar="PATH",
                      help='delete a dotted YAML path (a."b.c" for a key with dots)')
    edit.add_argument("--component", help="the container to edit, when neither its label nor the file name says")
    edit.add_argument("--kind", help="the document to edit in a multi-document YAML file, by its kind")
    edit.add_argument("--dry-run", action="store_true", help="print the diff, change nothing")
    edit.add_argument("--diff", action="store_true", help="print the diff and apply")
    edit.add_argument("--no-health-gate", action="store_true", help="do not wait for the component's health")
    gate_options(edit)
    wait_option(edit)
    format_option(edit)


def _key_value(text: str) -> tuple:
    name, sep, value = text.partition("=")
    name = name.lstrip("-")
    if not name:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return name, (value if sep else None)


def _key_item(text: str) -> tuple:
    name, value = _key_value(text)
    if value is None or value == "":
        raise argparse.ArgumentTypeError(f"expected NAME=ITEM, got {text!r}")
    return name, value


def cmd_edit(args: argparse.Namespace) -> int:
    """The edit; with `--format json`, a refusal is a JSON outcome on stdout too (and the one-line error)."""
    try:
        return _edit(args)
    except CisfixError as exc:
        if args.format == "json":
            from .engine import EditOutcome

            failed = EditOutcome(status.REMEDIATION_FAILED, str(exc), exit_code=exc.exit_code)
            print(json.dumps(failed.as_dict(), indent=2))
        raise


def _edit(args: argparse.Namespace) -> int:
    from functools import partial

    from .apply import apply_gated, component_of, open_session
    from .audit import node_state
    from .engine import run_changes
    from .pause import going_ahead
    from .settings import edit_change

    ops = _edit_ops(args)
    if not ops:
        raise InputError(args.file, "nothing to do: give --flag, --unflag, --flag-add, --flag-drop, --set or --unset")
    plugins = load_plugins(args, for_changes=not args.dry_run)
    node = plugins.node
    paused = going_ahead(node, "edit")
    if paused and args.format != "json":
        print(paused)
    path = node.given_path(args.file)
    plugins = load_plugins(args)  # the layout says which editor a file takes, gated or not
    edit = edit_change(plugins.info, path, ops, args.component, args.kind)
    gate = build_gate(args, plugins)
    component = None if args.no_health_gate else component_of(plugins.info, node.resolve(path))
    options = {"editors": plugins.editors(), "state": node_state(plugins),
               "session": partial(open_session, plugins, gate, args.wait),
               "applier": partial(apply_gated, plugins=plugins, gate=gate, component=component, label=f"edit {path}")}
    outcome = run_changes(node, [edit], dry_run=args.dry_run, wait=args.wait, **options)
    if args.format == "json":
        print(json.dumps({**({"paused": paused} if paused else {}), **outcome.as_dict()}, indent=2))
        return outcome.exit_code
    for recovered in outcome.recovered:  # a change: also with -q
        print(recovered["message"])
    if (args.dry_run or args.diff) and outcome.diff:
        sys.stdout.write(outcome.diff)
    if not args.quiet:
        for note in outcome.changes:
            print(f"  {note}")
        tx = f" [txid {outcome.txid}]" if outcome.txid else ""
        print(f"{outcome.status}: {outcome.reason}{tx}")
    elif outcome.exit_code:
        print(f"{outcome.status}: {outcome.reason}", file=sys.stderr)
    return outcome.exit_code


def _edit_ops(args: argparse.Namespace) -> tuple:
    """The edit's operations, every one refused here (one line, before anything is locked or read) when
    it could not be honoured: text that is no UTF-8, a path too deep or malformed, a value nested too
    deep, a number no configuration holds, `--set PATH` without a value."""
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    from .bounds import MAX_NESTING, MAX_PATH_KEYS, nesting_depth, non_finite
    from .editors.config import split_path
    from .nodefile import refuse_yaml_aliases
    from .plan import AddFlagItem, RemoveFlag, RemoveFlagItem, SetFlag, SetPath, UnsetPath
    from .shown import shown

    def utf8(option: str, *texts: Optional[str]) -> None:
        for text in texts:
            try:
                (text or "").encode("utf-8")
            except UnicodeEncodeError:  # bytes that are no UTF-8 reach argv as surrogate escapes
                raise InputError(f"{option} {shown(text.encode('utf-8', 'surrogateescape'))}", "not UTF-8 text")

    def yaml_path(option: str, path: str) -> str:
        utf8(option, path)
        try:
            keys = len(split_path(path))
        except EditError as exc:
            raise InputError(f"{option} {shown(path)}", str(exc))
        if keys > MAX_PATH_KEYS:
            raise InputError(f"{option} {shown(path)}", f"path has {keys} keys, more than the {MAX_PATH_KEYS} accepted")
        return path

    def flow_value(path: str, text: Optional[str]) -> object:
        """A YAML flow value: a scalar, `[A, B]` or `{memory.available: 100Mi}`, nested at most
        MAX_NESTING deep (deeper, the parser and the editors run out of recursion), its numbers finite."""
        yaml_path("--set", path)
        if text is None:
            raise InputError(f"--set {path}", "--set needs PATH=VALUE (--unset PATH removes a path)")
        utf8(f"--set {path}", text)
        refuse_yaml_aliases(text, f"--set {path}")
        too_deep = InputError(f"--set {path}", f"value is nested more than {MAX_NESTING} deep")
        try:
            value = YAML(typ="safe", pure=True).load(text)
        except YAMLError as exc:
            problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            raise InputError(f"--set {path}", f"value is not valid YAML: {problem}")
        except RecursionError:
            raise too_deep from None
        if nesting_depth(value) > MAX_NESTING:
            raise too_deep
        number = non_finite(value)
        if number is not None:
            raise InputError(f"--set {path}", f"value holds the number {number}; only finite numbers are accepted")
        return value

    for name, value in [*args.flag, *args.flag_add, *args.flag_drop, *((n, None) for n in args.unflag)]:
        utf8("--flag", name, value)
    ops: list = [SetFlag(n, v) for n, v in args.flag]
    ops += [RemoveFlag(n.lstrip("-")) for n in args.unflag]
    ops += [AddFlagItem(n, i) for n, i in args.flag_add]
    ops += [RemoveFlagItem(n, i) for n, i in args.flag_drop]
    ops += [SetPath(p, flow_value(p, v)) for p, v in args.set]
    ops += [UnsetPath(yaml_path("--unset", p)) for p in args.unset]
    return tuple(ops)
