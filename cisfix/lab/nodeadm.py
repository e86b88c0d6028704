"""The AL2023 lab's boot step: what `nodeadm init` writes for the kubelet at every boot, from the node's user
data (amazon-eks-ami nodeadm/internal/kubelet/config.go, environment.go, kubeconfig.go;
configprovider/mime.go; api/merge.go).

The boot input is the lab's `/var/lib/lab/user-data` (EC2's user data): a bare NodeConfig YAML document,
or MIME multipart whose `application/node.eks.aws` parts (base64 or gzip allowed) are NodeConfigs merged
in order: spec fields a later part sets (non-empty) replace earlier ones, `kubelet.flags` lists are
appended, `kubelet.config` documents are merged key by key (a later value wins, zeros included).
It writes
- /etc/kubernetes/kubelet/config.json: nodeadm's defaults, `json.MarshalIndent` with 4 spaces (struct order,
  no trailing newline);
- /etc/kubernetes/kubelet/config.json.d/40-nodeadm.conf: the merged `kubelet.config` with its type meta,
  when there is one (map keys sorted, as Go marshals a map), and `--config-dir` then names the folder;
- /etc/eks/kubelet/environment: NODEADM_KUBELET_ARGS, nodeadm's flags (Go's map order is random; the lab
  sorts them) then spec.kubelet.flags.
All 0644, as nodeadm's kubeletConfigPerm.
"""
from __future__ import annotations

import base64
import binascii
import email
import gzip
import json
from typing import Any, Dict, List, Optional

from .flags import minor_of
from .layout import BadLabInput, Layout
from .tree import write
from . import workerdata as data

USER_DATA = "/var/lib/lab/user-data"
CONFIG = "/etc/kubernetes/kubelet/config.json"
CONFIG_DIR = "/etc/kubernetes/kubelet/config.json.d"
DROPIN = f"{CONFIG_DIR}/40-nodeadm.conf"
ENVIRONMENT = "/etc/eks/kubelet/environment"
MEDIA_TYPE = "application/node.eks.aws"
API_VERSIONS = ("node.eks.aws/v1alpha1", "node.eks.aws/v1beta1")
TYPE_META = {"kind": "KubeletConfiguration", "apiVersion": "kubelet.config.k8s.io/v1beta1"}


class NodeadmError(BadLabInput):
    pass


# ---- the boot input ----

def _documents(raw: bytes) -> List[bytes]:
    """The NodeConfig documents of the user data, in order."""
    message = email.message_from_bytes(raw)
    if not message.get_content_type().startswith("multipart/"):
        return [raw]
    parts = []
    for part in message.walk():
        if part.get_content_type() != MEDIA_TYPE:
            continue
        payload = part.get_payload(decode=True) or b""
        try:  # nodeadm's decodeIfBase64, then decompressIfGZIP
            payload = base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError):
            pass
        if payload[:2] == b"\x1f\x8b":
            payload = gzip.decompress(payload)
        parts.append(payload)
    if not parts:
        raise NodeadmError(f"{USER_DATA}: no {MEDIA_TYPE} part in the MIME multipart user data")
    return parts


def _node_config(text: bytes) -> Dict[str, Any]:
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    try:
        doc = YAML(typ="safe", pure=True).load(text.decode("utf-8"))
    except (YAMLError, UnicodeDecodeError) as exc:
        raise NodeadmError(f"{USER_DATA}: not a NodeConfig: {str(exc).splitlines()[0]}")
    if not isinstance(doc, dict) or doc.get("kind") != "NodeConfig" or doc.get("apiVersion") not in API_VERSIONS:
        raise NodeadmError(f"{USER_DATA}: not a NodeConfig (kind NodeConfig, apiVersion {' or '.join(API_VERSIONS)})")
    spec = doc.get("spec") or {}
    kubelet = spec.get("kubelet") or {}
    if not isinstance(spec, dict) or not isinstance(kubelet, dict) \
            or not isinstance(kubelet.get("config") or {}, dict) or not isinstance(kubelet.get("flags") or [], list):
        raise NodeadmError(f"{USER_DATA}: spec.kubelet must hold a config mapping and a flags list")
    return spec


def _merge_struct(dst: Dict[str, Any], src: Dict[str, Any], path: str = "") -> Dict[str, Any]:
    """mergo.Merge WithOverride with nodeadm's transformers."""
    out = dict(dst)
    for key, value in src.items():
        here = f"{path}.{key}" if path else key
        if here == "kubelet.flags":
            out[key] = list(out.get(key) or []) + list(value or [])
        elif here == "kubelet.config":
            out[key] = _merge_map(out.get(key) or {}, value or {})
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge_struct(out[key], value, here)
        elif value not in (None, "", 0, False, [], {}):
            out[key] = value
    return out


