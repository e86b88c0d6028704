"""The RKE2 and k3s CIS benchmarks kube-bench implements (cfg/rke2-cis-1.8, cfg/k3s-cis-1.9), derived from
the generic recommendations: a table maps each of their ids to the catalog's entry for the same
recommendation, plus what differs on the distribution (paths the benchmark names, files an embedded
component does not have, files the distribution rewrites at every start, kube-bench's scoring).

Flag checks are the catalog's own: they plan `cisfix.Configure` and the node's layout routes it to the
distribution's config file (`/etc/rancher/<dist>/config.yaml` and its drop-ins), so nothing here names that
file for a flag. File checks take their paths from the node description where the layout knows them
(a component's manifest, config file, the kubelet's flags), else from the paths the benchmark names.

Where kube-bench's audit is known to be wrong, the check says what cisfix does instead (its remediation
text, shown by `audit` and `checks show`): kube-bench#1626, #1843, #1978 (RKE2), #1973 (k3s), and
rke2-cis-1.8 1.1.20/1.1.21, which look at RKE1's /etc/kubernetes/ssl. Which benchmark a node gets:
kube-bench's cmd/util.go (rke2Benchmark, k3sBenchmark) from the `+rke2rN` / `+k3sN` version suffix; here
the node's layout says the distribution and `cisfix.plugins` chooses among the benchmarks registered for it.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Callable, Dict, FrozenSet, Mapping, Tuple

from cisfix.state import NodeState
from cisfix.types import NOT_APPLICABLE, AuditResult

from . import catalog, targets
from .audits import Files
from .catalog import ETCD, Spec, file_mode, file_owner, manual
from .fixes import Manual

RKE2_1_8, K3S_1_9 = "rke2-cis-1.8", "k3s-cis-1.9"


# ---- audits a distribution needs beyond the catalog's ----

@dataclass(frozen=True)
class Applies:
    """The catalog's audit where the node has what it looks at; NOT_APPLICABLE, saying why, where it has
    none of it (kube-bench reports its `skip` checks as INFO, never FAIL)."""

    audit: Callable[[NodeState], AuditResult]
    where: targets.Target
    why: str

    @property
    def target(self) -> str:
        return getattr(self.audit, "target", "")

    def __call__(self, state: NodeState) -> AuditResult:
        if not targets.expand(state, self.where):
            return AuditResult(NOT_APPLICABLE, reason=self.why)
        return self.audit(state)


@dataclass(frozen=True)
class WithComponent:
    """The catalog's audit where another component it concerns is on the node; NOT_APPLICABLE without it."""

    audit: Callable[[NodeState], AuditResult]
    needs: str
    why: str

    @property
    def component(self) -> str:
        return getattr(self.audit, "component", "")

    @property
    def target(self) -> str:
        return getattr(self.audit, "target", "")

    def __call__(self, state: NodeState) -> AuditResult:
        if not state.present(self.needs):
            return AuditResult(NOT_APPLICABLE, reason=self.why)
        return self.audit(state)


@dataclass(frozen=True)
class Never:
    """A recommendation that cannot apply on the distribution at all."""

    why: str
    target: str = ""

    def __call__(self, state: NodeState) -> AuditResult:
        return AuditResult(NOT_APPLICABLE, reason=self.why)


# ---- the paths the benchmarks name ----

@dataclass(frozen=True)
class Paths:
    dist: str  # "rke2" or "k3s"

    @property
    def server(self) -> str:
        """The service that runs the node's control plane."""
        return "rke2-server" if self.dist == "rke2" else self.dist

    @property
    def data(self) -> str:
        return f"/var/lib/rancher/{self.dist}"

    @property
    def tls(self) -> str:
        return f"{self.data}/server/tls"

    @property
    def etcd_dir(self) -> str:
        return f"{self.data}/server/db/etcd"

    def cred(self, name: str) -> str:
        return f"{self.data}/server/cred/{name}"

    def agent(self, name: str) -> str:
        return f"{self.data}/agent/{name}"


# ---- one benchmark: the generic one it is based on, and the differences ----

