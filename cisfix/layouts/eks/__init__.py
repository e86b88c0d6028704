"""The EKS layout: a worker node of an Amazon EKS managed node group (or a self-managed one) made from the
EKS-optimized Amazon Linux images (awslabs/amazon-eks-ami).

- Amazon Linux 2 (`al2`): `/etc/eks/bootstrap.sh` fills in `/etc/kubernetes/kubelet/kubelet-config.json`
  once, at the first boot, and writes the flags into the drop-ins `kubelet.service.d/10-kubelet-args.conf`
  (`Environment='KUBELET_ARGS=--node-ip=... --v=2'`) and `30-kubelet-extra-args.conf` (`--kubelet-extra-args`);
  the unit's `ExecStart=/usr/bin/kubelet --config ... $KUBELET_ARGS $KUBELET_EXTRA_ARGS`
  (templates/al2/runtime/kubelet.service, bootstrap.sh).
- Amazon Linux 2023 (`al2023`): nodeadm writes, at every boot, from the user data's NodeConfig,
  `/etc/kubernetes/kubelet/config.json` (4-space JSON), the drop-in `config.json.d/40-nodeadm.conf`
  (`--config-dir`, spec.kubelet.config) and `/etc/eks/kubelet/environment` (`NODEADM_KUBELET_ARGS=--flag=v ...`,
  its own flags then spec.kubelet.flags); the unit runs `/usr/bin/kubelet $NODEADM_KUBELET_ARGS`
  (nodeadm/internal/kubelet/config.go, environment.go; templates/al2023/runtime/rootfs/.../kubelet.service).
- Both run the kubelet in `runtime.slice`.
"""
from __future__ import annotations

import json
import shlex
from typing import List, Optional

from ...markers import hookimpl
from ...node import Node
from ...types import HostPath, NetChange, NodeInfo, PersistPlan
from .. import worker

KUBELET_DIR = "/etc/kubernetes/kubelet"
AL2_CONFIG = f"{KUBELET_DIR}/kubelet-config.json"
AL2023_CONFIG = f"{KUBELET_DIR}/config.json"
AL2023_ENV = "/etc/eks/kubelet/environment"
MARKERS = (("/etc/eks", AL2_CONFIG), ("/etc/eks", AL2023_CONFIG, AL2023_ENV))
BASE = dict(distribution="eks", binary="/usr/bin/kubelet", cgroup="runtime.slice/kubelet.service",
            client_ca="/etc/kubernetes/pki")
AL2 = worker.Provider(config=AL2_CONFIG, env_files=(), **BASE)
AL2023 = worker.Provider(config=AL2023_CONFIG, env_files=(AL2023_ENV,), config_dir=f"{AL2023_CONFIG}.d",
                         # nodeadm writes these at every boot from the instance's user data
                         boot_owned=(AL2023_CONFIG, f"{AL2023_CONFIG}.d/", AL2023_ENV), **BASE)
NODEADM_MECHANISM = ("add the NodeConfig (spec.kubelet.config / spec.kubelet.flags) to the launch template's user "
                     "data, a MIME part of Content-Type application/node.eks.aws")
BOOTSTRAP_MECHANISM = ("add the user-data script that sets them before /etc/eks/bootstrap.sh runs (or its "
                       "--kubelet-extra-args) to the launch template")


def _al2023(node: Node) -> bool:
    """nodeadm's files are there (AL2023); else bootstrap.sh's (AL2)."""
    return node.host(node.resolve(AL2023_ENV)).exists() or node.host(node.resolve(AL2023_CONFIG)).exists()


@hookimpl
def cisfix_describe_node(node: Node, config: dict) -> Optional[NodeInfo]:
    if not worker.is_node_of(node, config, "eks", MARKERS):
        return None
    if _al2023(node):
        lasts = worker.not_lasting("nodeadm rewrites the kubelet's config.json, its config.json.d drop-in and "
                                   f"{AL2023_ENV} at every boot, and a node group upgrade replaces the node",
                                   NODEADM_MECHANISM)
        return worker.describe(node, config, AL2023, lasts)
    lasts = worker.not_lasting("a node group upgrade or scaling replaces the node with one bootstrap.sh makes "
                               "from the image", BOOTSTRAP_MECHANISM)
    return worker.describe(node, config, AL2, lasts)


