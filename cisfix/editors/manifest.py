"""Edit a control-plane component's flags and hostPath mounts in a static pod manifest, changing only
the lines it must.

Each flag operation is planned on the parsed text as item-level changes (delete items, replace an item,
insert items next to an anchor). The same change is spliced into the text and applied to a plain-data
model of the container's `command`/`args`. A mount operation appends list items (a `volumes` entry, a
`volumeMounts` entry) to the text and to the same data. The result must read back as that data
(self-check).
"""
from __future__ import annotations

import copy
from collections import Counter
import posixpath
import re
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Set, Tuple

from ruamel.yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from .. import flags
from ..errors import EditError
from ..nodefile import Composed
from ..plan import AddFlagItem, AddHostPathMount, Edited, FlagOp, ManifestOp, RemoveFlag, RemoveFlagItem, SetFlag
from . import yamltext as yt

SEQUENCES = ("command", "args")
SHELLS = {"sh", "bash", "ash", "dash", "zsh"}
VOLUMES, MOUNTS = "volumes", "volumeMounts"
# Kubernetes' hostPath types ("" = no check); anything else is rejected by the API server's validation.
HOST_PATH_TYPES = {"", "DirectoryOrCreate", "Directory", "FileOrCreate", "File", "Socket", "CharDevice", "BlockDevice"}
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\Z")


@dataclass(frozen=True)
class _Item:
    """One entry of `command` or `args`."""

    seq: str
    index: int
    node: Node

    @property
    def text(self) -> Optional[str]:
        return yt.scalar(self.node)


@dataclass(frozen=True)
class _Flag:
    """One occurrence of a flag: `--k=v` or bare `--k` (one item) or `--k v` (two items)."""

    name: str
    value: Optional[str]
    items: Tuple[_Item, ...]

    @property
    def pair(self) -> bool:
        return len(self.items) == 2


@dataclass
class _Target:
    """The container running the component, as found in one parse of the text."""

    index: int
    name: str
    seqs: Dict[str, Tuple[ScalarNode, SequenceNode]]
    argv: List[_Item]
    flags: List[_Flag]
    component: str
    node: MappingNode  # the container
    spec: MappingNode  # the pod's spec


@dataclass
class _Change:
    """Item-level edits of one operation, by (sequence, index) in the text they were planned on."""

    deletes: List[_Item] = field(default_factory=list)
    replaces: List[Tuple[_Item, str]] = field(default_factory=list)
    # (sequence, anchor item or None for an empty flow sequence, after the anchor?, new values)
    insert: Optional[Tuple[str, Optional[_Item], bool, List[str]]] = None

    def empty(self) -> bool:
        return not (self.deletes or self.replaces or self.insert)


@dataclass(frozen=True)
class _Append:
    """A new last item of the list under `key` (VOLUMES in the pod spec, MOUNTS in the container)."""

    key: str
    entry: Dict[str, Any]


# --- public API --------------------------------------------------------------------------------------


def read_flags(text: str, component: Optional[str], fallback: Optional[str] = None,
               composed: Optional[Composed] = None) -> List[Tuple[str, Optional[str]]]:
    """The component's flags in order (name without dashes, value or None when bare). Duplicates are
    all listed; as for the component, the last one is effective (`dict()` of the result).

    The component is `component` if given, else the pod's `component` label, else `fallback` (the
    manifest's file name, say). `composed`: the text's `cisfix.nodefile.compose_yaml`, when the caller
    has it (its data was read too)."""
    parsed = yt.read_nodes(composed) if composed else yt.parse(text, with_data=False, to_edit=False)
    target = _locate(parsed, component, fallback)
    return [(f.name, f.value) for f in target.flags]


