"""The cluster side of persisting: what every control-plane node must hold before its upgrade
(`cisfix.controlplane` holds the data), published by `persist` on the node that made the fixes, checked
on each node by `persist --check`, installed from the bundle by `persist --install DIR`.

- `persist` publishes its files' list in `kube-system/cisfix-control-plane-files` (created with POST,
  updated with PUT and the resourceVersion read, refused answers as for every object it writes), writes
  the bundle, lists the control-plane Nodes and calls the fixes persisted (exit 0) only when every one
  of them has recorded that it holds the list's files; else it names those still missing them (exit 7).
- `persist --check` compares this node's files with the list, changes nothing on the node, and records
  its verdict (ready or not, against the list's checksum) in the ConfigMap for the publishing node.
- `persist --install DIR` takes the published list from the API server (never the bundle's own index),
  checks every file of DIR against it before writing anything, refuses a file of the node that holds
  something else, and creates the missing files in one transaction, undone as any fix's.
"""
from __future__ import annotations

import http.client
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Tuple

from . import status
from .apiobjects import ObjectOutcome, RefusedAnswer, list_nodes, persist_object, read_configmap
from .controlplane import (BUNDLE, LIST_KEY, NAME, PATCH_FILES, VERDICT_PREFIX, FileEntry, checksum, confirmed, decode, encode,
                           local_file, merge, problems, read_bundle, sha256, verdict, write_bundle)
from .errors import CisfixError, InputError
from .health import CredentialRefused, server_text
from .judged import node_name
from .kubeyaml import dump
from .node import Node
from .plugins import Plugins
from .state import NodeState
from .types import ApiObject, Change, ClusterAccess, CreateFile, ObjectUpdate, PersistPlan, SetMode

UNREACHABLE = (RefusedAnswer, CredentialRefused, OSError, ssl.SSLError, http.client.HTTPException, ValueError)


@dataclass
class ControlPlane:
    """What every control-plane node must hold, as published, and which nodes said they hold it."""

    configmap: str
    files: List[dict] = field(default_factory=list)  # this node's: path, sha256, mode (`FileEntry.as_dict`)
    checksum: str = ""  # of the published list, as the nodes' verdicts name it
    bundle: Optional[str] = None  # where the files were written for the other nodes
    node: Optional[str] = None  # this node's name
    nodes: List[str] = field(default_factory=list)  # the cluster's control-plane nodes
    waiting: List[str] = field(default_factory=list)  # those that have not confirmed they hold the list's files
    reason: str = ""  # why the nodes could not be asked
    note: str = ""  # how this node was told among them, when its name is not a Node's

    @property
    def pending(self) -> bool:
        return bool(self.waiting or self.reason)

    def as_dict(self) -> dict:
        return dict(vars(self))


def _where(access: ClusterAccess) -> Tuple[str, str]:
    """The ConfigMap's name ("namespace/name") and URL."""
    url = f"{access.server}/api/v1/namespaces/{access.namespace}/configmaps/{NAME}" if access.server else ""
    return f"{access.namespace}/{NAME}", url


def _node_path(node: Node, host: Path) -> Optional[str]:
    """The node path of a host path under --root (the state folder's, unless --state-dir put it outside)."""
    try:
        return "/" + str(host.relative_to(node.root)).lstrip("/")
    except ValueError:
        return None


# ---- persist: publish, and wait for the others ----

@dataclass
class Publication:
    obj: ApiObject
    control_plane: ControlPlane
    access: ClusterAccess
    state: NodeState
    written: Dict[str, Mapping[str, str]]  # "data": what the last update made of the ConfigMap
    holds_all: bool = False  # this node holds every file it publishes (for a node without a name)

    def confirmations(self, outcome: ObjectOutcome) -> ControlPlane:
        """Which control-plane nodes have not confirmed they hold the files of the list as published."""
        cp = self.control_plane
        if outcome.status not in ("updated", "created", "unchanged", "would-update", "would-create"):
            cp.reason = f"the list is not published in {cp.configmap} ({outcome.status}); the other nodes cannot check it"
            return cp
        return _confirmations(cp, self.written["data"], self.access, self.state, self.holds_all)