@hookimpl
def cisfix_host_paths(node_info: NodeInfo) -> Optional[List[HostPath]]:
    if node_info.distribution != "eks":
        return None
    provider = AL2023 if AL2023_ENV in node_info.components["kubelet"].flag_files else AL2
    return worker.host_paths(node_info, provider, [HostPath("/etc/eks", "EKS's files: which image made the node")])


@hookimpl
def cisfix_plan_persistence(node_info: NodeInfo, state, changes: List[NetChange]) -> Optional[PersistPlan]:
    if node_info.distribution != "eks":
        return None
    found = worker.kubelet_changes(node_info, changes)
    notes = [f"{state.node.display(p)}: no kubelet setting; not persisted" for p in found.others]
    if AL2023_ENV in node_info.components["kubelet"].flag_files:
        return _nodeconfig(found, notes)
    return _user_data(found, notes)


def _nodeconfig(found: worker.KubeletChanges, notes: List[str]) -> PersistPlan:
    """AL2023: a NodeConfig nodeadm merges with the node group's own (its kubelet config goes into the
    config.json.d drop-in, its flags after nodeadm's, where they win)."""
    config = {path: v for path, v in found.config.items() if v is not worker.GONE}
    flags = [worker.flag_word(name, v) for name, v in found.flags.items() if v is not worker.GONE]
    removed = [".".join(p) for p, v in found.config.items() if v is worker.GONE] + \
              [f"--{name}" for name, v in found.flags.items() if v is worker.GONE]
    if removed:
        notes.append(f"a NodeConfig cannot remove a setting nodeadm writes: {', '.join(removed)}")
    if not (config or flags):
        return PersistPlan(notes=(*notes, "no kubelet setting changed: nothing for the user data"))
    kubelet = {**({"config": worker.nested(config)} if config else {}), **({"flags": flags} if flags else {})}
    document = {"apiVersion": "node.eks.aws/v1alpha1", "kind": "NodeConfig", "spec": {"kubelet": kubelet}}
    return PersistPlan(files={"nodeconfig.yaml": worker.yaml_text(document)}, show_files=True,
                       files_usage=f"{NODEADM_MECHANISM}: {{dir}}/nodeconfig.yaml", notes=tuple(notes))


def _user_data(found: worker.KubeletChanges, notes: List[str]) -> PersistPlan:
    """AL2: a user-data script that writes the settings into the image's kubelet-config.json before
    bootstrap.sh (which edits that file in place, keeping what it does not set) starts the kubelet."""
    lines = ["#!/bin/bash", "# cisfix: the kubelet settings of its fixes, set before /etc/eks/bootstrap.sh runs",
             "set -o errexit", f"config={AL2_CONFIG}"]
    program = [f"del(.{_jq_path(p)})" if v is worker.GONE else f".{_jq_path(p)} = {json.dumps(v)}"
               for p, v in found.config.items()]
    if program:
        lines.append(f'jq {shlex.quote(" | ".join(program))} "$config" > "$config.cisfix" '
                     '&& mv "$config.cisfix" "$config"')
    flags = [worker.flag_word(n, v) for n, v in found.flags.items() if v is not worker.GONE]
    if flags:
        lines.append(f"# and give bootstrap.sh: --kubelet-extra-args {shlex.quote(' '.join(flags))}")
    removed = [f"--{n}" for n, v in found.flags.items() if v is worker.GONE]
    if removed:
        notes.append(f"bootstrap.sh writes these flags itself; the user data cannot remove them: {', '.join(removed)}")
    if not (program or flags):
        return PersistPlan(notes=(*notes, "no kubelet setting changed: nothing for the user data"))
    return PersistPlan(files={"user-data.sh": ("\n".join(lines) + "\n").encode("utf-8")}, show_files=True,
                       files_usage=f"{BOOTSTRAP_MECHANISM}: {{dir}}/user-data.sh", notes=tuple(notes))


def _jq_path(path) -> str:
    return "".join(f"[{json.dumps(key)}]" for key in path)
