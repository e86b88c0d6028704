"""`lab upgrade` and `lab upgrade-node`: what `kubeadm upgrade apply vX.Y.Z [--patches DIR]` does on a
cluster's first control-plane node, and `kubeadm upgrade node [--patches DIR]` on each other one.

As kubeadm (`cmd/kubeadm/app/phases/upgrade`): `apply` reads the ClusterConfiguration from the
`kubeadm-config` ConfigMap and sets its kubernetesVersion to the new one (converted to the new kubeadm's
API); `node` takes the cluster's, already upgraded. Every static pod is generated anew from it with this
node's own names and ports, by the same code as at `lab create` (new image tags, kubeadm's default flags
overridden by extraArgs, extraVolumes mounted, patch files applied) — so whatever was edited into a
manifest by hand is gone — and put in place one at a time, etcd first, each awaited and the lot rolled back
if one does not come up (`staticpods.py`). Only once the control plane is upgraded does `apply` upload the
new ClusterConfiguration (apply.go's phases: preflight, control-plane, upload-config, kubeconfig,
kubelet-config, ...). The kubelet's config.yaml is then rewritten in place (it keeps its mode) from the
`kubelet-config` ConfigMap (plus `kubeletconfiguration` patches); `kubeadm-flags.env` is the node's own and
stays as it is. With `packages`, the package step of the documented procedure comes around it
(`packages.py`). The kubelet is restarted once at the end (`systemctl restart kubelet`): a kubelet restart
leaves running containers alone, so every static pod whose manifest changed restarts exactly once.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

from . import kubeadm, patches
from .configmaps import ConfigMapStore
from .control import Lab
from .layout import CISFIX_CONFIG, KUBELET_CONFIG, BadLabInput, LabError
from .packages import KUBEADM_PACKAGE, KUBELET_PACKAGE, install
from .staticpods import roll_out
from .tree import cisfix_config, dump_yaml, load_yaml, write


@dataclass
class UpgradeReport:
    version_from: str
    version_to: str
    changed: List[str] = field(default_factory=list)  # static pods whose manifest was rewritten
    unchanged: List[str] = field(default_factory=list)
    backups: Optional[str] = None


def _minor(version: str) -> tuple:
    return tuple(int(p) for p in version.split(".")[:2])


def check_versions(current: str, target: str) -> None:
    """kubeadm upgrades one minor version at a time, never down."""
    if _minor(target) < _minor(current) or (_minor(target) == _minor(current) and target < current):
        raise BadLabInput(f"cannot upgrade from v{current} down to v{target}")
    if _minor(target)[1] > _minor(current)[1] + 1:
        raise BadLabInput(f"cannot upgrade from v{current} to v{target}: kubeadm upgrades one minor version at a time")


def upgrade(root: "str | os.PathLike[str]", to: Optional[str] = None, patch_dir: Optional[Path] = None,
            wait: float = 60.0, packages: bool = False) -> UpgradeReport:
    """Upgrade the lab to version `to` (default: the next minor version)."""
    lab = Lab(root)
    layout, settings = lab.layout, lab.layout.settings()
    major, minor = _minor(settings.version)
    try:
        target = kubeadm.parse_version(to or f"{major}.{minor + 1}")
    except ValueError as exc:
        raise BadLabInput(str(exc)) from None
    check_versions(settings.version, target)
    store, stored, kubelet_map = _cluster_maps(lab)
    config = kubeadm.upgraded_configuration(load_yaml(stored["data"]["ClusterConfiguration"]),
                                            kubeadm.Cluster(target, {}))

    def upload() -> None:
        store.put(kubeadm.KUBEADM_CONFIG, {**stored["data"], "ClusterConfiguration": dump_yaml(config)},
                  stored["metadata"]["resourceVersion"])

    return _upgrade_node(lab, target, config, kubelet_map, patch_dir, wait, packages, upload)


def upgrade_node(root: "str | os.PathLike[str]", patch_dir: Optional[Path] = None, wait: float = 60.0,
                 packages: bool = False) -> UpgradeReport:
    """`kubeadm upgrade node` on a control-plane node: to the version of the cluster's ClusterConfiguration,
    which `upgrade` on another node has uploaded."""
    lab = Lab(root)
    settings = lab.layout.settings()
    store, stored, kubelet_map = _cluster_maps(lab)
    config = load_yaml(stored["data"]["ClusterConfiguration"])
    try:
        target = kubeadm.parse_version(str(config.get("kubernetesVersion", "")))
    except ValueError as exc:
        raise BadLabInput(f"{store.path}: kubeadm-config: {exc}") from None
    if target == settings.version:
        raise BadLabInput(f"{store.path}: the cluster is at v{target}, as this node: upgrade the cluster first "
                          f"(`cisfix lab upgrade` on another node)")
    check_versions(settings.version, target)
    return _upgrade_node(lab, target, config, kubelet_map, patch_dir, wait, packages, lambda: None)


def _cluster_maps(lab: Lab) -> Tuple[ConfigMapStore, dict, dict]:
    store = ConfigMapStore(lab.layout.store(lab.layout.settings()))
    stored, kubelet_map = store.get(kubeadm.KUBEADM_CONFIG), store.get(kubeadm.KUBELET_CONFIGMAP)
    if stored is None or kubelet_map is None:
        raise LabError(f"{store.path} holds no kubeadm-config or kubelet-config ConfigMap")
    return store, stored, kubelet_map


def _upgrade_node(lab: Lab, target: str, config: Dict[str, Any], kubelet_map: dict, patch_dir: Optional[Path],
                  wait: float, packages: bool, upload: Callable[[], None]) -> UpgradeReport:
    layout, settings = lab.layout, lab.layout.settings()
    cluster = kubeadm.Cluster(target, settings.ports, settings.node_name)
    patch_set = patches.load(patch_dir) if patch_dir else []
    # Everything is computed (and every patch applied) before anything changes.
    pods = {name: patches.apply(patch_set, name, pod) for name, pod in kubeadm.static_pods(cluster, config).items()}
    kubelet_config = patches.apply(patch_set, "kubeletconfiguration",
                                   kubeadm.node_kubelet_config(load_yaml(kubelet_map["data"]["kubelet"]), cluster))

    if packages:
        install(layout, KUBEADM_PACKAGE)
    rollout = roll_out(lab, pods, wait)
    upload()
    _rewrite(layout.host(KUBELET_CONFIG), dump_yaml(kubelet_config))
    if packages:
        install(layout, KUBELET_PACKAGE)
    report = UpgradeReport(settings.version, target, rollout.changed, rollout.unchanged, rollout.backups)
    settings.version = target
    layout.save_settings(settings)
    write(layout.host(CISFIX_CONFIG), dump_yaml(cisfix_config(layout, cluster)), 0o644)

    if lab.init_pid():
        lab.restart_kubelet()
        if wait:
            lab.wait_healthy(wait)
    return report


def _rewrite(target: Path, text: str) -> None:
    """As Go's os.WriteFile(name, data, 0644), which kubeadm writes the kubelet config with: an existing
    file keeps its mode."""
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)
