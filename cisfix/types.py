"""What plugins register and return: small frozen dataclasses, the vocabulary of the hooks in
`cisfix.hookspecs`. Everything a plugin author needs is exported from `cisfix`."""
from __future__ import annotations

import posixpath
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Dict, Mapping, Optional, Tuple, Union

from .plan import AddHostPathMount, FlagOp, PathOp, SettingOp  # AddHostPathMount: re-exported, defined with the other ops

if TYPE_CHECKING:  # pragma: no cover
    from .state import NodeState

# Audit statuses. EXCEPTED is set by the core, never by an audit: a failing check whose risk the
# node's configuration accepts until a date (`exceptions` in <root>/etc/cisfix/config.yaml).
PASS, FAIL, WARN, MANUAL, ERROR, EXCEPTED = "PASS", "FAIL", "WARN", "MANUAL", "ERROR", "EXCEPTED"
NOT_APPLICABLE = "NOT_APPLICABLE"  # the check's component is not on this node: never planned
AUDIT_STATUSES = (PASS, FAIL, WARN, MANUAL, ERROR, EXCEPTED, NOT_APPLICABLE)


@dataclass(frozen=True)
class Evidence:
    """Where a verdict comes from: a file and line, or a running process."""

    file: Optional[str] = None  # node path
    line: Optional[int] = None  # 1-based
    process: Optional[str] = None  # e.g. "kube-apiserver (pid 812)"
    detail: str = ""

    def __str__(self) -> str:
        where = self.process or (f"{self.file}:{self.line}" if self.line else self.file) or ""
        return f"{where} {self.detail}".strip()


@dataclass(frozen=True)
class AuditResult:
    """The verdict of one audit. `expected` and `actual` are short human strings."""

    status: str
    expected: str = ""
    actual: str = ""
    evidence: Tuple[Evidence, ...] = ()
    reason: str = ""


# ---- remediation plans: data only; the core applies them inside one transaction ----


@dataclass(frozen=True)
class EditFile:
    """Apply flag operations (to a static pod manifest) or dotted-path operations (to a YAML file)."""

    path: str
    ops: Tuple[Union[FlagOp, PathOp, "AddHostPathMount"], ...]
    component: Optional[str] = None
    kind: Optional[str] = None


@dataclass(frozen=True)
class CreateFile:
    """Create (or replace) a file with this content, mode and owner (`"root:root"` or `"0:0"`)."""

    path: str
    content: bytes
    mode: int = 0o600
    owner: str = "root:root"
    replace: bool = False  # False: an existing file is left as it is
    shown: Optional[bytes] = None  # what diffs show instead of `content` when it holds secret material


@dataclass(frozen=True)
class SetMode:
    """chmod/chown. `mode` is the most permissive allowed: bits beyond it are removed, none are added.
    Any of the three may be None to leave it alone."""

    path: str
    mode: Optional[int] = None
    owner: Optional[str] = None


@dataclass(frozen=True)
class Configure:
    """Change settings of a component: "set profiling=false on kube-scheduler", "add NodeRestriction to
    enable-admission-plugins", "kubelet readOnlyPort: 0". The node's layout decides which file and which
    editor (for the kubelet: the flag file that sets the flag, else its config file)."""

    component: str
    ops: Tuple[SettingOp, ...]


Change = Union[Configure, EditFile, CreateFile, SetMode]


@dataclass(frozen=True)
class Plan:
    """A check's remediation: the changes to make, or why it cannot be fixed safely (`manual`)."""

    changes: Tuple[Change, ...] = ()
    manual: str = ""  # non-empty: no safe automatic fix; the text says why and what to do
    notes: Tuple[str, ...] = ()  # shown to the operator, e.g. "rewrite existing secrets"


# ---- registered objects ----


