"""What the managed worker layouts (EKS, GKE, AKS) share: a node that runs the kubelet only, as a systemd
service whose flags come from the unit, its drop-ins and the environment files they name, and whose
settings the provider writes when it makes the node.

- The kubelet reads its flags, then its `--config-dir` drop-ins, then its `--config` file; cisfix edits
  the file that decides a setting (`cisfix.settings`), restarts the service once and gates on /healthz.
- Its live configuration (/configz, on the authenticated port) is read with a credential the operator
  provides in `KUBELET_API_KUBECONFIG` (a user allowed `get nodes/proxy`): no managed node has one of its
  own that cisfix could use.
- Fixes do not outlive the node: every provider replaces nodes when a node pool is upgraded, and some
  rewrite the kubelet's files at every boot. Each layout says so (`NodeInfo.warnings`, on every report and
  fix) and names the provider's mechanism that keeps a setting; `persist` prints the snippet for it
  (`Snippet`), naming what the mechanism cannot set.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

from ..commands import output_of_trusted
from ..editors import flagfile
from ..errors import InputError
from ..node import Node
from ..nodefile import read_bytes
from ..shown import shown
from ..trust import enforced, read_node_trusted, require_trusted_dir, trusted_realpath
from ..types import WRITE, Component, HostPath, NetChange, NodeInfo
from .kubeadm import host_paths as component_paths
from .kubeadm.paths import KUBELET_ROOT
from .overrides import configured_components

UNIT = "/etc/systemd/system/kubelet.service"
KUBELET_API_KUBECONFIG = "/etc/cisfix/kubelet-api.kubeconfig"
RESTART = ("systemctl", "restart", "kubelet")
RELOAD = ("systemctl", "daemon-reload")  # before the restart, when a fix changed the unit or a drop-in of it
HEALTH = {"url": "http://127.0.0.1:10248/healthz", "portFlag": "healthz-port", "portPath": "healthzPort"}
LIVE_CONFIG = {"url": "https://127.0.0.1:10250/configz", "insecureSkipVerify": True, "kubeconfig": KUBELET_API_KUBECONFIG,
               "portFlag": "port", "portPath": "port"}
_WHY_DROPIN = "; the kubelet unit's drop-ins are not used"
VERSION_TIMEOUT = 5.0  # seconds for `kubelet --version`, which answers at once
# "Kubernetes v1.32.3-eks-4096722", "Kubernetes v1.31.5-gke.1023000", "Kubernetes v1.32.3"
_VERSION = re.compile(r"^Kubernetes v(\d+\.\d+\.\d+(?:[-+][0-9A-Za-z.+-]*)?)\s*$")


@dataclass(frozen=True)
class Provider:
    """Where one provider's image keeps the kubelet."""

    distribution: str  # NodeInfo.distribution
    binary: str  # the kubelet executable the image's unit runs: `--version` tells the node's version
    config: Optional[str]  # its --config file, when the unit names none (the flags decide)
    env_files: Tuple[str, ...]  # the unit's EnvironmentFile=s
    cgroup: str  # the unit's cgroup when its files name no Slice= (see `unit_cgroup`)
    client_ca: str  # the folder of the client CA file the kubelet is given
    config_dir: Optional[str] = None  # the --config-dir the provider gives it (nodeadm's config.json.d)
    boot_owned: Tuple[str, ...] = ()  # what its boot step rewrites (nodeadm's files)
    older_binaries: Tuple[str, ...] = ()  # where older images put the kubelet (AKS before 2026: /usr/local/bin)

    @property
    def binaries(self) -> Tuple[str, ...]:
        return (self.binary, *self.older_binaries)


def is_node_of(node: Node, config: Mapping[str, Any], distribution: str, markers: Sequence[Sequence[str]]) -> bool:
    """The node configuration names the distribution; or, naming none, one group of the provider's files is
    there, each root's in root's folders: a file another user could have made (GKE's lives under /home) is
    no sign of the provider, or she could have a kubeadm node judged by a managed worker's few checks."""
    named = config.get("distribution")
    if named:
        return named == distribution
    return any(all(_trusted_marker(node, path) for path in group) for group in markers)