@dataclass(frozen=True)
class Derived:
    """A distribution's benchmark as the generic `base` plus differences. `renumber` maps a base id to
    this benchmark's id where they differ; `dropped` base ids are not in it; `changes` gives, by base id,
    the Spec fields that differ (built when the specs first are, not at every start of cisfix); `extra` are recommendations the base does not have; `unscored` are the ids
    kube-bench's cfg scores false (a failure is WARN in its report). A benchmark of a few of the base's
    recommendations lists them in `keep` (base ids; empty: all but `dropped`); one whose sections are
    not the base's gives kube-bench's control (node type, text) and group texts and cisfix's node types
    by part in `controls`, `groups` and `node_types` (the catalog's for any part it does not name)."""

    name: str
    title: str
    distribution: str
    versions: Tuple[str, ...]
    base: str
    renumber: Mapping[str, str]
    dropped: FrozenSet[str]
    changes: Callable[[Dict[str, Spec]], Mapping[str, Mapping[str, Any]]]
    extra: Tuple[Spec, ...]
    unscored: FrozenSet[str]
    keep: FrozenSet[str] = frozenset()
    controls: Mapping[str, Tuple[str, str]] = field(default_factory=dict)
    groups: Mapping[str, str] = field(default_factory=dict)
    node_types: Mapping[str, Tuple[str, ...]] = field(default_factory=dict)

    def specs(self) -> Dict[str, Spec]:
        found: Dict[str, Spec] = {}
        base = catalog.specs_for(self.base)
        changes = self.changes(base)
        for base_id, spec in base.items():
            if base_id in self.dropped or (self.keep and base_id not in self.keep):
                continue
            check_id = self.renumber.get(base_id, base_id)
            spec = replace(spec, id=check_id, **changes.get(base_id, {}))
            found[check_id] = spec
        for spec in self.extra:
            found[spec.id] = spec
        ordered = sorted(found.values(), key=lambda s: tuple(int(p) for p in s.id.split(".")))
        return {s.id: replace(s, scored=s.id not in self.unscored) for s in ordered}


# The RKE2 and k3s benchmarks number the API server's checks from 1.2.12 on and the general policies as
# CIS v1.8/v1.9 did; the recommendations are those of CIS v1.11 otherwise.
BASE = catalog.CIS_1_11
_POLICIES = {f"5.6.{n}": f"5.7.{n}" for n in range(1, 5)}
_RKE2_API = {f"1.2.{n}": f"1.2.{n + 1}" for n in range(12, 30)}  # 1.2.12 is SecurityContextDeny there
_NOT_IN_1_8_1_9 = frozenset({"1.2.30", "4.2.14", "4.2.15"})  # newer recommendations


