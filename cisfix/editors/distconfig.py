"""Read and edit an RKE2/k3s configuration: `/etc/rancher/<dist>/config.yaml` plus `config.yaml.d/*.yaml`,
for the component flag lists (`kube-apiserver-arg`, `kubelet-arg`, `etcd-arg`, ...), by the distribution's
own merge rules, changing only the list items it must.

Merge rules (both distributions: RKE2's main.go runs k3s's `configfilearg.MustParse`, and its kube-*
components get their arguments from k3s's `pkg/daemons/control` and `pkg/daemons/agent`):

1. Files (k3s `pkg/configfilearg/parser.go`, `readConfigFile`/`dotDFiles`): `config.yaml` first (when it
   exists), then the regular files of `config.yaml.d/` whose names end in `.yaml` or `.yml` (case
   ignored), in `os.ReadDir` order: sorted by name, byte by byte (`dropin_order`). Only the first YAML
   document of a file is read (yaml.v2 `Unmarshal`); cisfix refuses files with more than one.
2. Keys (same function): the files' top-level keys are processed in order. A plain `key:` replaces the
   value so far; `key+:` appends its items to the value so far (a string counts as one item). So a later
   file's plain `key:` drops every earlier file's items, and `key+:` keeps them.
3. Items into flags (k3s `pkg/util/args.go`, `GetArgs`, called for kube-apiserver, kube-controller-manager
   and kube-scheduler in `pkg/daemons/control/server.go` and for the kubelet and kube-proxy in
   `pkg/agent/*`, right before their `Running <component> ...` log line; on both distributions): each
   item `name=value` (a bare `name` means `name=true`; a leading `--` is dropped) is merged into the
   distribution's defaults for that component, in order: `name=X` drops the default and adds X to the
   values seen for `name`; `name+=X` adds the default (if not consumed yet), then the values seen, then X;
   `name-=X` adds X, then the default, then the values seen. Each value is passed as its own
   `--name=value`, flags sorted by name (args_test.go: `bbb+=DD` with default `bbb=B` gives
   `--bbb=B --bbb=DD`). A list flag (`--enable-admission-plugins`, `--tls-cipher-suites`: pflag slices)
   accumulates repeated flags, so the effective value is the values joined by commas; a scalar flag takes
   the last. `DistConfig.flags(rules="k3s")` joins the values of the flags in `LIST_FLAGS` and of any flag
   a `+=`/`-=` item took part in, else reports the last value; `DistConfig.args` gives the exact argument
   list. RKE2 also prepends the item `enable-admission-plugins=NodeRestriction` to the apiserver's items
   (rke2 `pkg/cli/defaults/defaults.go`, after the files are merged): it consumes k3s's default, so on
   RKE2 a plain `enable-admission-plugins=X` gives `NodeRestriction,X`. Pass such items as `leading`.
4. `etcd-arg` is different (k3s `pkg/daemons/executor` `ETCDConfig.ToConfigFile`): each `name=value`
   item sets the key `name` in etcd's config file (later items win; an item without `=` is ignored;
   `name+=X` sets a key `name+`). That is `rules="replace"`: the last item of a flag wins, `+=`/`-=` mean
   nothing.

Not read here: flags on the service's own command line (`k3s server --kube-apiserver-arg=...` in the
unit), which k3s places after the configuration's items; the kubelet's `config=` item, which k3s moves
into its kubelet.conf.d drop-ins instead of passing it.

Sources read (k3s-io/k3s: parser.go at f646604010affc6a1d3233a8a0870bca46bf80cf, args.go at
0aa32d5656f84887848522c45df9d6869d8eaec9 with args_test.go; rancher/rke2 at
6ce1a8019e9d0b81eb7a715edbc2b8ac12d26da0: main.go, pkg/cli/defaults/defaults.go, pkg/cli/cmds/root.go
`DisableSliceFlagSeparator`, so an item's commas reach the component intact).

Editing (`plan`): a flag decided by an item in the effective list is changed in that item's file (where
the operator will look for it); a new item goes to cisfix's drop-in (`owned`) under `key+:` so it keeps
what earlier files set — unless a file after it replaces the list with a plain `key:`, then into that
file. Every plan is re-read and compared with what was asked before it is returned.

Text edits (`edit`) splice the original text at parser positions (as `manifest.py` does): comments,
quoting, blank lines, indentation, flow lists and a missing final newline stay as they were.
"""
from __future__ import annotations

import copy
import posixpath
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Deque, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