def edit_flags(text: str, ops: Sequence[ManifestOp], component: Optional[str], fallback: Optional[str] = None) -> Edited:
    """Apply flag and mount operations in order; returns the input text unchanged when nothing had to
    change. The component is chosen as in `read_flags`.

    `AddHostPathMount` appends a `volumes` item to the pod spec and a `volumeMounts` item to the
    component's container, each after the list's last item and in its style (key order, indentation,
    quoting); a missing list is created after the last key of its mapping. Nothing changes when the
    mount path is mounted already from that host path (or lies under a mount of a parent directory
    that maps onto it); a volume named otherwise but with the same host path is reused."""
    original = yt.parse(text)
    first = _locate(original, component, fallback)
    component = first.component
    container = _container_data(original.data, first.index)
    model = {name: list(container[name]) for name in first.seqs}
    intended = copy.deepcopy(original.data)  # flag changes join it at the end, mounts as they are made
    notes: List[str] = []
    current = text
    parsed, parsed_text, has_data = original, text, True
    for op in ops:
        # Parse again only when the text changed (a mount many checks ask for is added once, then
        # found), and with the data only for a mount: a flag needs only the nodes, a third of the work;
        # the self-check below reads the result in full once.
        needs_data = isinstance(op, AddHostPathMount)
        if current != parsed_text or (needs_data and not has_data):
            parsed, parsed_text, has_data = yt.parse(current, with_data=needs_data), current, needs_data
        target = _locate(parsed, component)
        if isinstance(op, AddHostPathMount):
            appends, note = _plan_mount(parsed.data, target, op)
            if appends:
                current = _append(current, parsed, target, appends, intended)
                notes.append(note)
            continue
        change, op_notes = _plan(target, op)
        if change.empty():
            continue
        current = yt.splice(current, _text_edits(current, target, change))
        _apply_model(model, target, change)
        notes.extend(op_notes)
    if current == text:
        return Edited(text, ())
    _container_data(intended, first.index).update(model)
    yt.self_check(current, intended)
    return Edited(current, tuple(notes))


# --- locating the component --------------------------------------------------------------------------


def _locate(parsed: yt.Parsed, component: Optional[str], fallback: Optional[str] = None) -> _Target:
    docs = [n for n in parsed.nodes if not yt.is_empty_scalar(n)]
    if len(docs) != 1:
        raise EditError(f"{len(docs)} YAML documents; a static pod manifest holds exactly one Pod")
    pod = docs[0]
    kind = yt.scalar(yt.node_at(pod, "kind")) if isinstance(pod, MappingNode) else None
    if kind != "Pod":
        raise EditError(f"not a Pod (kind: {kind})" if kind else "not a Pod (no kind)")
    component = component or yt.scalar(yt.node_at(pod, "metadata", "labels", "component")) or fallback
    if not component:
        raise EditError("the pod has no metadata.labels.component; name the component (e.g. kube-apiserver)")
    containers = yt.node_at(pod, "spec", "containers")
    if not isinstance(containers, SequenceNode) or not containers.value:
        raise EditError("the pod has no spec.containers")
    return _target(yt.node_at(pod, "spec"), containers, component)


def _target(spec: MappingNode, containers: SequenceNode, component: str) -> _Target:
    by_name: Optional[_Target] = None
    names = [yt.scalar(yt.node_at(node, "name")) or f"#{index + 1}"
             for index, node in enumerate(containers.value) if isinstance(node, MappingNode)]
    twice = sorted(name for name, count in Counter(names).items() if count > 1)
    if twice:
        # The kubelet refuses such a pod; which container is "the" component would be a guess.
        raise EditError(f"two containers are named {twice[0]} (the kubelet refuses such a pod)")
    for index, node in enumerate(containers.value):
        if not isinstance(node, MappingNode):
            continue
        name = yt.scalar(yt.node_at(node, "name")) or f"#{index + 1}"
        seqs = {
            key: pair for key in SEQUENCES
            if (pair := yt.mapping_get(node, key)) is not None and isinstance(pair[1], SequenceNode)
        }
        argv = [_Item(key, i, item) for key in SEQUENCES if key in seqs for i, item in enumerate(seqs[key][1].value)]
        programs, skip = _program(argv)
        target = _Target(index, name, seqs, argv, _parse_flags(argv[skip:]), component, node, spec)
        if component in programs:
            return target
        if name == component and by_name is None:
            by_name = target
            if programs & SHELLS:
                raise EditError(f"container {name} runs its command through a shell; edit it by hand")
    if by_name is None:
        raise EditError(f"no container runs {component} (containers: {', '.join(names)})")
    return by_name


def _program(argv: List[_Item]) -> Tuple[Set[str], int]:
    """Names the container's program answers to, and how many leading items are not flags."""
    first = argv[0].text if argv else None
    if first is None or (argv[0].seq == "args" and first.startswith("-")):
        return set(), 0  # no command: the image's entrypoint runs the args
    exe = posixpath.basename(first)
    sub = argv[1].text if len(argv) > 1 else None
    if exe == "hyperkube" and sub and not sub.startswith("-"):
        # `/hyperkube apiserver` runs kube-apiserver; newer images also accept `kube-apiserver`
        return {sub, "kube-" + sub}, 2
    return {exe}, 1


