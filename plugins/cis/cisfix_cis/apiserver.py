"""API server remediations that need files: each plan creates the file, mounts it into the pod and sets
the flag in one go, because a flag naming a file the container cannot see crash-loops the API server.

- audit logging: the log directory (read-write) plus a policy file, without which nothing is logged;
- EventRateLimit: an AdmissionConfiguration and the plugin's configuration with non-empty limits;
- encryption at rest: a secretbox key made here from 32 random bytes, in a 0600 file;
- anonymous access: an AuthenticationConfiguration that allows anonymous requests only to the health
  endpoints (1.32+), because `--anonymous-auth=false` makes kubeadm's probes fail with 401;
- the kubelet CA: only when the kubelets serve certificates signed by the cluster CA.
"""
from __future__ import annotations

import base64
import os
import time
from dataclasses import dataclass
from typing import Optional, Tuple

from cisfix.errors import InputError
from cisfix.nodefile import parse_yaml
from cisfix.plan import AddFlagItem, AddHostPathMount, RemoveFlag, RemoveFlagItem, SetFlag
from cisfix.state import NodeState
from cisfix.trust import read_node_trusted
from cisfix.types import CreateFile, Plan

from . import kubelet
from .audits import HEALTH_PATHS
from .fixes import edit_manifest

COMPONENT = "kube-apiserver"
AUDIT_LOG_DIR = "/var/log/kubernetes/audit"
AUDIT_POLICY = "/etc/kubernetes/audit-policy.yaml"
ADMISSION_CONFIG = "/etc/kubernetes/admission-config.yaml"
EVENT_RATE_LIMIT = "/etc/kubernetes/event-rate-limit.yaml"
ENCRYPTION_CONFIG = "/etc/kubernetes/encryption-config.yaml"
AUTHENTICATION_CONFIG = "/etc/kubernetes/authentication-config.yaml"
AUDIT_LOG_FLAGS = (("audit-log-maxage", "30"), ("audit-log-maxbackup", "10"), ("audit-log-maxsize", "100"))

AUDIT_POLICY_TEXT = """\
# Written by cisfix for CIS 1.2.16-1.2.19 and 3.2.1: a minimal audit policy. Review it (CIS 3.2.2).
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages:
  - RequestReceived
rules:
  # Health checks and version probes are noise.
  - level: None
    nonResourceURLs: ["/healthz*", "/livez*", "/readyz*", "/version"]
  # Never log the content of secrets, config maps and token reviews: metadata only.
  - level: Metadata
    resources:
      - group: ""
        resources: ["secrets", "configmaps", "serviceaccounts/token"]
      - group: authentication.k8s.io
        resources: ["tokenreviews"]
  # Who opened a shell, a port-forward or a proxy into a pod or a service.
  - level: Metadata
    resources:
      - group: ""
        resources: ["pods/exec", "pods/attach", "pods/portforward", "pods/proxy", "services/proxy"]
  # Changes to workloads, with what was sent.
  - level: Request
    verbs: ["create", "update", "patch", "delete", "deletecollection"]
    resources:
      - group: ""
        resources: ["pods"]
      - group: apps
        resources: ["deployments", "daemonsets", "statefulsets", "replicasets"]
  - level: Metadata
"""

ADMISSION_CONFIG_TEXT = f"""\
# Written by cisfix for CIS 1.2.9: admission plugin configuration.
apiVersion: apiserver.config.k8s.io/v1
kind: AdmissionConfiguration
plugins:
  - name: EventRateLimit
    path: {EVENT_RATE_LIMIT}
"""

EVENT_RATE_LIMIT_TEXT = """\
# Written by cisfix for CIS 1.2.9: limits on the events the API server accepts. Tune them to the cluster.
apiVersion: eventratelimit.admission.k8s.io/v1alpha1
kind: Configuration
limits:
  - type: Server
    qps: 50
    burst: 100
  - type: Namespace
    qps: 50
    burst: 100
"""

AUTHENTICATION_CONFIG_TEXT = """\
# Written by cisfix for CIS 1.2.1: anonymous requests only for the health endpoints kubeadm's probes use.
apiVersion: apiserver.config.k8s.io/v1beta1
kind: AuthenticationConfiguration
anonymous:
  enabled: true
  conditions:
""" + "".join(f"    - path: {p}\n" for p in HEALTH_PATHS)