from ruamel.yaml.constructor import DuplicateKeyError
from ruamel.yaml.error import MarkedYAMLError
from ruamel.yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from ..errors import EditError, InputError
from ..flags import LIST_FLAGS  # flags whose repeated values add up
from ..nodefile import refuse_yaml_aliases
from ..plan import AddFlagItem, Edited, FlagOp, RemoveFlag, RemoveFlagItem, SetFlag
from ..types import DROPIN_SUFFIXES
from . import yamltext as yt

DIST_CONFIG = "distribution-config"
K3S, REPLACE = "k3s", "replace"
SUFFIX = "-arg"
HEADER = ("# Written by cisfix (CIS Kubernetes Benchmark fixes). Items here append to the lists of the files\n"
          "# before it; a setting an operator's file already decides is changed in that file instead.\n")
_OPS = {"": "=", "+": "+=", "-": "-="}
MERGE_TAG = "tag:yaml.org,2002:merge"
BUILTIN = "(distribution)"  # ArgEntry.file of an item the distribution itself puts first (`leading`)

# --- data --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ArgEntry:
    """One item of an effective `*-arg` list."""

    flag: str  # name without leading dashes (and without the +/- of the op)
    value: Optional[str]  # None for a bare `flag` item
    op: str  # "=" (replace), "+=" (append to default), "-=" (prepend to default)
    file: str  # node path of the file that holds the item
    line: int  # 1-based line of the item


@dataclass(frozen=True)
class ConfigFile:
    """One parsed file: its node path and text."""

    path: str
    text: str


@dataclass(frozen=True)
class ArgOp:
    """A change of one file's list under `key` (or `key+`)."""

    key: str


@dataclass(frozen=True)
class AppendItem(ArgOp):
    """Append `text` to the list under `key+` (plus) or `key`, creating the key at the end if absent."""

    text: str
    plus: bool = True


@dataclass(frozen=True)
class ItemOp(ArgOp):
    """A change of an existing item, named by its index and its current text `old`: the text decides (the
    engine may join the operations of several plans made on one original text, and a removal moves the
    items after it), the index picks among equal items."""

    index: int
    old: str


@dataclass(frozen=True)
class ReplaceItem(ItemOp):
    """Replace the item `old` (at `index`) of the list under `key+` (plus) or `key` with `text`."""

    text: str
    plus: bool = False


@dataclass(frozen=True)
class RemoveItem(ItemOp):
    """Remove the item `old` (at `index`) of the list under `key+` (plus) or `key`."""

    plus: bool = False


@dataclass(frozen=True)
class _Item:
    """An item of the effective list and where it sits: file, `key` or `key+`, index in that value, and
    its text as written there."""

    entry: ArgEntry
    plus: bool
    index: int
    text: str


# --- items -------------------------------------------------------------------------------------------


def parse_item(text: str) -> Tuple[str, str, Optional[str]]:
    """`--name+=value` into (name, op, value); value None for a bare item (GetArgs: `name=true`)."""
    body = text.lstrip("-")
    name, sep, value = body.partition("=")
    cleaned = name.rstrip("+-")
    op = _OPS.get(name[len(cleaned):][-1:], "=") if cleaned != name else "="
    return cleaned, op, (value if sep else None)


def render_item(name: str, value: Optional[str], op: str = "=", prefix: str = "") -> str:
    if value is None:
        return prefix + name + (op[0] if op != "=" else "")
    return f"{prefix}{name}{op}{value}"


def tokens(value: Optional[str]) -> List[str]:
    return [t.strip() for t in (value or "").split(",") if t.strip()]


def dropin_order(names: Iterable[str]) -> List[str]:
    """The drop-in files k3s/RKE2 read, in their order: names ending in `.yaml`/`.yml` (any case), sorted
    byte by byte as Go's `os.ReadDir` does. The caller also skips non-regular files (directories)."""
    chosen = [n for n in names if n.lower().endswith(DROPIN_SUFFIXES)]
    return sorted(chosen, key=_name_bytes)


def _name_bytes(name: str) -> bytes:
    """A file name as the bytes Go sorts (a name that is no UTF-8 reaches Python with surrogate escapes)."""
    return name.encode("utf-8", "surrogateescape")


# --- loading -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Parsed:
    file: ConfigFile
    root: Optional[MappingNode]  # None: an empty document
    data: Dict[str, Any]