def _parse_flags(items: List[_Item]) -> List[_Flag]:
    return [_Flag(f.name, f.value, tuple(items[f.first:f.last + 1])) for f in flags.parse([i.text for i in items])]


def _spec_data(data: List) -> dict:
    return next(d for d in data if d is not None)["spec"]


def _container_data(data: List, index: int) -> dict:
    return _spec_data(data)["containers"][index]


# --- planning ----------------------------------------------------------------------------------------


def _show(name: str, value: Optional[str]) -> str:
    return f"--{name}" if value is None else f"--{name}={value}"


def _tokens(value: Optional[str]) -> List[str]:
    return [t for t in (value or "").split(",") if t.strip()]


def _plan(target: _Target, op: FlagOp) -> Tuple[_Change, List[str]]:
    occurrences = [f for f in target.flags if f.name == op.name]
    if isinstance(op, SetFlag):
        if not occurrences:
            return _add(target, op.name, op.value), [f"added {_show(op.name, op.value)}"]
        old = occurrences[-1].value
        return _assign(occurrences, op.value, f"set {_show(op.name, op.value)} (was {_was(old)})")
    if isinstance(op, RemoveFlag):
        if not occurrences:
            return _Change(), []
        times = f" ({len(occurrences)} occurrences)" if len(occurrences) > 1 else ""
        return _Change(deletes=[i for f in occurrences for i in f.items]), [f"removed --{op.name}{times}"]
    if isinstance(op, AddFlagItem):
        if not occurrences:
            return _add(target, op.name, op.item), [f"added {_show(op.name, op.item)}"]
        tokens = _tokens(occurrences[-1].value)
        if op.item in (t.strip() for t in tokens):
            return _assign(occurrences, occurrences[-1].value, "")
        return _assign(occurrences, ",".join(tokens + [op.item]), f"added {op.item} to --{op.name}")
    if isinstance(op, RemoveFlagItem):
        tokens = _tokens(occurrences[-1].value) if occurrences else []
        kept = [t for t in tokens if t.strip() != op.item]
        if len(kept) == len(tokens):
            return _Change(), []
        if not kept:
            raise EditError(f"removing {op.item} would leave --{op.name} empty; remove the flag instead (RemoveFlag)")
        return _assign(occurrences, ",".join(kept), f"removed {op.item} from --{op.name}")
    raise EditError(f"unknown flag operation {op!r}")


def _was(value: Optional[str]) -> str:
    return "set without a value" if value is None else value


def _assign(occurrences: List[_Flag], value: Optional[str], note: str) -> Tuple[_Change, List[str]]:
    """Give the flag `value`, keeping only its last occurrence and that occurrence's form."""
    last = occurrences[-1]
    change = _Change(deletes=[i for f in occurrences[:-1] for i in f.items])
    notes = []
    if last.value != value:
        if last.pair and value is not None:
            change.replaces.append((last.items[1], value))
        else:
            change.replaces.append((last.items[0], _show(last.name, value)))
            change.deletes.extend(last.items[1:])
        notes.append(note)
    extra = len(occurrences) - 1
    if extra:
        notes.append(f"removed {extra} duplicate{'s' if extra > 1 else ''} of --{last.name}")
    return change, notes


def _add(target: _Target, name: str, value: Optional[str]) -> _Change:
    """A new `--name=value` item: at its sorted place when the flags are sorted, else after the last."""
    new = [_show(name, value)]
    flags = target.flags
    if flags:
        names = [f.name for f in flags]
        if names == sorted(names):
            before = [f for f in flags if f.name < name]
            if before:
                anchor = before[-1].items[-1]
            elif flags[0].items[0].index == 0:
                anchor = flags[0].items[0]
                return _Change(insert=(anchor.seq, anchor, False, new))
            else:
                # after the item preceding the first flag, so comments above that flag stay with it
                first = flags[0].items[0]
                anchor = next(i for i in target.argv if (i.seq, i.index) == (first.seq, first.index - 1))
        else:
            anchor = flags[-1].items[-1]
        return _Change(insert=(anchor.seq, anchor, True, new))
    for seq in reversed(SEQUENCES):  # no flags yet: prefer an existing but empty `args: []`
        if seq in target.seqs and not target.seqs[seq][1].value:
            return _Change(insert=(seq, None, True, new))
    if target.argv:
        anchor = target.argv[-1]
        return _Change(insert=(anchor.seq, anchor, True, new))
    raise EditError(f"container {target.name} has no command or args to add --{name} to")