def _modes(paths: Paths, base: Dict[str, Spec]) -> Dict[str, Dict[str, Any]]:
    """What both distributions change in sections 1.1 and 4.1 (by base id)."""
    server = paths.server
    etcd_dir = targets.etcd_data_dir_or(paths.etcd_dir)
    no_etcd = ("etcd does not run on this node (it has no etcd data directory): a node without the etcd role, "
               "or k3s with its SQLite datastore. kube-bench FAILs this on control-plane-only nodes "
               "(kube-bench#1978)")
    kubeconfigs = {"1.1.13": paths.cred("admin.kubeconfig"), "1.1.15": paths.cred("scheduler.kubeconfig"),
                   "1.1.17": paths.cred("controller.kubeconfig")}
    changes: Dict[str, Dict[str, Any]] = {
        "1.1.13": {"title": "The admin kubeconfig has mode 600 or stricter"},
        "1.1.14": {"title": "The admin kubeconfig is owned by root:root"}}
    for mode_id, path in kubeconfigs.items():
        owner_id = f"1.1.{int(mode_id.split('.')[2]) + 1}"
        where = targets.paths(path)
        note = (f"; cisfix looks at {path}, where {server} writes it (kube-bench#1843: kube-bench looked at "
                "/etc/kubernetes)") if mode_id != "1.1.13" else ""
        changes.setdefault(mode_id, {}).update(file_fields(file_mode(mode_id, "", where, "600"), note))
        changes.setdefault(owner_id, {}).update(file_fields(file_owner(owner_id, "", where), note))
    changes["1.1.11"] = {**file_fields(file_mode("1.1.11", "", etcd_dir, "700")),
                         "audit": Applies(Files(etcd_dir, mode="700"), etcd_dir, no_etcd)}
    changes["1.1.19"] = file_fields(file_owner("1.1.19", "", targets.paths(paths.tls, f"{paths.tls}/**/*")))
    kubelet_service_na = Applies(base["4.1.1"].audit, targets.KUBELET_SERVICE,
                                 f"the kubelet is {server}'s child process: it has no systemd unit or drop-in of "
                                 "its own")
    changes["4.1.1"] = {"audit": kubelet_service_na}
    changes["4.1.2"] = {"audit": replace(kubelet_service_na, audit=base["4.1.2"].audit)}
    proxy = targets.proxy_kubeconfig(paths.agent("kubeproxy.kubeconfig"))
    changes["4.1.3"] = file_fields(file_mode("4.1.3", "", proxy, "600"))
    changes["4.1.4"] = file_fields(file_owner("4.1.4", "", proxy))
    kubeconfig = targets.kubelet_file("the kubelet's --kubeconfig", "kubeconfig", None,
                                      paths.agent("kubelet.kubeconfig"))
    changes["4.1.5"] = file_fields(file_mode("4.1.5", "", kubeconfig, "600"))
    changes["4.1.6"] = file_fields(file_owner("4.1.6", "", kubeconfig))
    client_ca = targets.kubelet_file("the kubelet's client CA file", "client-ca-file",
                                     "authentication.x509.clientCAFile", paths.agent("client-ca.crt"))
    changes["4.1.7"] = {**file_fields(file_mode("4.1.7", "", client_ca, "600")),
                        "title": "The kubelet's client CA file has mode 600 or stricter"}
    changes["4.1.8"] = file_fields(file_owner("4.1.8", "", client_ca))
    no_config = (f"the kubelet runs without a --config file here ({server} passes its settings as flags and "
                 "kubelet.conf.d drop-ins); kube-bench FAILs this looking for one (kube-bench#1978)")
    for check_id in ("4.1.9", "4.1.10"):
        changes[check_id] = {"audit": Applies(base[check_id].audit, targets.KUBELET_CONFIG, no_config)}
    return changes


def file_fields(spec: Spec, note: str = "") -> Dict[str, Any]:
    """The audit, fix and guidance of a file check built for a distribution's path."""
    return {"audit": spec.audit, "fix": spec.fix, "guidance": spec.guidance + note}


# ---- RKE2 ----

_RKE2 = Paths("rke2")
_RKE2_GENERATED = ("rke2-server writes its static pod manifests (and etcd's config file) at every start: with "
                   "`profile: cis` in /etc/rancher/rke2/config.yaml they are written 0600 and root-owned, and a "
                   "chmod or chown here would be reverted at the next start. Set `profile: cis` and restart "
                   "rke2-server (nothing to do when the file is already 0600 root:root)")
_RKE2_CERTS = ("rke2-server creates and rotates its certificates and keys, and with `profile: cis` etcd reads its "
               "own as the etcd user: change their modes only knowing which component reads each. kube-bench's "
               "rke2-cis-1.8 audit looks at RKE1's /node/etc/kubernetes/ssl/*.pem, which RKE2 does not have; "
               f"cisfix looks at {_RKE2.tls}")