def _parse_file(path: str, text: str, shown: Callable[[str], str]) -> _Parsed:
    where = shown(path)
    refuse_yaml_aliases(text, where)
    try:
        parsed = yt.parse(text)
    except EditError as exc:
        cause = exc.__cause__
        if isinstance(cause, MarkedYAMLError):
            mark = cause.problem_mark or cause.context_mark
            line = f":{mark.line + 1}" if mark is not None else ""
            if isinstance(cause, DuplicateKeyError):
                # yaml.v2 would quietly take the later one; which was meant is the operator's call
                raise InputError(f"{where}{line}", "invalid YAML: a key appears twice in one mapping "
                                                   f"({(cause.problem or '').split(' with value')[0]})") from None
            raise InputError(f"{where}{line}", f"invalid YAML: {cause.problem or cause.context}") from None
        raise InputError(where, str(exc)) from None
    docs = [(n, d) for n, d in zip(parsed.nodes, parsed.data) if not yt.is_empty_scalar(n)]
    if len(docs) > 1:
        line = docs[1][0].start_mark.line + 1
        raise InputError(f"{where}:{line}", "a second YAML document; k3s and RKE2 read only the first, "
                                             "so cisfix refuses to guess which one is meant")
    if not docs:
        return _Parsed(ConfigFile(path, text), None, {})
    node, data = docs[0]
    if not isinstance(node, MappingNode):
        raise InputError(f"{where}:{node.start_mark.line + 1}", "not a YAML mapping of settings")
    for key, value in node.value:
        name = yt.scalar(key)
        if str(key.tag) == MERGE_TAG:
            # yaml.v2 splices the merged pairs into k3s's key order, where they may replace a list
            raise InputError(f"{where}:{key.start_mark.line + 1}", "a YAML merge key (<<); write the settings out")
        problem = _list_problem(key, value, name) if name and name.rstrip("+").endswith(SUFFIX) else None
        if problem:
            raise InputError(f"{where}:{problem[0]}", problem[1])
    return _Parsed(ConfigFile(path, text), node, data)


def _list_problem(key: Node, value: Node, name: str) -> Optional[Tuple[int, str]]:
    """(line, reason) when the value of `name` is not a string or a list of strings, else None."""
    if yt.is_empty_scalar(value):
        # k3s would pass `--<key>=` and then an empty flag to the component
        return key.start_mark.line + 1, f"{name} is empty; it must be a string or a list of strings (write [] for none)"
    if isinstance(value, ScalarNode) and _is_string(value):
        return None
    if isinstance(value, SequenceNode):
        for item in value.value:
            if not (isinstance(item, ScalarNode) and _is_string(item)):
                return item.start_mark.line + 1, f"an item of {name} is not a string"
        return None
    return key.start_mark.line + 1, f"{name} must be a string or a list of strings"


def _is_string(node: ScalarNode) -> bool:
    return str(node.tag) == "tag:yaml.org,2002:str"


def load(files: Sequence[Tuple[str, str]], shown: Callable[[str], str] = str,
         reuse: Optional["DistConfig"] = None) -> "DistConfig":
    """Parse (node path, text) pairs given in the distribution's order: config.yaml, then the drop-ins in
    `dropin_order`. Invalid YAML, anchors/aliases, a document that is not a mapping and a `*-arg` value
    that is not a string or a list of strings are refused (`InputError` naming file and line). `reuse`:
    a configuration whose files of the same path and text are not parsed again (plans re-read the files
    after each edit, and a drop-in may be a megabyte)."""
    known = {(p.file.path, p.file.text): p for p in reuse._parsed} if reuse is not None else {}
    return DistConfig(tuple(known.get((path, text)) or _parse_file(path, text, shown) for path, text in files), shown)


# --- the merged configuration ------------------------------------------------------------------------


