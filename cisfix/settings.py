"""Settings of a component, read as the component itself reads them, and changes of settings resolved to
the file (and editor) where they take effect.

The layout (`cisfix_describe_node`) says where a component's settings live and in which precedence:
the live process's command line first; else the command line its sources would give — a static pod's
manifest (`command`/`args`), or a service's flag files (systemd drop-ins and the environment files they
name, expanded into `ExecStart=` as systemd does) — and below the command line the config file that
`--<config_flag>` names (else the component's `config`), with the drop-ins of the folder that
`--<config_dir_flag>` names merged over it (the kubelet's `--config-dir`).
"""
from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Sequence, Set, Tuple

from . import flags as flag_parser
from .errors import EditError, InputError
from .plan import AddHostPathMount, RemoveFlag, RemoveFlagItem, SetFlag, SetPath, SetSetting, UnsetPath
from .nodefile import decode_text
from .trust import read_node_trusted, require_trusted_dir
from .shown import shown
from .types import DROPIN_SUFFIXES, ArgList, Component, Configure, EditFile, Evidence

if TYPE_CHECKING:  # pragma: no cover
    from .editors import flagfile
    from .editors.distconfig import DistConfig
    from .state import Flags, NodeState
    from .types import NodeInfo

Values = Dict[str, Optional[str]]
FLAG_FILE = "flag-file"  # EditFile.kind of a flag file: edited with cisfix.editors.flagfile


@dataclass(frozen=True)
class FlagSource:
    """Where a flag of the command line is defined: a file and line, or only the live process."""

    file: Optional[str]
    line: Optional[int] = None


@dataclass(frozen=True)
class Settings:
    """A component's effective settings."""

    component: str
    flags: Values  # the effective command line
    running: bool  # `flags` come from the live process
    file_flags: Values  # the command line its sources give (what a restart would run)
    sources: Dict[str, FlagSource]  # flag -> where the sources define it (last definition)
    config_path: Optional[str]
    config: Optional[dict]  # the config file with the drop-ins merged over it
    evidence: Evidence  # where the command line was read: the live process, or the manifest
    dropins: Tuple["Dropin", ...] = ()  # in merge order (see `read_dropins`)
    base_config: Optional[dict] = None  # the config file's own data (without the drop-ins)
    # (file, path) -> the line of the path's key in that file, for evidence; None: lines are not known
    locate: Optional[Callable[[str, str], Optional[int]]] = field(default=None, compare=False, repr=False)

    def setting(self, flag: Optional[str], path: Optional[str]) -> Tuple[bool, Any, Evidence]:
        """The effective value of a setting known as `--flag` and as `path` in the config file."""
        return self._lookup(self.flags, self.running, flag, path)

    def setting_on_disk(self, flag: Optional[str], path: Optional[str]) -> Tuple[bool, Any, Evidence]:
        """The value the component would have after a restart."""
        return self._lookup(self.file_flags, False, flag, path)

    def _lookup(self, flags: Values, running: bool, flag: Optional[str],
                path: Optional[str]) -> Tuple[bool, Any, Evidence]:
        from .yamlvalues import lookup

        if flag and flag in flags:
            source = self.sources.get(flag)
            if running:
                evidence = Evidence(process=self.evidence.process, detail=f"--{flag}")
            else:
                evidence = Evidence(file=source.file if source else None, line=source.line if source else None,
                                    detail=f"--{flag}")
            return True, flags[flag], evidence
        if path and isinstance(self.config, dict):
            present, value = lookup(self.config, path)
            file = self.deciding_file(path)
            line = self.locate(file, path) if present and file and self.locate else None
            return present, value, Evidence(file=file, line=line, detail=path)
        if path:
            return False, None, Evidence(file=self.config_path, detail=path)
        return False, None, self.evidence

    def deciding_file(self, path: str) -> Optional[str]:
        """The file that decides a config path: the last drop-in that sets it (or replaces or removes a
        map above it), else the config file."""
        decider = self.config_path
        for dropin in self.dropins:
            if _sets(dropin.data, path):
                decider = dropin.path
        return decider

    def files_setting(self, path: str) -> List[str]:
        """The config file and the drop-ins that hold the path, in merge order."""
        from .editors.config import read_data

        files = [(self.config_path, self.base_config)] if self.config_path else []
        return [file for file, data in files + [(d.path, d.data) for d in self.dropins]
                if isinstance(data, dict) and read_data(data, path)[0]]