def _trusted_marker(node: Node, path: str) -> bool:
    """Is the file or folder there, made by root: root's own, every folder on the way root's and writable by
    no one else (only its creator's ownership matters, not its mode: nobody else can make a file root's)."""
    try:
        real = trusted_realpath(node.host(node.resolve(path)))
        return os.stat(real).st_uid == 0 or not enforced()
    except (OSError, InputError):  # absent, or in a folder another user could write
        return False


def dropins(node: Node, unit: str = UNIT) -> Tuple[str, ...]:
    """The unit's drop-ins as systemd reads them: the `*.conf` files of `<unit>.d/`, sorted by name. The
    folder and each drop-in go through `cisfix.trust`: systemd starts the kubelet as root from them, and
    a drop-in another user could add or write would decide the flags cisfix judges and edits."""
    folder = node.host(node.resolve(f"{unit}.d"))
    if not folder.is_dir():
        return ()
    require_trusted_dir(folder, why=_WHY_DROPIN)
    names = sorted(p.name for p in folder.iterdir() if p.name.endswith(".conf"))
    for name in names:
        path = f"{unit}.d/{name}"
        if shown(name.encode("utf-8", "surrogateescape"), None) != name:
            raise InputError(shown(node.display(path).encode("utf-8", "surrogateescape"), None),
                             "a drop-in name that is no UTF-8 text or holds control characters; rename it")
        try:
            read_node_trusted(node, path, why=_WHY_DROPIN)
        except FileNotFoundError:  # a dangling link, or gone since the listing: systemd reads nothing there
            continue
    return tuple(f"{unit}.d/{name}" for name in names)


def _unit_files(node: Node, paths: Sequence[str]) -> List[flagfile.FlagFile]:
    """The unit and its drop-ins (`paths`, in systemd's order), parsed (those that cannot be read are left out:
    the audit that reads them as flag files says why)."""
    found = []
    for path in paths:
        try:
            data = read_bytes(node.host(node.resolve(path)), node.display(path))
        except InputError:
            continue
        if data is not None:
            found.append(flagfile.parse(data.decode("utf-8", "replace")))
    return found


def unit_cgroup(units: Sequence[flagfile.FlagFile], provider: Provider) -> str:
    """The kubelet service's cgroup: `<slice>/kubelet.service` of the last `Slice=` its unit and drop-ins
    set (EKS's runtime.slice; AKS's kubereserved.slice, from the drop-in 10-kubereserved-slice.conf that
    AgentBaker's ensureKubeletCgroupHierarchy writes on memory-hardened node pools), else the provider's."""
    slices = [s for f in units for s in f.slices]
    if not slices:
        return provider.cgroup
    name = slices[-1] or "system.slice"  # `Slice=` empty: systemd's default for a service
    if not name.endswith(".slice"):
        return provider.cgroup
    # systemd nests a slice in its parents by the dashes of its name: a-b.slice is a.slice/a-b.slice
    parts = name[:-len(".slice")].split("-")
    return "/".join(["-".join(parts[:i + 1]) + ".slice" for i in range(len(parts))] + ["kubelet.service"])


def kubelet_binary(node: Node, units: Sequence[flagfile.FlagFile], provider: Provider) -> str:
    """The kubelet executable: the program of the unit's ExecStart, when it is one of the provider's known
    paths (AgentBaker moved it from /usr/local/bin to /opt/bin in January 2026, #7125), else the first of
    those that exists, else the provider's."""
    starts = [f.exec_start for f in units if f.exec_start]
    program = starts[-1].split()[0].lstrip("-@:+!") if starts else ""
    if program in provider.binaries:
        return program
    return next((b for b in provider.binaries if node.host(node.resolve(b)).exists()), provider.binary)


def kubelet(node: Node, provider: Provider, unit_paths: Sequence[str],
            units: Sequence[flagfile.FlagFile]) -> Component:
    """The kubelet of a managed node: the flag files in systemd's order (the unit and its drop-ins,
    `unit_paths`, then the environment files they name), its config file, restart, health and, given the
    operator's credential, its live configuration."""
    return Component(
        "kubelet", config=provider.config, flag_files=(*unit_paths, *provider.env_files),
        restart=RESTART, reload=RELOAD, unit=unit_cgroup(units, provider), health=HEALTH, config_flag="config",
        config_dir_flag="config-dir",
        config_dir=provider.config_dir, boot_owned=provider.boot_owned,
        config_kind="KubeletConfiguration",
        live_config=LIVE_CONFIG if node.host(node.resolve(KUBELET_API_KUBECONFIG)).exists() else {})


