"""Remediation builders: small frozen dataclasses that, called with a `NodeState`, return a `Plan`.
Preconditions are checked here, before anything is written; a fix that cannot be made safely returns
`Plan(manual=why)`."""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Optional, Tuple

from cisfix.plan import AddFlagItem, FlagOp, RemoveFlag, RemoveFlagItem, SetFlag, SetPath, UnsetPath
from cisfix.state import NodeState
from cisfix.types import EditFile, Plan, SetMode

from . import kubelet, targets


def edit_manifest(state: NodeState, component: str, *ops: Any, notes: Tuple[str, ...] = ()) -> Plan:
    path = state.component(component).manifest
    if not path or state.read(path) is None:
        return Plan(manual=f"{component} has no static pod manifest on this node; change its command line "
                           "where it is defined")
    return Plan((EditFile(path, _without_empty_lists(state, component, ops), component),), notes=notes)


def _without_empty_lists(state: NodeState, component: str, ops: Tuple[Any, ...]) -> Tuple[Any, ...]:
    """Removing the last item of a list flag removes the flag (the editor refuses to leave it empty);
    removing an item that is not there is no operation at all."""
    from .audits import manifest_flags

    values = dict(manifest_flags(state, component) or {})
    out = []
    for op in ops:
        items = [i for i in (values.get(getattr(op, "name", "")) or "").split(",") if i]
        if isinstance(op, RemoveFlagItem):
            if op.item not in items:
                continue
            rest = [i for i in items if i != op.item]
            op = RemoveFlagItem(op.name, op.item) if rest else RemoveFlag(op.name)
            values[op.name] = ",".join(rest) if rest else None
        elif isinstance(op, AddFlagItem):
            values[op.name] = ",".join(items + [op.item]) if op.item not in items else values[op.name]
        elif isinstance(op, SetFlag):
            values[op.name] = op.value
        elif isinstance(op, RemoveFlag):
            values.pop(op.name, None)
        out.append(op)
    return tuple(out)


@dataclass(frozen=True)
class Manual:
    reason: str

    def __call__(self, state: NodeState) -> Plan:
        return Plan(manual=self.reason)


@dataclass(frozen=True)
class FlagOps:
    """Fixed flag operations on a component's manifest (list flags merged with Add/RemoveFlagItem)."""

    component: str
    ops: Tuple[FlagOp, ...]
    notes: Tuple[str, ...] = ()

    def __call__(self, state: NodeState) -> Plan:
        return edit_manifest(state, self.component, *self.ops, notes=self.notes)


@dataclass(frozen=True)
class SetFlagsToFiles:
    """Point flags at files kubeadm creates, once they are there: `files` maps flag -> node path."""

    component: str
    files: Tuple[Tuple[str, str], ...]
    unless: str = ""  # why the flags may not simply be set when the files are missing

    def __call__(self, state: NodeState) -> Plan:
        missing = [path for _, path in self.files if state.stat(path) is None]
        if missing:
            return Plan(manual=f"{', '.join(missing)} not found (kubeadm creates them); create the files first"
                               + (f"; {self.unless}" if self.unless else ""))
        current = state.flags(self.component)
        ops = [SetFlag(flag, path) for flag, path in self.files if not current.get(flag)]
        return edit_manifest(state, self.component, *ops)


@dataclass(frozen=True)
class StrongCiphers:
    """Keep the allowed suites of the current list (merge, never widen); an empty result becomes the
    benchmark's strong list."""

    component: str
    flag: str
    strong: Tuple[str, ...]

    def __call__(self, state: NodeState) -> Plan:
        current = [c for c in (state.flags(self.component).get(self.flag) or "").split(",") if c]
        kept = [c for c in current if c in self.strong] or list(self.strong)
        return edit_manifest(state, self.component, SetFlag(self.flag, ",".join(kept)))


@dataclass(frozen=True)
class ModeFix:
    """chmod/chown every existing file of a target (bits are only removed, see `SetMode`)."""

    where: targets.Target
    mode: Optional[int] = None
    owner: Optional[str] = None

    def __call__(self, state: NodeState) -> Plan:
        paths = targets.expand(state, self.where)
        if not paths:
            return Plan(manual=f"{self.where.describe} does not exist on this node")
        if self.owner and state.owner_ids(self.owner) is None:
            return Plan(manual=f"{self.owner} is not a user and group on this node")
        return Plan(tuple(SetMode(p, self.mode, self.owner) for p in paths))