@dataclass(frozen=True)
class Dropin:
    """A drop-in config file (node path) and its data."""

    path: str
    data: dict
    text: str = field(compare=False, repr=False)  # as read, for the lines of evidence


def _sets(data: Any, path: str) -> bool:
    """Does a merge patch set `path`, or replace or remove (null) a map on the way to it?"""
    from .editors.config import split_path

    for part in split_path(path):
        if not isinstance(data, dict) or part not in data:
            return False
        data = data[part]
        if not isinstance(data, dict):
            return True
    return True


def read_settings(state: "NodeState", name: str) -> Settings:
    component = state.component(name)
    live = state.flags(name)
    if component.args:
        file_flags, sources = configured_command_line(state, component, live)
    elif component.manifest:
        file_flags = state.manifest_flags(name) or {}
        sources = {flag: FlagSource(component.manifest) for flag in file_flags}
    else:
        file_flags, sources = command_line_from_files(state, component.flag_files)
    flags = dict(live.values) if live.running else dict(file_flags)
    config_path = component.config
    if component.config_flag:
        config_path = _from_root(flags.get(component.config_flag) or file_flags.get(component.config_flag)) or config_path
    # An unreadable config raises InputError (FILE:LINE: reason): the component's checks are then ERROR.
    config = state.yaml(config_path) if config_path else None
    config = config if isinstance(config, dict) else None
    folder = _from_root(flags.get(component.config_dir_flag) or file_flags.get(component.config_dir_flag)
                        if component.config_dir_flag else None)
    dropins = read_dropins(state, folder) if folder else ()
    merged = config
    for dropin in dropins:
        merged = merge_patch(merged, dropin.data)
    texts = {dropin.path: dropin.text for dropin in dropins}
    settings = Settings(name, flags, live.running, file_flags, sources, config_path, merged, live.evidence,
                        dropins, config, lambda file, path: state.config_line(file, path, texts.get(file)))
    if state.live and live.running and component.live_config:
        return _with_live_config(state, settings)
    return settings


def _from_root(path: Optional[str]) -> Optional[str]:
    """A path a component's flag gives, as the component opens it: a relative one from its working folder,
    `/` (a systemd service's, a static pod's), never from cisfix's own: root run from another user's folder
    would read her files for the component's."""
    return posixpath.join("/", path) if path else path


def _with_live_config(state: "NodeState", settings: Settings) -> Settings:
    """The settings with the configuration the running component serves (the kubelet's /configz) in
    place of its config file: what it really runs with, flags and defaults included."""
    import http.client
    import json
    import ssl

    from .health import endpoint_settings, fetch, server_text
    from .nodefile import MAX_BYTES

    (url, options), *_ = endpoint_settings(state, settings.component, "live_config", settings)
    try:
        # Its own answer only; read before it can be traced, so at most what a config file may hold
        # (a kubelet serves some 10 KB): another user on its port while it restarts may answer endlessly.
        code, body = fetch(url, state, options, limit=MAX_BYTES + 1, component=settings.component)
        if len(body) > MAX_BYTES:
            raise ValueError(f"an answer of more than {MAX_BYTES} bytes")
        served = json.loads(body.decode("utf-8")) if code == 200 else None
    except (OSError, ssl.SSLError, http.client.HTTPException, ValueError, RecursionError) as exc:
        raise LiveConfigUnavailable(f"{settings.component}: {url}: {server_text(str(exc))}")
    config = next(iter(served.values()), None) if isinstance(served, dict) and len(served) == 1 else None
    if not isinstance(config, dict):
        raise LiveConfigUnavailable(f"{settings.component}: {url}: HTTP {code}, no configuration")
    return replace(settings, config=config, config_path=url, dropins=(), base_config=None, locate=None)


# ---- the kubelet's --config-dir ----

