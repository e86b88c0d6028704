"""Remediation builders: small frozen dataclasses that, called with a `NodeState`, return a `Plan`.
Preconditions are checked here, before anything is written; a fix that cannot be made safely returns
`Plan(manual=why)`."""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Optional, Tuple

from cisfix.plan import AddFlagItem, FlagOp, RemoveFlag, RemoveFlagItem, SetFlag, SetSetting
from cisfix.state import NodeState
from cisfix.types import Configure, Plan, SetMode

from . import kubelet, targets


def edit_manifest(state: NodeState, component: str, *ops: Any, notes: Tuple[str, ...] = ()) -> Plan:
    """Change flags (and mounts) of a component set by a static pod manifest or by a distribution's
    config file (RKE2, k3s: `Component.args`); the layout says where they live."""
    if state.manifest_flags(component) is None and state.component(component).args is None:
        return Plan(manual=f"{component} has no static pod manifest on this node; change its command line "
                           "where it is defined")
    return Plan((Configure(component, _without_empty_lists(state, component, ops)),), notes=notes)


def _without_empty_lists(state: NodeState, component: str, ops: Tuple[Any, ...]) -> Tuple[Any, ...]:
    """Removing the last item of a list flag removes the flag (the editor refuses to leave it empty);
    removing an item that is not there is no operation at all. The current items: the manifest's, else
    (a component without one, such as k3s's embedded API server) its live flags."""
    manifest = state.manifest_flags(component)
    values = dict(manifest if manifest is not None else state.flags(component).values)
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
            shown = ", ".join(state.node.display(path) for path in missing)  # where the operator creates them
            return Plan(manual=f"{shown} not found (kubeadm creates them); create the files first"
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
    """Set a kubelet setting, known as `--flag` and as `path` in its config file, where it takes effect
    (the layout decides: the flag file that sets the flag, else the config file). `value` None unsets
    it, so that the kubelet's default applies. A kubelet started without a config file (an AKS node
    without kubeletconfig.json) gets the flag in its flag files."""

    flag: Optional[str]
    path: Optional[str]
    value: Any

    def __call__(self, state: NodeState) -> Plan:
        view = kubelet.view(state)
        if self.flag and self.flag in view.flags and self.flag not in view.file_flags:
            return Plan(manual=f"the running kubelet has --{self.flag} but no flag file sets it any more: "
                               "restart the kubelet")
        if self.flag and kubelet.without_config_file(state) and state.component(kubelet.COMPONENT).flag_files:
            return Plan((Configure(kubelet.COMPONENT, (SetSetting(self.flag, None, self.value),)),))
        # On RKE2 and k3s any flag is an item of the distribution's kubelet-arg list (the layout's `args`).
        on_command_line = state.component(kubelet.COMPONENT).args is not None and self.flag
        if not on_command_line and not self.path and self.flag not in view.file_flags:
            return Plan(manual=f"--{self.flag} can only be set on the kubelet's command line")
        if not on_command_line and self.flag not in view.file_flags and view.config is None:
            return Plan(manual="the kubelet has no readable config file on this node")
        return Plan((Configure(kubelet.COMPONENT, (SetSetting(self.flag, self.path, self.value),)),))


@dataclass(frozen=True)
class KubeletFeatureGate:
    """Drop a feature gate turned off (`Gate=false`) from the flag or the config file's featureGates."""

    gate: str

    def __call__(self, state: NodeState) -> Plan:
        item = f"{self.gate}=false"
        if item in (kubelet.view(state).file_flags.get("feature-gates") or "").split(","):
            return Plan((Configure(kubelet.COMPONENT, (RemoveFlagItem("feature-gates", item),)),))
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
