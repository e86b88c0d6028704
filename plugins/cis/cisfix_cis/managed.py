"""The worker-node sections of the managed-Kubernetes CIS benchmarks kube-bench implements (cfg/eks-1.8.0,
cfg/eks-1.7.0, cfg/gke-1.9.0, cfg/aks-1.8, node.yaml), derived from the generic catalog's kubelet
recommendations (4.1.x, 4.2.x) under kube-bench's ids (3.1.x, 3.2.x). The provider runs the control plane:
these benchmarks check only what a worker node has, so a managed worker gets node checks alone.

What differs from the generic checks: the kubelet's kubeconfig and config file may be 644 (the providers
write them so: nodeadm's kubeconfigPerm and kubeletConfigPerm are 0644), AKS's 3.1.3/3.1.4 are about
/etc/kubernetes/azure.json, and the files are found from the kubelet's own settings (--kubeconfig,
--config) where its command line is known, else where the provider puts them. Settings are fixed as the
catalog fixes them (a `Configure` of the kubelet that the node's layout routes to the right file).

Where kube-bench's audit is known to be wrong, the check says what cisfix does instead (its guidance,
shown by `audit` and `checks show`). kube-bench's evaluation (check/test.go `testItem.evaluate`): a test
item without `set: true` only passes when the setting is absent, whatever its `compare` says.
Which benchmark a node gets: kube-bench's cmd/util.go (eksBenchmark, gkeBenchmark, aksBenchmark) by
the Kubernetes minor version; here the node's layout says the distribution ("eks", "gke", "aks").
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from functools import partial
from typing import Any, Callable, Dict, FrozenSet, Mapping, Tuple

from cisfix.editors.config import read_data
from cisfix.state import NodeState
from cisfix.types import FAIL, NOT_APPLICABLE, PASS, AuditResult, Evidence, Plan

from . import catalog, kubelet, targets
from .catalog import Spec, file_mode, file_owner
from .distributions import Derived, file_fields
from .fixes import KubeletFix

EKS_1_8, EKS_1_7, GKE_1_9, AKS_1_8 = "eks-1.8.0", "eks-1.7.0", "gke-1.9.0", "aks-1.8"
BASE = catalog.CIS_1_12  # the kubelet recommendations these take are the same in CIS v1.11

# generic id -> kube-bench's id in the managed benchmarks
FILES = {"4.1.5": "3.1.1", "4.1.6": "3.1.2", "4.1.9": "3.1.3", "4.1.10": "3.1.4"}
KUBELET = {"4.2.1": "3.2.1", "4.2.2": "3.2.2", "4.2.3": "3.2.3", "4.2.4": "3.2.4", "4.2.5": "3.2.5",
           "4.2.6": "3.2.6", "4.2.8": "3.2.7", "4.2.10": "3.2.8", "4.2.11": "3.2.9"}
GROUPS = {"3.1": "Worker Node Configuration Files", "3.2": "Kubelet"}  # kube-bench's group texts
WORKER = {"3": ("worker",)}
KUBELET_KUBECONFIG = "/var/lib/kubelet/kubeconfig"  # bootstrap.sh, nodeadm, configure-helper.sh, AgentBaker


@dataclass(frozen=True)
class Provider:
    """Where the provider's node images put what the checks look at when the kubelet's command line
    does not say (and the CA a client-CA fix points the kubelet at)."""

    name: str
    configs: Tuple[str, ...]
    client_ca: str = ""


EKS = Provider("EKS", ("/etc/kubernetes/kubelet/config.json",  # AL2023 (nodeadm)
                       "/etc/kubernetes/kubelet/kubelet-config.json"),  # AL2 (bootstrap.sh)
               "/etc/kubernetes/pki/ca.crt")  # nodeadm cert.go caCertificatePath, bootstrap.sh
GKE = Provider("GKE", ("/home/kubernetes/kubelet-config.yaml",))  # configure-helper.sh
AKS = Provider("AKS", ("/etc/default/kubeletconfig.json",), "/etc/kubernetes/certs/ca.crt")  # AgentBaker
AZURE_JSON = "/etc/kubernetes/azure.json"


# ---- the kubelet's files ----

def config_flag(state: NodeState) -> str:
    """The file the kubelet's --config names ("" without one)."""
    settings = kubelet.view(state)
    return settings.flags.get(state.component(kubelet.COMPONENT).config_flag or "config") or ""