class DistConfig:
    """The files of one configuration, merged by the distribution's rules."""

    def __init__(self, parsed: Tuple[_Parsed, ...], shown: Callable[[str], str] = str) -> None:
        self._parsed = parsed
        self._shown = shown

    @property
    def files(self) -> Tuple[ConfigFile, ...]:
        return tuple(p.file for p in self._parsed)

    # reading

    def _items(self, key: str, leading: Sequence[str] = ()) -> List[_Item]:
        items = [_Item(ArgEntry(*_split(text), BUILTIN, 0), False, -1, text) for text in leading]
        fixed = len(items)
        for parsed in self._parsed:
            if parsed.root is None:
                continue
            for key_node, value in parsed.root.value:
                name = yt.scalar(key_node)
                if name not in (key, key + "+"):
                    continue
                plus = name.endswith("+")
                found = [value] if isinstance(value, ScalarNode) else list(value.value)
                new = [_Item(ArgEntry(*_split(node.value), parsed.file.path, node.start_mark.line + 1),
                             plus, i, node.value) for i, node in enumerate(found)]
                if not plus:
                    del items[fixed:]
                items.extend(new)  # in place: many files appending to one list stay linear
        return items

    def entries(self, key: str) -> List[ArgEntry]:
        """The effective list of `key` after merging every file (rule 2 of the module docstring)."""
        return [i.entry for i in self._items(key)]

    def value(self, key: str) -> Any:
        """A plain setting's effective value (the last file that sets it; `key+:` appends as k3s does)."""
        result: Any = None
        for parsed in self._parsed:
            for name, value in parsed.data.items():
                if name == key:
                    result = value
                elif name == key + "+":
                    result = (_as_list(result) + _as_list(value)) if result is not None else value
        return result

    def args(self, key: str, defaults: Mapping[str, Optional[str]] = {}, leading: Sequence[str] = ()
             ) -> List[Tuple[str, str]]:
        """The component's arguments as k3s's GetArgs builds them from `defaults` and the effective items
        (rule 3): (name, value) pairs, names sorted, a flag repeated once per value. `leading`: items the
        distribution puts before the configuration's (RKE2: `enable-admission-plugins=NodeRestriction`
        for the apiserver, rke2 pkg/cli/defaults/defaults.go)."""
        merged = _merge_k3s(self._items(key, leading), defaults)
        return [(name, "true" if v is None else v) for name in sorted(merged) for v in merged[name][0]]

    def flags(self, key: str, defaults: Mapping[str, Optional[str]] = {}, rules: str = REPLACE,
              leading: Sequence[str] = ()) -> Tuple[Dict[str, Optional[str]], Dict[str, ArgEntry]]:
        """Effective flags (defaults included) and, per flag set by an item, the item that decided it
        (file `BUILTIN` for one of `leading`, see `args`)."""
        values, decided = _effective(self._items(key, leading), defaults, rules)
        return values, {name: item.entry for name, item in decided.items()}

    # planning

    def plan(self, key: str, op: FlagOp, owned: str, rules: str = REPLACE,
             defaults: Mapping[str, Optional[str]] = {}, leading: Sequence[str] = ()
             ) -> List[Tuple[str, Tuple[ArgOp, ...]]]:
        """Per file (node path, in precedence order), the text operations that give the effective flags
        what `op` asks, by the merge rules; [] when they have it already. `owned` is cisfix's drop-in
        (created when absent). Raises EditError when no edit can (a default that cannot be removed,
        a list item that would leave a flag empty, a value the distribution's own items contradict)."""
        if rules not in (K3S, REPLACE):
            raise EditError(f"unknown value rules {rules!r} (k3s or replace)")
        config = self._with_owned(owned)
        return _Planner(config, key, owned, rules, dict(defaults), tuple(leading)).plan(op)

    def plan_many(self, key: str, ops: Sequence[FlagOp], owned: str, rules: str = REPLACE,
                  defaults: Mapping[str, Optional[str]] = {}, leading: Sequence[str] = ()
                  ) -> List[Tuple[str, Tuple[ArgOp, ...]]]:
        """`plan` for several operations, each planned on the files as the ones before it left them;
        per file, all its text operations in order (one `edit` per file applies them). Plans made
        separately on the same files do not compose: two items added to one flag would both replace
        the item the flag had."""
        config = self._with_owned(owned)
        order = [f.path for f in config.files]
        texts = {f.path: f.text for f in config.files}
        collected: Dict[str, List[ArgOp]] = {}
        for op in ops:
            for path, file_ops in config.plan(key, op, owned, rules, defaults, leading):
                texts[path] = edit(texts[path], file_ops).text
                collected.setdefault(path, []).extend(file_ops)
            config = load([(path, texts[path]) for path in order], self._shown, config)
        return [(path, tuple(collected[path])) for path in order if path in collected]

    def apply(self, changes: Sequence[Tuple[str, Sequence[ArgOp]]]) -> Dict[str, Edited]:
        """The edited text of each file a plan touches (a missing file starts empty)."""
        texts = {f.path: f.text for f in self.files}
        return {path: edit(texts.get(path, ""), ops) for path, ops in changes}

    def _with_owned(self, owned: str) -> "DistConfig":
        """This configuration with `owned` in its place (empty when it does not exist yet): among the
        files of its folder by `dropin_order`, else after the others."""
        if any(p.file.path == owned for p in self._parsed):
            return self
        folder, name = posixpath.split(owned)
        place = len(self._parsed)
        for i, parsed in enumerate(self._parsed):
            other_folder, other = posixpath.split(parsed.file.path)
            if other_folder == folder and _name_bytes(name) < _name_bytes(other):
                place = i
                break
        empty = _Parsed(ConfigFile(owned, ""), None, {})
        return DistConfig(self._parsed[:place] + (empty,) + self._parsed[place:], self._shown)


def _split(text: str) -> Tuple[str, Optional[str], str]:
    name, op, value = parse_item(text)
    return name, value, op


