"""The recommendations of CIS Kubernetes Benchmark v1.11 (Kubernetes 1.29-1.31), v1.12 (1.32-1.33) and
v2.0 (1.34-1.35) as data: one entry per recommendation shared by all, with what differs per benchmark in
`per`. v2.0 has v1.12's checks with new remediation text for 2.2 and 1.2.29 (kube-bench PR #2126): it is
declared as based on v1.12 (`BASED_ON`), so only those two entries name it.

What each entry tests, whether it is scored, and its number follow kube-bench's cfg/cis-1.11,
cfg/cis-1.12 and cfg/cis-2.0; the titles and guidance are cisfix's own words. Levels are the CIS profile levels
(kube-bench does not record them). `scored=False` marks the benchmark's "Manual" recommendations: a
failing one is FAIL for cisfix (so that `cisfix fix` can remediate it) and WARN in the kube-bench report,
as kube-bench reports it.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Callable, Dict, Mapping, Optional, Tuple

from cisfix.plan import AddFlagItem, RemoveFlagItem, SetFlag

from . import apiserver, targets
from .audits import (AllSet, AnonymousAuth, DistinctFiles, EncryptionProviders, Files, Flag, KubeletSetting,
                     KubeProxyMetrics, OnlyItems)
from .fixes import (EtcdDataDirOwner, FlagOps, KubeletFeatureGate, KubeletFix, KubeletStrongCiphers, Manual,
                    ModeFix, SetFlagsToFiles, StrongCiphers)

CIS_1_11, CIS_1_12, CIS_2_0 = "cis-1.11", "cis-1.12", "cis-2.0"
# kube-bench maps 1.34 to cis-1.12 too; CIS v2.0.1 is scoped to 1.34-1.35, and the newer benchmark wins.
BENCHMARKS = {CIS_1_11: ("CIS Kubernetes Benchmark v1.11", ("1.29", "1.30", "1.31")),
              CIS_1_12: ("CIS Kubernetes Benchmark v1.12", ("1.32", "1.33")),
              CIS_2_0: ("CIS Kubernetes Benchmark v2.0", ("1.34", "1.35"))}
# A benchmark that is another plus differences: what `per`, `only` and per-benchmark ids do not say for
# it, it takes from its base.
BASED_ON = {CIS_2_0: CIS_1_12}


def lineage(benchmark: str) -> Tuple[str, ...]:
    """The benchmark, then what it is based on: ("cis-2.0", "cis-1.12")."""
    chain = (benchmark,)
    while chain[-1] in BASED_ON:
        chain += (BASED_ON[chain[-1]],)
    return chain

# Sections: node types cisfix selects the check for, kube-bench's control (id, type, text), group text.
CONTROLS = {"1": ("master", "Control Plane Security Configuration"), "2": ("etcd", "Etcd Node Configuration"),
            "3": ("controlplane", "Control Plane Configuration"), "4": ("node", "Worker Node Security Configuration"),
            "5": ("policies", "Kubernetes Policies")}
GROUPS = {"1.1": "Control Plane Node Configuration Files", "1.2": "API Server", "1.3": "Controller Manager",
          "1.4": "Scheduler", "2": "Etcd Node Configuration", "3.1": "Authentication and Authorization",
          "3.2": "Logging", "4.1": "Worker Node Configuration Files", "4.2": "Kubelet", "4.3": "kube-proxy",
          "5.1": "RBAC and Service Accounts", "5.2": "Pod Security Standards", "5.3": "Network Policies and CNI",
          "5.4": "Secrets Management", "5.5": "Extensible Admission Control", "5.6": "General Policies",
          "5.7": "General Policies"}  # 5.7: the numbering of CIS v1.8/v1.9 (RKE2, k3s benchmarks)
NODE_TYPES = {"1": ("master",), "2": ("etcd",), "3": ("master",), "4": ("worker",), "5": ("master",)}

PKI = targets.PKI
API, CM, SCHED, ETCD = "kube-apiserver", "kube-controller-manager", "kube-scheduler", "etcd"

# kube-bench's strong suites. v1.12 drops the CBC ones; cisfix sets the v1.12 lists, valid for both.
_TLS13 = ("TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256")
_ECDHE_AEAD = ("TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
               "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305", "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
               "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
               "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305", "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256")
_ECDHE_CBC = ("TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA", "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA",
              "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA", "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA")
API_CIPHERS_1_12 = _TLS13 + _ECDHE_AEAD
API_CIPHERS_1_11 = API_CIPHERS_1_12 + _ECDHE_CBC
KUBELET_CIPHERS_1_12 = ("TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
                        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305", "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
                        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305", "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384")
KUBELET_CIPHERS_1_11 = KUBELET_CIPHERS_1_12 + ("TLS_RSA_WITH_AES_256_GCM_SHA384", "TLS_RSA_WITH_AES_128_GCM_SHA256")

RESTART_KUBELET = "then restart the kubelet"


@dataclass(frozen=True)
class Spec:
    """One recommendation. `id` is a string, or a mapping benchmark -> id where the numbering differs;
    `per` maps a benchmark to the fields that differ for it; `only` limits it to some benchmarks."""

    id: Any
    title: str
    audit: Optional[Callable] = None  # None: not automated, reported MANUAL
    fix: Optional[Callable] = None
    guidance: str = ""
    level: int = 1
    scored: bool = True
    only: Tuple[str, ...] = ()
    per: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def for_benchmark(self, benchmark: str) -> Optional["Spec"]:
        chain = lineage(benchmark)
        if self.only and not set(chain) & set(self.only):
            return None
        changes: Dict[str, Any] = {}
        for name in reversed(chain):  # the base first, the benchmark's own differences last
            changes.update(self.per.get(name, {}))
        spec = replace(self, **changes)
        ids = spec.id if isinstance(spec.id, Mapping) else {}
        check_id = next((ids[name] for name in chain if name in ids), None) if ids else spec.id
        return replace(spec, id=check_id) if check_id else None

    @property
    def section(self) -> str:
        return self.id.rsplit(".", 1)[0] if self.id.count(".") > 1 else self.id.split(".")[0]


# ---- builders for the common shapes ----

def file_mode(id: str, title: str, where: targets.Target, mode: str, **kw: Any) -> Spec:
    return Spec(id, title, Files(where, mode=mode), ModeFix(where, mode=int(mode, 8)),
                f"chmod {mode} (or stricter) {where.describe}", **kw)


def file_owner(id: str, title: str, where: targets.Target, owner: str = "root:root", **kw: Any) -> Spec:
    return Spec(id, title, Files(where, owner=owner), ModeFix(where, owner=owner), f"chown {owner} {where.describe}", **kw)


def flag(id: str, title: str, component: str, name: str, op: str, value: Any = None, fix: Any = None,
         default: Optional[str] = None, guidance: str = "", **kw: Any) -> Spec:
    return Spec(id, title, Flag(component, name, op, value, default), fix, guidance, **kw)


def set_to(component: str, name: str, value: str) -> FlagOps:
    return FlagOps(component, (SetFlag(name, value),))


def kubelet(id: str, title: str, flag_name: Optional[str], path: Optional[str], op: str, value: Any = None,
            default: Any = None, fix: Any = None, guidance: str = "", zero_is_default: bool = False,
            flags_default: Any = None, **kw: Any) -> Spec:
    return Spec(id, title, KubeletSetting(flag_name, path, op, value, default, zero_is_default,
                                          flags_default=flags_default), fix,
                guidance + (f"; {RESTART_KUBELET}" if guidance else ""), **kw)


def manual(id: str, title: str, guidance: str, level: int = 1, **kw: Any) -> Spec:
    return Spec(id, title, None, None, guidance, level=level, scored=False, **kw)


MANIFESTS = [("1.1.1", "1.1.2", API, "API server"), ("1.1.3", "1.1.4", CM, "controller manager"),
             ("1.1.5", "1.1.6", SCHED, "scheduler"), ("1.1.7", "1.1.8", ETCD, "etcd")]
KUBECONFIGS = [("1.1.15", "1.1.16", "/etc/kubernetes/scheduler.conf", "scheduler"),
               ("1.1.17", "1.1.18", "/etc/kubernetes/controller-manager.conf", "controller manager")]

SPECS: Tuple[Spec, ...] = (
    # ---- 1.1 control-plane files ----
    *(s for mode_id, owner_id, component, name in MANIFESTS for s in (
        file_mode(mode_id, f"The {name} static pod manifest has mode 600 or stricter", targets.manifest(component), "600"),
        file_owner(owner_id, f"The {name} static pod manifest is owned by root:root", targets.manifest(component)))),
    file_mode("1.1.9", "CNI configuration files have mode 600 or stricter", targets.CNI_FILES, "600", scored=False),
    file_owner("1.1.10", "CNI configuration files are owned by root:root", targets.CNI_FILES, scored=False),
    file_mode("1.1.11", "The etcd data directory has mode 700 or stricter", targets.ETCD_DATA_DIR, "700"),
    Spec("1.1.12", "The etcd data directory is owned by etcd:etcd", Files(targets.ETCD_DATA_DIR, owner="etcd:etcd"),
         EtcdDataDirOwner(), "Run etcd as a dedicated etcd user and give it the data directory"),
    file_mode("1.1.13", "admin.conf and super-admin.conf have mode 600", targets.ADMIN_CONFS, "600"),
    file_owner("1.1.14", "admin.conf and super-admin.conf are owned by root:root", targets.ADMIN_CONFS),
    *(s for mode_id, owner_id, path, name in KUBECONFIGS for s in (
        file_mode(mode_id, f"The {name} kubeconfig has mode 600 or stricter", targets.paths(path), "600"),
        file_owner(owner_id, f"The {name} kubeconfig is owned by root:root", targets.paths(path)))),
    file_owner("1.1.19", "The PKI directory and everything in it are owned by root:root", targets.PKI_TREE),
    file_mode("1.1.20", "PKI certificates have mode 644 or stricter", targets.PKI_CERTS, "644", scored=False),
    file_mode("1.1.21", "PKI private keys have mode 600", targets.PKI_KEYS, "600", scored=False),

    # ---- 1.2 API server ----
    Spec("1.2.1", "Anonymous requests reach at most the health endpoints", AnonymousAuth(),
         apiserver.AnonymousHealthOnly(),
         "Allow anonymous requests only for /livez, /readyz and /healthz with an AuthenticationConfiguration "
         "(Kubernetes 1.32+); --anonymous-auth=false also makes kubeadm's probes fail", scored=False),
    flag("1.2.2", "No static token file authenticates users", API, "token-auth-file", "absent",
         fix=Manual("users authenticating with the static token file would be locked out; move them to "
                    "another authenticator (OIDC, client certificates), then remove --token-auth-file")),
    flag("1.2.3", "The DenyServiceExternalIPs admission plugin is enabled", API, "enable-admission-plugins", "has",
         "DenyServiceExternalIPs", scored=False,
         fix=FlagOps(API, (RemoveFlagItem("disable-admission-plugins", "DenyServiceExternalIPs"),
                           AddFlagItem("enable-admission-plugins", "DenyServiceExternalIPs")),
                     ("new Services with spec.externalIPs are rejected from now on",))),
    Spec("1.2.4", "The API server authenticates to kubelets with a client certificate",
         AllSet(API, ("kubelet-client-certificate", "kubelet-client-key")),
         SetFlagsToFiles(API, (("kubelet-client-certificate", f"{PKI}/apiserver-kubelet-client.crt"),
                               ("kubelet-client-key", f"{PKI}/apiserver-kubelet-client.key")))),
    flag("1.2.5", "The API server verifies kubelet serving certificates", API, "kubelet-certificate-authority",
         "present", fix=apiserver.KubeletCertificateAuthority()),
    flag("1.2.6", "Authorization is not AlwaysAllow", API, "authorization-mode", "nothas", "AlwaysAllow",
         default="AlwaysAllow", fix=FlagOps(API, (AddFlagItem("authorization-mode", "Node"),  # first: the flag never gets empty
                                                  AddFlagItem("authorization-mode", "RBAC"),
                                                  RemoveFlagItem("authorization-mode", "AlwaysAllow")))),
    flag("1.2.7", "The Node authorizer is enabled", API, "authorization-mode", "has", "Node", default="AlwaysAllow",
         fix=FlagOps(API, (AddFlagItem("authorization-mode", "Node"),))),
    flag("1.2.8", "The RBAC authorizer is enabled", API, "authorization-mode", "has", "RBAC", default="AlwaysAllow",
         fix=FlagOps(API, (AddFlagItem("authorization-mode", "RBAC"),))),
    flag("1.2.9", "The EventRateLimit admission plugin is enabled and configured", API, "enable-admission-plugins",
         "has", "EventRateLimit", fix=apiserver.EventRateLimit(), scored=False),
    flag("1.2.10", "The AlwaysAdmit admission plugin is not enabled", API, "enable-admission-plugins", "nothas",
         "AlwaysAdmit", fix=FlagOps(API, (RemoveFlagItem("enable-admission-plugins", "AlwaysAdmit"),))),
    flag("1.2.11", "The AlwaysPullImages admission plugin is enabled", API, "enable-admission-plugins", "has",
         "AlwaysPullImages", scored=False,
         fix=FlagOps(API, (RemoveFlagItem("disable-admission-plugins", "AlwaysPullImages"),
                           AddFlagItem("enable-admission-plugins", "AlwaysPullImages")),
                     ("every pod now pulls its images: nodes need registry access and pull credentials",))),
    flag("1.2.12", "The ServiceAccount admission plugin is not disabled", API, "disable-admission-plugins",
         "nothas", "ServiceAccount", fix=FlagOps(API, (RemoveFlagItem("disable-admission-plugins", "ServiceAccount"),))),
    flag("1.2.13", "The NamespaceLifecycle admission plugin is not disabled", API, "disable-admission-plugins",
         "nothas", "NamespaceLifecycle",
         fix=FlagOps(API, (RemoveFlagItem("disable-admission-plugins", "NamespaceLifecycle"),))),
    flag("1.2.14", "The NodeRestriction admission plugin is enabled", API, "enable-admission-plugins", "has",
         "NodeRestriction", fix=FlagOps(API, (RemoveFlagItem("disable-admission-plugins", "NodeRestriction"),
                                              AddFlagItem("enable-admission-plugins", "NodeRestriction")))),
    flag("1.2.15", "API server profiling is off", API, "profiling", "eq", "false", default="true",
         fix=set_to(API, "profiling", "false")),
    flag("1.2.16", "The API server writes an audit log", API, "audit-log-path", "present", fix=apiserver.AuditLog(),
         guidance=f"cisfix logs to {apiserver.AUDIT_LOG_DIR} (mounted) with the policy {apiserver.AUDIT_POLICY}"),
    flag("1.2.17", "Audit logs are kept at least 30 days", API, "audit-log-maxage", "gte", 30,
         fix=apiserver.AuditLog(("audit-log-maxage",))),
    flag("1.2.18", "At least 10 rotated audit logs are kept", API, "audit-log-maxbackup", "gte", 10,
         fix=apiserver.AuditLog(("audit-log-maxbackup",))),
    flag("1.2.19", "Audit logs rotate at 100 MB or more", API, "audit-log-maxsize", "gte", 100,
         fix=apiserver.AuditLog(("audit-log-maxsize",))),
    manual("1.2.20", "The request timeout suits the cluster",
           "Keep the default 60s request timeout unless large requests need more (--request-timeout)"),
    flag("1.2.21", "Service account tokens are checked against etcd", API, "service-account-lookup", "eq", "true",
         default="true", fix=set_to(API, "service-account-lookup", "true")),
    Spec("1.2.22", "A public key verifies service account tokens", AllSet(API, ("service-account-key-file",)),
         SetFlagsToFiles(API, (("service-account-key-file", f"{PKI}/sa.pub"),))),
    Spec("1.2.23", "The API server authenticates to etcd with a client certificate",
         AllSet(API, ("etcd-certfile", "etcd-keyfile")),
         SetFlagsToFiles(API, (("etcd-certfile", f"{PKI}/apiserver-etcd-client.crt"),
                               ("etcd-keyfile", f"{PKI}/apiserver-etcd-client.key")),
                         "etcd must serve TLS with client certificate authentication")),
    Spec("1.2.24", "The API server serves TLS with its own certificate",
         AllSet(API, ("tls-cert-file", "tls-private-key-file")),
         SetFlagsToFiles(API, (("tls-cert-file", f"{PKI}/apiserver.crt"),
                               ("tls-private-key-file", f"{PKI}/apiserver.key")))),
    Spec("1.2.25", "Client certificates are verified against the cluster CA", AllSet(API, ("client-ca-file",)),
         SetFlagsToFiles(API, (("client-ca-file", f"{PKI}/ca.crt"),))),
    Spec("1.2.26", "The API server verifies etcd's certificate", AllSet(API, ("etcd-cafile",)),
         SetFlagsToFiles(API, (("etcd-cafile", f"{PKI}/etcd/ca.crt"),))),
    flag("1.2.27", "Secrets are encrypted at rest", API, "encryption-provider-config", "present",
         fix=apiserver.Encryption(), scored=False,
         guidance="cisfix writes a secretbox key into a 0600 file; back it up and rewrite existing secrets"),
    Spec("1.2.28", "The encryption provider for secrets is aescbc, kms or secretbox", EncryptionProviders(),
         apiserver.Encryption(), scored=False),
    Spec("1.2.29", "The API server offers only strong TLS cipher suites",
         OnlyItems(API, "tls-cipher-suites", API_CIPHERS_1_12), StrongCiphers(API, "tls-cipher-suites", API_CIPHERS_1_12),
         scored=False, per={CIS_1_11: {"audit": OnlyItems(API, "tls-cipher-suites", API_CIPHERS_1_11)},
                            CIS_2_0: {"guidance": "Set --tls-cipher-suites to the full list of strong suites, or "
                                                  "to the strong suites your organisation uses: "
                                                  + ",".join(API_CIPHERS_1_12)}}),
    flag("1.2.30", "Service account tokens are not extended beyond their expiry", API,
         "service-account-extend-token-expiration", "eq", "false", default="true",
         fix=set_to(API, "service-account-extend-token-expiration", "false"),
         guidance="clients must refresh their projected tokens (client-go does)"),

    # ---- 1.3 controller manager, 1.4 scheduler ----
    flag("1.3.1", "Terminated pods are garbage-collected at a set threshold", CM, "terminated-pod-gc-threshold",
         "present", scored=False,
         fix=Manual("choose a threshold for the cluster's size (the default keeps 12500 terminated pods), "
                    "then set --terminated-pod-gc-threshold")),
    flag("1.3.2", "Controller manager profiling is off", CM, "profiling", "eq", "false", default="true",
         fix=set_to(CM, "profiling", "false")),
    flag("1.3.3", "Controllers use their own service account credentials", CM, "use-service-account-credentials",
         "eq", "true", default="false", fix=set_to(CM, "use-service-account-credentials", "true")),
    Spec("1.3.4", "The controller manager signs service account tokens with a private key",
         AllSet(CM, ("service-account-private-key-file",)),
         SetFlagsToFiles(CM, (("service-account-private-key-file", f"{PKI}/sa.key"),))),
    Spec("1.3.5", "Service accounts receive the cluster's root CA", AllSet(CM, ("root-ca-file",)),
         SetFlagsToFiles(CM, (("root-ca-file", f"{PKI}/ca.crt"),))),
    flag("1.3.6", "Kubelet serving certificate rotation is not turned off", CM, "feature-gates", "nothas",
         "RotateKubeletServerCertificate=false",
         fix=FlagOps(CM, (RemoveFlagItem("feature-gates", "RotateKubeletServerCertificate=false"),))),
    flag("1.3.7", "The controller manager listens on the loopback only", CM, "bind-address", "eq", "127.0.0.1",
         default="0.0.0.0", fix=set_to(CM, "bind-address", "127.0.0.1")),
    flag("1.4.1", "Scheduler profiling is off", SCHED, "profiling", "eq", "false", default="true",
         fix=set_to(SCHED, "profiling", "false")),
    flag("1.4.2", "The scheduler listens on the loopback only", SCHED, "bind-address", "eq", "127.0.0.1",
         default="0.0.0.0", fix=set_to(SCHED, "bind-address", "127.0.0.1")),

    # ---- 2 etcd ----
    Spec("2.1", "etcd serves clients over TLS", AllSet(ETCD, ("cert-file", "key-file")),
         Manual("set up etcd's serving certificate together with its clients (kubeadm does this by default)")),
    flag("2.2", "etcd requires client certificates", ETCD, "client-cert-auth", "eq", "true", default="false",
         fix=set_to(ETCD, "client-cert-auth", "true"),
         per={CIS_2_0: {"guidance": 'Set --client-cert-auth="true" in etcd\'s static pod manifest; etcd then '
                                    "refuses clients without a certificate signed by its trusted CA"}}),
    flag("2.3", "etcd does not use self-signed automatic TLS for clients", ETCD, "auto-tls", "noteq", "true",
         fix=set_to(ETCD, "auto-tls", "false")),
    Spec("2.4", "etcd peers talk over TLS", AllSet(ETCD, ("peer-cert-file", "peer-key-file")),
         Manual("set up peer certificates on every etcd member together")),
    flag("2.5", "etcd peers must present certificates", ETCD, "peer-client-cert-auth", "eq", "true",
         default="false", fix=set_to(ETCD, "peer-client-cert-auth", "true")),
    flag("2.6", "etcd does not use self-signed automatic TLS for peers", ETCD, "peer-auto-tls", "noteq", "true",
         fix=set_to(ETCD, "peer-auto-tls", "false")),
    Spec("2.7", "etcd trusts its own CA, not the cluster's", DistinctFiles(ETCD, "trusted-ca-file", API, "client-ca-file"),
         Manual("create a CA for etcd alone and reissue etcd's and its clients' certificates from it"),
         scored=False),

    # ---- 3 control-plane configuration ----
    manual("3.1.1", "Users do not authenticate with client certificates",
           "Give people OIDC or another revocable authentication; client certificates cannot be revoked"),
    manual("3.1.2", "Users do not authenticate with service account tokens",
           "Service account tokens are for workloads; give people their own identities"),
    manual("3.1.3", "Users do not authenticate with bootstrap tokens",
           "Bootstrap tokens are for joining nodes; delete them once nodes have joined"),
    Spec("3.2.1", "An audit policy is in use", Flag(API, "audit-policy-file", "present"), apiserver.AuditPolicy(),
         "cisfix installs a minimal policy; extend it to the cluster's needs", scored=False),
    manual("3.2.2", "The audit policy covers the key security concerns",
           "Log metadata for secrets, config maps and token reviews, and record exec, attach, port-forward "
           "and proxy use and changes to workloads", level=2),

    # ---- 4.1 worker files ----
    file_mode("4.1.1", "The kubelet's systemd drop-in has mode 600 or stricter", targets.KUBELET_SERVICE, "600"),
    file_owner("4.1.2", "The kubelet's systemd drop-in is owned by root:root", targets.KUBELET_SERVICE),
    file_mode("4.1.3", "kube-proxy's kubeconfig, if present, has mode 600 or stricter", targets.PROXY_KUBECONFIG,
              "600", scored=False),
    file_owner("4.1.4", "kube-proxy's kubeconfig, if present, is owned by root:root", targets.PROXY_KUBECONFIG,
               scored=False),
    file_mode("4.1.5", "The kubelet's kubeconfig has mode 600 or stricter", targets.KUBELET_KUBECONFIG, "600"),
    file_owner("4.1.6", "The kubelet's kubeconfig is owned by root:root", targets.KUBELET_KUBECONFIG),
    file_mode("4.1.7", "The kubelet's client CA file has mode 644 or stricter", targets.KUBELET_CLIENT_CA, "644",
              scored=False),
    file_owner("4.1.8", "The kubelet's client CA file is owned by root:root", targets.KUBELET_CLIENT_CA, scored=False),
    file_mode("4.1.9", "The kubelet config file has mode 600 or stricter", targets.KUBELET_CONFIG, "600"),
    file_owner("4.1.10", "The kubelet config file is owned by root:root", targets.KUBELET_CONFIG),

    # ---- 4.2 kubelet ----
    kubelet("4.2.1", "The kubelet refuses anonymous requests", "anonymous-auth", "authentication.anonymous.enabled",
            "eq", "false", default="true", fix=KubeletFix("anonymous-auth", "authentication.anonymous.enabled", False),
            guidance="set authentication.anonymous.enabled: false"),
    kubelet("4.2.2", "The kubelet does not authorize every request", "authorization-mode", "authorization.mode",
            "nothas", "AlwaysAllow", default="AlwaysAllow",
            fix=KubeletFix("authorization-mode", "authorization.mode", "Webhook"),
            guidance="set authorization.mode: Webhook (with authentication.webhook.enabled)"),
    kubelet("4.2.3", "The kubelet verifies client certificates against a CA", "client-ca-file",
            "authentication.x509.clientCAFile", "present",
            fix=KubeletFix("client-ca-file", "authentication.x509.clientCAFile", f"{PKI}/ca.crt"),
            guidance="set authentication.x509.clientCAFile to the cluster CA"),
    kubelet("4.2.4", "The kubelet's unauthenticated read-only port is off", "read-only-port", "readOnlyPort", "eq", 0,
            default=0, flags_default=10255, fix=KubeletFix("read-only-port", "readOnlyPort", 0), scored=False, guidance="set readOnlyPort: 0"),
    kubelet("4.2.5", "Streaming connections time out", "streaming-connection-idle-timeout",
            "streamingConnectionIdleTimeout", "noteq", "0", zero_is_default=True, scored=False,
            fix=KubeletFix("streaming-connection-idle-timeout", "streamingConnectionIdleTimeout", "4h0m0s"),
            guidance="set streamingConnectionIdleTimeout to a non-zero duration (default 4h)"),
    kubelet("4.2.6", "The kubelet manages its iptables chains", "make-iptables-util-chains", "makeIPTablesUtilChains",
            "eq", "true", default="true", fix=KubeletFix("make-iptables-util-chains", "makeIPTablesUtilChains", True),
            guidance="set makeIPTablesUtilChains: true"),
    kubelet("4.2.7", "The node name is not overridden", "hostname-override", None, "absent", scored=False,
            fix=Manual("the node registers under the overridden name: removing --hostname-override re-registers "
                       "it under its host name; drain and rejoin the node instead"),
            guidance="remove --hostname-override"),
    kubelet("4.2.8", "Events are recorded at a useful rate", "event-qps", "eventRecordQPS", "gte", 0, default=50, scored=False,
            fix=KubeletFix("event-qps", "eventRecordQPS", None), guidance="leave eventRecordQPS at its default (50)"),
    Spec("4.2.9", "The kubelet serves TLS with a configured certificate",
         KubeletSetting("tls-cert-file", "tlsCertFile", "present"),
         Manual("use serverTLSBootstrap (certificates signed by the cluster CA, approved CSRs) or set "
                "tlsCertFile and tlsPrivateKeyFile to a certificate the cluster CA signed"), scored=False),
    kubelet("4.2.10", "Kubelet client certificate rotation is on", "rotate-certificates", "rotateCertificates", "eq",
            "true", default="false", fix=KubeletFix("rotate-certificates", "rotateCertificates", True),
            guidance="set rotateCertificates: true"),
    Spec("4.2.11", "Kubelet serving certificate rotation is not turned off",
         KubeletSetting("feature-gates", "featureGates", "nothas", "RotateKubeletServerCertificate=false"),
         KubeletFeatureGate("RotateKubeletServerCertificate"), scored=False),
    Spec("4.2.12", "The kubelet offers only strong TLS cipher suites",
         KubeletSetting("tls-cipher-suites", "tlsCipherSuites", "only", allowed=KUBELET_CIPHERS_1_12),
         KubeletStrongCiphers(KUBELET_CIPHERS_1_12), scored=False,
         per={CIS_1_11: {"audit": KubeletSetting("tls-cipher-suites", "tlsCipherSuites", "only",
                                                 allowed=KUBELET_CIPHERS_1_11)}}),
    kubelet("4.2.13", "Pods have a PID limit", "pod-max-pids", "podPidsLimit", "present", scored=False,
            fix=Manual("choose a limit that fits the largest workload (podPidsLimit), then set it")),
    kubelet("4.2.14", "Containers run with the runtime's default seccomp profile", "seccomp-default",
            "seccompDefault", "eq", "true", scored=False,
            fix=Manual("seccompDefault changes the syscalls every container may make; test the workloads, then "
                       "set seccompDefault: true")),
    manual("4.2.15", "The kubelet service denies IP traffic by default (IPAddressDeny=any)",
           "Set IPAddressDeny=any with an IPAddressAllow list in the kubelet's systemd unit", only=(CIS_1_11,)),
    Spec("4.3.1", "kube-proxy's metrics listen on the loopback only", KubeProxyMetrics(),
         Manual("kubeadm configures kube-proxy in the kube-system/kube-proxy ConfigMap; set metricsBindAddress "
                "to 127.0.0.1:10249 there and restart the kube-proxy pods")),

    # ---- 5 policies: cluster-wide, reviewed through the API ----
    manual("5.1.1", "cluster-admin is bound only where needed", "Review clusterrolebindings to cluster-admin"),
    manual("5.1.2", "Few subjects can read secrets", "Remove get, list and watch on secrets where not needed"),
    manual("5.1.3", "Roles avoid wildcards", "Name resources and verbs instead of '*' in Roles and ClusterRoles"),
    manual("5.1.4", "Few subjects can create pods", "Remove create on pods where not needed"),
    manual("5.1.5", "Default service accounts are not used", "Set automountServiceAccountToken: false on them"),
    manual("5.1.6", "Service account tokens are mounted only where needed",
           "Set automountServiceAccountToken: false on pods and service accounts that do not call the API"),
    manual("5.1.7", "The system:masters group is not used", "Give no user the system:masters group"),
    manual("5.1.8", "Bind, impersonate and escalate are rarely granted", "Remove these verbs where not needed"),
    manual("5.1.9", "Few subjects can create persistent volumes", "Remove create on persistentvolumes"),
    manual("5.1.10", "Few subjects can use the nodes/proxy subresource", "Remove access to nodes/proxy"),
    manual("5.1.11", "Few subjects can approve certificate requests", "Remove access to certificatesigningrequests/approval"),
    manual("5.1.12", "Few subjects can change webhook configurations",
           "Remove access to validating and mutating webhook configurations"),
    manual("5.1.13", "Few subjects can create service account tokens", "Remove access to serviceaccounts/token"),
    manual("5.2.1", "At least one pod policy mechanism is active", "Use Pod Security Admission or a policy engine"),
    manual("5.2.2", "Privileged containers are rarely admitted", "Enforce the baseline Pod Security Standard"),
    manual("5.2.3", "Containers sharing the host PID namespace are rarely admitted", "Restrict hostPID"),
    manual("5.2.4", "Containers sharing the host IPC namespace are rarely admitted", "Restrict hostIPC"),
    manual("5.2.5", "Containers sharing the host network are rarely admitted", "Restrict hostNetwork"),
    manual("5.2.6", "Privilege escalation is rarely allowed", "Restrict allowPrivilegeEscalation"),
    manual("5.2.7", "Root containers are rarely admitted", "Require runAsNonRoot", level=2),
    manual("5.2.8", "Containers with NET_RAW are rarely admitted", "Drop NET_RAW"),
    manual("5.2.9", "Containers adding capabilities are rarely admitted", "Restrict added capabilities",
           only=(CIS_1_11,)),
    manual({CIS_1_11: "5.2.10", CIS_1_12: "5.2.9"}, "Containers keep no capabilities they do not need",
           "Drop all capabilities where the workload allows it", level=2),
    manual({CIS_1_11: "5.2.11", CIS_1_12: "5.2.10"}, "Windows HostProcess containers are rarely admitted",
           "Restrict windowsOptions.hostProcess"),
    manual({CIS_1_11: "5.2.12", CIS_1_12: "5.2.11"}, "HostPath volumes are rarely admitted", "Restrict hostPath volumes"),
    manual({CIS_1_11: "5.2.13", CIS_1_12: "5.2.12"}, "Host ports are rarely admitted", "Restrict hostPort"),
    manual("5.3.1", "The CNI plugin enforces NetworkPolicies", "Use a CNI plugin that supports NetworkPolicy"),
    manual("5.3.2", "Every namespace has NetworkPolicies", "Add a default-deny policy per namespace", level=2),
    manual("5.4.1", "Secrets are mounted as files, not environment variables", "Read secrets from volumes"),
    manual("5.4.2", "External secret storage is considered", "Consider a secrets manager", level=2),
    manual("5.5.1", "Image provenance is enforced (ImagePolicyWebhook)", "Set up image provenance", level=2),
    manual("5.6.1", "Namespaces separate resources", "Create namespaces as administrative boundaries"),
    manual("5.6.2", "Pods use the RuntimeDefault seccomp profile", "Set seccompProfile.type: RuntimeDefault", level=2),
    manual("5.6.3", "Pods and containers have a securityContext", "Apply securityContexts", level=2),
    manual("5.6.4", "The default namespace is not used", "Put workloads in their own namespaces", level=2),
)


def specs_for(benchmark: str) -> Dict[str, Spec]:
    """The recommendations of one benchmark by id."""
    found = (spec.for_benchmark(benchmark) for spec in SPECS)
    return {spec.id: spec for spec in found if spec is not None}