def kubelet_version(node: Node, binary: str) -> Optional[str]:
    """`1.32.3-eks-4096722` from the kubelet's `--version` (run as any command root runs: a binary another
    user could have written is not run); None when it cannot tell."""
    answer = output_of_trusted([str(node.host(node.resolve(binary))), "--version"], f"{binary} --version",
                               VERSION_TIMEOUT, limit=256)
    match = _VERSION.match((answer or "").strip())
    return match.group(1) if match else None


def describe(node: Node, config: Mapping[str, Any], provider: Provider, lasts: str) -> NodeInfo:
    """The node as a managed worker: the kubelet only, adjusted by the node configuration; `lasts` says
    how long its fixes last and what keeps them (a warning on every report)."""
    unit_paths = (UNIT, *dropins(node))
    units = _unit_files(node, unit_paths)
    components = configured_components({"kubelet": kubelet(node, provider, unit_paths, units)}, config)
    # An offline root is a disk image or a volume: nothing of it is run as root here (`version:` tells it).
    asked = None if config.get("offline") else kubelet_version(node, kubelet_binary(node, units, provider))
    return NodeInfo(distribution=provider.distribution, version=config.get("version") or asked,
                    node_types=tuple(config.get("nodeTypes", ())) or ("worker",), components=components,
                    warnings=(lasts,))


def host_paths(info: NodeInfo, provider: Provider, extra: Sequence[HostPath] = ()) -> List[HostPath]:
    """The kubelet's settings folders (written by fixes) and what no run may see (its pods' folders), as on
    a kubeadm node; the client CA and kubeconfig its file checks read; the kubelet binary that tells the
    version."""
    return [*component_paths(info), HostPath(provider.client_ca, "the kubelet's client CA (file checks)"),
            HostPath(KUBELET_ROOT, "the kubelet's kubeconfig and certificates (file checks; fixes set their modes)",
                     fix=WRITE),
            *(HostPath(b, "the kubelet: its --version is the node's Kubernetes version", folder=False)
              for b in provider.binaries),
            *extra]


# ---- what the fixes changed, for the provider's mechanism (cisfix_plan_persistence) ----

GONE = object()  # a setting the fixes removed
Path = Tuple[str, ...]


@dataclass(frozen=True)
class KubeletChanges:
    """The kubelet settings the fixes changed: config paths (`("authentication", "anonymous", "enabled")`)
    and flags (`read-only-port`), each to its new value or GONE; and the files of other changes."""

    config: Dict[Path, Any]
    flags: Dict[str, Any]
    others: Tuple[str, ...]

    def settings(self) -> Dict[str, Any]:
        """Every change named as the kubelet's configuration names it where a flag has a known field
        (`readOnlyPort`), else as the flag (`--event-qps`): one name per setting."""
        named = {".".join(path): value for path, value in self.config.items()}
        for flag, value in self.flags.items():
            named[FLAG_FIELDS.get(flag, f"--{flag}")] = value
        return named


# Kubelet flags and their fields in KubeletConfiguration, for the settings a provider's mechanism may set.
FLAG_FIELDS = {
    "read-only-port": "readOnlyPort", "pod-max-pids": "podPidsLimit", "container-log-max-size": "containerLogMaxSize",
    "container-log-max-files": "containerLogMaxFiles", "image-gc-high-threshold": "imageGCHighThresholdPercent",
    "image-gc-low-threshold": "imageGCLowThresholdPercent", "cpu-manager-policy": "cpuManagerPolicy",
    "cpu-cfs-quota": "cpuCFSQuota", "cpu-cfs-quota-period": "cpuCFSQuotaPeriod",
    "topology-manager-policy": "topologyManagerPolicy", "allowed-unsafe-sysctls": "allowedUnsafeSysctls",
    "fail-swap-on": "failSwapOn", "seccomp-default": "seccompDefault",
}