def _as_list(value: Any) -> list:
    return list(value) if isinstance(value, list) else [value]


def _merge_k3s(items: Sequence[_Item], defaults: Mapping[str, Optional[str]]
               ) -> Dict[str, Tuple[Deque[Optional[str]], bool, Optional[_Item]]]:
    """GetArgs: per flag, its values, whether a +=/-= item took part, and the last item that set it."""
    initial = dict(defaults)
    merged: Dict[str, Tuple[Deque[Optional[str]], bool, Optional[_Item]]] = {}
    for item in items:
        e = item.entry
        values, joined, _ = merged.get(e.flag, (deque(), False, None))  # a deque: one flag repeated stays linear
        if e.op != "=" and e.flag in initial:
            values.appendleft(initial.pop(e.flag))
        elif e.flag in initial:
            del initial[e.flag]
        if e.op == "-=":
            values.appendleft(e.value)
        else:
            values.append(e.value)
        merged[e.flag] = (values, joined or e.op != "=", item)
    for name, value in initial.items():
        merged[name] = (deque([value]), False, None)
    return merged


def _effective(items: Sequence[_Item], defaults: Mapping[str, Optional[str]], rules: str
               ) -> Tuple[Dict[str, Optional[str]], Dict[str, _Item]]:
    values: Dict[str, Optional[str]] = {}
    decided: Dict[str, _Item] = {}
    if rules == K3S:
        for name, (vals, joined, item) in _merge_k3s(items, defaults).items():
            if joined or (name in LIST_FLAGS and len(vals) > 1):
                values[name] = ",".join("true" if v is None else v for v in vals)
            else:
                values[name] = vals[-1]
            if item is not None:
                decided[name] = item
        return values, decided
    values.update(defaults)
    for item in items:
        name = _replace_name(item.entry)
        values[name] = item.entry.value
        decided[name] = item
    return values, decided


def _replace_name(entry: ArgEntry) -> str:
    """Under the replace rules `name+=X` is no operator: it names a flag `name+`."""
    return entry.flag + ("" if entry.op == "=" else entry.op[0])


# --- planning ----------------------------------------------------------------------------------------


