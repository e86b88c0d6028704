"""The managed worker layouts (EKS on AL2 and AL2023, GKE, AKS) on nodes written as the providers write
them (`managed_nodes`): which layout answers, the version the kubelet tells, the kubelet's effective flags
read from the provider's unit, drop-ins and environment files, an audit, and a flag fix's bytes."""
from __future__ import annotations

import json
import os

import pytest
from managed_nodes import AKS_FLAGS, AL2023_ENV, BINARIES, GKE_FLAGS, kubelet_binary, make

from cisfix.audit import node_state
from cisfix.editors import flagfile
from cisfix.engine import plan_changes
from cisfix.node import Node
from cisfix.plan import SetSetting
from cisfix.plugins import Plugins
from cisfix.types import Configure

EXPECTED = {  # provider -> (distribution, version, kubelet cgroup, config file)
    "eks-al2": ("eks", "1.31.7-eks-473151a", "runtime.slice/kubelet.service", "/etc/kubernetes/kubelet/kubelet-config.json"),
    "eks-al2023": ("eks", "1.32.3-eks-4096722", "runtime.slice/kubelet.service", "/etc/kubernetes/kubelet/config.json"),
    "gke": ("gke", "1.31.5-gke.1023000", "system.slice/kubelet.service", "/home/kubernetes/kubelet-config.yaml"),
    "aks": ("aks", "1.32.3", "system.slice/kubelet.service", None),
}
PROVIDERS = sorted(EXPECTED)


def plugins_of(node) -> Plugins:
    return Plugins(Node(str(node.root)))


@pytest.mark.parametrize("provider", PROVIDERS)
def test_each_provider_is_detected_with_the_version_its_kubelet_tells(tmp_path, provider):
    info = plugins_of(make(tmp_path / "node", provider)).info
    distribution, version, cgroup, config = EXPECTED[provider]
    assert (info.layout, info.distribution, info.version, info.node_types) == (distribution, distribution, version, ("worker",))
    kubelet = info.components["kubelet"]
    assert set(info.components) == {"kubelet"}
    assert (kubelet.unit, kubelet.config, kubelet.config_flag, kubelet.config_dir_flag) == (cgroup, config, "config", "config-dir")
    assert kubelet.restart == ("systemctl", "restart", "kubelet") and kubelet.health["url"] == "http://127.0.0.1:10248/healthz"
    assert kubelet.flag_files[0] == "/etc/systemd/system/kubelet.service"
    assert not kubelet.live_config  # no credential for /configz given
    assert any("do not last" in w and "cisfix persist" in w for w in info.warnings)


@pytest.mark.parametrize("provider, rewritten", [
    ("eks-al2023", ("/etc/kubernetes/kubelet/config.json", "/etc/kubernetes/kubelet/config.json.d/40-nodeadm.conf",
                    "/etc/eks/kubelet/environment")),
    # GKE's configure.sh and configure-helper.sh, run at every boot (cluster/gce/gci/node.yaml)
    ("gke", ("/home/kubernetes/kubelet-config.yaml", "/etc/default/kubelet", "/etc/systemd/system/kubelet.service")),
    ("eks-al2", ()), ("aks", ()),
])
def test_the_files_a_boot_rewrites_are_the_providers_boot_steps(tmp_path, provider, rewritten):
    info = plugins_of(make(tmp_path / "node", provider)).info
    assert [p for p in ("/etc/kubernetes/kubelet/config.json", "/etc/kubernetes/kubelet/config.json.d/40-nodeadm.conf",
                        "/etc/eks/kubelet/environment", "/home/kubernetes/kubelet-config.yaml", "/etc/default/kubelet",
                        "/etc/systemd/system/kubelet.service", "/etc/kubernetes/kubelet/kubelet-config.json")
            if info.boot_owned(p)] == list(rewritten)
    if rewritten:
        assert any("every boot" in w for w in info.warnings)