@dataclass(frozen=True)
class Check:
    """One benchmark recommendation: how to audit it, remediate it and verify the fix.

    `audit(state)` and `verify(state)` return an AuditResult; `remediate(state)` returns a Plan (or
    None when `automated` is False). `verify` defaults to running `audit` again against the live state.
    """

    id: str
    title: str
    audit: Callable[["NodeState"], AuditResult]
    benchmark: str = ""
    level: int = 1
    node_types: Tuple[str, ...] = ("master",)
    automated: bool = True
    component: Optional[str] = None
    target: str = ""  # what it inspects, e.g. "flag --profiling" or "file /var/lib/kubelet/config.yaml"
    remediate: Optional[Callable[["NodeState"], Plan]] = None
    verify: Optional[Callable[["NodeState"], AuditResult]] = None
    remediation: str = ""  # human guidance, shown by audit and `checks show`
    overrides: Tuple[str, ...] = ()  # ids of checks this one deliberately replaces
    source: str = ""  # filled in by the loader: the plugin (and file) that defined it

# The drop-ins k3s and RKE2 read: names ending so, in any case (k3s pkg/configfilearg/parser.go, dotDFiles).
DROPIN_SUFFIXES = (".yaml", ".yml")


@dataclass(frozen=True)
class ArgList:
    """Settings a distribution's configuration file passes to a component as list items `flag=value`
    under `key` (RKE2's and k3s's `kube-apiserver-arg`), in `config` and the `*.yaml` drop-ins of
    `dropins`, merged by the distribution's rules (see `cisfix.editors.distconfig`). cisfix's own changes go
    to `owned`, unless a file the operator owns already decides the flag."""

    key: str  # e.g. "kube-apiserver-arg"
    config: str  # e.g. "/etc/rancher/rke2/config.yaml"
    dropins: str  # e.g. "/etc/rancher/rke2/config.yaml.d"
    owned: str  # e.g. "/etc/rancher/rke2/config.yaml.d/90-cisfix.yaml"
    values: str = "replace"  # "k3s": a value `name+=X` / `name-=X` appends to / prepends k3s's default
    # The distribution's own values of flags that `name+=X` / `name-=X` add to (k3s's defaults).
    defaults: Mapping[str, str] = field(default_factory=dict)

    def holds(self, node_path: str) -> bool:
        """Is this file one the distribution reads these settings from?"""
        return node_path == self.config or (posixpath.dirname(node_path) == self.dropins
                                            and node_path.lower().endswith(DROPIN_SUFFIXES))