DROPIN_SUFFIX = ".conf"  # the kubelet's dropinFileExtension, matched with filepath.Ext: case-sensitive
_WHY_DROPIN = "; the kubelet's configuration drop-ins are not used"


def read_dropins(state: "NodeState", folder: str) -> Tuple[Dropin, ...]:
    """The drop-ins of a kubelet's --config-dir in the order it merges them: as Go's filepath.WalkDir
    walks the folder — names in lexical (byte) order, sub-folders entered where they sort, links to
    folders not followed, the folder itself neither when it is a link — every non-folder whose name ends
    in `.conf` (kubernetes
    cmd/kubelet/app/server.go, mergeKubeletConfigurations). Each is a configuration document, JSON or
    YAML, a mapping. The folders and files go through `cisfix.trust` as a distribution's configuration
    does: one another user could write would decide what cisfix reports and where it writes. No folder:
    no drop-ins."""
    node = state.node
    bare = folder.rstrip("/") or "/"
    parent, name = posixpath.split(bare)
    # WalkDir lstats the folder it is given: a link there (even to a folder) or a file is visited as one
    # entry, read when its name ends in .conf, and nothing under it is; a trailing slash follows the link.
    given = node.host(posixpath.join(node.resolve(parent), name)) if name else node.host("/")
    if not folder.endswith("/") and (given.is_symlink() or (given.exists() and not given.is_dir())):
        paths = [bare] if name.endswith(DROPIN_SUFFIX) else []
    else:
        host = node.host(node.resolve(folder))
        if not host.is_dir():
            return ()
        require_trusted_dir(host, why=_WHY_DROPIN)
        paths = _walk(state, bare)
    found: List[Dropin] = []
    for path in paths:
        try:
            data = read_node_trusted(node, path, why=_WHY_DROPIN)
        except FileNotFoundError:  # gone since the listing
            continue
        text = decode_text(data, state.node.display(path))
        found.append(Dropin(path, _dropin_data(state, path, text), text))
    return tuple(found)


def _walk(state: "NodeState", folder: str) -> List[str]:
    """The `.conf` files under `folder` (node paths) in filepath.WalkDir's order, each folder checked."""
    import os

    host = state.node.host(state.node.resolve(folder))
    paths: List[str] = []
    for entry in sorted(os.scandir(host), key=lambda e: os.fsencode(e.name)):
        path = posixpath.join(folder, entry.name)
        if entry.is_dir(follow_symlinks=False):
            _refuse_unshowable_name(state, path)
            require_trusted_dir(state.node.host(state.node.resolve(path)), why=_WHY_DROPIN)
            paths += _walk(state, path)
        elif entry.name.endswith(DROPIN_SUFFIX):
            _refuse_unshowable_name(state, path)
            paths.append(path)
    return paths


def _dropin_data(state: "NodeState", path: str, text: str) -> dict:
    from .editors import jsontext
    from .nodefile import parse_config_yaml

    shown_path = state.node.display(path)
    parsed = jsontext.load(text, shown_path) if jsontext.is_json(text) else parse_config_yaml(text, shown_path)
    if not isinstance(parsed, dict):
        raise InputError(shown_path, "not a configuration document (a mapping); the kubelet would not start")
    return parsed


def merge_patch(target: Any, patch: Any) -> Any:
    """`patch` merged over `target` as the kubelet merges a drop-in (RFC 7386 JSON merge patch, as
    evanphx/json-patch MergePatch): maps key by key, null removes a key, anything else replaces."""
    if not isinstance(patch, dict):
        return patch
    merged = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = merge_patch(merged.get(key), value)
    return merged


class LiveConfigUnavailable(Exception):
    """The running component did not serve its configuration: verification cannot use it."""