def kubelet_changes(info: NodeInfo, changes: Sequence[NetChange]) -> KubeletChanges:
    """Of the net changes of the fixes, those of the kubelet's flag files (flags) and of its config file or
    its drop-ins (`<config>.d/`, nodeadm's --config-dir) (settings), each compared before and after."""
    spec = info.components.get("kubelet") or Component("kubelet")
    config: Dict[Path, Any] = {}
    flags: Dict[str, Any] = {}
    others = []
    for change in changes:
        before, after = ((data or b"").decode("utf-8", "replace") for data in (change.before, change.after))
        if change.path in spec.flag_files:
            flags.update(_differences(flagfile.flags_of(before), flagfile.flags_of(after)))
        elif spec.config and (change.path == spec.config or change.path.startswith(f"{spec.config}.d/")):
            config.update(_differences(_leaves(_document(before)), _leaves(_document(after))))
        else:
            others.append(change.path)
    return KubeletChanges(config, flags, tuple(others))


def _differences(old: Mapping[Any, Any], new: Mapping[Any, Any]) -> Dict[Any, Any]:
    """key -> its new value (GONE: removed) for every key whose value changed."""
    return {key: new.get(key, GONE) for key in sorted({*old, *new}) if old.get(key, GONE) != new.get(key, GONE)}


def _document(text: str) -> dict:
    """A kubelet config file: JSON (EKS, AKS), else YAML (GKE)."""
    if not text.strip():
        return {}
    try:
        found = json.loads(text)
    except ValueError:
        from ruamel.yaml import YAML

        found = YAML(typ="safe", pure=True).load(text)
    return found if isinstance(found, dict) else {}


def _leaves(document: Mapping[str, Any], prefix: Path = ()) -> Dict[Path, Any]:
    """path -> value of every scalar or list of a document (a list is one setting, as the kubelet reads it)."""
    found: Dict[Path, Any] = {}
    for key, value in document.items():
        if isinstance(value, Mapping) and value:
            found.update(_leaves(value, (*prefix, str(key))))
        else:
            found[(*prefix, str(key))] = value
    return found


def nested(leaves: Mapping[Path, Any]) -> dict:
    """The document holding just these leaves."""
    document: dict = {}
    for path, value in leaves.items():
        target = document
        for key in path[:-1]:
            target = target.setdefault(key, {})
        target[path[-1]] = value
    return document


def flag_word(name: str, value: Any) -> str:
    return f"--{name}" if value is None else f"--{name}={value}"


@dataclass(frozen=True)
class Field:
    """A setting a provider's node-pool mechanism can set: its name there and how a kubelet value becomes
    its value (None: this value cannot be expressed)."""

    name: str
    convert: Callable[[Any], Any] = lambda value: value


def node_pool_fields(state: Any, info: NodeInfo, changes: Sequence[NetChange], fields: Mapping[str, Field],
                     mechanism: str) -> Tuple[dict, List[str]]:
    """For a node pool's kubelet configuration (GKE's system configuration, AKS's custom node configuration):
    (its document of the kubelet settings the fixes changed, notes on what it cannot hold)."""
    found = kubelet_changes(info, changes)
    document, unsupported = {}, []
    for name, value in sorted(found.settings().items()):
        field = fields.get(name)
        converted = field.convert(value) if field and value is not GONE else None
        if converted is None:
            unsupported.append(name)
        else:
            document[field.name] = converted
    notes = [*_unsupported_note(mechanism, unsupported),
             *(f"{state.node.display(p)}: no kubelet setting; not persisted" for p in found.others)]
    if not document:
        notes.append(f"nothing the fixes changed is in {mechanism}")
    return document, notes


def as_int(value: Any) -> Optional[int]:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def as_bool(value: Any) -> Optional[bool]:
    if isinstance(value, bool):
        return value
    return {"true": True, "false": False}.get(str(value).lower())


def yaml_text(document: Any) -> bytes:
    from io import StringIO

    from ruamel.yaml import YAML

    yaml = YAML(typ="safe", pure=True)
    yaml.default_flow_style = False
    out = StringIO()
    yaml.dump(document, out)
    return out.getvalue().encode("utf-8")


def not_lasting(what: str, mechanism: str) -> str:
    """The warning of a layout whose fixes do not last: what undoes them, what keeps a setting."""
    return f"kubelet fixes on this node do not last: {what}; to keep them, {mechanism} (`cisfix persist` prints it)"


def _unsupported_note(mechanism: str, names: Sequence[str]) -> Iterator[str]:
    if names:
        yield (f"not expressible in {mechanism}: {', '.join(names)}; they last only as long as this node "
               "(`cisfix drift` re-applies them on a node that lost them)")
