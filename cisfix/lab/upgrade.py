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
`kubelet-config` ConfigMap (plus `kubeletconfiguration` patches, then the node's instance-config.yaml
from 1.34 on); `kubeadm-flags.env` is the node's own and stays as it is, except for kubeadm's two rewrites
of it on the way to 1.34 and 1.35 (cisfix.layouts.kubeadm.flagsenv). With `etcd_upgrade=False`
(`--etcd-upgrade=false`) etcd's manifest is left as it is. With `packages`, the package step of the documented procedure comes around it
(`packages.py`). The kubelet is restarted once at the end (`systemctl restart kubelet`): a kubelet restart
leaves running containers alone, so every static pod whose manifest changed restarts exactly once.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

from ..layouts.kubeadm import flagsenv
from ..layouts.kubeadm.flagsenv import INSTANCE_CONFIG
from . import kubeadm, patches
from .configmaps import ConfigMapStore
from .control import Lab
from .layout import CISFIX_CONFIG, KUBEADM_FLAGS, KUBELET_CONFIG, BadLabInput, LabError, Layout
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
    flags_rewritten: bool = False  # kubeadm-flags.env (on the way to 1.34 and 1.35)
    applied_to_nothing: List[str] = field(default_factory=list)  # patch files for objects the lab lacks (CoreDNS)


def _minor(version: str) -> tuple:
    return tuple(int(p) for p in version.split(".")[:2])


def _numbers(version: str) -> tuple:
    """"1.31.10" -> (1, 31, 10): versions compare as numbers, not strings."""
    return tuple(int(p) for p in version.split("."))


def check_versions(current: str, target: str) -> None:
    """kubeadm upgrades one minor version at a time, never down."""
    if _numbers(target) < _numbers(current):
        raise BadLabInput(f"cannot upgrade from v{current} down to v{target}")
    if _minor(target)[1] > _minor(current)[1] + 1:
        raise BadLabInput(f"cannot upgrade from v{current} to v{target}: kubeadm upgrades one minor version at a time")


def upgrade(root: "str | os.PathLike[str]", to: Optional[str] = None, patch_dir: Optional[Path] = None,
            wait: float = 60.0, packages: bool = False, etcd_upgrade: bool = True) -> UpgradeReport:
    """Upgrade the lab to version `to` (default: the next minor version); `etcd_upgrade=False` leaves
    etcd's manifest as it is, as `kubeadm upgrade apply --etcd-upgrade=false`."""
    lab = _kubeadm_lab(root)
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

    return _upgrade_node(lab, target, config, kubelet_map, patch_dir, wait, packages, upload, etcd_upgrade)


def upgrade_node(root: "str | os.PathLike[str]", patch_dir: Optional[Path] = None, wait: float = 60.0,
                 packages: bool = False, etcd_upgrade: bool = True) -> UpgradeReport:
    """`kubeadm upgrade node` on a control-plane node: to the version of the cluster's ClusterConfiguration,
    which `upgrade` on another node has uploaded."""
    lab = _kubeadm_lab(root)
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
    return _upgrade_node(lab, target, config, kubelet_map, patch_dir, wait, packages, lambda: None, etcd_upgrade)


def _kubeadm_lab(root: "str | os.PathLike[str]") -> Lab:
    lab = Lab(root)
    distribution = lab.layout.settings().distribution
    if distribution != "kubeadm":  # RKE2, k3s and the managed workers upgrade otherwise (a new binary, a new node)
        raise BadLabInput(f"{lab.root}: `lab upgrade` is kubeadm's upgrade, and this lab is {distribution}")
    return lab


def _cluster_maps(lab: Lab) -> Tuple[ConfigMapStore, dict, dict]:
    store = ConfigMapStore(lab.layout.store(lab.layout.settings()))
    stored, kubelet_map = store.get(kubeadm.KUBEADM_CONFIG), store.get(kubeadm.KUBELET_CONFIGMAP)
    if stored is None or kubelet_map is None:
        raise LabError(f"{store.path} holds no kubeadm-config or kubelet-config ConfigMap")
    return store, stored, kubelet_map