def test_the_node_configuration_decides_before_the_files(tmp_path):
    """`distribution:` and `version:` of /etc/cisfix/config.yaml win; a kubeadm node stays kubeadm's."""
    node = make(tmp_path / "node", "aks", config="distribution: eks\nversion: 1.31.2\n")
    info = plugins_of(node).info
    assert (info.distribution, info.version) == ("eks", "1.31.2")
    plain = make(tmp_path / "plain", "gke", config="distribution: kubeadm\n")
    assert plugins_of(plain).info.layout == "kubeadm"


def test_the_operators_credential_turns_on_the_live_configuration(tmp_path):
    node = make(tmp_path / "node", "eks-al2023")
    node.write("/etc/cisfix/kubelet-api.kubeconfig", b"apiVersion: v1\nkind: Config\n", mode=0o600)
    live = plugins_of(node).info.components["kubelet"].live_config
    assert live["url"] == "https://127.0.0.1:10250/configz"
    assert live["kubeconfig"] == "/etc/cisfix/kubelet-api.kubeconfig"


@pytest.mark.parametrize("answer", ["", "Kubernetes version unknown", "Kubernetes v1.32\x1b[31m"])
def test_a_version_the_kubelet_does_not_tell_is_unknown_and_the_newest_benchmark_is_said(tmp_path, answer):
    node = make(tmp_path / "node", "gke")
    kubelet_binary(node, "gke", answer)
    plugins = plugins_of(node)
    assert plugins.info.version is None
    own = [b for b in plugins.benchmarks.values() if b.distribution == "gke"]
    if own:  # gke's own benchmarks are registered: the newest, with a warning
        assert plugins.info.benchmark and any("unknown" in w for w in plugins.info.warnings)


def test_an_offline_roots_kubelet_is_never_run(tmp_path):
    """`offline: true` is a disk image or a volume: its kubelet, root's as it may be there, is not run as
    root here; `version:` tells the version instead."""
    marker = tmp_path / "ran"
    node = make(tmp_path / "node", "gke", config="offline: true\n")
    node.write(BINARIES["gke"], f"#!/bin/sh\ntouch {marker}\necho 'Kubernetes v1.32.3-gke.1'\n".encode(), mode=0o755)
    assert plugins_of(node).info.version is None and not marker.exists()
    node.write("/etc/cisfix/config.yaml", b"apiVersion: cisfix/v1\nkind: NodeConfig\noffline: true\n"
                                          b"version: 1.31.5-gke.1023000\n", mode=0o600)
    assert plugins_of(node).info.version == "1.31.5-gke.1023000" and not marker.exists()


def test_a_kubelet_another_user_could_have_written_is_not_run(tmp_path):
    node = make(tmp_path / "node", "aks")
    marker = tmp_path / "ran"
    binary = node.write("/usr/local/bin/kubelet", f"#!/bin/sh\ntouch {marker}\necho 'Kubernetes v1.32.3'\n".encode(),
                        mode=0o775)  # group-writable
    os.chown(binary, 0, 0)
    assert plugins_of(node).info.version is None
    assert not marker.exists()


def test_an_aks_kubelet_is_the_one_its_unit_runs_opt_bin_on_images_since_2026(tmp_path):
    """AgentBaker #7125 (January 2026) moved the kubelet from /usr/local/bin to /opt/bin (kubelet.service
    `ExecStart=/opt/bin/kubelet`): the version is asked of the program the unit runs, whichever it is."""
    node = make(tmp_path / "node", "aks")
    unit = node.path("/etc/systemd/system/kubelet.service")
    unit.write_text(unit.read_text().replace("/usr/local/bin/kubelet", "/opt/bin/kubelet"))
    node.write("/opt/bin/kubelet", b"#!/bin/sh\necho 'Kubernetes v1.33.2'\n", mode=0o755)
    assert plugins_of(node).info.version == "1.33.2"  # not the /usr/local/bin/kubelet an older image left
    os.unlink(node.path("/usr/local/bin/kubelet"))
    assert plugins_of(node).info.version == "1.33.2"
    unit.write_text(unit.read_text().replace("ExecStart=/opt/bin/kubelet", "ExecStart=/somewhere/else/kubelet"))
    assert plugins_of(node).info.version == "1.33.2"  # a program it does not know: the provider's paths


