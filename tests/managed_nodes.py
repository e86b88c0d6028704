"""Worker nodes of the managed providers under a temp root, written as the providers' images write them
(awslabs/amazon-eks-ami templates/al2/runtime/{kubelet.service,bootstrap.sh} and nodeadm's
internal/kubelet/{config.go,environment.go}; kubernetes cluster/gce/gci/configure-helper.sh start-kubelet;
Azure/AgentBaker parts/linux/cloud-init/artifacts/kubelet.service and its /etc/default/kubelet), with a
kubelet executable that answers `--version` as the provider's does."""
from __future__ import annotations

import json
import os
from pathlib import Path

from cisfix.testing import TestNode

VERSIONS = {"eks-al2": "v1.31.7-eks-473151a", "eks-al2023": "v1.32.3-eks-4096722",
            "gke": "v1.31.5-gke.1023000", "aks": "v1.32.3"}
BINARIES = {"eks-al2": "/usr/bin/kubelet", "eks-al2023": "/usr/bin/kubelet", "gke": "/home/kubernetes/bin/kubelet",
            "aks": "/usr/local/bin/kubelet"}

AL2_UNIT = """[Unit]
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

Restart=always
RestartSec=5
KillMode=process
CPUAccounting=true
MemoryAccounting=true

[Install]
WantedBy=multi-user.target
"""
AL2_ARGS = ("[Service]\nEnvironment='KUBELET_ARGS=--node-ip=192.168.1.97 --pod-infra-container-image="
            "602401143452.dkr.ecr.eu-west-1.amazonaws.com/eks/pause:3.5 --v=2 --hostname-override=ip-192-168-1-97'\n")
AL2_EXTRA = ("[Service]\nEnvironment='KUBELET_EXTRA_ARGS=--node-labels=eks.amazonaws.com/nodegroup=workers,"
             "eks.amazonaws.com/capacityType=ON_DEMAND --register-with-taints=\"dedicated=test:NoSchedule\" "
             "--max-pods=29'\n")
EKS_CONFIG = {
    "kind": "KubeletConfiguration", "apiVersion": "kubelet.config.k8s.io/v1beta1", "address": "0.0.0.0",
    "authentication": {"anonymous": {"enabled": False}, "webhook": {"cacheTTL": "2m0s", "enabled": True},
                       "x509": {"clientCAFile": "/etc/kubernetes/pki/ca.crt"}},
    "authorization": {"mode": "Webhook", "webhook": {"cacheAuthorizedTTL": "5m0s", "cacheUnauthorizedTTL": "30s"}},
    "clusterDomain": "cluster.local", "hairpinMode": "hairpin-veth", "readOnlyPort": 0, "cgroupDriver": "systemd",
    "cgroupRoot": "/", "featureGates": {"RotateKubeletServerCertificate": True}, "protectKernelDefaults": True,
    "serializeImagePulls": False, "serverTLSBootstrap": True,
    "tlsCipherSuites": ["TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"],
    "clusterDNS": ["10.100.0.10"], "evictionHard": {"memory.available": "100Mi", "nodefs.available": "10%"},
    "maxPods": 29,
}
AL2023_UNIT = """[Unit]
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
# nodeadm joins its flags (a Go map: any order) and then spec.kubelet.flags; no trailing newline.
AL2023_ENV = ("NODEADM_KUBELET_ARGS=--node-ip=192.168.60.14 --hostname-override=ip-192-168-60-14.ec2.internal "
              "--cloud-provider=external --kubeconfig=/var/lib/kubelet/kubeconfig "
              "--config=/etc/kubernetes/kubelet/config.json --config-dir=/etc/kubernetes/kubelet/config.json.d "
              "--image-credential-provider-bin-dir=/etc/eks/image-credential-provider "
              "--image-credential-provider-config=/etc/eks/image-credential-provider/config.json "
              "--node-labels=eks.amazonaws.com/nodegroup=workers --v=2")
GKE_UNIT = """[Unit]
Description=Kubernetes kubelet
Requires=network-online.target
After=network-online.target

[Service]
Restart=always
RestartSec=10
EnvironmentFile=/etc/default/kubelet
ExecStart=/home/kubernetes/bin/kubelet $KUBELET_OPTS