class _Planner:
    """Candidate edits for one operation, each checked by re-reading the edited files."""

    def __init__(self, config: DistConfig, key: str, owned: str, rules: str, defaults: Dict[str, Optional[str]],
                 leading: Tuple[str, ...]):
        self.config, self.key, self.owned, self.rules = config, key, owned, rules
        self.defaults, self.leading = defaults, leading
        self.items = config._items(key, leading)
        self.values = _effective(self.items, defaults, rules)[0]

    def plan(self, op: FlagOp) -> List[Tuple[str, Tuple[ArgOp, ...]]]:
        if self._satisfied(self.values, op):
            return []
        fixed = self._fixed(op.name)
        if isinstance(op, RemoveFlag) and fixed:
            raise EditError(f"the distribution itself passes {fixed}; --{op.name} can be set, not removed")
        for changes in self._candidates(op):
            plan = _grouped(self.config, changes)
            if self._verified(plan, op):
                return plan
        if fixed:
            raise EditError(f"no edit of {self.key} gives {_describe(op)}: the distribution itself passes {fixed}")
        raise EditError(f"internal: no edit of {self.key} gives {_describe(op)} by the merge rules")

    # which items

    def _fixed(self, name: str) -> str:
        """What the distribution sets for `name` whatever the files say (its defaults and leading items)."""
        found = [f"--{name}={self.defaults[name]} (default)"] if name in self.defaults else []
        found += [f"--{i.text.lstrip('-')}" for i in self.items if i.entry.file == BUILTIN and self._sets(i, name)]
        return ", ".join(found)

    def _sets(self, item: _Item, name: str) -> bool:
        return (item.entry.flag if self.rules == K3S else _replace_name(item.entry)) == name

    def _mine(self, name: str) -> List[_Item]:
        """The effective items in the files that set `name` under the rules."""
        return [i for i in self.items if i.entry.file != BUILTIN and self._sets(i, name)]

    def _candidates(self, op: FlagOp) -> List[List[Tuple[str, ArgOp]]]:
        name = op.name
        mine = self._mine(name)
        current = self.values.get(name)
        if isinstance(op, SetFlag):
            candidates = [self._set(mine, name, op.value)]
            rest = self._after_fixed(name, op.value)
            if rest:  # a list flag whose first values the distribution passes: write only the rest
                candidates.append(self._set(mine, name, rest))
            # no item of the flag at all: the distribution's own value may be the one asked for
            return candidates + [[self._remove(i) for i in mine]]
        if isinstance(op, RemoveFlag):
            return [[self._remove(i) for i in mine]]
        if isinstance(op, AddFlagItem):
            wanted = tokens(current) + [op.item]
            if not mine:
                if self.rules == K3S:
                    return [[self._append(render_item(name, op.item, "+="))], self._set(mine, name, ",".join(wanted))]
                return [self._set(mine, name, ",".join(wanted))]
            last = mine[-1]  # the item that decides the flag
            grown = ",".join(tokens(last.entry.value) + [op.item])
            return [[self._replace(last, last.entry.op, grown)], self._set(mine, name, ",".join(wanted))]
        if isinstance(op, RemoveFlagItem):
            kept = [t for t in tokens(current) if t != op.item]
            if not kept:
                raise EditError(f"removing {op.item} would leave --{name} empty; remove the flag instead (RemoveFlag)")
            minimal: List[Tuple[str, ArgOp]] = []
            for item in mine:
                left = [t for t in tokens(item.entry.value) if t != op.item]
                if len(left) == len(tokens(item.entry.value)):
                    continue
                if left:
                    minimal.append(self._replace(item, item.entry.op, ",".join(left)))
                else:
                    minimal.append(self._remove(item))
            return [minimal, self._set(mine, name, ",".join(kept))]
        raise EditError(f"unknown flag operation {op!r}")

    def _after_fixed(self, name: str, value: Optional[str]) -> Optional[str]:
        """`value` without the leading tokens the distribution's own items give `name`, if it starts so."""
        fixed = [t for i in self.items if i.entry.file == BUILTIN and self._sets(i, name)
                 for t in tokens(i.entry.value)]
        wanted = tokens(value)
        if not fixed or wanted[:len(fixed)] != fixed or len(wanted) == len(fixed):
            return None
        return ",".join(wanted[len(fixed):])

    def _set(self, mine: List[_Item], name: str, value: Optional[str]) -> List[Tuple[str, ArgOp]]:
        """`name=value` in the deciding item's place (others of the flag removed under the k3s rules, as
        their values would be passed too), else a new item where it takes effect."""
        if not mine:
            return [self._append(render_item(name, value))]
        last = mine[-1]
        changes = [self._replace(last, "=", value)]
        if self.rules == K3S:
            changes += [self._remove(i) for i in mine if i is not last]
        return changes

    def _replace(self, item: _Item, op: str, value: Optional[str]) -> Tuple[str, ArgOp]:
        prefix = item.text[: len(item.text) - len(item.text.lstrip("-"))]  # a leading `--` stays
        text = render_item(item.entry.flag, value, op, prefix)
        return item.entry.file, ReplaceItem(self.key, item.index, item.text, text, item.plus)

    def _remove(self, item: _Item) -> Tuple[str, ArgOp]:
        return item.entry.file, RemoveItem(self.key, item.index, item.text, item.plus)

    def _append(self, text: str) -> Tuple[str, ArgOp]:
        """A new item: in `owned` under its last `key`/`key+` (else a new `key+:`), unless a later file
        replaces the list with a plain `key:` — then at the end of the last such file."""
        parsed = self.config._parsed
        paths = [p.file.path for p in parsed]
        start = paths.index(self.owned)
        target = self.owned
        for p in parsed[start + 1:]:
            if p.root is not None and any(yt.scalar(k) == self.key for k, _ in p.root.value):
                target = p.file.path
        return target, AppendItem(self.key, text, _last_plus(parsed[paths.index(target)], self.key))

    # checking

    def _satisfied(self, values: Mapping[str, Optional[str]], op: FlagOp) -> bool:
        if isinstance(op, SetFlag):
            return op.name in values and values[op.name] == op.value
        if isinstance(op, RemoveFlag):
            return op.name not in values
        if isinstance(op, AddFlagItem):
            return op.item in tokens(values.get(op.name))
        return op.item not in tokens(values.get(op.name))

    def _verified(self, plan: List[Tuple[str, Tuple[ArgOp, ...]]], op: FlagOp) -> bool:
        texts = {f.path: f.text for f in self.config.files}
        try:
            for path, ops in plan:
                texts[path] = edit(texts[path], ops).text
            after = load(list(texts.items()), self.config._shown, self.config)
        except (EditError, InputError):
            return False
        values, _ = _effective(after._items(self.key, self.leading), self.defaults, self.rules)
        others = {k: v for k, v in values.items() if k != op.name}
        before = {k: v for k, v in self.values.items() if k != op.name}
        return self._satisfied(values, op) and others == before