def command_line_known(state: NodeState) -> bool:
    """Does cisfix know the kubelet's command line (its live process, or the flag files that start it)?"""
    settings = kubelet.view(state)
    return settings.running or bool(settings.file_flags)


def kubelet_config(provider: Provider) -> targets.Target:
    """The kubelet config file as --config names it, else (command line unknown) the provider's."""
    def resolve(state: NodeState) -> list:
        return [config_flag(state)] if command_line_known(state) else list(provider.configs)
    return targets.Target("the kubelet config file (--config)", resolve)


@dataclass(frozen=True)
class WithConfigFile:
    """The catalog's audit of the kubelet config file where the kubelet has one; NOT_APPLICABLE, saying
    why, where it runs on flags alone."""

    audit: Callable[[NodeState], AuditResult]

    @property
    def target(self) -> str:
        return getattr(self.audit, "target", "")

    def __call__(self, state: NodeState) -> AuditResult:
        if kubelet.without_config_file(state):
            return AuditResult(NOT_APPLICABLE, reason=(
                "the kubelet runs without a --config file: its settings are all flags, and there is no "
                "kubelet config file to protect. kube-bench stats its $kubeletconf instead, the first of its "
                "candidate files that exists (a unit file or /etc/default/kubelet on such a node), which is "
                "not a kubelet config file"))
        return self.audit(state)


@dataclass(frozen=True)
class NotSetFalse:
    """A setting the recommendation accepts unset or true ("not present or set to true"): FAIL only where
    the command line or a config file sets it false. The live /configz cannot tell the two apart (it shows
    the kubelet's default, false, for an unset one), so the flag is read from the running kubelet's command
    line and the path from the config file and drop-ins it reads, the last one that sets it deciding."""

    flag: str
    path: str
    component = kubelet.COMPONENT

    @property
    def target(self) -> str:
        return f"kubelet --{self.flag} / config {self.path}"

    def __call__(self, state: NodeState) -> AuditResult:
        view = kubelet.view(state)
        if self.flag in view.flags:
            _, value, evidence = view.setting(self.flag, None)
        else:
            files = [(view.config_path, view.base_config), *((d.path, d.data) for d in view.dropins)]
            holders = [(file, read_data(data, self.path)[1]) for file, data in files
                       if isinstance(data, dict) and read_data(data, self.path)[0]]
            if not holders:
                return AuditResult(PASS, "unset or true", "unset", (Evidence(file=view.config_path, detail=self.path),))
            file, value = holders[-1]
            evidence = Evidence(file=file, detail=self.path)
        off = str(value).lower() == "false"
        return AuditResult(FAIL if off else PASS, "unset or true", str(value).lower(), (evidence,),
                           "turned off" if off else "")


# ---- fixes ----

@dataclass(frozen=True)
class ClientCA:
    """Point the kubelet at the provider's cluster CA, where the node has it."""

    path: str

    def __call__(self, state: NodeState) -> Plan:
        if not self.path or state.stat(self.path) is None:
            return Plan(manual=f"the cluster CA is not at {self.path or 'a known place'} on this node: set "
                               "authentication.x509.clientCAFile (or --client-ca-file) to the file that holds it")
        return KubeletFix("client-ca-file", "authentication.x509.clientCAFile", self.path)(state)


# ---- the checks each benchmark changes ----

_READ_ONLY_PORT = ("kube-bench FAILs an unset readOnlyPort (its test needs it written out); cisfix accepts it "
                   "unset where the kubelet has a config file, whose default is 0, and not where it runs on "
                   "flags alone, whose default is 10255 (kubelet applyLegacyDefaults)")
_SERVER_ROTATION = ("cisfix passes it unless the gate is turned off (RotateKubeletServerCertificate=false): the gate "
                    "is on by default (beta since Kubernetes 1.12), so an unset gate is on. kube-bench FAILs it "
                    "unless the gate is written out as true (--feature-gates or featureGates)")
