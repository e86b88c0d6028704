"""What each managed worker node's provider puts on the node, as data: unit files, flag files, kubelet
configurations, paths and version strings. `worker.py` writes them; `nodeadm.py` writes AL2023's at boot.

Real (sources cited per item) unless marked SEEDED: a seeded setting is one the lab adds so that a fresh
lab has CIS node findings to fix, each one an operator's plausible change on that provider (a monitoring
agent that wants the read-only port, a tuned streaming timeout, ...), since every provider's own defaults
pass most of the node checks.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Tuple

NODE_IP = "10.0.12.34"
NODE_NAME = "ip-10-0-12-34.us-west-2.compute.internal"
CLUSTER_DNS = "172.20.0.10"
API_SERVER = "https://ABCDEF0123456789.gr7.us-west-2.eks.amazonaws.com"  # nothing listens: workers run without it


@dataclass(frozen=True)
class Provider:
    name: str  # the lab's --distribution
    distribution: str  # NodeInfo.distribution: eks, gke, aks
    binary: str  # the kubelet the unit runs
    version_format: str  # its `--version` answer, from "{v}" (1.32.3)
    client_ca: str  # authentication.x509.clientCAFile / --client-ca-file
    serving: Tuple[str, str]  # the serving certificate and key (one file when the kubelet bootstrapped it)
    minors: Tuple[str, ...]  # the Kubernetes versions the provider ships this node for
    node_name: str  # its /etc/hostname, the name it registers with


# serverTLSBootstrap: the kubelet's CSR-signed certificate and key in one rotated file.
BOOTSTRAPPED = ("/var/lib/kubelet/pki/kubelet-server-current.pem",) * 2
ALL = ("1.29", "1.30", "1.31", "1.32", "1.33", "1.34", "1.35")
PROVIDERS: Dict[str, Provider] = {
    # AL2 AMIs stop at Kubernetes 1.32 (EKS ships no AL2 AMI for 1.33 on).
    "eks-al2": Provider("eks-al2", "eks", "/usr/bin/kubelet", "Kubernetes v{v}-eks-4096722",
                        "/etc/kubernetes/pki/ca.crt", BOOTSTRAPPED, ALL[:4], NODE_NAME),
    "eks-al2023": Provider("eks-al2023", "eks", "/usr/bin/kubelet", "Kubernetes v{v}-eks-4096722",
                           "/etc/kubernetes/pki/ca.crt", BOOTSTRAPPED, ALL, NODE_NAME),
    # configure-helper.sh: KUBE_HOME=/home/kubernetes; create-node-pki's CA bundle.
    "gke": Provider("gke", "gke", "/home/kubernetes/bin/kubelet", "Kubernetes v{v}-gke.1234000",
                    "/etc/srv/kubernetes/pki/ca-certificates.crt", BOOTSTRAPPED, ALL,
                    "gke-lab-cluster-default-pool-1a2b3c4d-x7k9"),
    # AgentBaker: /opt/bin/kubelet (since #7125, January 2026; /usr/local/bin/kubelet before), --client-ca-file
    # and --tls-cert-file under /etc/kubernetes/certs.
    "aks": Provider("aks", "aks", "/opt/bin/kubelet", "Kubernetes v{v}", "/etc/kubernetes/certs/ca.crt",
                    ("/etc/kubernetes/certs/kubeletserver.crt", "/etc/kubernetes/certs/kubeletserver.key"), ALL,
                    "aks-nodepool1-12345678-vmss000000"),
}
WORKERS = tuple(PROVIDERS)

# ---- EKS AL2 (amazon-eks-ami templates/al2/runtime: kubelet-containerd.service, kubelet-config.json, bootstrap.sh) ----

AL2_UNIT = """\
[Unit]
Description=Kubernetes Kubelet
Documentation=https://github.com/kubernetes/kubernetes
After=containerd.service sandbox-image.service
Requires=containerd.service sandbox-image.service