@pytest.mark.parametrize("dropin, cgroup", [
    # AgentBaker ensureKubeletCgroupHierarchy (memory-hardened node pools): 10-kubereserved-slice.conf
    ("[Unit]\nWants=kubereserved.slice\nAfter=kubereserved.slice\n\n[Service]\nSlice=kubereserved.slice\n",
     "kubereserved.slice/kubelet.service"),
    ("[Service]\nSlice=kube-node.slice\n", "kube.slice/kube-node.slice/kubelet.service"),  # systemd nests by dashes
    ("[Service]\nSlice=\n", "system.slice/kubelet.service"),
])
def test_the_kubelets_cgroup_is_the_slice_its_unit_and_drop_ins_name(tmp_path, dropin, cgroup):
    node = make(tmp_path / "node", "aks")
    node.write("/etc/systemd/system/kubelet.service.d/10-kubereserved-slice.conf", dropin.encode(), mode=0o644)
    assert plugins_of(node).info.components["kubelet"].unit == cgroup
    eks = make(tmp_path / "eks", "eks-al2023")
    eks.write("/etc/systemd/system/kubelet.service.d/10-kubereserved-slice.conf", dropin.encode(), mode=0o644)
    assert plugins_of(eks).info.components["kubelet"].unit == cgroup  # the drop-in's over the unit's runtime.slice


def test_minor_version_copes_with_the_providers_suffixes():
    from cisfix.plugins import minor_version

    assert [minor_version(v) for v in ("1.32.3-eks-4096722", "1.31.5-gke.1023000", "1.32.3", None)] == \
        [(1, 32), (1, 31), (1, 32), None]


# ---- the kubelet's flags, as systemd would start it ----

@pytest.mark.parametrize("provider, expected", [
    ("eks-al2", {"config": "/etc/kubernetes/kubelet/kubelet-config.json", "kubeconfig": "/var/lib/kubelet/kubeconfig",
                 "node-ip": "192.168.1.97", "v": "2", "hostname-override": "ip-192-168-1-97", "max-pods": "29",
                 "register-with-taints": '"dedicated=test:NoSchedule"'}),
    ("eks-al2023", {"config": "/etc/kubernetes/kubelet/config.json", "config-dir": "/etc/kubernetes/kubelet/config.json.d",
                    "node-ip": "192.168.60.14", "cloud-provider": "external", "v": "2"}),
    ("gke", {"config": "/home/kubernetes/kubelet-config.yaml", "v": "2", "max-pods": "110",
             "pod-sysctls": "net.core.somaxconn=1024,net.ipv4.conf.all.accept_redirects=0"}),
    ("aks", {"enable-server": None, "v": "2", "volume-plugin-dir": "/etc/kubernetes/volumeplugins",
             "kubeconfig": "/var/lib/kubelet/kubeconfig", "runtime-request-timeout": "15m", "anonymous-auth": "false",
             "eviction-hard": "memory.available<750Mi,nodefs.available<10%,nodefs.inodesFree<5%", "read-only-port": "10255",
             "tls-cipher-suites": "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"}),
])
def test_the_kubelets_flags_come_from_the_providers_unit_dropins_and_environment_files(tmp_path, provider, expected):
    settings = node_state(plugins_of(make(tmp_path / "node", provider))).settings("kubelet")
    assert {name: settings.file_flags.get(name, "<unset>") for name in expected} == expected
    assert settings.config_path == EXPECTED[provider][3]


def test_each_flag_is_sourced_to_the_file_and_line_that_sets_it(tmp_path):
    settings = node_state(plugins_of(make(tmp_path / "node", "eks-al2"))).settings("kubelet")
    dropins = "/etc/systemd/system/kubelet.service.d"
    assert (settings.sources["v"].file, settings.sources["v"].line) == (f"{dropins}/10-kubelet-args.conf", 2)
    assert settings.sources["max-pods"].file == f"{dropins}/30-kubelet-extra-args.conf"
    assert settings.sources["config"].file is None  # written into ExecStart