def _upgrade_node(lab: Lab, target: str, config: Dict[str, Any], kubelet_map: dict, patch_dir: Optional[Path],
                  wait: float, packages: bool, upload: Callable[[], None], etcd_upgrade: bool) -> UpgradeReport:
    layout, settings = lab.layout, lab.layout.settings()
    cluster = kubeadm.Cluster(target, settings.ports, settings.node_name)
    patch_set = patches.load(patch_dir) if patch_dir else []
    # Everything is computed (and every patch applied) before anything changes.
    pods = {name: patches.apply(patch_set, name, pod) for name, pod in kubeadm.static_pods(cluster, config).items()}
    kubelet_config = patches.apply(patch_set, "kubeletconfiguration",
                                   kubeadm.node_kubelet_config(load_yaml(kubelet_map["data"]["kubelet"]), cluster))
    flags_env, instance = _kubelet_node_files(layout, target)
    if instance:  # kubeadm's WriteConfigToDisk: the instance configuration, as a patch, last
        kubelet_config = patches.merge(kubelet_config, _instance_patch(instance), strategic=True)
    if not etcd_upgrade:
        pods.pop("etcd")

    if packages:
        install(layout, KUBEADM_PACKAGE)
    rollout = roll_out(lab, pods, wait)
    upload()
    if instance and not layout.host(INSTANCE_CONFIG).exists():
        write(layout.host(INSTANCE_CONFIG), instance, 0o644)
    _rewrite(layout.host(KUBELET_CONFIG), dump_yaml(kubelet_config))
    report = UpgradeReport(settings.version, target, rollout.changed, rollout.unchanged, rollout.backups,
                           applied_to_nothing=patches.unapplied(patch_set))
    if flags_env is not None:
        if flagsenv.minor(target) >= flagsenv.PAUSE_STRIPPED:  # the post-upgrade phase backs the file up first
            write(layout.host(f"/etc/kubernetes/tmp/kubeadm-kubelet-env-{time.strftime('%Y-%m-%d-%H-%M-%S')}"
                              f"/kubeadm-flags.env"), layout.host(KUBEADM_FLAGS).read_bytes(), 0o644)
        _rewrite(layout.host(KUBEADM_FLAGS), flags_env)
        report.flags_rewritten = True
    if packages:
        install(layout, KUBELET_PACKAGE)
    settings.version = target
    layout.save_settings(settings)
    write(layout.host(CISFIX_CONFIG), dump_yaml(cisfix_config(layout, cluster)), 0o644)

    if lab.init_pid():
        if packages:  # the kubelet package's unit file changed: the procedure's `systemctl daemon-reload`
            lab.daemon_reload()
        lab.restart_kubelet()
        if wait:
            lab.wait_healthy(wait)
    return report


def _kubelet_node_files(layout: Layout, target: str) -> "tuple[Optional[str], Optional[str]]":
    """(kubeadm-flags.env's new text, or None when the upgrade leaves it; the instance configuration
    the kubelet config is written with, or None before 1.34)."""
    flags_path, instance_path = layout.host(KUBEADM_FLAGS), layout.host(INSTANCE_CONFIG)
    try:
        text = flags_path.read_text(encoding="utf-8") if flags_path.exists() else ""
        existing = instance_path.read_text(encoding="utf-8") if instance_path.exists() else None
    except (OSError, UnicodeDecodeError) as exc:
        raise BadLabInput(f"{exc.filename or KUBEADM_FLAGS}: cannot read it: {exc}") from None
    new_text, instance = flagsenv.upgrade_rewrite(text, target, existing is not None)
    if flagsenv.minor(target) < flagsenv.NODE_LOCAL_CRI_SOCKET:  # kubeadm before 1.34 reads no instance config
        return None, None
    return (new_text if new_text != text else None), existing if existing is not None else instance


def _instance_patch(text: str) -> dict:
    from ruamel.yaml.error import YAMLError

    try:
        patch = load_yaml(text)
    except YAMLError as exc:
        raise BadLabInput(f"{INSTANCE_CONFIG}: {str(exc).splitlines()[0]}") from None
    if not isinstance(patch, dict):
        raise BadLabInput(f"{INSTANCE_CONFIG}: not a KubeletConfiguration patch (a YAML mapping)")
    return patch


def _rewrite(target: Path, text: str) -> None:
    """As Go's os.WriteFile(name, data, 0644), which kubeadm writes the kubelet config with: an existing
    file keeps its mode."""
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)