[Service]
Slice=runtime.slice
ExecStartPre=/sbin/iptables -P FORWARD ACCEPT -w 5
ExecStart=/usr/bin/kubelet \\
    --config /etc/kubernetes/kubelet/kubelet-config.json \\
    --kubeconfig /var/lib/kubelet/kubeconfig \\
    --container-runtime-endpoint unix:///run/containerd/containerd.sock \\
    --image-credential-provider-config /etc/eks/image-credential-provider/config.json \\
    --image-credential-provider-bin-dir /etc/eks/image-credential-provider \\
    $KUBELET_ARGS \\
    $KUBELET_EXTRA_ARGS

Restart=on-failure
RestartForceExitStatus=SIGPIPE
RestartSec=5
KillMode=process
CPUAccounting=true
MemoryAccounting=true

[Install]
WantedBy=multi-user.target
"""
# bootstrap.sh's KUBELET_ARGS (containerd, Kubernetes >= 1.27: no --container-runtime).
AL2_KUBELET_ARGS = (f"--node-ip={NODE_IP} --pod-infra-container-image=602401143452.dkr.ecr.us-west-2.amazonaws.com/"
                    f"eks/pause:3.5 --v=2 --hostname-override={NODE_NAME} --cloud-provider=external")
# bootstrap.sh --kubelet-extra-args: node labels (real, as managed node groups pass them) and, SEEDED, the
# read-only port a monitoring agent's old install guide asks for.
AL2_KUBELET_EXTRA_ARGS = ("--node-labels=eks.amazonaws.com/nodegroup=lab-ng,eks.amazonaws.com/capacityType=ON_DEMAND "
                          "--read-only-port=10255")
AL2_CONFIG_TEMPLATE = {  # the AMI's kubelet-config.json, key order kept
    "kind": "KubeletConfiguration", "apiVersion": "kubelet.config.k8s.io/v1beta1", "address": "0.0.0.0",
    "authentication": {"anonymous": {"enabled": False}, "webhook": {"cacheTTL": "2m0s", "enabled": True},
                       "x509": {"clientCAFile": "/etc/kubernetes/pki/ca.crt"}},
    "authorization": {"mode": "Webhook", "webhook": {"cacheAuthorizedTTL": "5m0s", "cacheUnauthorizedTTL": "30s"}},
    "clusterDomain": "cluster.local", "hairpinMode": "hairpin-veth", "readOnlyPort": 0, "cgroupDriver": "cgroupfs",
    "cgroupRoot": "/", "failSwapOn": False, "featureGates": {"RotateKubeletServerCertificate": True, "NodeSwap": False},
    "protectKernelDefaults": True, "serializeImagePulls": False, "serverTLSBootstrap": True,
    "tlsCipherSuites": ["TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
                        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305", "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
                        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305", "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
                        "TLS_RSA_WITH_AES_256_GCM_SHA384", "TLS_RSA_WITH_AES_128_GCM_SHA256"],
}
# What bootstrap.sh's jq edits add or change, in its order (jq keeps a key's place, appends new ones).
AL2_BOOTSTRAP_EDITS = {
    "clusterDNS": [CLUSTER_DNS],
    "evictionHard": {"memory.available": "100Mi", "nodefs.available": "10%", "nodefs.inodesFree": "5%"},
    "kubeReserved": {"cpu": "70m", "ephemeral-storage": "1Gi", "memory": "574Mi"},
    "maxPods": 29,
    "providerID": "aws:///us-west-2a/i-0123456789abcdef0",
    "cgroupDriver": "systemd",
    "systemReservedCgroup": "/system",
    "kubeReservedCgroup": "/runtime",
    "makeIPTablesUtilChains": False,  # SEEDED: an operator's own iptables management, set by a node's user data
}

# Both EKS AMIs: the kubelet's kubeconfig authenticates with an IAM token (al2 kubelet-kubeconfig after
# bootstrap.sh's sed; al2023 nodeadm kubeconfig.template.yaml).
EKS_KUBECONFIG = f"""\
apiVersion: v1
kind: Config
clusters:
- cluster:
    certificate-authority: /etc/kubernetes/pki/ca.crt
    server: {API_SERVER}
  name: kubernetes
contexts:
- context:
    cluster: kubernetes
    user: kubelet
  name: kubelet
