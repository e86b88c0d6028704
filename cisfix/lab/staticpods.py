"""Replacing a node's static pods one at a time, as `kubeadm upgrade apply/node` does
(cmd/kubeadm/app/phases/upgrade/staticpods.go: StaticPodControlPlane, upgradeComponent,
rollbackOldManifests).

etcd first, then the API server, the controller manager and the scheduler. A component whose new manifest
equals the current one is skipped. Otherwise the old manifest is backed up under
/etc/kubernetes/tmp/kubeadm-backup-manifests-<date>, the new one put in place, and kubeadm waits for the
kubelet to run the new pod (its hash changes) and for the pod to come up healthy. If it does not within
the timeout, every backed-up manifest is moved back — etcd's only when etcd itself failed, as kubeadm's
`recoverEtcd` — and the upgrade fails with kubeadm's message.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

from .control import Lab
from .layout import COMPONENTS, MANIFESTS, LabError
from .tree import dump_yaml, load_yaml, write


class UpgradeFailed(LabError):
    """A static pod did not come up; the old manifests are back."""


@dataclass
class Rollout:
    changed: List[str] = field(default_factory=list)  # static pods whose manifest was rewritten
    unchanged: List[str] = field(default_factory=list)
    backups: Optional[str] = None


def pod_hash(lab: Lab, component: str) -> Optional[str]:
    """The hash of the pod the kubelet runs for `component` (a mirror pod's kubernetes.io/config.hash)."""
    try:
        return json.loads((lab.layout.pods_dir / f"{component}.json").read_text())["hash"]
    except (OSError, ValueError, KeyError):
        return None


def roll_out(lab: Lab, pods: Dict[str, dict], wait: float) -> Rollout:
    """Put `pods` (component -> pod) in place one by one; with `wait` (and the lab running), wait up to that
    long for each to come up, rolling back on failure (UpgradeFailed)."""
    layout = lab.layout
    report = Rollout()
    backups = layout.host(f"/etc/kubernetes/tmp/kubeadm-backup-manifests-{time.strftime('%Y-%m-%d-%H-%M-%S')}")
    recover: Dict[str, Path] = {}
    watching = bool(wait and lab.init_pid())
    health = lab.node_config()["components"]
    for name in COMPONENTS:
        manifest = layout.host(f"{MANIFESTS}/{name}.yaml")
        old = manifest.read_bytes() if manifest.exists() else b""
        if name not in pods or (old and load_yaml(old.decode("utf-8", "replace")) == pods[name]):
            report.unchanged.append(name)
            continue
        before = pod_hash(lab, name)
        if old:
            write(backups / manifest.name, old, 0o600)
            recover[name] = backups / manifest.name
            report.backups = str(backups)
        _replace(manifest, dump_yaml(pods[name]))
        report.changed.append(name)
        if not watching:
            continue
        try:
            _wait_upgraded(lab, name, before, health[name]["health"], wait)
        except LabError as exc:
            for component, backup in recover.items():
                if component != "etcd" or name == "etcd":
                    os.replace(backup, layout.host(f"{MANIFESTS}/{component}.yaml"))
            raise UpgradeFailed("couldn't upgrade control plane. kubeadm has tried to recover everything into the "
                                f"earlier state. Errors faced: {exc}") from None
    return report


def _wait_upgraded(lab: Lab, component: str, before: Optional[str], health: dict, timeout: float) -> None:
    """kubeadm's WaitForStaticPodHashChange, then the new pod up and healthy."""
    deadline = time.monotonic() + timeout
    while True:
        current = pod_hash(lab, component)
        if current is not None and current != before and lab.probe(health, timeout=2.0):
            return
        if time.monotonic() > deadline:
            what = "did not change" if current == before else "changed, but the new pod is not healthy"
            raise LabError(f"static Pod hash for component {component} on Node {lab.layout.settings().node_name} "
                           f"{what} after {timeout:g}s")
        time.sleep(0.1)


def _replace(target: Path, text: str) -> None:
    """Atomically, through a dotfile the kubelet ignores."""
    tmp = target.with_name(f".{target.name}.kubeadm-upgrade")
    write(tmp, text, 0o600)
    os.replace(tmp, target)