@dataclass(frozen=True)
class Component:
    """A component of the node, as its layout describes it: where its settings live (node paths, in
    precedence: the live process's argv; the manifest's command/args or the flag files; the config
    file), how its health is probed, how it is restarted and what it depends on.

    A process counts as the component only when root or the runtime could have started it for it (see
    `cisfix.identity`): it runs as `user`, its executable is a root-owned file in root-owned folders,
    and its cgroup is the pod of `manifest` (a static pod: the kubelet's pod cgroup whose log folder
    names the manifest's namespace and pod) or the systemd `unit` (a service)."""

    name: str
    manifest: Optional[str] = None  # static pod manifest: the component is a static pod
    config: Optional[str] = None  # its config file, e.g. the kubelet's config.yaml
    flag_files: Tuple[str, ...] = ()  # files whose flags override the config (kubelet env files, drop-ins)
    process: Optional[str] = None  # executable name to find it in /proc (default: the component name)
    # Endpoints (url, caFile, ..., portFlag/portPath), answered by this component's own process only.
    health: Mapping[str, Any] = field(default_factory=dict)
    restart: Tuple[str, ...] = ()  # command that restarts it (systemctl restart kubelet); see cisfix.commands
    # The command that makes its service manager re-read unit files (systemctl daemon-reload), run before the
    # restart when a change wrote one of them (see `reloads`): systemd restarts a unit with the definition it
    # loaded, so a fix of a unit drop-in's Environment= would otherwise not reach the new process.
    reload: Tuple[str, ...] = ()
    config_flag: Optional[str] = None  # the flag that names its config file (the kubelet's --config)
    config_kind: Optional[str] = None  # the document of the config file that holds the settings
    # The flag that names its drop-in folder (the kubelet's --config-dir): every file under it whose name
    # ends in `.conf`, in the kubelet's walk order, is a config document merged over the config file
    # (see `cisfix.settings.read_dropins`); a change of a setting goes to the drop-in that decides it.
    config_dir_flag: Optional[str] = None
    # The drop-in folder the layout knows it is given (nodeadm's config.json.d): a change of a file in it
    # restarts the component, as a change of its config file does (the folder the flag names is read either way).
    config_dir: Optional[str] = None
    depends_on: Tuple[str, ...] = ()  # components to fix before this one
    managed_by: Optional[str] = None  # the component that runs it (static pods: the kubelet)
    live_config: Mapping[str, Any] = field(default_factory=dict)  # where it serves its effective config
    user: int = 0  # the uid its process runs as (a static pod's securityContext.runAsUser says otherwise)
    unit: Optional[str] = None  # a service: its systemd unit's cgroup, e.g. "system.slice/kubelet.service"
    # Set by a distribution's config file (RKE2, k3s) rather than by its manifest or flag files.
    args: Optional[ArgList] = None
    # The components this one's restart restarts and the gate must see healthy again (rke2-server: the
    # control plane and the kubelet); changes to theirs are applied with this one's, one restart for all.
    runs: Tuple[str, ...] = ()
    # The layout's reader of the live command line, where no process of its own shows it (k3s's embedded
    # components: the `Running kube-apiserver ...` log line); None: the process's argv.
    live_flags: Optional[Callable[["NodeState", "Component"], Any]] = None
    logs: Tuple[str, ...] = ()  # node paths of log files the component writes, for the gate's last words
    # Node paths of its files that the distribution's packages own and reinstall when they are upgraded
    # (content and mode reset, as a package's `install -m 644` does): a fix of them does not outlive a
    # package upgrade; `cisfix drift` puts it back, and counts that drift as an upgrade's.
    package_owned: Tuple[str, ...] = ()
    # Node paths of its files that a boot step rewrites from the node's boot input (AL2023's nodeadm, from
    # the instance's user data; GKE's startup scripts, from the instance metadata); a path ending in "/" is a folder and everything in it. A fix of them lasts
    # until the next boot; `cisfix drift` puts it back, and counts that drift as a boot's.
    boot_owned: Tuple[str, ...] = ()

    def reloads(self, node_path: str) -> bool:
        """Does a change of this file need the `reload` command before the restart: is it a systemd unit file
        (`kubelet.service`) or a unit drop-in (`kubelet.service.d/*.conf`), which systemd reads only then?
        Environment files are read at every start."""
        return bool(self.reload) and (node_path.endswith(".service")
                                      or posixpath.dirname(node_path).endswith(".service.d"))


@dataclass(frozen=True)
class NodeInfo:
    """How a node is laid out: the answer of `cisfix_describe_node`. `benchmark` is filled in by the
    core: the one asked for (`--benchmark`), else the one registered for the node's version, else, for
    a version newer than every benchmark, the newest one with a warning in `warnings` that every
    report carries. The core fills in `layout` too, and, for what a report is judged against, a
    command that reports fills in `name` and `level` (`cisfix.judged`); a layout leaves them alone."""

    distribution: str = "kubeadm"
    version: Optional[str] = None  # Kubernetes version, e.g. "1.31.2", when known
    node_types: Tuple[str, ...] = ()  # e.g. ("master", "worker")
    components: Mapping[str, Component] = field(default_factory=dict)
    benchmark: Optional[str] = None
    warnings: Tuple[str, ...] = ()
    layout: str = ""  # the plugin whose cisfix_describe_node answered, e.g. "kubeadm"
    name: Optional[str] = None  # the node's name (see cisfix.judged.node_name), when known
    level: Optional[int] = None  # the --level asked for; None: every level
    # Set by the core on the operator's word for one run (`fix --first-control-plane`): this node makes
    # what every control-plane node must share (an encryption key); the others install it from its bundle.
    first_control_plane: bool = False

    def package_owned(self) -> frozenset:
        """Node paths of the files the distribution's packages reinstall (`Component.package_owned`)."""
        return frozenset(path for c in self.components.values() for path in c.package_owned)

    def boot_owned(self, node_path: str) -> bool:
        """Does a boot step rewrite this file (`Component.boot_owned`)?"""
        return any(node_path == p or (p.endswith("/") and node_path.startswith(p))
                   for c in self.components.values() for p in c.boot_owned)

    def restarted_by(self, name: str) -> str:
        """The component whose restart applies a change to `name`'s settings: the service that runs it
        (see `Component.runs`), else itself."""
        return next((c.name for c in self.components.values() if name in c.runs), name)