current-context: kubelet
users:
- name: kubelet
  user:
    exec:
      apiVersion: client.authentication.k8s.io/v1beta1
      command: /usr/bin/aws-iam-authenticator
      args:
        - "token"
        - "-i"
        - "lab-cluster"
        - --region
        - "us-west-2"
"""

# ---- EKS AL2023 (templates/al2023/runtime/rootfs/etc/systemd/system/kubelet.service; nodeadm writes the rest) ----

AL2023_UNIT = """\
[Unit]
Description=Kubernetes Kubelet
Documentation=https://github.com/kubernetes/kubernetes
After=containerd.service
Wants=containerd.service

[Service]
Slice=runtime.slice
EnvironmentFile=/etc/eks/kubelet/environment
ExecStartPre=/sbin/iptables -P FORWARD ACCEPT -w 5
ExecStart=/usr/bin/kubelet $NODEADM_KUBELET_ARGS

Restart=on-failure
RestartForceExitStatus=SIGPIPE
RestartSec=5
KillMode=process
CPUAccounting=true
MemoryAccounting=true

[Install]
WantedBy=multi-user.target
"""
# The boot input a managed node group's launch template gives: MIME multipart, the cluster's NodeConfig
# (real shape), then SEEDED a user's kubelet config part asking for the read-only port and for no iptables
# util chains (nodeadm writes it to config.json.d/40-nodeadm.conf).
AL2023_USER_DATA = f"""\
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="//"

--//
Content-Type: application/node.eks.aws

---
apiVersion: node.eks.aws/v1alpha1
kind: NodeConfig
spec:
  cluster:
    name: lab-cluster
    apiServerEndpoint: {API_SERVER}
    certificateAuthority: LAB-CA
    cidr: 172.20.0.0/16

--//
Content-Type: application/node.eks.aws

---
apiVersion: node.eks.aws/v1alpha1
kind: NodeConfig
spec:
  kubelet:
    config:
      readOnlyPort: 10255
      makeIPTablesUtilChains: false
    flags:
      - --node-labels=eks.amazonaws.com/nodegroup=lab-ng

--//--
"""

# ---- GKE (kubernetes cluster/gce/gci/configure-helper.sh start-kubelet, written at every boot; kube-env
# KUBELET_ARGS; configure.sh download-kubelet-config) ----

GKE_UNIT = """\
[Unit]
Description=Kubernetes kubelet
Requires=network-online.target
After=network-online.target

[Service]
Restart=always
RestartSec=10
WatchdogSec=30s
EnvironmentFile=/etc/default/kubelet
ExecStart=/home/kubernetes/bin/kubelet $KUBELET_OPTS

[Install]
WantedBy=multi-user.target
"""
# KUBELET_ARGS from kube-env (cluster/gce/util.sh construct-linux-kubelet-flags), then, in start-kubelet,
# KUBELET_CONFIG_FILE_ARG (`--config /home/kubernetes/kubelet-config.yaml`, two words) and the cgroup driver
# (cgroup2fs). SEEDED: --streaming-connection-idle-timeout=0, a "never cut kubectl exec sessions" tuning.
GKE_KUBELET_OPTS = ("--v=2 --cloud-provider=external --experimental-mounter-path=/home/kubernetes/containerized_mounter/"
                    "mounter --cert-dir=/var/lib/kubelet/pki/ --kubeconfig=/var/lib/kubelet/kubeconfig "
                    "--image-credential-provider-config=/etc/srv/kubernetes/cri_auth_config.yaml "
                    "--image-credential-provider-bin-dir=/home/kubernetes/bin --max-pods=110 "
                    "--node-labels=cloud.google.com/gke-nodepool=default-pool,cloud.google.com/gke-os-distribution=cos "
                    "--volume-plugin-dir=/home/kubernetes/flexvolume "
                    "--container-runtime-endpoint=unix:///run/containerd/containerd.sock "
                    "--runtime-cgroups=/system.slice/containerd.service --registry-qps=10 --registry-burst=20 "
                    "--streaming-connection-idle-timeout=0")
GKE_CGROUP_DRIVER = "--cgroup-driver=systemd"
GKE_CONFIG = """\
apiVersion: kubelet.config.k8s.io/v1beta1
authentication:
  anonymous:
    enabled: false
  webhook:
    enabled: true
  x509:
    clientCAFile: /etc/srv/kubernetes/pki/ca-certificates.crt