_ROTATION = ("The recommendation accepts the setting unset (the kubelet's default, false, then applies) or "
             "true: cisfix FAILs only `false` and fixes it by removing that setting, as the provider's images "
             "leave it. Setting it to true instead would make a kubelet that authenticates otherwise (an EKS "
             "node: an IAM token) request a client certificate the provider may not approve")
_EVENT_QPS = ("cisfix passes 0 (no limit) or any positive limit; unset is the kubelet's default of 50 events "
              "per second")


def _managed_changes(provider: Provider, notes: Mapping[str, str], base: Dict[str, Spec],
                     ) -> Dict[str, Dict[str, Any]]:
    """The catalog's kubelet checks with the provider's files, modes and fixes; `notes` by base id adds
    what kube-bench does differently."""
    kubeconfig = targets.kubelet_file("the kubelet's --kubeconfig", "kubeconfig", None, KUBELET_KUBECONFIG)
    config = kubelet_config(provider)
    changes: Dict[str, Dict[str, Any]] = {
        "4.1.5": {**file_fields(file_mode("", "", kubeconfig, "644")),
                  "title": "The kubelet's kubeconfig has mode 644 or stricter"},
        "4.1.6": file_fields(file_owner("", "", kubeconfig)),
        "4.1.9": {**file_fields(file_mode("", "", config, "644")), "title": "The kubelet config file has mode 644 or stricter"},
        "4.1.10": file_fields(file_owner("", "", config)),
        "4.2.3": {"fix": ClientCA(provider.client_ca),
                  "guidance": f"set authentication.x509.clientCAFile to the cluster CA ({provider.client_ca} on "
                              f"{provider.name} nodes); {catalog.RESTART_KUBELET}"},
        "4.2.10": {"title": "Kubelet client certificate rotation is not turned off",
                   "audit": NotSetFalse("rotate-certificates", "rotateCertificates"),
                   "fix": KubeletFix("rotate-certificates", "rotateCertificates", None),
                   "guidance": _ROTATION},
    }
    for check_id in ("4.1.9", "4.1.10"):
        changes[check_id]["audit"] = WithConfigFile(changes[check_id]["audit"])
    for check_id, note in notes.items():
        fields = changes.setdefault(check_id, {})
        guidance = fields.get("guidance", base[check_id].guidance if check_id in base else "")
        fields["guidance"] = f"{guidance}. {note}" if guidance else note
    return changes


_EKS_NOTES = {
    "4.2.4": _READ_ONLY_PORT,
    "4.2.8": _EVENT_QPS,
    "4.2.10": "kube-bench's first test item lacks `set: true`, so it FAILs rotateCertificates: true, which the "
              "recommendation asks for",
    "4.2.11": _SERVER_ROTATION,
}


def _derived(name: str, title: str, versions: Tuple[str, ...], distribution: str, keep: FrozenSet[str],
             changes: Callable, extra: Tuple[Spec, ...] = (), control: str = "Worker Nodes") -> Derived:
    return Derived(name=name, title=title, distribution=distribution, versions=versions, base=BASE,
                   renumber={**FILES, **KUBELET}, dropped=frozenset(), changes=changes, extra=extra,
                   unscored=frozenset(), keep=keep, controls={"3": ("node", control)}, groups=GROUPS,
                   node_types=WORKER)


_EKS_CHANGES = partial(_managed_changes, EKS, _EKS_NOTES)
# kube-bench's eksBenchmark: 1.29-1.31 -> eks-1.7.0, 1.32-1.34 -> eks-1.8.0 (and every version it does not
# know -> eks-1.5.0, which cisfix does not ship: a newer node gets eks-1.8.0 with a warning).
EKS_1_8_0 = _derived(EKS_1_8, "CIS Amazon EKS Benchmark v1.8.0, worker nodes (kube-bench eks-1.8.0)",
                     ("1.32", "1.33", "1.34"), "eks", frozenset(FILES) | frozenset(KUBELET), _EKS_CHANGES)