def test_the_flag_files_the_providers_write_read_as_their_kubelets_get_them():
    assert flagfile.flags_of(AL2023_ENV)["config-dir"] == "/etc/kubernetes/kubelet/config.json.d"
    assert flagfile.flags_of(GKE_FLAGS)["config"] == "/home/kubernetes/kubelet-config.yaml"
    aks = flagfile.parse(AKS_FLAGS)
    assert [a.var for a in aks.assignments] == ["KUBELET_FLAGS", "KUBELET_REGISTER_SCHEDULABLE", "NETWORK_POLICY",
                                                 "KUBELET_IMAGE", "KUBELET_NODE_LABELS"]
    assert flagfile.flags_of(AKS_FLAGS)["eviction-hard"] == "memory.available<750Mi,nodefs.available<10%,nodefs.inodesFree<5%"


def test_a_unit_line_continued_with_a_backslash_is_one_command():
    unit = "[Service]\nExecStart=/usr/bin/kubelet \\\n    --config /c.json \\\n    $A_ARGS\nRestart=always\n"
    parsed = flagfile.parse(unit)
    assert parsed.exec_start.split() == ["/usr/bin/kubelet", "--config", "/c.json", "$A_ARGS"]
    assert parsed.assignments == ()  # Restart= is a directive, no variable


def test_al2s_single_quoted_dropin_is_edited_in_place():
    text = "[Service]\nEnvironment='KUBELET_ARGS=--node-ip=10.0.0.1 --read-only-port=10255 --v=2'\n"
    edited = flagfile.edit(text, [flagfile.SetFlag("read-only-port", "0")]).text
    assert edited == "[Service]\nEnvironment='KUBELET_ARGS=--node-ip=10.0.0.1 --read-only-port=0 --v=2'\n"
    added = flagfile.edit(text, [flagfile.SetFlag("rotate-certificates", "true")]).text
    assert added == "[Service]\nEnvironment='KUBELET_ARGS=--node-ip=10.0.0.1 --read-only-port=10255 --v=2 --rotate-certificates=true'\n"


# ---- audit and a fix's edits ----

@pytest.mark.parametrize("provider", PROVIDERS)
def test_an_audit_judges_the_kubelet_and_no_control_plane(tmp_path, provider):
    node = make(tmp_path / "node", provider)
    masters = json.loads(node.run("audit", "--format", "json", "--node-type", "master", "--benchmark",
                                  "cis-1.12").stdout)["results"]
    # The generic benchmark's control-plane checks: every automated one of a component is NOT_APPLICABLE
    # (no API server, controller manager, scheduler or etcd here), and none fails.
    assert {r["status"] for r in masters if r["id"].startswith(("1.2.", "1.3.", "1.4.", "2.")) and r["automated"]} \
        == {"NOT_APPLICABLE"}
    assert not [r["id"] for r in masters if r["status"] in ("FAIL", "ERROR")]
    audit = node.run("audit", "--format", "json")
    assert audit.exit_code in (0, 1), audit.stderr
    report = json.loads(audit.stdout)
    results = {r["id"]: r for r in report["results"]}
    assert not any(i.startswith(("1.", "2.")) for i in results)  # a worker: no control-plane check is run
    assert {r["status"] for i, r in results.items() if i.startswith("3.1")} - {"NOT_APPLICABLE"}  # its own benchmark
    assert not any(r["status"] == "ERROR" for r in results.values()), [r for r in results.values() if r["status"] == "ERROR"]
    assert report["judged_against"]["node"]["distribution"] == EXPECTED[provider][0]
    assert any("do not last" in w for w in report["warnings"])