def _rke2_changes(base: Dict[str, Spec]) -> Dict[str, Dict[str, Any]]:
    changes = _modes(_RKE2, base)
    no_etcd = "etcd does not run on this node (no etcd manifest or config file): kube-bench#1978, #1626"
    for mode_id, owner_id, component, _ in catalog.MANIFESTS:
        where = (targets.component_files(ETCD, f"{_RKE2.etcd_dir}/config") if component == ETCD
                 else targets.manifest(component))
        etcd_note = ("; cisfix checks etcd.yaml and the config file etcd runs with, as the layout names them "
                     "(kube-bench#1626: kube-bench searched the config file's path as a folder)")
        for check_id in (mode_id, owner_id):
            audit = replace(base[check_id].audit, where=where)
            changes[check_id] = {"audit": Applies(audit, where, no_etcd) if component == ETCD else audit,
                                 "fix": Manual(_RKE2_GENERATED),
                                 "guidance": _RKE2_GENERATED + (etcd_note if component == ETCD else "")}
    changes["1.1.19"]["fix"] = Manual(f"rke2-server creates and rotates the files in {_RKE2.tls}, and with "
                                      "`profile: cis` etcd reads its own there as the etcd user: give root the files "
                                      "only knowing which component reads each")
    etcd_dir = targets.etcd_data_dir_or(_RKE2.etcd_dir)
    changes["1.1.12"] = {"audit": Applies(Files(etcd_dir, owner="etcd:etcd"), etcd_dir, "etcd does not run on this node"),
                         "fix": Manual("set `profile: cis` in /etc/rancher/rke2/config.yaml (it needs an etcd user "
                                       "and group): rke2-server then runs etcd as etcd and gives it the data "
                                       "directory at its next start"),
                         "guidance": "profile: cis runs etcd as the etcd user, owner of its data directory "
                                     "(kube-bench skips this check)"}
    for check_id, pattern, mode in (("1.1.20", "*.crt", "600"), ("1.1.21", "*.key", "600")):
        where = targets.paths(f"{_RKE2.tls}/**/{pattern}")
        changes[check_id] = {"audit": Files(where, mode=mode), "fix": Manual(_RKE2_CERTS), "guidance": _RKE2_CERTS,
                             "title": f"Certificates and keys in {_RKE2.tls} have mode 600 or stricter"
                             if check_id == "1.1.20" else base[check_id].title}
    return changes


# PodSecurityPolicy went in Kubernetes 1.25, SecurityContextDeny in 1.30 (kubernetes#111516, PR #122612).
_SECURITY_CONTEXT_DENY = manual(
    "1.2.12", "SecurityContextDeny is enabled where PodSecurityPolicy is not",
    "Kubernetes removed PodSecurityPolicy in 1.25 and the SecurityContextDeny admission plugin in 1.30: an API "
    "server asked for either does not start. Enforce the Pod Security Standards instead (RKE2's `profile: cis` "
    "configures Pod Security Admission). cisfix does not audit this (kube-bench's audit WARNs on every current "
    "RKE2 node, and its remediation would stop the API server)")

RKE2 = Derived(
    name=RKE2_1_8, title="CIS RKE2 Benchmark v1.8 (kube-bench rke2-cis-1.8)", distribution="rke2",
    # kube-bench's rke2Benchmark: 1.26 and 1.27, and every version it does not know; a newer RKE2 gets it
    # with the warning cisfix gives for any node newer than its benchmarks.
    versions=("1.26", "1.27"), base=BASE, renumber={**_RKE2_API, **_POLICIES},
    dropped=_NOT_IN_1_8_1_9 | {"4.3.1"}, changes=_rke2_changes, extra=(_SECURITY_CONTEXT_DENY,),
    unscored=frozenset({"1.1.9", "1.1.10", "1.1.20", "1.1.21", "1.2.3", "1.2.9", "1.2.11", "1.2.12", "1.2.21",
                        "1.2.28", "1.2.29", "1.2.30", "3.1.1", "3.1.2", "3.1.3", "3.2.2", "4.1.9", "4.1.10",
                        "4.2.5", "4.2.7", "4.2.8", "4.2.9", "4.2.11", "4.2.13"}
                       | {f"5.1.{n}" for n in range(1, 14)} | {"5.2.1", "5.2.2"}
                       | {f"5.2.{n}" for n in range(6, 14)}
                       | {"5.3.1", "5.3.2", "5.4.1", "5.4.2", "5.5.1", "5.7.1", "5.7.2", "5.7.3", "5.7.4"}))


# ---- k3s ----

_K3S = Paths("k3s")
_KUBELET_FLAGS = ("cisfix reads the kubelet's own settings: the flags of its `Running kubelet` line and its "
                  "config files. kube-bench#1973: kube-bench looks for this in the API server's `Running "
                  "kube-apiserver` line and FAILs correctly configured nodes")