def _confirmations(cp: ControlPlane, data: Mapping[str, str], access: ClusterAccess, state: NodeState,
                   holds_all: bool) -> ControlPlane:
    """`cp` with the cluster's control-plane nodes and those whose verdict in `data` (the ConfigMap's) is
    not on the list it holds."""
    cp.checksum = checksum(data[LIST_KEY])
    try:
        cp.nodes = list_nodes(access.server, access.control_plane_label, access.credentials or {}, state)
    except UNREACHABLE as exc:
        cp.reason = f"the control-plane nodes cannot be listed: {server_text(str(exc))}"
        return cp
    cp.waiting = [n for n in cp.nodes if not confirmed(data, n, cp.checksum)]
    if cp.node not in cp.nodes:
        own = confirmed(data, cp.node, cp.checksum) if cp.node else holds_all
        if len(cp.nodes) == 1 and own:
            # The cluster's only control plane is this node under another name (a Node named by its
            # FQDN, a host without /etc/hostname): nobody else needs the files.
            cp.note = f"the only control-plane Node, {cp.nodes[0]}, is taken to be this node"
            cp.waiting = []
        else:
            cp.note = (f"no control-plane Node is named {cp.node or '(this node has no name)'}, the name this "
                       "node records its verdict under (the kubelet's --hostname-override, else /etc/hostname)")
    return cp


def published_earlier(plugins: Plugins, state: NodeState, access: Optional[ClusterAccess]) -> Optional[ControlPlane]:
    """When this run publishes nothing — on the publishing node after its own `kubeadm upgrade apply`,
    the regenerated manifests are no fix of cisfix's any more — the list published earlier still says
    whether the cluster may go on upgrading: which control-plane nodes have not confirmed holding its
    files (persist exits 7 until every one has). Read only, nothing written; None when nothing is
    published or the API server cannot be asked (as a node that never published)."""
    if access is None or access.credentials is None:
        return None
    name, _ = _where(access)
    try:
        current = _published(access, state)
        entries = decode(current["data"][LIST_KEY], f"{name} {LIST_KEY}") if current and LIST_KEY in current["data"] \
            else []
    except UNREACHABLE:
        return None
    except InputError as exc:
        return ControlPlane(name, node=node_name(state), reason=f"the published list cannot be read: {exc}")
    if not entries:
        return None
    cp = ControlPlane(name, node=node_name(state))
    return _confirmations(cp, current["data"], access, state, not problems(plugins.node, entries))


def publication(plugins: Plugins, state: NodeState, plan: PersistPlan, notes: List[str],
                dry_run: bool) -> Optional[Publication]:
    """The ConfigMap to publish this node's share of the cluster's files in (and the bundle of them,
    written unless in a dry run), or None when the fixes need none."""
    node, access = plugins.node, plan.cluster
    if access is None:
        return None
    mine: Dict[str, Tuple[FileEntry, bytes]] = {}
    for path in plan.cluster_files:
        try:
            found = local_file(node, path)
        except InputError as exc:
            notes.append(f"{exc}: not published for the other control-plane nodes")
            continue
        if found:
            mine[path] = found
    if plan.files:  # every node's `kubeadm upgrade ... --patches DIR` needs them, in the same place
        folder = node.state_dir / PATCH_FILES
        where = _node_path(node, folder)
        if where is None:
            notes.append(f"{folder}: outside the node's root; the patch files are not published for the other nodes")
        for name, data in sorted(plan.files.items()) if where else ():
            mine[f"{where}/{name}"] = (FileEntry(f"{where}/{name}", sha256(data), 0o600), data)
    if not mine:
        return None
    me = node_name(state)
    if me is None:
        notes.append("this node's name is unknown (no kubelet --hostname-override, no /etc/hostname): its own "
                     "verdict is not recorded")
    name, url = _where(access)
    entries = [entry for entry, _ in mine.values()]
    written: Dict[str, Mapping[str, str]] = {}

    def update(data: Mapping[str, str], force: bool) -> ObjectUpdate:
        current = decode(data[LIST_KEY], f"{name} {LIST_KEY}") if LIST_KEY in data else []
        merged, changes, conflicts = merge(current, entries, force)
        new = {**data, LIST_KEY: encode(merged)}
        if me:
            new[VERDICT_PREFIX + me] = verdict(checksum(new[LIST_KEY]), problems(node, merged))
        written["data"] = new
        return ObjectUpdate(new, tuple(changes), tuple(conflicts))

    namespace, _, short = name.partition("/")
    offline = (f"# Written by `cisfix persist` on {node.root}: the files every control-plane node needs (paths and\n"
               "# checksums, no content); create it where the API server can be reached (kubectl apply -f).\n"
               + dump({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": short, "namespace": namespace},
                       "data": dict(update({}, True).data)})).encode()
    written.clear()
    cp = ControlPlane(name, [e.as_dict() for e in sorted(entries, key=lambda e: e.path)], node=me)
    if not dry_run:
        bundle = node.state_dir / BUNDLE
        write_bundle(bundle, mine)
        cp.bundle = str(bundle)
    obj = ApiObject(name, url, access.credentials, update, offline, access.refused, create=True)
    return Publication(obj, cp, access, state, written, not problems(node, entries))