def _file_mount(name: str, path: str) -> AddHostPathMount:
    return AddHostPathMount(name, path, path, read_only=True, type="File")


@dataclass(frozen=True)
class AuditLog:
    """Audit logging: when the log is not configured, its path, directory mount and policy come with
    every one of its checks (a log alone records nothing useful); `only` names the rotation flags a
    check asks for (all of them by default)."""

    only: Tuple[str, ...] = ()

    def __call__(self, state: NodeState) -> Plan:
        flags = state.flags(COMPONENT)
        creates: Tuple[CreateFile, ...] = ()
        ops: list = []
        if not flags.get("audit-log-path"):
            creates, policy_ops, manual = audit_policy(state)
            if manual:
                return Plan(manual=manual)
            ops += [SetFlag("audit-log-path", f"{AUDIT_LOG_DIR}/audit.log"),
                    AddHostPathMount("audit-log", AUDIT_LOG_DIR, AUDIT_LOG_DIR, read_only=False,
                                     type="DirectoryOrCreate"), *policy_ops]
        ops += [SetFlag(name, value) for name, value in AUDIT_LOG_FLAGS
                if (not self.only or name in self.only) and not _at_least(flags.get(name), value)]
        plan = edit_manifest(state, COMPONENT, *ops)
        return Plan(creates + plan.changes, plan.manual)


def _at_least(current: Optional[str], wanted: str) -> bool:
    try:
        return current is not None and int(current) >= int(wanted)
    except ValueError:
        return False


def audit_policy(state: NodeState) -> Tuple[Tuple[CreateFile, ...], tuple, str]:
    """The files to create and manifest ops for an audit policy (none when one is in use), or why not."""
    current = state.flags(COMPONENT).get("audit-policy-file")
    if current:
        if state.read(current) is None:
            return (), (), f"--audit-policy-file names {current}, which does not exist; restore it"
        return (), (), ""
    if state.read(AUDIT_POLICY) is not None and not state.cisfix_wrote(AUDIT_POLICY):
        return (), (), f"{AUDIT_POLICY} exists but the API server does not use it; review it, then set --audit-policy-file"
    return ((CreateFile(AUDIT_POLICY, AUDIT_POLICY_TEXT.encode(), 0o600),),
            (SetFlag("audit-policy-file", AUDIT_POLICY), _file_mount("audit-policy", AUDIT_POLICY)), "")


@dataclass(frozen=True)
class AuditPolicy:
    """An audit policy file, mounted and named by --audit-policy-file (CIS 3.2.1)."""

    def __call__(self, state: NodeState) -> Plan:
        creates, ops, manual = audit_policy(state)
        if manual:
            return Plan(manual=manual)
        plan = edit_manifest(state, COMPONENT, *ops)
        return Plan(creates + plan.changes, plan.manual)


@dataclass(frozen=True)
class EventRateLimit:
    def __call__(self, state: NodeState) -> Plan:
        flags = state.flags(COMPONENT)
        enable = [RemoveFlagItem("disable-admission-plugins", "EventRateLimit"),
                  AddFlagItem("enable-admission-plugins", "EventRateLimit")]
        current = flags.get("admission-control-config-file")
        if current:
            data = state.yaml(current)
            names = [p.get("name") for p in (data or {}).get("plugins") or () if isinstance(p, dict)]
            if "EventRateLimit" in names:
                return edit_manifest(state, COMPONENT, *enable)
            return Plan(manual=f"{current} configures other admission plugins; add an EventRateLimit entry "
                               "with non-empty limits to it, then enable the plugin")
        existing = [p for p in (ADMISSION_CONFIG, EVENT_RATE_LIMIT)
                    if state.read(p) is not None and not state.cisfix_wrote(p)]
        if existing:
            return Plan(manual=f"{', '.join(existing)} exist but are not in use; review them")
        return Plan((CreateFile(ADMISSION_CONFIG, ADMISSION_CONFIG_TEXT.encode(), 0o600),
                     CreateFile(EVENT_RATE_LIMIT, EVENT_RATE_LIMIT_TEXT.encode(), 0o600))
                    + edit_manifest(state, COMPONENT, SetFlag("admission-control-config-file", ADMISSION_CONFIG),
                                    _file_mount("admission-config", ADMISSION_CONFIG),
                                    _file_mount("event-rate-limit", EVENT_RATE_LIMIT), *enable).changes,
                    notes=("EventRateLimit is limited to 50 events/s per namespace and server-wide; tune "
                           f"{EVENT_RATE_LIMIT} to the cluster",))