def test_a_flag_fix_on_aks_edits_etc_default_kubelet_byte_faithfully(tmp_path):
    node = make(tmp_path / "node", "aks")
    plugins = plugins_of(node)
    change = Configure("kubelet", (SetSetting("read-only-port", "readOnlyPort", 0),
                                   SetSetting("rotate-server-certificates", "serverTLSBootstrap", True)))
    planned = {p.path: p for p in plan_changes(plugins.node, [change], plugins.editors(), node_state(plugins))}
    assert set(planned) == {"/etc/default/kubelet"}  # no config file: both are flags there
    expected = AKS_FLAGS.replace("--read-only-port=10255", "--read-only-port=0").replace(
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256\n", "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 --rotate-server-certificates=true\n", 1)
    assert planned["/etc/default/kubelet"].after == expected.encode()


def test_audit_text_and_fix_say_what_does_not_last(tmp_path):
    node = make(tmp_path / "node", "eks-al2023")
    text = node.run("audit")
    assert "do not last" in text.stdout and "nodeadm rewrites" in text.stdout
    assert "NodeConfig" in text.stdout


def test_a_distribution_with_benchmarks_of_its_own_and_an_unknown_version_gets_its_newest_said_so(tmp_path):
    """RKE2 stands for any such distribution here (EKS, GKE and AKS register theirs alike); kubeadm's
    generic benchmarks are never guessed at: without a version, its audit asks for one."""
    from cisfix.testing import build_node

    node = build_node(tmp_path / "node")
    node.write("/etc/cisfix/config.yaml", b"apiVersion: cisfix/v1\nkind: NodeConfig\ndistribution: rke2\n")
    described = node.run("benchmarks", "--format", "json").json()["node"]
    assert described["benchmark"].startswith("rke2-cis-")
    assert described["warnings"][0].startswith("the Kubernetes version of this rke2 node is unknown: audited against "
                                               f"{described['benchmark']}, its newest benchmark")
    plain = build_node(tmp_path / "plain")
    for name in ("kube-apiserver", "kube-controller-manager", "kube-scheduler"):
        plain.path(f"/etc/kubernetes/manifests/{name}.yaml").unlink()
    info = plugins_of(plain).info
    assert (info.version, info.benchmark, info.warnings) == (None, None, ())


def test_a_kubelet_that_floods_or_hangs_gives_no_version_and_does_not_stall_the_run(tmp_path, monkeypatch):
    from cisfix.layouts import worker

    monkeypatch.setattr(worker, "VERSION_TIMEOUT", 0.5)
    node = make(tmp_path / "node", "aks")
    node.write("/usr/local/bin/kubelet", b"#!/bin/sh\nwhile :; do echo 'Kubernetes v1.32.3'; done\n", mode=0o755)
    assert plugins_of(node).info.version is None  # more than a version line: killed once it said too much
    node.write("/usr/local/bin/kubelet", b"#!/bin/sh\nexec sleep 30\n", mode=0o755)
    assert plugins_of(node).info.version is None  # killed at the timeout


@pytest.mark.parametrize("provider", PROVIDERS)
def test_paths_name_the_kubelets_files_and_hide_what_no_run_may_see(tmp_path, provider):
    lines = make(tmp_path / "node", provider).run("paths", "--for", "fix").stdout.splitlines()
    entries = {line.split()[2]: line.split()[0] for line in lines}
    assert entries["/etc/systemd/system"] == "write" and entries["/var/lib/kubelet/pods"] == "hide"
    assert entries["/var/lib/kubelet"] == "write"
    binary = {"aks": "/usr/local/bin/kubelet", "gke": "/home/kubernetes/bin/kubelet"}.get(provider, "/usr/bin/kubelet")
    assert any(binary == path or binary.startswith(path + "/") for path in entries)  # itself, or a folder holding it
    if provider == "aks":
        assert entries["/etc/kubernetes/azure.json"] == "hide" and entries["/etc/default"] == "write"


def test_an_aks_node_pool_with_a_kubelet_config_file_reads_it_below_the_flags(tmp_path):
    """AgentBaker cse_config.sh configureK8s (KUBELET_CONFIG_FILE_ENABLED): kubeletconfig.json (0600) and the
    drop-in 10-componentconfig.conf (0600) that gives the unit's $KUBELET_CONFIG_FILE_FLAGS."""
    node = make(tmp_path / "node", "aks")
    node.write("/etc/default/kubeletconfig.json", json.dumps(
        {"kind": "KubeletConfiguration", "apiVersion": "kubelet.config.k8s.io/v1beta1", "podPidsLimit": 4096}).encode(), 0o600)
    node.write("/etc/systemd/system/kubelet.service.d/10-componentconfig.conf",
               b'[Service]\nEnvironment="KUBELET_CONFIG_FILE_FLAGS=--config /etc/default/kubeletconfig.json"\n', 0o600)
    plugins = plugins_of(node)
    assert plugins.info.components["kubelet"].config == "/etc/default/kubeletconfig.json"
    settings = node_state(plugins).settings("kubelet")
    assert settings.config_path == "/etc/default/kubeletconfig.json"
    assert settings.setting("pod-max-pids", "podPidsLimit")[1] == "-1"  # the flag wins over the file
    assert settings.setting("seccomp-default", "seccompDefault")[0] is False


@pytest.mark.skipif(os.geteuid() != 0, reason="trust is enforced only when cisfix runs as root")
@pytest.mark.parametrize("how", ["her folder", "her writable drop-in", "a link to her file"])
def test_a_unit_drop_in_another_user_could_write_is_refused_and_nothing_changes(tmp_path, how):
    """Her `99-*.conf` would win over bootstrap.sh's KUBELET_EXTRA_ARGS: a FAILing read-only port would PASS."""
    node = make(tmp_path / "node", "eks-al2", config="offline: true\n")
    node.write("/etc/kubernetes/kubelet/kubelet-config.json", json.dumps({"readOnlyPort": 10255}).encode(), mode=0o644)
    folder = "/etc/systemd/system/kubelet.service.d"
    hers = b"[Service]\nEnvironment='KUBELET_EXTRA_ARGS=--read-only-port=0'\n"
    if how == "her folder":
        os.chown(node.path(folder), 1000, 1000)
        node.write(f"{folder}/99-hers.conf", hers, mode=0o644)
    elif how == "her writable drop-in":
        node.write(f"{folder}/99-hers.conf", hers, mode=0o666)
    elif how == "a link to her file":
        node.write("/home/her/hers.conf", hers, mode=0o644)
        os.chown(node.path("/home/her"), 1000, 1000)
        os.chown(node.path("/home/her/hers.conf"), 1000, 1000)
        os.symlink("../../../../home/her/hers.conf", node.path(f"{folder}/99-hers.conf"))
    before = node.snapshot()
    for command in (["audit", "--check", "3.2.4"], ["fix", "--check", "3.2.4"]):
        result = node.run(*command)
        assert result.exit_code == 2, result.stdout
        assert result.stderr.startswith("cisfix: error: ") and len(result.stderr.strip().splitlines()) == 1
        assert "the kubelet unit's drop-ins are not used" in result.stderr
    assert node.snapshot() == before


def test_a_unit_drop_in_name_with_control_characters_is_refused(tmp_path):
    node = make(tmp_path / "node", "aks", config="offline: true\n")
    node.write("/etc/systemd/system/kubelet.service.d/99-\x1b[2Jx.conf", b"[Service]\n", mode=0o644)
    result = node.run("audit")
    assert result.exit_code == 2 and "control characters" in result.stderr and "\x1b" not in result.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="trust is enforced only when cisfix runs as root")
def test_a_providers_file_another_user_made_does_not_make_a_kubeadm_node_a_managed_worker(tmp_path):
    """GKE's sign is under /home: a user whose home is /home/kubernetes had a control-plane node judged by
    gke-1.9.0's six worker checks instead of its 135."""
    from cisfix.testing import build_node

    node = build_node(tmp_path / "node")
    node.write("/home/kubernetes/kubelet-config.yaml", b"readOnlyPort: 0\n", mode=0o644)
    for path in ("/home/kubernetes", "/home/kubernetes/kubelet-config.yaml"):
        os.chown(node.path(path), 1000, 1000)
    info = plugins_of(node).info
    assert (info.layout, info.distribution) == ("kubeadm", "kubeadm")
    os.chown(node.path("/home/kubernetes"), 0, 0)  # root's folder, her file: still not the provider's
    assert plugins_of(node).info.layout == "kubeadm"