def print_control_plane(cp: ControlPlane) -> None:
    print(f"control-plane files: {len(cp.files)} of this node in {cp.configmap}"
          + (f" (list sha256 {cp.checksum[:12]})" if cp.checksum else ""))
    if cp.bundle:
        print(f"    bundle for the other control-plane nodes: {cp.bundle}; copy it to each of them and run there "
              f"`cisfix persist --install DIR` then `cisfix persist --check`, before its `kubeadm upgrade node`")
    if cp.note:
        print(f"    note: {cp.note}")
    if cp.reason:
        print(f"    not persisted yet: {cp.reason}")
    elif cp.waiting:
        print(f"    not persisted yet: {', '.join(cp.waiting)} not confirmed to hold the files "
              f"(`cisfix persist --check` there)")
    elif cp.nodes:
        print(f"    every control-plane node holds them: {', '.join(cp.nodes)}")


# ---- persist --check ----

@dataclass
class CheckReport:
    node: str
    configmap: str
    published: bool = False
    checksum: str = ""
    problems: List[str] = field(default_factory=list)
    reason: str = ""  # why the list could not be read: the node is not called ready
    recorded: str = ""  # what became of its verdict in the ConfigMap (an ObjectOutcome status)
    recorded_reason: str = ""

    @property
    def ready(self) -> bool:
        return not (self.problems or self.reason)

    @property
    def exit_code(self) -> int:
        return status.EXIT_OK if self.ready else status.EXIT_STILL_FAILING

    def as_dict(self) -> dict:
        return {**vars(self), "ready": self.ready, "exit_code": self.exit_code}


def _access(plugins: Plugins, state: NodeState) -> ClusterAccess:
    plan = plugins.pm.hook.cisfix_plan_persistence(node_info=plugins.info, state=state, changes=[])
    if plan is None or plan.cluster is None:
        raise CisfixError(f"no layout plugin knows the cluster of a {plugins.info.distribution} node")
    return plan.cluster


def _published(access: ClusterAccess, state: NodeState) -> Optional[dict]:
    """The ConfigMap as published, None when there is none; RefusedAnswer or a connection error else."""
    name, url = _where(access)
    if access.credentials is None:
        raise RefusedAnswer(access.refused or "this node has no admin credentials for the API server")
    return read_configmap(name, url, access.credentials, state)


def check(plugins: Plugins) -> CheckReport:
    from .audit import node_state

    state, node = node_state(plugins), plugins.node
    me = node_name(state)
    if not me:
        raise CisfixError("this node's name is unknown (no kubelet --hostname-override, no /etc/hostname): its "
                          "verdict could not be recorded")
    access = _access(plugins, state)
    name, url = _where(access)
    report = CheckReport(me, name)
    try:
        current = _published(access, state)
        if current is None:
            return report  # nothing published: no file is needed
        entries = decode(current["data"].get(LIST_KEY, "[]"), f"{name} {LIST_KEY}")
    except (InputError, *UNREACHABLE) as exc:
        report.reason = f"the published list cannot be read: {server_text(str(exc))}"
        return report
    report.published, report.checksum = True, checksum(current["data"].get(LIST_KEY, "[]"))
    report.problems = problems(node, entries)

    def update(data: Mapping[str, str], force: bool) -> ObjectUpdate:
        text = data.get(LIST_KEY, "[]")  # the list as it is now, should another node have changed it
        lines = problems(node, decode(text, f"{name} {LIST_KEY}"))
        return ObjectUpdate({**data, VERDICT_PREFIX + me: verdict(checksum(text), lines)})

    outcome = persist_object(ApiObject(name, url, access.credentials, update, b""), state, False, False)
    report.recorded, report.recorded_reason = outcome.status, outcome.reason
    return report