[Install]
WantedBy=multi-user.target
"""
GKE_FLAGS = ('KUBELET_OPTS=" --v=2 --cloud-provider=external --experimental-mounter-path=/home/kubernetes/containerized_mounter/mounter '
             '--cert-dir=/var/lib/kubelet/pki/ --kubeconfig=/var/lib/kubelet/kubeconfig --max-pods=110 '
             '--volume-plugin-dir=/home/kubernetes/flexvolume --node-status-max-images=25 --container-runtime-endpoint='
             'unix:///run/containerd/containerd.sock --runtime-cgroups=/system.slice/containerd.service '
             '--registry-qps=10 --registry-burst=20 --config /home/kubernetes/kubelet-config.yaml '
             '--pod-sysctls=net.core.somaxconn=1024,net.ipv4.conf.all.accept_redirects=0"\n')
GKE_CONFIG = """apiVersion: kubelet.config.k8s.io/v1beta1
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
- 10.12.0.10
clusterDomain: cluster.local
enableDebuggingHandlers: true
evictionHard:
  memory.available: 100Mi
  nodefs.available: 10%
featureGates:
  RotateKubeletServerCertificate: true
kind: KubeletConfiguration
kubeReserved:
  cpu: 1060m
  memory: 1019Mi
readOnlyPort: 10255
serverTLSBootstrap: true
staticPodPath: /etc/kubernetes/manifests
"""
AKS_UNIT = """[Unit]
Description=Kubelet
ConditionPathExists=/usr/local/bin/kubelet
Wants=network-online.target containerd.service
After=network-online.target containerd.service

[Service]
Restart=always
RestartSec=2
EnvironmentFile=/etc/default/kubelet
SuccessExitStatus=143
ExecStartPre=/bin/bash /opt/azure/containers/kubelet.sh
ExecStartPre=/bin/mkdir -p /var/lib/kubelet
ExecStartPre=/bin/mkdir -p /var/lib/cni
ExecStartPre=/bin/bash -c "if [ $(mount | grep \\"/var/lib/kubelet\\" | wc -l) -le 0 ] ; then /bin/mount --bind /var/lib/kubelet /var/lib/kubelet ; fi"
ExecStartPre=/bin/mount --make-shared /var/lib/kubelet

ExecStartPre=-/sbin/ebtables -t nat --list
ExecStartPre=-/sbin/iptables -t nat --numeric --list

ExecStart=/usr/local/bin/kubelet \\
        --enable-server \\
        --node-labels="${KUBELET_NODE_LABELS}" \\
        --v=2 \\
        --volume-plugin-dir=/etc/kubernetes/volumeplugins \\
        $KUBELET_TLS_BOOTSTRAP_FLAGS \\
        $KUBELET_CONFIG_FILE_FLAGS \\
        $KUBELET_CONTAINERD_FLAGS \\
        $KUBELET_FLAGS