GENERATED_KEY = "<32 random bytes, generated when applied>"  # how diffs show the key: never the key itself


def encryption_config(secret: str) -> str:
    """The configuration holding `secret` (the base64 key, or GENERATED_KEY for what diffs show)."""
    name = time.strftime("key-%Y%m%d", time.gmtime())
    return f"""\
# Written by cisfix for CIS 1.2.27/1.2.28. Keep a copy of this key somewhere safe: without it the
# secrets in etcd cannot be read. Every control-plane node needs the same file.
apiVersion: apiserver.config.k8s.io/v1
kind: EncryptionConfiguration
resources:
  - resources:
      - secrets
    providers:
      - secretbox:
          keys:
            - name: {name}
              secret: {secret}
      - identity: {{}}
"""


ENCRYPTION_HEADER = "# Written by cisfix for CIS 1.2.27/1.2.28."
STRONG_PROVIDERS = ("secretbox", "aescbc", "kms")


@dataclass(frozen=True)
class Encryption:
    """One key for the whole cluster: every API server must read what the others encrypted. On a node
    with several etcd members (HA) a key made here would be this node's alone, so by default it is made
    only where the operator says this is the node that makes it (`fix --first-control-plane`, for one
    run); `persist` then publishes the file for the other control-plane nodes, which install it
    (`persist --install`) and adopt it here: flag and mount set, nothing created."""

    def __call__(self, state: NodeState) -> Plan:
        current = state.flags(COMPONENT).get("encryption-provider-config")
        if current:
            return Plan(manual=f"{current} is in use but does not encrypt secrets with aescbc, kms or secretbox "
                               "first; add such a provider in front and rewrite the secrets")
        use = edit_manifest(state, COMPONENT, SetFlag("encryption-provider-config", ENCRYPTION_CONFIG),
                            _file_mount("encryption-config", ENCRYPTION_CONFIG)).changes
        others = _other_control_planes(state)
        if state.read(ENCRYPTION_CONFIG) is not None:
            refused = _not_adoptable(state)
            if refused:
                return Plan(manual=refused)
            if others:  # the cluster's key, installed from the bundle of the node that made it
                return Plan(use, notes=(f"{ENCRYPTION_CONFIG}: the cluster's key, used as it is",))
        elif others and not state.info.first_control_plane:
            return Plan(manual=others)
        key = base64.b64encode(os.urandom(32)).decode()
        return Plan((CreateFile(ENCRYPTION_CONFIG, encryption_config(key).encode(), 0o600,
                                shown=encryption_config(GENERATED_KEY).encode()),) + use,
                    notes=(f"back up {ENCRYPTION_CONFIG}: it holds the only copy of the key",
                           "existing secrets stay unencrypted until rewritten: "
                           "kubectl get secrets --all-namespaces -o json | kubectl replace -f -")
                    + ((f"every other control-plane node needs this {ENCRYPTION_CONFIG} before its upgrade: "
                        "`cisfix persist` publishes it, `cisfix persist --install DIR` installs it there",)
                       if others else ()))


def _not_adoptable(state: NodeState) -> str:
    """Why the existing encryption configuration is not used as it is, or "": root's alone (nobody else
    could have written the key), and either what a committed cisfix transaction wrote (a fix, or
    `persist --install` after checking it against the published list) or recognisably cisfix's with a
    strong provider first."""
    try:
        text = read_node_trusted(state.node, ENCRYPTION_CONFIG, why="; not used as the cluster's key").decode()
    except (InputError, UnicodeDecodeError) as exc:
        return f"{ENCRYPTION_CONFIG} exists but is not used: {exc}"
    if state.cisfix_wrote(ENCRYPTION_CONFIG):
        return ""
    try:
        doc = parse_yaml(text, ENCRYPTION_CONFIG) if text.startswith(ENCRYPTION_HEADER) else None
    except InputError:
        doc = None
    resources = doc.get("resources") if isinstance(doc, dict) and doc.get("kind") == "EncryptionConfiguration" else None
    firsts = [next(iter(r["providers"][0]), None) for r in resources or ()
              if isinstance(r, dict) and isinstance(r.get("providers"), list) and r["providers"]
              and isinstance(r["providers"][0], dict)]
    if firsts and all(first in STRONG_PROVIDERS for first in firsts):
        return ""
    return f"{ENCRYPTION_CONFIG} exists but is not in use; review it before using it"