def _last_plus(parsed: _Parsed, key: str) -> bool:
    """Whether new items go under `key+` in this file: its last `key`/`key+` pair, else a new `key+`."""
    found = None
    if parsed.root is not None:
        for k, _ in parsed.root.value:
            if yt.scalar(k) in (key, key + "+"):
                found = yt.scalar(k).endswith("+")
    return True if found is None else found


def _grouped(config: DistConfig, changes: List[Tuple[str, ArgOp]]) -> List[Tuple[str, Tuple[ArgOp, ...]]]:
    """Per file in precedence order: replacements, then removals from the last index down (indices stay
    valid), then appends."""
    order = [f.path for f in config.files]
    result = []
    for path in order:
        ops = [op for p, op in changes if p == path]
        if not ops:
            continue
        replaces = [o for o in ops if isinstance(o, ReplaceItem)]
        removes = sorted((o for o in ops if isinstance(o, RemoveItem)), key=lambda o: (o.plus, o.index), reverse=True)
        appends = [o for o in ops if isinstance(o, AppendItem)]
        result.append((path, tuple(replaces + removes + appends)))
    return result


def _describe(op: FlagOp) -> str:
    if isinstance(op, SetFlag):
        return f"--{op.name}" if op.value is None else f"--{op.name}={op.value}"
    if isinstance(op, RemoveFlag):
        return f"no --{op.name}"
    if isinstance(op, AddFlagItem):
        return f"{op.item} in --{op.name}"
    return f"no {op.item} in --{op.name}"


# --- editing one file's text -------------------------------------------------------------------------


def edit(text: str, ops: Sequence[ArgOp]) -> Edited:
    """Apply list-item operations to one file's text, changing only the items they touch. An empty text
    (a new file) becomes a short document that says cisfix wrote it. Raises EditError for what cannot be
    edited safely: anchors/aliases, a key twice in one file, a value that is not a string or a list of
    strings, more than one document."""
    if not ops:
        return Edited(text, ())
    current = text or HEADER
    intended = copy.deepcopy(_parse_for_edit(current)[1])
    notes: List[str] = []
    for op in ops:
        root, data = _parse_for_edit(current)
        if isinstance(op, AppendItem) and op.text in _as_list(data.get(_literal(op))):
            continue  # two checks asking for the same item, planned apart: it is added once
        edits, note = _plan_edit(current, root, op)
        current = yt.splice(current, edits)
        _apply_data(intended, op)
        notes.append(note)
    yt.self_check(current, [intended])
    return Edited(current, tuple(notes))


def _parse_for_edit(text: str) -> Tuple[Optional[MappingNode], Dict[str, Any]]:
    try:
        refuse_yaml_aliases(text, "file")
    except InputError as exc:
        raise EditError(exc.reason) from None
    parsed = yt.parse(text)  # duplicate keys are refused here (ruamel's safe loader)
    docs = [(n, d) for n, d in zip(parsed.nodes, parsed.data) if not yt.is_empty_scalar(n)]
    if len(docs) > 1:
        raise EditError(f"{len(docs)} YAML documents; k3s and RKE2 read only the first")
    if not docs:
        return None, {}
    node, data = docs[0]
    if not isinstance(node, MappingNode):
        raise EditError("not a YAML mapping of settings")
    return node, data


def _pair(root: MappingNode, key: str) -> Optional[Node]:
    pairs = [(k, v) for k, v in root.value if yt.scalar(k) == key]
    if len(pairs) > 1:
        raise EditError(f"{key} appears {len(pairs)} times in one file")
    return pairs[0][1] if pairs else None


def _literal(op: ArgOp) -> str:
    return op.key + ("+" if op.plus else "")


def _plan_edit(text: str, root: Optional[MappingNode], op: ArgOp) -> Tuple[List[yt.Edit], str]:
    key = _literal(op)
    value = _pair(root, key) if root is not None else None
    if value is None:
        if not isinstance(op, AppendItem):
            raise EditError(f"{key} is not in the file")
        return [_create(text, root, key, op.text)], f"added {key}: [{op.text}]"
    key_node = next(k for k, v in root.value if v is value)
    problem = _list_problem(key_node, value, key)
    if problem:
        raise EditError(f"line {problem[0]}: {problem[1]}")
    if isinstance(value, ScalarNode):
        return _scalar_edit(text, root, value, op, key)
    quote = yt.sibling_quote(value.value)
    flow = bool(value.flow_style)
    if isinstance(op, AppendItem):
        last = value.value[-1] if value.value else None
        style = last.style if last is not None and last.style in yt.QUOTES else None
        rendered = yt.render_scalar(op.text, style, flow, quote)
        if flow:  # an empty list is always a flow list: `[]`
            spans = yt.seq_spans(text, value)
            return [yt.flow_insert(text, value, spans, len(spans) - 1 if spans else None, True, [rendered])], \
                f"added {op.text} to {key}"
        prefix = yt.block_prefix(text, last)
        return [yt.insert_lines(text, yt.line_end(text, yt.node_end(text, last)), [prefix + rendered])], \
            f"added {op.text} to {key}"
    index = _resolve([i.value for i in value.value], op, key)
    item = value.value[index]
    if isinstance(op, ReplaceItem):
        style = item.style if item.style in yt.QUOTES else None
        rendered = yt.render_scalar(op.text, style, flow, quote)
        return [(item.start_mark.index, yt.node_end(text, item), rendered)], \
            f"set {op.text} in {key} (was {item.value})"
    # a block list left empty becomes `key: []` (yamltext.delete_entries)
    return yt.delete_entries(text, value, yt.seq_spans(text, value), [index], key_node), \
        f"removed {item.value} from {key}"


