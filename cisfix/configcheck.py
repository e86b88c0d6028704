"""Settings checked against their component's own configuration schema before a run locks or writes
anything: every path that changes a kubelet config file (`edit`, `fix`, `drift`, the Python API) comes
through `refuse_invalid_settings`, so a value the kubelet would refuse, or a key it would ignore, is one
line and exit 2 (see `cisfix.kubeletschema`).

A file is a kubelet configuration when the layout says so — it is the config file (the one `--config`
names, else the layout's default) of a component whose `config_kind` is KubeletConfiguration — or when
the edit selects a KubeletConfiguration document (`--kind`): never by its name.
"""
from __future__ import annotations

from typing import Dict, Iterable, List, Sequence

from . import kubeletschema
from .errors import CisfixError, InputError
from .plan import SetPath, SetSetting
from .state import NodeState
from .types import Change, Configure, EditFile


def refuse_invalid_settings(state: NodeState, changes: Sequence[Change]) -> None:
    """Raise InputError (`FILE: key: why`) for the first value set in a kubelet configuration that the
    kubelet of this node's version would not take."""
    from .editors.config import split_path
    from .plugins import minor_version

    node, configs = state.node, None
    for edit in _edits(state, changes):
        sets = [op for op in edit.ops if isinstance(op, SetPath)]
        if not sets:
            continue
        if configs is None:
            configs = _config_kinds(state)
        kind = edit.kind if edit.kind == kubeletschema.KIND else configs.get(node.resolve(node.node_path(edit.path)))
        if kind != kubeletschema.KIND:
            continue
        for op in sets:
            why = kubeletschema.problem(split_path(op.path), op.value, minor_version(state.info.version))
            if why:
                raise InputError(node.display(edit.path), why)


def _edits(state: NodeState, changes: Iterable[Change]) -> List[EditFile]:
    """The file edits that set paths: edits as given, and changes of settings of a component with a
    config file resolved the way the run will resolve them (a setting some flag file defines goes
    there, not into the config file)."""
    from .settings import resolve

    edits: List[EditFile] = []
    for change in changes:
        if isinstance(change, EditFile):
            edits.append(change)
        elif isinstance(change, Configure) and _sets_config_paths(state, change):
            edits += resolve(state, change)
    return edits


def _sets_config_paths(state: NodeState, change: Configure) -> bool:
    spec = state.info.components.get(change.component)
    return bool(spec and spec.config_kind and not spec.args
                and any(isinstance(op, SetSetting) and op.path for op in change.ops))


def _config_kinds(state: NodeState) -> Dict[str, str]:
    """Real node path of each component's config file -> the kind of configuration it holds."""
    node, found = state.node, {}
    for name, spec in state.info.components.items():
        if not spec.config_kind:
            continue
        for path in filter(None, (spec.config, *_named_configs(state, name))):
            found[node.resolve(node.node_path(path))] = spec.config_kind
    return found


def _named_configs(state: NodeState, name: str) -> List[str]:
    """The config file the component's `--config` names and the drop-ins of its `--config-dir`, when
    they can be read; the edit itself reports a file it cannot read."""
    spec = state.info.components[name]
    if not spec.config_flag and not spec.config_dir_flag:
        return []
    try:
        settings = state.settings(name)
    except CisfixError:
        return []
    paths = [settings.config_path, *(d.path for d in settings.dropins)]
    return [path for path in paths if path and path.startswith("/")]