def _other_control_planes(state: NodeState) -> str:
    """A key made here is unknown to other API servers: with several etcd members (HA), refuse."""
    members = [m for m in (state.flags("etcd").get("initial-cluster") or "").split(",") if m]
    if len(members) > 1:
        return ("this control plane has several etcd members; every API server needs the same encryption "
                "key: make it on one node (`cisfix fix --first-control-plane`), then `cisfix persist` there "
                "and `cisfix persist --install DIR` with its bundle on each other control-plane node")
    return ""


@dataclass(frozen=True)
class AnonymousHealthOnly:
    """Since 1.32 (beta, on by default; GA and always on from 1.34) an AuthenticationConfiguration can
    allow anonymous requests for the health endpoints only: the default remediation from 1.32 on. 1.31
    has it as alpha behind AnonymousAuthConfigurableEndpoints; cisfix does not turn on alpha features,
    so there (and before) the fix is manual, as on a 1.32-1.33 server that turned the feature off."""

    def __call__(self, state: NodeState) -> Plan:
        minor = tuple(int(p) for p in (state.info.version or "0.0").split(".")[:2])
        flags = state.flags(COMPONENT)
        gates = flags.get("feature-gates") or ""
        switched_off = minor < (1, 34) and "AnonymousAuthConfigurableEndpoints=false" in gates
        if minor < (1, 32) or switched_off:
            return Plan(manual="--anonymous-auth=false breaks kubeadm's liveness probes (they get 401 and the "
                               "kubelet restarts the API server); restricting anonymous access to /livez, "
                               "/readyz and /healthz needs an AuthenticationConfiguration with `anonymous`, "
                               "available from Kubernetes 1.32 (alpha in 1.31: feature gate "
                               "AnonymousAuthConfigurableEndpoints). Upgrade, or review RBAC for "
                               "system:anonymous and system:unauthenticated")
        if flags.get("authentication-config"):
            return Plan(manual=f"{flags.get('authentication-config')} is in use; add an `anonymous` section "
                               f"allowing only {', '.join(HEALTH_PATHS)} to it, and drop --anonymous-auth")
        if state.read(AUTHENTICATION_CONFIG) is not None and not state.cisfix_wrote(AUTHENTICATION_CONFIG):
            return Plan(manual=f"{AUTHENTICATION_CONFIG} exists but is not in use; review it")
        return Plan((CreateFile(AUTHENTICATION_CONFIG, AUTHENTICATION_CONFIG_TEXT.encode(), 0o600),)
                    + edit_manifest(state, COMPONENT, RemoveFlag("anonymous-auth"),
                                    SetFlag("authentication-config", AUTHENTICATION_CONFIG),
                                    _file_mount("authentication-config", AUTHENTICATION_CONFIG)).changes)


@dataclass(frozen=True)
class KubeletCertificateAuthority:
    """--kubelet-certificate-authority makes the API server verify the kubelets' serving certificates;
    kubeadm's kubelets serve self-signed ones unless serverTLSBootstrap is on (and their CSRs approved),
    and then `kubectl logs/exec` would fail."""

    ca: str = "/etc/kubernetes/pki/ca.crt"

    def __call__(self, state: NodeState) -> Plan:
        view = kubelet.view(state)
        bootstrap = (view.config or {}).get("serverTLSBootstrap") is True
        if not bootstrap or state.read("/var/lib/kubelet/pki/kubelet-server-current.pem") is None:
            return Plan(manual="the kubelets serve self-signed certificates (serverTLSBootstrap is off); enable "
                               "serverTLSBootstrap on every node and approve their CSRs, then set "
                               f"--kubelet-certificate-authority={self.ca}")
        if state.read(self.ca) is None:
            return Plan(manual=f"{self.ca} not found")
        return edit_manifest(state, COMPONENT, SetFlag("kubelet-certificate-authority", self.ca),
                             notes=("every node's kubelet must serve a certificate signed by the cluster CA",))