# eks-1.7.0's node section is eks-1.8.0's (kube-bench's files differ in one remediation line)
EKS_1_7_0 = _derived(EKS_1_7, "CIS Amazon EKS Benchmark v1.7.0, worker nodes (kube-bench eks-1.7.0)",
                     ("1.29", "1.30", "1.31"), "eks", frozenset(FILES) | frozenset(KUBELET), _EKS_CHANGES)

_GKE_NOTES = {
    "4.1.5": "kube-bench's audit names $proxykubeconfig, which its gke-1.9.0 config points at the kubelet's "
             f"{KUBELET_KUBECONFIG}; cisfix checks the file the kubelet's --kubeconfig names",
    "4.1.6": "kube-bench's audit names $proxykubeconfig, which its gke-1.9.0 config points at the kubelet's "
             f"{KUBELET_KUBECONFIG}; cisfix checks the file the kubelet's --kubeconfig names",
    "4.1.9": "The benchmark says 644; kube-bench's bitmask test and cisfix accept stricter modes too",
}
# kube-bench's gkeBenchmark: 1.31-1.34 (and every version it does not know). Its gke-1.9.0 node.yaml has
# the configuration files' group only.
GKE_1_9_0 = _derived(GKE_1_9, "CIS Google Kubernetes Engine (GKE) Benchmark v1.9.0, worker nodes (kube-bench "
                     "gke-1.9.0)", ("1.31", "1.32", "1.33", "1.34"), "gke", frozenset(FILES),
                     partial(_managed_changes, GKE, _GKE_NOTES))

_AZURE_JSON = targets.paths(AZURE_JSON)
_AZURE_NOTE = (f"kube-bench's audit stats $kubeletconf, the first of its kubelet config candidates that exists, "
               f"which is {AZURE_JSON} on an AKS node (it comes before /etc/default/kubeletconfig.json in its "
               "list); cisfix checks the azure.json the recommendation names")
_AKS_NOTES = {
    "4.2.1": "kube-bench's test lacks `set: true`, so it FAILs AKS's own --anonymous-auth=false",
    "4.2.2": "kube-bench's aks-1.8 test looks for --anonymous-auth (with the config path authorization.mode) and "
             "FAILs whenever that flag is set; cisfix reads --authorization-mode / authorization.mode",
    "4.2.4": _READ_ONLY_PORT,
    "4.2.8": f"{_EVENT_QPS}. The recommendation asks for \"0 or a level which ensures appropriate event "
             "capture\"; kube-bench's aks-1.8 test FAILs everything but an explicit 0 (no limit at all), and "
             "cisfix judges it as eks-1.8.0 and the generic benchmark do",
    "4.2.10": "kube-bench's test agrees (unset or true)",
    "4.2.11": _SERVER_ROTATION,
}
# kube-bench's aksBenchmark: aks-1.8 for every version but 1.19-1.24 (aks-1.0) and 1.29-1.31 (aks-1.7, not
# shipped by cisfix: such a node needs --benchmark aks-1.8).
AKS_1_8_0 = _derived(
    AKS_1_8, "CIS Azure Kubernetes Service (AKS) Benchmark v1.8.0, worker nodes (kube-bench aks-1.8)",
    ("1.25", "1.26", "1.27", "1.28", "1.32", "1.33", "1.34", "1.35"), "aks",
    frozenset({"4.1.5", "4.1.6"}) | frozenset(KUBELET), partial(_managed_changes, AKS, _AKS_NOTES),
    extra=(replace(file_mode("3.1.3", "azure.json has mode 644 or stricter", _AZURE_JSON, "644"),
                   guidance=f"chmod 644 (or stricter) {AZURE_JSON}. {_AZURE_NOTE}"),
           replace(file_owner("3.1.4", "azure.json is owned by root:root", _AZURE_JSON),
                   guidance=f"chown root:root {AZURE_JSON}. {_AZURE_NOTE}")),
    control="Worker Node Security Configuration")

MANAGED = {b.name: b for b in (EKS_1_8_0, EKS_1_7_0, GKE_1_9_0, AKS_1_8_0)}