def command_line_from_files(state: "NodeState", flag_files: Tuple[str, ...]) -> Tuple[Values, Dict[str, FlagSource]]:
    """The command line systemd would start the service with, and where each flag is defined."""
    variables: Dict[str, Tuple[str, flagfile.Assignment]] = {}
    order: List[str] = []  # variable names in ExecStart order
    literal: Values = {}  # flags written straight into ExecStart
    seen, queue = set(), list(flag_files)
    while queue:
        path = queue.pop(0)
        if path in seen:
            continue
        seen.add(path)
        parsed = state.flag_file(path)
        if parsed is None:
            continue
        for assignment in parsed.assignments:
            variables[assignment.var] = (path, assignment)
        queue.extend(parsed.env_files)
        if parsed.exec_start:
            order = re.findall(r"\$\{?(\w+)\}?", parsed.exec_start)
            literal = flag_parser.effective([w for w in parsed.exec_start.split() if not w.startswith("$")])
    names = [v for v in order if v in variables] or list(variables)
    flags: Values = dict(literal)
    sources: Dict[str, FlagSource] = {name: FlagSource(None) for name in flags}
    for var in names:
        path, assignment = variables[var]
        for flag in assignment.flags():
            flags[flag.name] = flag.value
            sources[flag.name] = FlagSource(path, assignment.line)
    return flags, sources


# ---- a distribution's configuration file (RKE2, k3s): `*-arg` lists ----

def dist_config(state: "NodeState", args: ArgList, replaced: Optional[Dict[str, Optional[bytes]]] = None) -> "DistConfig":
    """The distribution's configuration as it reads it: its config file, then its drop-ins in order;
    `replaced`: files as a change would leave them (node path -> bytes, None: removed)."""
    from .editors import distconfig  # only on RKE2 and k3s nodes

    replaced = replaced or {}
    _require_trusted_folders(state, args)
    dropins = {*_dropins(state, args), *(p for p in replaced if args.holds(p) and p != args.config)}
    texts = []
    for path in [args.config, *(f"{args.dropins}/{name}" for name in distconfig.dropin_order(
            [posixpath.basename(p) for p in dropins]))]:
        data = replaced[path] if path in replaced else _read_trusted(state, path)
        if data is not None:
            texts.append((path, decode_text(data, state.node.display(path))))
    return distconfig.load(texts, state.node.display, state.dist_config(args) if replaced else None)


def _require_trusted_folders(state: "NodeState", args: ArgList) -> None:
    """Refuse the configuration when another user could write its folders: an empty drop-in folder of
    hers decides nothing cisfix reads, yet cisfix would write its drop-in there, and she could add hers."""
    why = "; the distribution's configuration is not used"
    for folder in (posixpath.dirname(args.config), args.dropins):
        real = state.node.host(state.node.resolve(folder))
        if real.is_dir():
            require_trusted_dir(real, why=why)


def _dropins(state: "NodeState", args: ArgList) -> List[str]:
    """The drop-ins the distribution reads: names ending in .yaml or .yml in any case (`dropin_order`),
    directories skipped, as k3s's `dotDFiles` does (a link is read, and refused if it is no file)."""
    found = [path for path in state.glob(f"{args.dropins}/*") if not state.node.host(path).is_dir()
             or state.node.host(path).is_symlink()]
    for path in found:
        if posixpath.basename(path).lower().endswith(DROPIN_SUFFIXES):
            _refuse_unshowable_name(state, path)
    return found


def _refuse_unshowable_name(state: "NodeState", path: str) -> None:
    """A drop-in whose name is no UTF-8 or holds control characters is refused: no journal, log or
    message could name it."""
    name = posixpath.basename(path)
    if shown(name.encode("utf-8", "surrogateescape"), None) != name:
        raise InputError(shown(state.node.display(path).encode("utf-8", "surrogateescape"), None),
                         "a drop-in name that is no UTF-8 text or holds control characters; rename it")


def _read_trusted(state: "NodeState", path: str) -> Optional[bytes]:
    """A configuration file the distribution starts the control plane from: refused (with its folders)
    when another user could have written it, since it would decide what cisfix reports and writes."""
    try:
        return read_node_trusted(state.node, path, why="; the distribution's configuration is not used")
    except FileNotFoundError:
        return None