# --- applying a change -------------------------------------------------------------------------------


def _text_edits(text: str, target: _Target, change: _Change) -> List[yt.Edit]:
    edits: List[yt.Edit] = []
    for item, value in change.replaces:
        seq = target.seqs[item.seq][1]
        style = item.node.style if item.node.style in yt.QUOTES else None
        rendered = yt.render_scalar(value, style, bool(seq.flow_style), yt.sibling_quote(seq.value))
        edits.append((item.node.start_mark.index, yt.node_end(text, item.node), rendered))
    for name in SEQUENCES:
        indices = [i.index for i in change.deletes if i.seq == name]
        if indices:
            key, seq = target.seqs[name]
            edits.extend(yt.delete_entries(text, seq, yt.seq_spans(text, seq), indices, key))
    if change.insert:
        edits.append(_insert_edit(text, target, *change.insert))
    return edits


def _insert_edit(text: str, target: _Target, name: str, anchor: Optional[_Item], after: bool,
                 values: List[str]) -> yt.Edit:
    seq = target.seqs[name][1]
    style = anchor.node.style if anchor is not None and anchor.node.style in yt.QUOTES else None
    quote = yt.sibling_quote(seq.value)
    rendered = [yt.render_scalar(v, style, bool(seq.flow_style), quote) for v in values]
    if seq.flow_style or anchor is None:
        return yt.flow_insert(text, seq, yt.seq_spans(text, seq),
                             None if anchor is None else anchor.index, after, rendered)
    prefix = yt.block_prefix(text, anchor.node)
    start = anchor.node.start_mark.index
    pos = yt.line_end(text, yt.node_end(text, anchor.node)) if after else yt.line_start(text, start)
    return yt.insert_lines(text, pos, [prefix + r for r in rendered])


def _apply_model(model: Dict[str, list], target: _Target, change: _Change) -> None:
    """The same change on plain lists: what the spliced text must read back as."""
    for name in model:
        deleted = {i.index for i in change.deletes if i.seq == name}
        replaced = {i.index: v for i, v in change.replaces if i.seq == name}
        seq_name, anchor, after, values = change.insert or (None, None, False, [])
        if seq_name == name and anchor is None:
            model[name] = list(values)
            continue
        out = []
        for i, value in enumerate(model[name]):
            if seq_name == name and anchor.index == i and not after:
                out.extend(values)
            if i not in deleted:
                out.append(replaced.get(i, value))
            if seq_name == name and anchor.index == i and after:
                out.extend(values)
        model[name] = out


# --- hostPath mounts ---------------------------------------------------------------------------------


def _plan_mount(data: List, target: _Target, op: AddHostPathMount) -> Tuple[List[_Append], str]:
    """The items to add for `op` (none when the path is mounted already), judged on the plain data."""
    _validate_mount(op)
    host, mount = posixpath.normpath(op.host_path), posixpath.normpath(op.mount_path)
    spec = _spec_data(data)
    volumes = _dicts(spec, VOLUMES)
    mounts = _dicts(_container_data(data, target.index), MOUNTS)
    by_name = {v.get("name"): v for v in volumes}
    if _mounted(mounts, by_name, host, mount, op.read_only, target.name):
        return [], ""
    name, volume = _volume_for(volumes, mounts, host, op)
    entry: Dict[str, Any] = {"mountPath": op.mount_path, "name": name}
    if op.read_only:
        entry["readOnly"] = True
    # The mount first: when both lists are created they land at one place, and the container's
    # `volumeMounts` must come before the spec's `volumes` there.
    return [_Append(MOUNTS, entry)] + ([volume] if volume else []), f"mounted {op.mount_path} (hostPath volume {name})"


def _volume_for(volumes: List[dict], mounts: List[dict], host: str, op: AddHostPathMount) -> Tuple[str, Optional[_Append]]:
    """The name of the volume to mount, and the volume to define for it unless one exists: the volume
    named `op.name` when it holds `host`, else another volume holding `host` (rather than defining it
    twice), else a new one named `op.name`."""
    taken = next((v for v in reversed(volumes) if v.get("name") == op.name), None)
    if taken is not None:
        if _host_path(taken) != host:
            raise EditError(f"volume name {op.name} is taken by a different volume ({_describe_volume(taken)})")
        return op.name, None
    same = next((v["name"] for v in volumes if _host_path(v) == host and isinstance(v.get("name"), str)), None)
    if same is not None:
        return same, None
    dangling = [m.get("mountPath") for m in mounts if m.get("name") == op.name]
    if dangling:
        # a mount of an undefined volume: defining it now would silently give that mount our host path
        raise EditError(f"volume name {op.name} is used by the mount at {dangling[0]} but not defined")
    host_path = {"path": op.host_path, **({"type": op.type} if op.type else {})}
    return op.name, _Append(VOLUMES, {"hostPath": host_path, "name": op.name})