@dataclass(frozen=True)
class Benchmark:
    """A benchmark a plugin implements, e.g. `Benchmark("cis-1.11", "CIS Kubernetes Benchmark v1.11",
    ("1.29", "1.30", "1.31"))`: the Kubernetes minor versions it is chosen for automatically, on nodes of
    `distribution` (a NodeInfo.distribution such as "rke2"; "" for any node no benchmark names)."""

    name: str
    title: str
    versions: Tuple[str, ...] = ()
    distribution: str = ""


@dataclass(frozen=True)
class Editor:
    """An editor for a further file format: `edit(text, ops) -> cisfix.plan.Edited`, chosen for files
    whose node path matches one of `patterns` (fnmatch) and for operations of `op_types`."""

    name: str
    patterns: Tuple[str, ...]
    op_types: Tuple[type, ...]
    edit: Callable[..., Any]


@dataclass(frozen=True)
class Probe:
    """A health probe for a component: `check(state, component) -> (healthy, message)`."""

    component: str
    check: Callable[..., Tuple[bool, str]]


@dataclass(frozen=True)
class ReportFormat:
    """An output format for audit results: `render(results, summary, node_info) -> str`; like a hook
    implementation, `render` may leave out `node_info`."""

    name: str
    render: Callable[..., str]
    description: str = ""

    def __call__(self, results: Any, summary: Mapping[str, int], node_info: "NodeInfo") -> str:
        import inspect

        wanted = inspect.signature(self.render).parameters
        extra = {"node_info": node_info} if "node_info" in wanted or len(wanted) > 2 else {}
        return self.render(results, summary, *extra.values())


@dataclass(frozen=True)
class ReportSection:
    """A section a plugin adds to the node report (`cisfix_report_sections`): a title and plain text.
    The text is shown as it is, escaped, in a preformatted block (keep lines under 100 columns); there is
    no way to hand the page markup, so a section can never break or script the page an auditor signs."""

    title: str
    text: str


@dataclass(frozen=True)
class CheckResult:
    """One check's outcome in an audit or a fix, as reports and observers see it."""

    check: Check
    audit: AuditResult
    status: str = ""  # remediation status for fixes (FIXED, ...), empty for audits
    txid: Optional[str] = None

    def as_dict(self) -> Dict[str, Any]:
        return {
            "id": self.check.id,
            "title": self.check.title,
            "status": self.audit.status,
            "level": self.check.level,
            "automated": self.check.automated,
            "expected": self.audit.expected,
            "actual": self.audit.actual,
            "evidence": [{k: v for k, v in vars(e).items() if v not in (None, "")} for e in self.audit.evidence],
            "reason": self.audit.reason,
            "remediation": self.check.remediation,
            **({"fix": self.status, "txid": self.txid} if self.status else {}),
        }


# ---- what a run touches on the node (cisfix_host_paths), so a container can be given just that ----

READ, WRITE, HIDE = "read", "write", "hide"  # HostPath access; "" is "not at all"