def configured_command_line(state: "NodeState", component: Component, live: "Flags") -> Tuple[Values, Dict[str, FlagSource]]:
    """The command line the distribution would start the component with: what it generated last (the
    static pod's manifest; for an embedded component, its live command line) with the configuration's
    flags over it, each flag the configuration decides sourced to its file and line. A flag removed from
    the configuration shows its last generated value until the next start: the distribution's own
    default is not known here."""
    args = component.args
    base = (state.manifest_flags(component.name) if component.manifest else dict(live.values)) or {}
    configured, entries = state.dist_config(args).flags(args.key, _distribution_values(state, component), args.values)
    sources = {flag: FlagSource(component.manifest) for flag in base}
    sources.update((flag, FlagSource(entry.file, entry.line)) for flag, entry in entries.items())
    return {**base, **configured}, sources


def _distribution_values(state: "NodeState", component: Component) -> Dict[str, Optional[str]]:
    """What an item adds to or replaces, unless the configuration sets it: the distribution's own value —
    as it generated it last (a static pod's manifest: RKE2's NodeRestriction), else as the layout knows it."""
    generated = (state.manifest_flags(component.name) or {}) if component.manifest else {}
    return {**generated, **component.args.defaults}


def configured_changes(state: "NodeState", spec: Component, planned: Sequence[Any]) -> Optional[Set[str]]:
    """Of the components `spec` runs (see `Component.runs`), those whose configured flags the planned
    file changes (`.path`, `.after`) change; None when it runs none."""
    if not spec.runs:
        return None
    after = {p.path: p.after for p in planned}
    changed = set()
    for name in spec.runs:
        args = state.info.components[name].args if name in state.info.components else None
        if args and any(args.holds(path) for path in after):
            flags = lambda config: config.flags(args.key, args.defaults, args.values)[0]  # noqa: E731
            if flags(state.dist_config(args)) != flags(dist_config(state, args, after)):
                changed.add(name)
    return changed


def _configure_args(state: "NodeState", component: Component, change: Configure) -> List[EditFile]:
    """A change of settings of a component the distribution's configuration sets: the edits of its
    files, by its merge rules (see `cisfix.editors.distconfig`), applied with its service's restart."""
    from .editors import distconfig

    args = component.args
    edits: Dict[str, List[Any]] = {}
    planned: Dict[str, Optional[bytes]] = {}  # each file as the operations planned so far leave it
    defaults = _distribution_values(state, component)
    for op in change.ops:
        if isinstance(op, AddHostPathMount):
            # The file is there already: k3s runs its components on the host, and rke2 mounts into a
            # static pod every file its flags name and the audit log's folder (pkg/podexecutor/staticpod.go);
            # an extra mount at the same path would give a pod the kubelet refuses.
            continue
        if isinstance(op, SetSetting) and not op.flag:
            raise InputError(component.name, f"{op.path} has no flag to set it with in the distribution's configuration")
        # Planned against the files as the earlier operations leave them: two additions to one list
        # (two admission plugins) make one item, not two that each drop the other.
        config = dist_config(state, args, planned)
        try:
            plan = config.plan(args.key, _flag_op(op), args.owned, args.values, defaults)
        except EditError as exc:  # what no edit can give (a list left empty, a default not removable)
            raise InputError(state.node.display(args.config), str(exc))
        planned.update((path, edited.text.encode("utf-8")) for path, edited in config.apply(plan).items())
        for path, ops in plan:
            edits.setdefault(path, []).extend(ops)
    service = state.info.restarted_by(component.name)
    return [EditFile(path, tuple(ops), service, distconfig.DIST_CONFIG) for path, ops in edits.items()]


def operators_setting(info: "NodeInfo", node_path: str) -> bool:
    """Is this a distribution's configuration file the operator owns (not cisfix's drop-in)?"""
    return any(spec.args.holds(node_path) and node_path != spec.args.owned for spec in info.components.values() if spec.args)


