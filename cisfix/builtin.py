"""Built-in plugin: the report formats of `cisfix.reports`, the node report's drift summary section
(`cisfix.reportsections`) and the node paths the core itself reads and writes. Registered like any
other plugin."""
from __future__ import annotations

import posixpath
from typing import List, Optional

from . import hookimpl
from .errors import CisfixError
from .node import STATE_DIR, Node
from .nodefile import require_regular
from .types import READ, WRITE, HostPath, NodeInfo, ReportFormat, ReportSection


@hookimpl
def cisfix_register_report_formats() -> List[ReportFormat]:
    from .reports import FORMATS

    return FORMATS


@hookimpl
def cisfix_report_sections(report: dict) -> List[ReportSection]:
    from .reportsections import drift_summary

    return [drift_summary(report)]


@hookimpl
def cisfix_host_paths(node_info: NodeInfo) -> List[HostPath]:
    from .changelog import CHANGE_LOG
    from .config import CONFIG_PATH

    return [
        HostPath(posixpath.dirname(CONFIG_PATH), "the node configuration and its checks.d"),
        HostPath("/proc", "processes: each component's command line, and its restarts"),
        HostPath("/etc/passwd", "owner names in file checks", folder=False),
        HostPath("/etc/group", "group names in file checks", folder=False),
        HostPath(STATE_DIR, "journal, backups, lock and HALT", audit="", fix=WRITE),
        HostPath(CHANGE_LOG, "the change log, appended to", audit="", fix=WRITE, folder=False),
        HostPath("/var/log/pods", "pod log folders: which pod a process belongs to (their names); a failing "
                 "component's last log lines", fix=READ),
    ]


def not_a_node_reason(node: Node) -> Optional[str]:
    """Why `--root` does not look like a Kubernetes node (a typo in a cron job, an unmounted disk), or
    None when it has a static pod manifest or a kubelet configuration where the node's configuration
    (or kubeadm's layout) puts them. A root like that must never read as a compliant node."""
    if not node.root.is_dir():
        return "not a directory" if node.root.exists() else "no such directory"
    from .config import load_node_config
    from .layouts import aks, eks, gke, k3s, kubeadm, rke2  # the built-in layouts, in the order they answer

    config = load_node_config(node)
    info = next(found for found in (layout.cisfix_describe_node(node, config) for layout in (rke2, k3s, eks, gke, aks, kubeadm))
                if found)
    if info.distribution in ("rke2", "k3s", "eks", "gke", "aks"):  # its files are there: a node it runs
        return None
    wanted = [p for c in info.components.values() for p in (c.manifest, c.config) if p]
    if any(require_regular(node.host(node.resolve(p)), node.display(p)) for p in wanted):
        return None
    manifests = sorted({posixpath.dirname(c.manifest) for c in info.components.values() if c.manifest})
    configs = sorted(c.config for c in info.components.values() if c.config)
    return (f"no static pod manifest in {', '.join(node.display(m) for m in manifests)} and no kubelet "
            f"configuration at {', '.join(node.display(c) for c in configs)}")


class NotANode(CisfixError):
    """A root that is not a Kubernetes node, refused before anything (a lock, a state folder) is created."""


def require_a_node(node: Node) -> None:
    reason = not_a_node_reason(node)
    if reason:
        raise NotANode(f"{node.root} does not look like a Kubernetes node: {reason}")