authorization:
  mode: Webhook
cgroupRoot: /
clusterDNS:
- 10.0.0.10
clusterDomain: cluster.local
enableDebuggingHandlers: true
evictionHard:
  memory.available: 100Mi
  nodefs.available: 10%
  nodefs.inodesFree: 5%
  pid.available: 10%
featureGates:
  RotateKubeletServerCertificate: true
kernelMemcgNotification: true
kind: KubeletConfiguration
kubeReserved:
  cpu: 1060m
  ephemeral-storage: 41Gi
  memory: 1019Mi
readOnlyPort: 10255
serverTLSBootstrap: true
staticPodPath: /etc/kubernetes/manifests
"""
GKE_KUBECONFIG = """\
apiVersion: v1
kind: Config
users:
- name: kubelet
  user:
    client-certificate: /var/lib/kubelet/pki/kubelet-client-current.pem
    client-key: /var/lib/kubelet/pki/kubelet-client-current.pem
clusters:
- name: local
  cluster:
    server: https://34.118.0.1
    certificate-authority: /etc/srv/kubernetes/pki/ca-certificates.crt
contexts:
- context:
    cluster: local
    user: kubelet
  name: service-account-context
current-context: service-account-context
"""

# ---- AKS (Azure/AgentBaker parts/linux/cloud-init/artifacts/kubelet.service and the CSE's /etc/default/kubelet) ----

AKS_UNIT = """\
[Unit]
Description=Kubelet
ConditionPathExists=/opt/bin/kubelet
Wants=network-online.target containerd.service
After=network-online.target containerd.service

[Service]
Restart=always
RestartSec=2
EnvironmentFile=/etc/default/kubelet
# Graceful termination (SIGTERM)
SuccessExitStatus=143
ExecStartPre=/bin/bash /opt/azure/containers/kubelet.sh
ExecStartPre=/bin/bash /opt/azure/containers/ensure_imds_restriction.sh
ExecStartPre=/bin/mkdir -p /var/lib/kubelet
ExecStartPre=/bin/mkdir -p /var/lib/cni
ExecStartPre=/bin/bash -c "if [ $(mount | grep \\"/var/lib/kubelet\\" | wc -l) -le 0 ] ; then /bin/mount --bind /var/lib/kubelet /var/lib/kubelet ; fi"
ExecStartPre=/bin/mount --make-shared /var/lib/kubelet

ExecStartPre=-/sbin/ebtables -t nat --list
ExecStartPre=-/sbin/iptables -t nat --numeric --list

ExecStartPre=/bin/bash /opt/azure/containers/validate-kubelet-credentials.sh
ExecStartPre=/bin/sh -c 'until [ -S /run/containerd/containerd.sock ]; do sleep 0.1; done'

ExecStart=/opt/bin/kubelet \\
        --enable-server \\
        --node-labels="${KUBELET_NODE_LABELS}" \\
        --v=2 \\
        --volume-plugin-dir=/etc/kubernetes/volumeplugins \\
        $KUBELET_TLS_BOOTSTRAP_FLAGS \\
        $KUBELET_CONFIG_FILE_FLAGS \\
        $KUBELET_CONTAINERD_FLAGS \\
        $KUBELET_CONTAINER_RUNTIME_FLAG \\
        $KUBELET_CGROUP_FLAGS \\
        $KUBELET_FLAGS

