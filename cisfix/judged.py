"""What a report was judged against: the node (its name, Kubernetes version, distribution and the layout
that described it), the benchmark and level, and the cisfix build. Every report format carries it, so a
report read alone (a file on a USB stick, a CI artifact, a metric) says which node, which rules and which
tool it speaks for. The JSON form has the shapes of the node report document's `node`, `benchmark` and
`cisfix` objects (cisfix-node-report/1)."""
from __future__ import annotations

import textwrap
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Dict, List, Optional

from . import __version__
from .errors import InputError
from .trust import read_trusted
from .types import NodeInfo
from .version import commit

if TYPE_CHECKING:  # pragma: no cover
    from .plugins import Plugins
    from .state import NodeState

HOSTNAME = "/etc/hostname"
WIDTH = 80


def node_name(state: "NodeState") -> Optional[str]:
    """The name the node has in Kubernetes (what `kubectl get nodes` shows): the kubelet's
    `--hostname-override` when its command line has one (the running kubelet's, else the one its flag
    files start it with), else the host name in the node's /etc/hostname; trimmed and lowercased, as the
    kubelet takes either. None when neither says (a disk image or test tree without /etc/hostname). A name
    only labels a report: a file that cannot be read, or that another user could have written, gives no
    name, never a failed audit (the kubelet's own checks report its broken files)."""
    try:
        name = state.settings("kubelet").flags.get("hostname-override") if "kubelet" in state.info.components else None
    except InputError:
        name = None
    if not name:
        try:
            data = read_trusted(state.node.host(state.node.resolve(HOSTNAME)), why="; not naming the node by it")
        except (OSError, InputError):
            return None
        name = next(iter(data.decode("utf-8", "replace").split()), "")
    return name.strip().lower() or None


def judged_info(plugins: "Plugins", level: Optional[int], state: Optional["NodeState"] = None) -> NodeInfo:
    """The node's description with what a report names beside it: the node's name (read through `state`,
    the run's view of the node, when given) and the `--level` asked for."""
    if state is None:
        from .audit import node_state

        state = node_state(plugins)
    return replace(plugins.info, name=node_name(state), level=level)


def judged_against(info: Optional[NodeInfo]) -> Dict[str, Any]:
    """{"node": {...}, "benchmark": {"name", "level"}, "cisfix": {"version", "commit"}}: unknowns are null,
    level null means every level, commit null means a source checkout (no build to name)."""
    info = info or NodeInfo(distribution="")
    return {"node": {"name": info.name, "distribution": info.distribution or None, "layout": info.layout or None,
                     "kubernetes_version": info.version, "node_types": list(info.node_types)},
            "benchmark": {"name": info.benchmark, "level": info.level},
            "cisfix": {"version": __version__, "commit": commit()}}


def flat(info: Optional[NodeInfo]) -> Dict[str, str]:
    """The same as flat strings (JUnit properties, Prometheus labels): "" where unknown, level "all"."""
    judged = judged_against(info)
    node, benchmark, build = judged["node"], judged["benchmark"], judged["cisfix"]
    return {"node": node["name"] or "", "kubernetes_version": node["kubernetes_version"] or "",
            "distribution": node["distribution"] or "", "layout": node["layout"] or "",
            "benchmark": benchmark["name"] or "", "level": str(benchmark["level"] or "all"),
            "cisfix_version": build["version"], "commit": build["commit"] or ""}


def header_lines(info: Optional[NodeInfo]) -> List[str]:
    """Two lines (wrapped to 80 columns) opening a text report:
    `Node cp-1: Kubernetes 1.31.2, kubeadm, master, etcd, worker` (the layout named when it is not the
    distribution: `eks (layout kubeadm)`) and
    `Audited against cis-1.11, level 1, by cisfix 0.1.0 (commit 0123456789ab)`."""
    judged = judged_against(info)
    node, benchmark = judged["node"], judged["benchmark"]
    name = node["name"] or "(name unknown)"
    version = f"Kubernetes {node['kubernetes_version']}" if node["kubernetes_version"] else "Kubernetes version unknown"
    layout = f" (layout {node['layout']})" if node["layout"] and node["layout"] != node["distribution"] else ""
    where = ", ".join(filter(None, (version, f"{node['distribution'] or 'unknown distribution'}{layout}",
                                    ", ".join(node["node_types"]))))
    level = f"level {benchmark['level']}" if benchmark["level"] else "all levels"
    build = f"commit {judged['cisfix']['commit']}" if judged["cisfix"]["commit"] else "source checkout"
    against = f"{benchmark['name']}, {level}" if benchmark["name"] else f"no benchmark, {level}"
    lines = [f"Node {name}: {where}", f"Audited against {against}, by cisfix {__version__} ({build})"]
    return [part for line in lines for part in textwrap.wrap(line, WIDTH, subsequent_indent="    ")]