def edit_change(info: "NodeInfo", path: str, ops: Tuple[Any, ...], component: Optional[str],
                kind: Optional[str]) -> Any:
    """What `cisfix edit PATH` changes: the file itself, or — for a distribution's configuration file —
    the settings of `component`, placed by the distribution's merge rules (the file that decides each
    flag, else cisfix's drop-in). A manifest the distribution generates is never edited."""
    specs = [spec for spec in info.components.values() if spec.args]
    generated = next((spec for spec in specs if path == spec.manifest), None)
    if generated:
        raise InputError(path, f"is generated by {info.distribution} from {generated.args.config} at every start; "
                               f"change it with: cisfix edit {generated.args.config} --component {generated.name}")
    holders = sorted(spec.name for spec in specs if spec.args.holds(path))
    if not holders:
        return EditFile(path, ops, component, kind)
    if component not in holders:
        raise InputError(path, f"--component must name whose flags to change: one of {', '.join(holders)}")
    if any(isinstance(op, (SetPath, UnsetPath)) for op in ops):
        raise InputError(path, "--set and --unset do not apply: give --flag, --unflag, --flag-add or --flag-drop")
    return Configure(component, ops)


# ---- changes of settings -> edits of files ----

def flag_text(value: Any) -> Optional[str]:
    """A config value as the flag writes it."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    return str(value)


def resolve(state: "NodeState", change: Configure) -> List[EditFile]:
    """The file edits that make a change of settings: for a static pod its manifest; for a service, the
    flag file that defines the flag (it overrides the config file), else the config file — or the
    drop-in that decides the path; a removal, every file that sets it — else the flag file that holds
    its command line."""
    component = state.info.components.get(change.component)
    if component is None or not state.present(change.component):
        raise InputError(change.component, "no such component on this node")
    if component.args:
        return _configure_args(state, component, change)
    if component.manifest:
        ops = tuple(SetFlag(op.flag, flag_text(op.value)) if isinstance(op, SetSetting) and op.value is not None
                    else RemoveFlag(op.flag) if isinstance(op, SetSetting) else op for op in change.ops)
        return [EditFile(component.manifest, ops, component.name)]
    settings = state.settings(change.component)
    edits: Dict[Tuple[str, Optional[str]], List[Any]] = {}
    for op in change.ops:
        for path, edit in _service_edits(component, settings, op):
            kind = component.config_kind if isinstance(edit, (SetPath, UnsetPath)) else FLAG_FILE
            edits.setdefault((path, kind), []).append(edit)
    return [EditFile(path, tuple(ops), component.name, kind) for (path, kind), ops in edits.items()]


def _service_edits(component: Component, settings: Settings, op: Any) -> List[Tuple[str, Any]]:
    """(file, operation) pairs for one change of a service's setting; none when there is nothing to change."""
    if isinstance(op, AddHostPathMount):
        raise InputError(component.name, "is not a static pod: nothing to mount into")
    flag = op.flag if isinstance(op, SetSetting) else op.name
    source = settings.sources.get(flag) if flag else None
    if flag and flag in settings.file_flags:
        if source is None or source.file is None:
            raise InputError(component.name, f"--{flag} is written into the service's ExecStart line; edit the unit")
        return [(source.file, _flag_op(op))]
    # A node whose kubelet has no config file at all (AKS: flags only) takes the setting as a flag.
    as_flag = isinstance(op, SetSetting) and op.flag and not settings.config_path
    if isinstance(op, SetSetting) and op.path and not as_flag:
        if not settings.config_path or settings.config is None:
            raise InputError(component.name, "has no readable config file on this node")
        if op.value is None:
            return [(path, UnsetPath(op.path)) for path in settings.files_setting(op.path) or [settings.config_path]]
        return [(settings.deciding_file(op.path) or settings.config_path, SetPath(op.path, op.value))]
    if isinstance(op, (RemoveFlag, RemoveFlagItem)) or (isinstance(op, SetSetting) and op.value is None):
        return []  # nothing defines it: nothing to remove
    holders = [path for path, source in ((s.file, s) for s in settings.sources.values()) if path]
    target = holders[-1] if holders else next(iter(component.flag_files), None)
    if not target:
        raise InputError(component.name, f"has no flag file to set --{flag} in")
    return [(target, _flag_op(op))]


def _flag_op(op: Any) -> Any:
    if isinstance(op, SetSetting):
        return RemoveFlag(op.flag) if op.value is None else SetFlag(op.flag, flag_text(op.value))
    return op