@dataclass(frozen=True)
class HostPath:
    """A node path cisfix reads or writes (`audit`, `fix`: READ, WRITE or ""), or one it must never see
    inside a declared folder (HIDE: a container masks it). A folder is declared whole when the files cisfix
    reads there are replaced by rename (a mount of the file alone would keep showing the old one)."""

    path: str  # node path
    reason: str  # why: shown by `cisfix paths`, and the comment of its mount
    audit: str = READ
    fix: str = READ  # a fix audits first: what `audit` reads, `fix` reads too
    folder: bool = True  # False: a file (only ever read, or appended to)


# ---- persisting fixes where the node's installer regenerates its files (cisfix_plan_persistence) ----

@dataclass(frozen=True)
class NetChange:
    """A node file as cisfix's committed fixes left it, against what it was before the first of them."""

    path: str  # node path
    before: Optional[bytes]  # None: a fix created it
    after: Optional[bytes]  # None: it is gone


@dataclass(frozen=True)
class ObjectUpdate:
    """What an API object's data should become, what that changes and what it leaves alone."""

    data: Mapping[str, str]  # the object's new `data` (equal to the current one: nothing to do)
    changes: Tuple[str, ...] = ()  # one line per setting added or changed
    conflicts: Tuple[str, ...] = ()  # one line per value someone else set there, kept (without force)


@dataclass(frozen=True)
class ApiObject:
    """A Kubernetes API object with a `data` map (a ConfigMap) that must hold part of the fixes. The core
    reads it, calls `update(current data, force)`, and writes the result with its resourceVersion (a
    conflict is read and updated again, then reported)."""

    name: str  # e.g. "kube-system/kubeadm-config"; also the name of its offline file
    url: str  # the object's API URL
    credentials: Optional[Mapping[str, Any]]  # caFile, kubeconfig, ... as for health endpoints; None: none here
    update: Callable[[Mapping[str, str], bool], ObjectUpdate]
    offline: bytes  # YAML for a person to merge into the object where the API server cannot be reached
    refused: str = ""  # with credentials None: why the node's credentials are not used ("": it has none)
    create: bool = False  # an object cisfix owns: created (POST, with update({}, force)) when it is missing


@dataclass(frozen=True)
class ClusterAccess:
    """How this node reaches its cluster's API server (the layout reads it from the node's admin
    credentials): what cisfix publishes for every control-plane node goes there, and the control-plane
    Nodes are listed there (`control_plane_label` set on them)."""

    server: str  # "https://host:port"; "" when there is none to use
    credentials: Optional[Mapping[str, Any]]  # as ApiObject.credentials; None: none here
    refused: str = ""  # with credentials None: why ("": the node has none)
    control_plane_label: str = "node-role.kubernetes.io/control-plane"
    namespace: str = "kube-system"


@dataclass(frozen=True)
class PersistPlan:
    objects: Tuple[ApiObject, ...] = ()
    files: Mapping[str, bytes] = field(default_factory=dict)  # file name -> content, for the installer to read
    files_usage: str = ""  # how the installer is told to read them, e.g. "kubeadm upgrade apply --patches {dir}"
    notes: Tuple[str, ...] = ()  # what stays where it is, what cannot be persisted and why
    # Node paths of files the fixes created that the persisted configuration refers to (a flag's value, a
    # mounted hostPath): every control-plane node must hold them before its upgrade regenerates its pods.
    cluster_files: Tuple[str, ...] = ()
    cluster: Optional[ClusterAccess] = None  # None: the layout knows no cluster to publish them in
    # Names of files an earlier cisfix wrote for the installer that it must read no more (a format
    # replaced): removed from the folder, so that `--patches DIR` stops applying them.
    retired_files: Tuple[str, ...] = ()
    # The files are snippets for a person to paste into the provider's mechanism (a node pool's settings,
    # a launch template's user data): `persist` prints their content, not only their names.
    show_files: bool = False