@dataclass(frozen=True)
class EtcdDataDirOwner:
    """etcd:etcd only where that user exists and etcd runs as it: kubeadm has no etcd user and runs
    etcd as root, and a data directory etcd cannot write stops the cluster (kubeadm#2931)."""

    def __call__(self, state: NodeState) -> Plan:
        ids = state.owner_ids("etcd:etcd")
        if ids is None:
            return Plan(manual="there is no etcd user and group on this node (kubeadm runs etcd as root); "
                               "create them, run etcd as that user, then chown the data directory")
        uid = _etcd_uid(state)
        if uid != ids[0]:
            shown = "unknown" if uid is None else state.owner_name(uid, uid).split(":")[0]
            return Plan(manual=f"etcd runs as {shown}, not as etcd: giving the data directory to etcd would "
                               "change nothing useful and breaks etcd if it does not run as root")
        return ModeFix(targets.ETCD_DATA_DIR, owner="etcd:etcd")(state)


def _etcd_uid(state: NodeState) -> Optional[int]:
    process = state.process("etcd")
    if process:
        try:
            return os.stat(state.proc_dir / str(process.pid)).st_uid  # /proc/<pid> belongs to its euid
        except OSError:
            return None
    path = state.component("etcd").manifest
    pod = state.yaml(path) if path else None
    spec = (pod or {}).get("spec") or {}
    containers = spec.get("containers") or [{}]
    user = ((containers[0].get("securityContext") or {}).get("runAsUser")
            or (spec.get("securityContext") or {}).get("runAsUser"))
    return int(user) if user is not None else 0


@dataclass(frozen=True)
class KubeletFix:
    """Fix a kubelet setting where it takes effect: the flag in the flag file that sets it when the
    command line sets it (it overrides the config file), else the config file (`path`). `value` None
    removes the key or flag, so that the kubelet's default applies."""

    flag: Optional[str]
    path: Optional[str]
    value: Any
    flag_value: Optional[str] = None  # the value as a flag, when it differs from str(value)

    def __call__(self, state: NodeState) -> Plan:
        view = kubelet.view(state)
        notes = ("restart the kubelet for the change to take effect",)
        if self.flag and (self.flag in view.flags or self.flag in view.file_flags):
            source = view.sources.get(self.flag)
            if self.flag not in view.file_flags:
                return Plan(manual=f"the running kubelet has --{self.flag} but no flag file sets it any more: "
                                   "restart the kubelet")
            if source is None or source.file is None:
                return Plan(manual=f"--{self.flag} is written into the kubelet's ExecStart line; edit the unit")
            op = RemoveFlag(self.flag) if self.value is None else SetFlag(self.flag, self.flag_value or _flag_text(self.value))
            return Plan((EditFile(source.file, (op,), kubelet.COMPONENT),), notes=notes)
        if not self.path:
            return Plan(manual=f"--{self.flag} can only be set on the kubelet's command line")
        if not view.config_path or view.config is None:
            return Plan(manual="the kubelet has no readable config file on this node")
        op = UnsetPath(self.path) if self.value is None else SetPath(self.path, self.value)
        return Plan((EditFile(view.config_path, (op,), kubelet.COMPONENT, "KubeletConfiguration"),), notes=notes)


def _flag_text(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    return str(value)


@dataclass(frozen=True)
class KubeletFeatureGate:
    """Drop a feature gate turned off (`Gate=false`) from the flag or the config file's featureGates."""

    gate: str

    def __call__(self, state: NodeState) -> Plan:
        view = kubelet.view(state)
        item = f"{self.gate}=false"
        source = view.sources.get("feature-gates")
        if item in (view.file_flags.get("feature-gates") or "").split(",") and source and source.file:
            return Plan((EditFile(source.file, (RemoveFlagItem("feature-gates", item),), kubelet.COMPONENT),))
        return KubeletFix(None, f"featureGates.{self.gate}", None)(state)


@dataclass(frozen=True)
class KubeletStrongCiphers:
    """As `StrongCiphers`, for the kubelet's --tls-cipher-suites / tlsCipherSuites."""

    strong: Tuple[str, ...]

    def __call__(self, state: NodeState) -> Plan:
        present, value, _ = kubelet.view(state).setting("tls-cipher-suites", "tlsCipherSuites")
        current = value if isinstance(value, list) else [c for c in str(value or "").split(",") if c]
        kept = [c for c in current if c in self.strong] or list(self.strong)
        return KubeletFix("tls-cipher-suites", "tlsCipherSuites", kept)(state)