[Install]
WantedBy=multi-user.target
"""
# AgentBaker's drop-ins (cse_main.sh 10-containerd-base-flag.conf and 10-cgroupv2.conf, cse_config.sh
# ensureKubelet 10-tlsbootstrap.conf, written 0600: name, text, mode).
AKS_DROPINS = (
    ("10-containerd-base-flag.conf", '[Service]\nEnvironment="KUBELET_CONTAINERD_FLAGS=--runtime-request-timeout=15m '
                                     '--container-runtime-endpoint=unix:///run/containerd/containerd.sock '
                                     '--runtime-cgroups=/system.slice/containerd.service"\n', 0o644),
    ("10-tlsbootstrap.conf", '[Service]\nEnvironment="KUBELET_TLS_BOOTSTRAP_FLAGS=--kubeconfig /var/lib/kubelet/kubeconfig '
                             '--bootstrap-kubeconfig /var/lib/kubelet/bootstrap-kubeconfig"\n', 0o600),
    ("10-cgroupv2.conf", '[Service]\nEnvironment="KUBELET_CGROUP_FLAGS=--cgroup-driver=systemd"\n', 0o644),
)
# The CSE's KUBELET_FLAGS, unquoted (values with `<`), sorted by name as AgentBaker writes them. SEEDED:
# --make-iptables-util-chains=false and --rotate-certificates=false (a node pool made before rotation).
# Flags the kubelet of the lab's version does not know are left out when written (worker.py).
AKS_KUBELET_FLAGS = (
    "--address=0.0.0.0", "--anonymous-auth=false", "--authentication-token-webhook=true",
    "--authorization-mode=Webhook", "--cgroups-per-qos=true", "--client-ca-file=/etc/kubernetes/certs/ca.crt",
    "--cloud-config=/etc/kubernetes/azure.json", "--cloud-provider=external", "--cluster-dns=10.0.0.10",
    "--cluster-domain=cluster.local", "--enforce-node-allocatable=pods", "--event-qps=0",
    "--eviction-hard=memory.available<750Mi,nodefs.available<10%,nodefs.inodesFree<5%",
    "--feature-gates=RotateKubeletServerCertificate=true", "--image-gc-high-threshold=85",
    "--image-gc-low-threshold=80", "--kube-reserved=cpu=100m,memory=1638Mi", "--make-iptables-util-chains=false",
    "--max-pods=110", "--node-status-update-frequency=10s",
    "--pod-infra-container-image=mcr.microsoft.com/oss/kubernetes/pause:3.6",
    "--pod-manifest-path=/etc/kubernetes/manifests", "--pod-max-pids=-1", "--protect-kernel-defaults=true",
    "--read-only-port=0", "--resolv-conf=/run/systemd/resolve/resolv.conf", "--rotate-certificates=false",
    "--streaming-connection-idle-timeout=4h",
    "--tls-cert-file=/etc/kubernetes/certs/kubeletserver.crt",
    "--tls-cipher-suites=TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,"
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305,TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,"
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305",
    "--tls-private-key-file=/etc/kubernetes/certs/kubeletserver.key",
)
# The rest of cse_config.sh ensureKubelet's /etc/default/kubelet (0600).
AKS_DEFAULTS_REST = ("KUBELET_REGISTER_SCHEDULABLE=true\nNETWORK_POLICY=\nKUBELET_IMAGE=\n"
                     "KUBELET_NODE_LABELS=kubernetes.azure.com/role=agent,agentpool=nodepool1,"
                     "kubernetes.azure.com/agentpool=nodepool1,kubernetes.azure.com/mode=system\n")
AKS_AZURE_JSON = """\
{
    "cloud": "AzurePublicCloud",
    "tenantId": "00000000-0000-0000-0000-000000000000",
    "subscriptionId": "00000000-0000-0000-0000-000000000000",
    "aadClientId": "msi",
    "aadClientSecret": "msi",
    "resourceGroup": "MC_lab_lab-cluster_westeurope",
    "location": "westeurope",
    "vmType": "vmss",
    "useManagedIdentityExtension": true,
    "userAssignedIdentityID": "00000000-0000-0000-0000-000000000000"
}
"""
AKS_KUBECONFIG = """\
apiVersion: v1
kind: Config
clusters:
- name: localcluster
  cluster:
    certificate-authority: /etc/kubernetes/certs/ca.crt
    server: https://lab-cluster-dns-00000000.hcp.westeurope.azmk8s.io:443
users:
- name: kubelet
  user:
    client-certificate: /var/lib/kubelet/pki/kubelet-client-current.pem
    client-key: /var/lib/kubelet/pki/kubelet-client-current.pem
contexts:
- context:
    cluster: localcluster
    user: kubelet
  name: localclustercontext
current-context: localclustercontext
"""