def _resolve(items: List[str], op: Union[ReplaceItem, RemoveItem], key: str) -> int:
    """The index of the item `op.old`: at `op.index` if it is there, else the nearest equal item."""
    if 0 <= op.index < len(items) and items[op.index] == op.old:
        return op.index
    equal = [i for i, text in enumerate(items) if text == op.old]
    if not equal:
        raise EditError(f"{key} has no item {op.old!r} (any more)")
    return min(equal, key=lambda i: abs(i - op.index))


def _scalar_edit(text: str, root: MappingNode, value: ScalarNode, op: ArgOp, key: str) -> Tuple[List[yt.Edit], str]:
    """`key: "a=b"`: a one-item list written as a string. Appending makes it a flow list `[a=b, new]`."""
    start, end = value.start_mark.index, yt.node_end(text, value)
    style = value.style if value.style in yt.QUOTES else None
    if isinstance(op, AppendItem):
        quote = style or '"'
        old = text[start:end] if style else yt.render_scalar(value.value, None, True, quote)
        new = yt.render_scalar(op.text, style, True, quote)
        return [(start, end, f"[{old}, {new}]")], f"added {op.text} to {key}"
    _resolve([value.value], op, key)
    if isinstance(op, ReplaceItem):
        rendered = yt.render_scalar(op.text, style, bool(root.flow_style))
        return [(start, end, rendered)], f"set {op.text} in {key} (was {value.value})"
    return [(start, end, "[]")], f"removed {value.value} from {key}"


def _create(text: str, root: Optional[MappingNode], key: str, item: str) -> yt.Edit:
    """A new `key:` with one item, after everything else, in the style of the file's other lists."""
    if root is not None and root.flow_style:
        spans = yt.map_spans(text, root)
        entry = f"{yt.render_scalar(key, flow=True)}: [{yt.render_scalar(item, None, True)}]"
        return yt.flow_insert(text, root, spans, len(spans) - 1 if spans else None, True, [entry])
    column = root.value[0][0].start_mark.column if root is not None and root.value else 0
    offset, style = _list_style(text, root)
    rendered = yt.render_scalar(item, style, False, style or '"')
    lines = [" " * column + key + ":", " " * (column + offset) + "- " + rendered]
    return yt.insert_lines(text, len(text), lines)


def _list_style(text: str, root: Optional[MappingNode]) -> Tuple[int, Optional[str]]:
    """Dash offset and quote style of the file's block lists of strings (defaults: 2, plain)."""
    offset, style = None, None
    for key, value in (root.value if root is not None else []):
        if isinstance(value, SequenceNode) and not value.flow_style and value.value:
            dash = yt.dash_column(text, value.value[0])
            if offset is None and dash is not None:
                offset = max(dash - key.start_mark.column, 0)
            name = yt.scalar(key) or ""
            if style is None and name.rstrip("+").endswith(SUFFIX):
                quoted = [i.style for i in value.value if isinstance(i, ScalarNode) and i.style in yt.QUOTES]
                style = quoted[0] if quoted else ""
    return (2 if offset is None else offset), (style or None)


def _apply_data(data: Dict[str, Any], op: ArgOp) -> None:
    """The same operation on plain data, for the self-check."""
    key = _literal(op)
    if key not in data:
        data[key] = [op.text]
        return
    current = data[key]
    items = [current] if isinstance(current, str) else current
    if isinstance(op, AppendItem):
        data[key] = items + [op.text]
        return
    index = _resolve(items, op, key)
    if isinstance(op, ReplaceItem):
        items[index] = op.text
        data[key] = op.text if isinstance(current, str) else items
    else:
        del items[index]
        data[key] = items