def print_check(report: CheckReport) -> None:
    for line in report.problems:
        print(line)
    if report.reason:
        print(f"{report.node}: not known to be ready: {report.reason}")
    elif report.ready:
        print(f"{report.node}: ready for `kubeadm upgrade node`: "
              + (f"it holds every file listed in {report.configmap}" if report.published
                 else f"nothing is published in {report.configmap}"))
    else:
        print(f"{report.node}: not ready for `kubeadm upgrade node`: {len(report.problems)} files missing or "
              f"different (`cisfix persist --install DIR` with the bundle of the node that published them)")
    if report.recorded in ("elsewhere", "failed", "conflict"):
        print(f"note: the verdict is not recorded in {report.configmap}: {report.recorded_reason}")


# ---- persist --install DIR ----

@dataclass
class InstallReport:
    installed: List[str] = field(default_factory=list)
    present: List[str] = field(default_factory=list)
    outcome: Optional[dict] = None  # the transaction's (`EditOutcome.as_dict`, without its diff)
    exit_code: int = status.EXIT_OK

    def as_dict(self) -> dict:
        return {**vars(self)}


def install(plugins: Plugins, directory: str, wait: float = 0.0) -> InstallReport:
    from .apply import open_session
    from .audit import node_state
    from .engine import run_changes
    from .gate import gate_settings, make_gate

    state, node = node_state(plugins), plugins.node
    access = _access(plugins, state)
    name, _ = _where(access)
    try:
        current = _published(access, state)
        entries = decode(current["data"].get(LIST_KEY, "[]"), f"{name} {LIST_KEY}") if current else None
    except UNREACHABLE as exc:
        raise InputError(directory, f"the published list in {name} cannot be read ({server_text(str(exc))}); the "
                                    "bundle is not installed unchecked, nothing installed")
    if entries is None:
        raise InputError(directory, f"nothing is published in {name}: no list to check the bundle against; "
                                    "nothing installed")
    report, needed, modes = InstallReport(), [], []
    for entry in entries:
        try:
            found = local_file(node, entry.path)
        except InputError as exc:
            raise InputError(exc.path, f"{exc.reason}; nothing installed") from None
        if found is None:
            needed.append(entry)
        elif found[0].sha256 == entry.sha256:
            report.present.append(entry.path)
            if found[0].mode & ~entry.mode:  # looser than published: narrowed in the same transaction
                modes.append(SetMode(entry.path, entry.mode))
        else:
            raise InputError(node.display(entry.path), f"exists with other content (sha256 {found[0].sha256[:12]}, "
                                                       f"the published one is {entry.sha256[:12]}); not replaced, "
                                                       "nothing installed")
    contents = read_bundle(Path(directory), needed)
    if not needed and not modes:
        return report
    shown = {e.path: f"<installed from the bundle: sha256 {e.sha256}>\n".encode() for e in needed}
    changes: List[Change] = [CreateFile(e.path, contents[e.path], e.mode, "root:root", shown=shown[e.path])
                             for e in needed]
    changes += modes
    outcome = run_changes(node, changes, label="persist --install", state=state,
                          session=lambda: open_session(plugins, make_gate(plugins, gate_settings(plugins.config)), wait))
    report.installed = [e.path for e in needed] if outcome.status == status.FIXED else []
    report.outcome = {k: v for k, v in outcome.as_dict().items() if k != "diff"}
    report.exit_code = outcome.exit_code
    return report


def print_install(report: InstallReport, node: Node) -> None:
    for path in report.installed:
        print(f"installed {node.display(path)}")
    for path in report.present:
        print(f"already there {node.display(path)}")
    outcome = report.outcome or {}
    if outcome.get("txid") and report.installed:
        print(f"transaction {outcome['txid']} (`cisfix rollback {outcome['txid']}` undoes it); now `cisfix persist "
              "--check`")
    elif outcome:
        print(f"{outcome.get('status')}: {outcome.get('reason')}")