_NODE_TOOL = ("cisfix audits a node, not the cluster's API objects: review this with kubectl (kube-bench's "
              "k3s-cis-1.9 audits it with kubectl)")


def _k3s_changes(base: Dict[str, Spec]) -> Dict[str, Dict[str, Any]]:
    changes = _modes(_K3S, base)
    for mode_id, owner_id, component, name in catalog.MANIFESTS:
        why = (f"k3s runs {'etcd' if component == ETCD else 'the ' + name} inside the k3s process: there is no "
               "pod specification file (kube-bench skips this check)")
        for check_id in (mode_id, owner_id):
            changes[check_id] = {"audit": Applies(base[check_id].audit, targets.manifest(component), why)}
    changes["1.1.9"] = {**file_fields(file_mode("1.1.9", "", _k3s_cni(), "600"))}
    changes["1.1.10"] = {**file_fields(file_owner("1.1.10", "", _k3s_cni()))}
    changes["1.1.12"] = {"audit": Never("k3s runs etcd inside the k3s process as root: its data directory is "
                                        "root's, and no etcd user can own it (kube-bench skips this check)",
                                        f"files {_K3S.etcd_dir}")}
    for check_id, pattern in (("1.1.20", "*.crt"), ("1.1.21", "*.key")):
        where = targets.paths(f"{_K3S.tls}/{pattern}")
        changes[check_id] = {**file_fields(file_mode(check_id, "", where, "600")),
                             "title": f"The files {_K3S.tls}/{pattern} have mode 600 or stricter"}
    sqlite = ("k3s keeps its data in SQLite here (no embedded etcd), which the API server reaches through kine "
              "without TLS: there is no etcd to authenticate to (kube-bench FAILs it)")
    for check_id in ("1.2.23", "1.2.26"):
        changes[check_id] = {"audit": WithComponent(base[check_id].audit, ETCD, sqlite)}
    for check_id in ("4.2.1", "4.2.2", "4.2.3"):
        changes[check_id] = {"guidance": f"{base[check_id].guidance}; {_KUBELET_FLAGS}"}
    changes["4.2.7"] = {"audit": Never("k3s always names its node with --hostname-override, which CIS accepts "
                                       "where the platform needs it (kube-bench skips this check)",
                                       "kubelet --hostname-override")}
    for check_id in ("5.1.1", "5.1.3", "5.1.5", "5.1.6"):
        changes[check_id] = {"guidance": f"{base[check_id].guidance}; {_NODE_TOOL}"}
    return changes


def _k3s_cni() -> targets.Target:
    # flannel's configuration lives in k3s's agent folder, not /etc/cni/net.d
    return targets.paths(_K3S.agent("etc/cni/net.d/*"), f"{targets.CNI_NETWORKS}/*/*")


K3S = Derived(
    name=K3S_1_9, title="CIS k3s Benchmark v1.9 (kube-bench k3s-cis-1.9)", distribution="k3s",
    # kube-bench's k3sBenchmark: 1.27-1.29, and every version it does not know.
    versions=("1.27", "1.28", "1.29"), base=BASE, renumber=_POLICIES, dropped=_NOT_IN_1_8_1_9,
    changes=_k3s_changes, extra=(),
    unscored=frozenset({f"1.1.{n}" for n in range(1, 9)} | {"1.1.11", "1.1.12", "1.2.3", "1.2.9", "1.2.11"}
                       | {f"1.2.{n}" for n in range(16, 21)} | {"1.2.27", "1.2.28", "1.3.1"}
                       | {f"2.{n}" for n in range(1, 8)} | {"3.1.1", "3.1.2", "3.1.3", "3.2.1", "3.2.2"}
                       | {"4.2.5", "4.2.8", "4.2.12", "4.2.13"}
                       | {"5.1.2", "5.1.4"} | {f"5.1.{n}" for n in range(7, 14)} | {f"5.2.{n}" for n in range(1, 14)}
                       | {"5.3.1", "5.3.2", "5.4.1", "5.4.2", "5.5.1", "5.7.1", "5.7.2", "5.7.3", "5.7.4"}))

DERIVED = {b.name: b for b in (RKE2, K3S)}