[Install]
WantedBy=multi-user.target
"""
AKS_FLAGS = ("KUBELET_FLAGS=--address=0.0.0.0 --anonymous-auth=false --authentication-token-webhook=true "
             "--authorization-mode=Webhook --cgroups-per-qos=true --client-ca-file=/etc/kubernetes/certs/ca.crt "
             "--cloud-config=/etc/kubernetes/azure.json --cloud-provider=external --cluster-dns=10.0.0.10 "
             "--cluster-domain=cluster.local --container-log-max-size=50M --enforce-node-allocatable=pods "
             "--event-qps=0 --eviction-hard=memory.available<750Mi,nodefs.available<10%,nodefs.inodesFree<5% "
             "--feature-gates=RotateKubeletServerCertificate=true --image-gc-high-threshold=85 "
             "--image-gc-low-threshold=80 --kube-reserved=cpu=100m,memory=1638Mi --max-pods=110 "
             "--node-status-update-frequency=10s --pod-manifest-path=/etc/kubernetes/manifests --pod-max-pids=-1 "
             "--protect-kernel-defaults=true --read-only-port=10255 --resolv-conf=/run/systemd/resolve/resolv.conf "
             "--rotate-certificates=true --streaming-connection-idle-timeout=4h "
             "--tls-cipher-suites=TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256\n"
             "KUBELET_REGISTER_SCHEDULABLE=true\n"
             "NETWORK_POLICY=azure\n"
             "KUBELET_IMAGE=\n"
             "KUBELET_NODE_LABELS=kubernetes.azure.com/agentpool=nodepool1,kubernetes.azure.com/mode=system,"
             "kubernetes.azure.com/role=agent\n")
AKS_CONTAINERD = ("[Service]\nEnvironment=\"KUBELET_CONTAINERD_FLAGS=--runtime-request-timeout=15m "
                  "--container-runtime-endpoint=unix:///run/containerd/containerd.sock --runtime-cgroups=/system.slice/containerd.service\"\n")
AKS_TLS = "[Service]\nEnvironment=\"KUBELET_TLS_BOOTSTRAP_FLAGS=--kubeconfig /var/lib/kubelet/kubeconfig --bootstrap-kubeconfig /var/lib/kubelet/bootstrap-kubeconfig\"\n"


def kubelet_binary(node: TestNode, provider: str, answer: str = None) -> Path:
    """A kubelet executable (root's, 0755) that answers `--version` as the provider's does."""
    answer = answer if answer is not None else f"Kubernetes {VERSIONS[provider]}"
    return node.write(BINARIES[provider], f"#!/bin/sh\necho '{answer}'\n".encode(), mode=0o755)


def make(root: Path, provider: str, config: str = "") -> TestNode:
    """A worker node of `provider` (eks-al2, eks-al2023, gke, aks); `config`: /etc/cisfix/config.yaml."""
    node = TestNode(root)
    root.mkdir(parents=True, exist_ok=True)
    os.chmod(root, 0o755)
    writers[provider](node)
    kubelet_binary(node, provider)
    if config:
        node.write("/etc/cisfix/config.yaml", f"apiVersion: cisfix/v1\nkind: NodeConfig\n{config}".encode(), mode=0o600)
    return node


def _eks_al2(node: TestNode) -> None:
    node.write("/etc/eks/bootstrap.sh", b"#!/usr/bin/env bash\n", mode=0o755)
    node.write("/etc/systemd/system/kubelet.service", AL2_UNIT.encode(), mode=0o644)
    node.write("/etc/systemd/system/kubelet.service.d/10-kubelet-args.conf", AL2_ARGS.encode(), mode=0o644)
    node.write("/etc/systemd/system/kubelet.service.d/30-kubelet-extra-args.conf", AL2_EXTRA.encode(), mode=0o644)
    node.write("/etc/kubernetes/kubelet/kubelet-config.json", json.dumps(EKS_CONFIG, indent=2).encode(), mode=0o644)
    node.write("/etc/kubernetes/pki/ca.crt", b"CA\n", mode=0o644)
    node.write("/var/lib/kubelet/kubeconfig", b"apiVersion: v1\nkind: Config\n", mode=0o644)


def _eks_al2023(node: TestNode) -> None:
    node.write("/etc/eks/image-credential-provider/config.json", b"{}\n", mode=0o644)
    node.write("/etc/systemd/system/kubelet.service", AL2023_UNIT.encode(), mode=0o644)
    node.write("/etc/eks/kubelet/environment", AL2023_ENV.encode(), mode=0o644)
    config = {k: v for k, v in EKS_CONFIG.items() if k != "maxPods"}
    node.write("/etc/kubernetes/kubelet/config.json", json.dumps(config, indent=4).encode(), mode=0o644)
    dropin = {"apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration", "maxPods": 58}
    node.write("/etc/kubernetes/kubelet/config.json.d/40-nodeadm.conf", json.dumps(dropin, indent=4).encode(), mode=0o644)
    node.write("/etc/kubernetes/pki/ca.crt", b"CA\n", mode=0o644)


def _gke(node: TestNode) -> None:
    node.write("/etc/systemd/system/kubelet.service", GKE_UNIT.encode(), mode=0o644)
    node.write("/etc/default/kubelet", GKE_FLAGS.encode(), mode=0o644)
    node.write("/home/kubernetes/kubelet-config.yaml", GKE_CONFIG.encode(), mode=0o644)
    node.write("/etc/srv/kubernetes/pki/ca-certificates.crt", b"CA\n", mode=0o644)


def _aks(node: TestNode) -> None:
    node.write("/etc/systemd/system/kubelet.service", AKS_UNIT.encode(), mode=0o644)
    node.write("/etc/systemd/system/kubelet.service.d/10-containerd.conf", AKS_CONTAINERD.encode(), mode=0o644)
    node.write("/etc/systemd/system/kubelet.service.d/10-tlsbootstrap.conf", AKS_TLS.encode(), mode=0o644)
    node.write("/etc/default/kubelet", AKS_FLAGS.encode(), mode=0o644)
    node.write("/etc/kubernetes/azure.json", b'{"cloud": "AzurePublicCloud"}\n', mode=0o600)
    node.write("/etc/kubernetes/certs/ca.crt", b"CA\n", mode=0o644)


writers = {"eks-al2": _eks_al2, "eks-al2023": _eks_al2023, "gke": _gke, "aks": _aks}
