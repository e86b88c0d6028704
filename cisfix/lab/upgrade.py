"""`lab upgrade`: what `kubeadm upgrade apply vX.Y.Z [--patches DIR]` does to a control-plane node.

As kubeadm (`cmd/kubeadm/app/phases/upgrade`): the ClusterConfiguration is read from the `kubeadm-config`
ConfigMap, its kubernetesVersion set to the new one (and converted to the new kubeadm's API), and
uploaded again; every static pod is generated anew from it by the same code as at `lab create` (new
image tags, kubeadm's default flags overridden by extraArgs, extraVolumes mounted, patch files applied)
— so whatever was edited into a manifest by hand is gone; a manifest whose content is unchanged is
left alone; the old one is kept under /etc/kubernetes/tmp/kubeadm-backup-manifests-<date>. The kubelet's
config.yaml is rewritten in place (it keeps its mode) from the `kubelet-config` ConfigMap (plus
`kubeletconfiguration` patches, then the node's instance-config.yaml from 1.34 on) and the kubelet
restarted. `kubeadm-flags.env` is the node's own and stays as it is, except for kubeadm's two rewrites of
it on the way to 1.34 and 1.35 (cisfix.layouts.kubeadm.flagsenv). With `etcd_upgrade=False`
(`--etcd-upgrade=false`) etcd's manifest is left as it is.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, List, Optional

from . import kubeadm, patches
from .configmaps import STORE, ConfigMapStore
from .control import Lab
from ..layouts.kubeadm import flagsenv
from ..layouts.kubeadm.flagsenv import INSTANCE_CONFIG
from .layout import (CISFIX_CONFIG, COMPONENTS, KUBEADM_FLAGS, KUBELET_CONFIG, MANIFESTS, BadLabInput, LabError,
                     Layout)
from .tree import cisfix_config, dump_yaml, write


@dataclass
class UpgradeReport:
    version_from: str
    version_to: str
    changed: List[str] = field(default_factory=list)  # static pods whose manifest was rewritten
    unchanged: List[str] = field(default_factory=list)
    backups: Optional[str] = None
    flags_rewritten: bool = False  # kubeadm-flags.env (on the way to 1.34 and 1.35)
    applied_to_nothing: List[str] = field(default_factory=list)  # patch files for objects the lab lacks (CoreDNS)


def _yaml(text: str) -> Any:
    from ruamel.yaml import YAML

    return YAML(typ="safe", pure=True).load(text)


def _minor(version: str) -> tuple:
    return tuple(int(p) for p in version.split(".")[:2])


def _numbers(version: str) -> tuple:
    """"1.31.10" -> (1, 31, 10): compared as numbers, 1.31.9 comes before 1.31.10."""
    return tuple(int(p) for p in version.split("."))


def check_versions(current: str, target: str) -> None:
    """kubeadm upgrades one minor version at a time, never down."""
    if _numbers(target) < _numbers(current):
        raise BadLabInput(f"cannot upgrade from v{current} down to v{target}")
    if _minor(target)[1] > _minor(current)[1] + 1:
        raise BadLabInput(f"cannot upgrade from v{current} to v{target}: kubeadm upgrades one minor version at a time")


def upgrade(root: "str | os.PathLike[str]", to: Optional[str] = None, patch_dir: Optional[Path] = None,
            wait: float = 60.0, etcd_upgrade: bool = True) -> UpgradeReport:
    """Upgrade the lab to version `to` (default: the next minor version); `etcd_upgrade=False` leaves
    etcd's manifest as it is, as `kubeadm upgrade apply --etcd-upgrade=false`."""
    lab = Lab(root)
    layout, settings = lab.layout, lab.layout.settings()
    major, minor = _minor(settings.version)
    try:
        target = kubeadm.parse_version(to or f"{major}.{minor + 1}")
    except ValueError as exc:
        raise BadLabInput(str(exc)) from None
    check_versions(settings.version, target)
    cluster = kubeadm.Cluster(target, settings.ports)
    patch_set = patches.load(patch_dir) if patch_dir else []
    store = ConfigMapStore(layout.host(STORE))
    stored, kubelet_map = store.get(kubeadm.KUBEADM_CONFIG), store.get(kubeadm.KUBELET_CONFIGMAP)
    if stored is None or kubelet_map is None:
        raise LabError(f"{layout.host(STORE)} holds no kubeadm-config or kubelet-config ConfigMap")

    # Everything is computed (and every patch applied) before anything changes.
    config = kubeadm.upgraded_configuration(_yaml(stored["data"]["ClusterConfiguration"]), cluster)
    pods = {name: patches.apply(patch_set, name, pod) for name, pod in kubeadm.static_pods(cluster, config).items()}
    kubelet_config = patches.apply(patch_set, "kubeletconfiguration", _yaml(kubelet_map["data"]["kubelet"]))
    flags_env, instance = _kubelet_node_files(layout, target)
    if instance:  # kubeadm's WriteConfigToDisk: the instance configuration, as a patch, last
        kubelet_config = patches.merge(kubelet_config, _instance_patch(instance), strategic=True)

    store.put(kubeadm.KUBEADM_CONFIG, {**stored["data"], "ClusterConfiguration": dump_yaml(config)},
              stored["metadata"]["resourceVersion"])
    report = UpgradeReport(settings.version, target, applied_to_nothing=patches.unapplied(patch_set))
    backups = layout.host(f"/etc/kubernetes/tmp/kubeadm-backup-manifests-{time.strftime('%Y-%m-%d-%H-%M-%S')}")
    since = time.time()
    for name in COMPONENTS:  # etcd first, as kubeadm
        manifest = layout.host(f"{MANIFESTS}/{name}.yaml")
        old = manifest.read_bytes() if manifest.exists() else b""
        new = dump_yaml(pods[name])
        if (old and _yaml(old.decode("utf-8", "replace")) == pods[name]) or (name == "etcd" and not etcd_upgrade):
            report.unchanged.append(name)
            continue
        if old:
            write(backups / manifest.name, old, 0o600)
            report.backups = str(backups)
        _replace(manifest, new)
        report.changed.append(name)
    if instance and not layout.host(INSTANCE_CONFIG).exists():
        write(layout.host(INSTANCE_CONFIG), instance, 0o644)
    _rewrite(layout.host(KUBELET_CONFIG), dump_yaml(kubelet_config))
    if flags_env is not None:
        if flagsenv.minor(target) >= flagsenv.PAUSE_STRIPPED:  # the post-upgrade phase backs the file up first
            write(layout.host(f"/etc/kubernetes/tmp/kubeadm-kubelet-env-{time.strftime('%Y-%m-%d-%H-%M-%S')}"
                              f"/kubeadm-flags.env"), layout.host(KUBEADM_FLAGS).read_bytes(), 0o644)
        _rewrite(layout.host(KUBEADM_FLAGS), flags_env)
        report.flags_rewritten = True
    settings.version = target
    layout.save_settings(settings)
    write(layout.host(CISFIX_CONFIG), dump_yaml(cisfix_config(layout, cluster)), 0o644)

    if lab.init_pid():
        lab.restart_kubelet()
        if wait:
            _wait_restarted(lab, report.changed, since, wait)
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
        patch = _yaml(text)
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


def _replace(target: Path, text: str) -> None:
    """Atomically, through a dotfile the kubelet ignores."""
    tmp = target.with_name(f".{target.name}.kubeadm-upgrade")
    write(tmp, text, 0o600)
    os.replace(tmp, target)


def _wait_restarted(lab: Lab, components: List[str], since: float, timeout: float) -> None:
    """kubeadm waits for each upgraded static pod to come back (a new pod hash)."""
    from .layout import read_events

    deadline = time.monotonic() + timeout
    waiting = set(components)
    while waiting:
        started = {e["component"] for e in read_events(lab.layout, since) if e["event"] == "pod-started"}
        waiting -= started
        if not waiting:
            return
        if time.monotonic() > deadline:
            raise LabError(f"upgraded static pods did not restart within {timeout:g}s: {', '.join(sorted(waiting))}")
        time.sleep(0.1)