def _validate_mount(op: AddHostPathMount) -> None:
    """Refuse what the API server would reject, before touching the text."""
    if not _DNS_LABEL.match(op.name):
        raise EditError(f"bad volume name {op.name!r}: lower-case letters, digits and '-', at most 63")
    for what, path in (("host path", op.host_path), ("mount path", op.mount_path)):
        if not isinstance(path, str) or not path.startswith("/"):
            raise EditError(f"the {what} must be absolute: {path!r}")
    if op.type not in HOST_PATH_TYPES:
        raise EditError(f"unknown hostPath type {op.type!r} (one of: {', '.join(sorted(HOST_PATH_TYPES - {''}))})")


def _dicts(owner: dict, key: str) -> List[dict]:
    """The mappings listed under `key` (absent or null: none)."""
    items = owner.get(key)
    if items is None:
        return []
    if not isinstance(items, list):
        raise EditError(f"{key} is not a list")
    return [i for i in items if isinstance(i, dict)]


def _host_path(volume: Optional[dict]) -> Optional[str]:
    """The normalised host path of a hostPath volume, None for other volumes."""
    source = volume.get("hostPath") if isinstance(volume, dict) else None
    path = source.get("path") if isinstance(source, dict) else None
    return posixpath.normpath(path) if isinstance(path, str) and path else None


def _describe_volume(volume: dict) -> str:
    host = _host_path(volume)
    if host is not None:
        return f"hostPath {host}"
    kinds = [k for k in volume if k != "name"]
    return f"{kinds[0]} volume" if kinds else "no source"


def _under(path: str, parent: Optional[str]) -> Optional[str]:
    """`path` relative to `parent` ("" when equal), None when it is not inside it."""
    if parent is None:
        return None
    if path == parent:
        return ""
    if path.startswith(parent.rstrip("/") + "/"):
        return path[len(parent.rstrip("/")) + 1:]
    return None


def _mounted(mounts: List[dict], by_name: Dict[Any, dict], host: str, mount: str, read_only: bool,
             container: str) -> bool:
    """Is `host` visible at `mount` already? What is visible there comes from the deepest mount at or
    above it: mounted already when that one's host path plus the rest of the path is `host`. The same
    path mounted from elsewhere is an error (as is read-only when writing is needed); a parent directory
    mounted from elsewhere is not: the new mount goes on top of it."""
    covering = [(rest, m) for m in mounts if (rest := _under(mount, _path(m))) is not None]
    if not covering:
        return False
    rest, deepest = min(covering, key=lambda c: len(c[0]))
    source = _host_path(by_name.get(deepest.get("name")))
    if source is not None and posixpath.normpath(posixpath.join(source, rest)) == host:
        if deepest.get("readOnly") is True and not read_only:
            raise EditError(f"{mount} is mounted read-only in container {container} (at "
                            f"{deepest.get('mountPath')}); it must be writable")
        return True
    if rest == "":
        found = f"hostPath {source}" if source else f"volume {deepest.get('name')}"
        raise EditError(f"{mount} is already mounted in container {container} from {found}, not {host}")
    return False


def _path(mount: dict) -> Optional[str]:
    path = mount.get("mountPath")
    return posixpath.normpath(path) if isinstance(path, str) and path else None


def _append(text: str, parsed: yt.Parsed, target: _Target, appends: List[_Append], intended: List) -> str:
    """Splice the new items into the text and add them to the intended data, in one key order."""
    root = next(n for n in parsed.nodes if not yt.is_empty_scalar(n))
    indent = yt.indentation(text, root)
    edits = []
    for add in appends:
        owner_node = target.spec if add.key == VOLUMES else target.node
        edit, entry = yt.append_item(text, owner_node, add.key, add.entry, indent)
        edits.append(edit)
        owner = _spec_data(intended) if add.key == VOLUMES else _container_data(intended, target.index)
        owner[add.key] = list(owner.get(add.key) or []) + [entry]
    return yt.splice(text, edits)