def _merge_map(dst: Dict[str, Any], src: Dict[str, Any]) -> Dict[str, Any]:
    out = dict(dst)
    for key, value in src.items():
        out[key] = _merge_map(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def read_spec(layout: Layout) -> Dict[str, Any]:
    try:
        raw = layout.host(USER_DATA).read_bytes()
    except OSError as exc:
        raise NodeadmError(f"{USER_DATA}: {exc.strerror}")
    spec: Dict[str, Any] = {}
    for document in _documents(raw):
        spec = _merge_struct(spec, _node_config(document))
    cluster = spec.get("cluster") if isinstance(spec.get("cluster"), dict) else {}
    for key, name in (("name", "Name"), ("apiServerEndpoint", "Apiserver endpoint"),
                      ("certificateAuthority", "Certificate authority"), ("cidr", "CIDR")):
        if not cluster.get(key):  # api/validation.go ValidateNodeConfig
            raise NodeadmError(f"{USER_DATA}: {name} is missing in cluster configuration")
    return spec


# ---- what nodeadm writes ----

def kubelet_config(version: str) -> Dict[str, Any]:
    """defaultKubeletSubConfig with the node's details, in kubeletConfig's field order (omitempty fields
    left out when unset)."""
    minor = minor_of(version)
    gates = {"RotateKubeletServerCertificate": True}
    if minor >= (1, 33):
        gates["DynamicResourceAllocation"] = True
    if minor >= (1, 34):
        gates["MutableCSINodeAllocatableCount"] = True
    config: Dict[str, Any] = {
        "address": "0.0.0.0",
        "authentication": {"x509": {"clientCAFile": "/etc/kubernetes/pki/ca.crt"},
                           "webhook": {"enabled": True, "cacheTTL": "2m0s"}, "anonymous": {"enabled": False}},
        "authorization": {"mode": "Webhook", "webhook": {"cacheAuthorizedTTL": "5m0s", "cacheUnauthorizedTTL": "30s"}},
        "cgroupDriver": "systemd", "cgroupRoot": "/", "clusterDNS": [data.CLUSTER_DNS], "clusterDomain": "cluster.local",
        "containerRuntimeEndpoint": "unix:///run/containerd/containerd.sock",
        "evictionHard": {"memory.available": "100Mi", "nodefs.available": "10%", "nodefs.inodesFree": "5%"},
        "featureGates": dict(sorted(gates.items())), "hairpinMode": "hairpin-veth",
        "kubeReserved": {"cpu": "70m", "ephemeral-storage": "1Gi", "memory": "574Mi"}, "kubeReservedCgroup": "/runtime",
        "logging": {"verbosity": 2}, "maxPods": 29, "protectKernelDefaults": True,
        "providerID": "aws:///us-west-2a/i-0123456789abcdef0", "readOnlyPort": 0, "serializeImagePulls": False,
        "serverTLSBootstrap": True,
    }
    if minor >= (1, 34):  # graceful node shutdown from 1.34
        config.update({"shutdownGracePeriod": "2m30s", "shutdownGracePeriodCriticalPods": "30s"})
    config.update({"systemReservedCgroup": "/system", "tlsCipherSuites": [
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305", "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
        "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384", "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305",
        "TLS_RSA_WITH_AES_128_GCM_SHA256", "TLS_RSA_WITH_AES_256_GCM_SHA384"]})
    config.update(TYPE_META)
    return config


def _marshal(value: Any) -> str:
    return json.dumps(value, indent=4)  # Go's MarshalIndent(v, "", "    "): same separators, no final newline


def boot(layout: Layout, spec: Optional[Dict[str, Any]] = None) -> List[str]:
    """Run the boot step with the user data's merged spec (read now when not given); the node paths it
    wrote. Nothing is written when the user data is bad."""
    spec = read_spec(layout) if spec is None else spec
    version = layout.settings().version
    kubelet = spec.get("kubelet") or {}
    flags = {"config": CONFIG, "kubeconfig": "/var/lib/kubelet/kubeconfig", "node-ip": data.NODE_IP,
             "cloud-provider": "external", "hostname-override": data.NODE_NAME,
             "image-credential-provider-config": "/etc/eks/image-credential-provider/config.json",
             "image-credential-provider-bin-dir": "/etc/eks/image-credential-provider",
             "runtime-cgroups": "/runtime.slice/containerd.service"}
    environment: Dict[str, str] = {}
    files = {CONFIG: _marshal(kubelet_config(version))}
    user_config = kubelet.get("config") or {}
    if user_config:
        flags["config-dir"] = CONFIG_DIR
        if minor_of(version) < (1, 30):
            environment["KUBELET_CONFIG_DROPIN_DIR_ALPHA"] = "on"
        files[DROPIN] = _marshal(dict(sorted(_merge_map(TYPE_META, user_config).items())))
    else:
        layout.host(DROPIN).unlink(missing_ok=True)
    args = [f"--{name}={value}" for name, value in sorted(flags.items())] + [str(f) for f in kubelet.get("flags") or []]
    environment["NODEADM_KUBELET_ARGS"] = " ".join(args)
    files[ENVIRONMENT] = "\n".join(f"{name}={value}" for name, value in sorted(environment.items()))
    write(layout.host("/var/lib/kubelet/kubeconfig"), data.EKS_KUBECONFIG, 0o644)
    for path, text in files.items():
        write(layout.host(path), text, 0o644)
    return list(files)
