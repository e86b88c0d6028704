"""The RKE2 and k3s benchmarks: the same check ids, scoring and manual checks as kube-bench's rke2-cis-1.8
and k3s-cis-1.9 (tests/data/kubebench, see SOURCES.md there); the catalog's checks reused; fixes planned as
`Configure` for the layout to route, never as edits of RKE2's generated manifests; files an embedded
component does not have, and etcd's files on a node without etcd, NOT_APPLICABLE (kube-bench#1978), not
FAIL. Nodes are described directly (NodeInfo, Component), as the RKE2 and k3s layouts describe them."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Dict, List, Tuple

import pytest

from cisfix.audit import audit_one
from cisfix.node import Node
from cisfix.plan import SetFlag
from cisfix.state import NodeState
from cisfix.types import FAIL, NOT_APPLICABLE, PASS, ArgList, CheckResult, Component, Configure, EditFile, NodeInfo
from cisfix_cis import catalog
from cisfix_cis.checks import checks_for, specs_for
from cisfix_cis.distributions import K3S_1_9, RKE2_1_8
from cisfix_cis.kubebench import report

DATA = Path(__file__).parent / "data" / "kubebench"
BENCHMARKS = (RKE2_1_8, K3S_1_9)
CONTROL_PLANE = ("kube-apiserver", "kube-controller-manager", "kube-scheduler")


def kube_bench(benchmark: str) -> Dict[str, Tuple[str, bool, str]]:
    """id -> (type, scored, "automated"/"manual") from kube-bench's cfg, in its order."""
    rows = [line.split("\t") for line in (DATA / f"{benchmark}.ids").read_text().splitlines()
            if line and not line.startswith("#")]
    return {r[0]: (r[1], r[2] == "true", r[3]) for r in rows}


# ---- the same checks as kube-bench's ----

@pytest.mark.parametrize("benchmark", BENCHMARKS)
def test_the_check_ids_are_kube_benchs_and_scored_as_it_scores_them(benchmark):
    theirs = kube_bench(benchmark)
    checks = checks_for(benchmark)
    assert [c.id for c in checks] == list(theirs)  # kube-bench's order is the ids' order
    specs = specs_for(benchmark)
    assert {i: s.scored for i, s in specs.items()} == {i: scored for i, (_, scored, _) in theirs.items()}
    for check in checks:
        assert check.benchmark == benchmark and check.title
        if not check.automated:
            assert check.remediation, f"{check.id}: a manual check needs guidance"


# What kube-bench automates and cisfix leaves to a person, each saying why in its guidance.
NOT_AUTOMATED_HERE = {RKE2_1_8: set(), K3S_1_9: {"5.1.1", "5.1.3", "5.1.5", "5.1.6"}}


@pytest.mark.parametrize("benchmark", BENCHMARKS)
def test_kube_benchs_manual_checks_are_manual_and_its_automated_ones_automated(benchmark):
    theirs = kube_bench(benchmark)
    checks = {c.id: c for c in checks_for(benchmark)}
    assert not [i for i, (kind, _, _) in theirs.items() if kind == "manual" and checks[i].automated]
    left = {i for i, (kind, _, label) in theirs.items() if label == "automated" and not checks[i].automated}
    assert left == NOT_AUTOMATED_HERE[benchmark]
    for check_id in left:
        assert "kube-bench" in checks[check_id].remediation


def test_rke2_and_k3s_reuse_the_catalogs_checks_under_their_own_ids():
    base = catalog.specs_for(catalog.CIS_1_11)
    rke2, k3s = specs_for(RKE2_1_8), specs_for(K3S_1_9)
    # the API server's profiling is 1.2.15 in CIS v1.11 and k3s-cis-1.9, 1.2.16 in rke2-cis-1.8
    assert rke2["1.2.16"].audit == k3s["1.2.15"].audit == base["1.2.15"].audit
    assert rke2["1.2.16"].fix == k3s["1.2.15"].fix == base["1.2.15"].fix
    assert rke2["5.7.4"].title == k3s["5.7.4"].title == base["5.6.4"].title
    assert rke2["4.2.12"].audit == base["4.2.12"].audit  # CIS v1.8's kubelet suites are v1.11's


# ---- nodes as the RKE2 and k3s layouts describe them ----

def write(root: Path, node_path: str, data: bytes, mode: int = 0o600) -> None:
    path = root / node_path.lstrip("/")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    os.chmod(path, mode)


def manifest(component: str, flags: List[str]) -> bytes:
    lines = "".join(f"    - --{f}\n" for f in flags)
    return (f"apiVersion: v1\nkind: Pod\nmetadata:\n  name: {component}\n  namespace: kube-system\nspec:\n"
            f"  containers:\n  - name: {component}\n    image: rancher/hardened-kubernetes:v1.31.4-rke2r1\n"
            f"    command:\n    - {component}\n{lines}").encode()


def arg_list(dist: str, component: str) -> ArgList:
    etc = f"/etc/rancher/{dist}"
    return ArgList(f"{component}-arg", f"{etc}/config.yaml", f"{etc}/config.yaml.d",
                   f"{etc}/config.yaml.d/90-cisfix.yaml", "k3s" if dist == "k3s" else "replace")


RKE2_MANIFESTS = "/var/lib/rancher/rke2/agent/pod-manifests"
RKE2_ETCD = "/var/lib/rancher/rke2/server/db/etcd"
TLS = "/var/lib/rancher/rke2/server/tls/etcd"
# etcd's config file as rke2-server writes it (the settings the benchmark's etcd checks look at)
ETCD_CONFIG = f"""\
name: server-0
data-dir: {RKE2_ETCD}
client-transport-security:
  cert-file: {TLS}/server-client.crt
  key-file: {TLS}/server-client.key
  client-cert-auth: true
  trusted-ca-file: {TLS}/server-ca.crt
peer-transport-security:
  cert-file: {TLS}/peer-server-client.crt
  key-file: {TLS}/peer-server-client.key
  client-cert-auth: true
  trusted-ca-file: {TLS}/peer-ca.crt
""".encode()


def rke2_node(tmp_path: Path, etcd: bool = True) -> NodeState:
    """An RKE2 server as rke2-server leaves it: generated manifests 0600, etcd with its config file."""
    root = tmp_path / "rke2"
    components = {}
    for name in CONTROL_PLANE + (("etcd",) if etcd else ()):
        path = f"{RKE2_MANIFESTS}/{name}.yaml"
        write(root, path, manifest(name, [f"config-file={RKE2_ETCD}/config"] if name == "etcd"
                                   else ["bind-address=127.0.0.1"]))
        config = f"{RKE2_ETCD}/config" if name == "etcd" else None
        components[name] = Component(name, manifest=path, config=config, args=arg_list("rke2", name))
    if etcd:
        write(root, f"{RKE2_ETCD}/config", ETCD_CONFIG)
        os.chmod(root / RKE2_ETCD.lstrip("/"), 0o700)
    components["kubelet"] = Component("kubelet", args=arg_list("rke2", "kubelet"))
    components["rke2-server"] = Component("rke2-server", unit="system.slice/rke2-server.service",
                                          runs=tuple(components))
    info = NodeInfo("rke2", "1.31.4+rke2r1", ("master", "worker"), components, RKE2_1_8)
    return NodeState(Node(str(root)), info)


def k3s_node(tmp_path: Path) -> NodeState:
    """A k3s server: every component inside the k3s process, no manifests, SQLite (no etcd)."""
    root = tmp_path / "k3s"
    components = {name: Component(name, args=arg_list("k3s", name)) for name in CONTROL_PLANE + ("kubelet",)}
    components["k3s"] = Component("k3s", unit="system.slice/k3s.service", runs=tuple(components),
                                  logs=("/var/log/k3s.log",))
    write(root, "/var/lib/rancher/k3s/server/cred/admin.kubeconfig", b"apiVersion: v1\nkind: Config\n")
    return NodeState(Node(str(root)), NodeInfo("k3s", "1.31.4+k3s1", ("master", "worker"), components, K3S_1_9))


def check(benchmark: str, check_id: str):
    return next(c for c in checks_for(benchmark) if c.id == check_id)


# ---- RKE2: fixes go through the layout, generated files are RKE2's ----

def test_an_rke2_flag_fix_is_a_configure_for_the_layout_never_a_manifest_edit(tmp_path):
    state = rke2_node(tmp_path)
    profiling = check(RKE2_1_8, "1.2.16")
    assert audit_one(state, profiling).status == FAIL  # unset: the API server profiles by default
    assert profiling.remediate(state).changes == (Configure("kube-apiserver", (SetFlag("profiling", "false"),)),)
    planned = [change for c in checks_for(RKE2_1_8) if c.remediate and audit_one(state, c).status == FAIL
               for change in c.remediate(state).changes]
    assert any(isinstance(change, Configure) for change in planned)
    assert not [c for c in planned if isinstance(c, EditFile) and c.path.startswith(RKE2_MANIFESTS)]


def test_rke2_generated_manifest_modes_are_fixed_by_its_profile_not_by_chmod(tmp_path):
    state = rke2_node(tmp_path)
    mode_check = check(RKE2_1_8, "1.1.1")
    assert audit_one(state, mode_check).status == PASS  # rke2-server wrote it 0600
    os.chmod(Path(state.node.host(f"{RKE2_MANIFESTS}/kube-apiserver.yaml")), 0o644)
    state = NodeState(state.node, state.info)
    assert audit_one(state, mode_check).status == FAIL
    plan = mode_check.remediate(state)
    assert not plan.changes and "profile: cis" in plan.manual and "reverted at the next start" in plan.manual
    assert "0600" in mode_check.remediation


def test_rke2_file_checks_look_where_rke2_keeps_the_files(tmp_path):
    state = rke2_node(tmp_path)
    cred, tls = "/var/lib/rancher/rke2/server/cred", "/var/lib/rancher/rke2/server/tls"
    scheduler_conf = check(RKE2_1_8, "1.1.15")
    assert audit_one(state, scheduler_conf).actual == "no such file"
    write(Path(state.node.host("/")), f"{cred}/scheduler.kubeconfig", b"apiVersion: v1\n", 0o600)
    assert audit_one(NodeState(state.node, state.info), scheduler_conf).status == PASS
    assert "kube-bench#1843" in scheduler_conf.remediation
    # 1.1.20: kube-bench looks at RKE1's /node/etc/kubernetes/ssl; cisfix at RKE2's certificates
    write(Path(state.node.host("/")), f"{tls}/server-ca.crt", b"cert", 0o644)
    certs = check(RKE2_1_8, "1.1.20")
    verdict = audit_one(NodeState(state.node, state.info), certs)
    assert verdict.status == FAIL and f"{tls}/server-ca.crt" in " ".join(map(str, verdict.evidence))
    assert "/etc/kubernetes/ssl" in certs.remediation


def test_etcds_file_checks_are_not_applicable_on_a_control_plane_only_node(tmp_path):
    with_etcd, without = rke2_node(tmp_path / "a"), rke2_node(tmp_path / "b", etcd=False)
    assert audit_one(with_etcd, check(RKE2_1_8, "1.1.11")).status == PASS
    assert audit_one(with_etcd, check(RKE2_1_8, "1.1.7")).status == PASS  # etcd.yaml and its config file, 0600
    for check_id in ("1.1.7", "1.1.8", "1.1.11", "1.1.12"):
        verdict = audit_one(without, check(RKE2_1_8, check_id))
        assert verdict.status == NOT_APPLICABLE, (check_id, verdict)
        assert "etcd does not run on this node" in verdict.reason


def test_etcds_settings_come_from_the_config_file_it_runs_with(tmp_path):
    state = rke2_node(tmp_path)
    for check_id in ("2.1", "2.2", "2.3", "2.4", "2.5", "2.6"):
        verdict = audit_one(state, check(RKE2_1_8, check_id))
        assert verdict.status == PASS, (check_id, verdict)
    config = Path(state.node.host(f"{RKE2_ETCD}/config"))
    config.write_bytes(ETCD_CONFIG.replace(b"  client-cert-auth: true\n  trusted-ca-file: " + TLS.encode() + b"/server",
                                           b"  client-cert-auth: false\n  trusted-ca-file: " + TLS.encode() + b"/server"))
    state = NodeState(state.node, state.info)
    verdict = audit_one(state, check(RKE2_1_8, "2.2"))
    assert verdict.status == FAIL and verdict.actual == "false"
    assert f"{RKE2_ETCD}/config" in [e.file for e in verdict.evidence]
    assert audit_one(state, check(RKE2_1_8, "2.5")).status == PASS  # the peers' setting is another
    assert check(RKE2_1_8, "2.2").remediate(state).changes == (Configure("etcd", (SetFlag("client-cert-auth", "true"),)),)


# ---- k3s: embedded components have no files of their own ----

def test_k3s_pod_specification_checks_are_not_applicable(tmp_path):
    state = k3s_node(tmp_path)
    for check_id in ("1.1.1", "1.1.2", "1.1.3", "1.1.4", "1.1.5", "1.1.6", "1.1.7", "1.1.8", "1.1.12", "4.2.7"):
        verdict = audit_one(state, check(K3S_1_9, check_id))
        assert verdict.status == NOT_APPLICABLE, (check_id, verdict)
        assert "k3s" in verdict.reason
    assert audit_one(state, check(K3S_1_9, "1.1.13")).status == PASS  # k3s's admin.kubeconfig, 0600


def test_a_k3s_flag_fix_is_a_configure_for_the_layout(tmp_path):
    state = k3s_node(tmp_path)
    profiling = check(K3S_1_9, "1.2.15")
    assert profiling.remediate(state).changes == (Configure("kube-apiserver", (SetFlag("profiling", "false"),)),)


def test_kube_bench_report_lists_every_k3s_check_and_inapplicable_ones_as_info(tmp_path):
    state = k3s_node(tmp_path)
    results = [CheckResult(c, audit_one(state, c)) for c in checks_for(K3S_1_9)]
    shown = {r["test_number"]: r["status"] for control in report(results, state.info)["Controls"]
             for group in control["tests"] for r in group["results"]}
    assert set(shown) == set(kube_bench(K3S_1_9))
    assert shown["1.1.1"] == "INFO" and shown["4.2.7"] == "INFO" and shown["1.1.13"] == "PASS"


def test_a_container_run_on_rke2_or_k3s_is_given_the_distributions_data_folder():
    from cisfix_cis import cisfix_host_paths

    for dist in ("rke2", "k3s"):
        paths = {p.path: p for p in cisfix_host_paths(NodeInfo(distribution=dist))}
        assert paths[f"/var/lib/rancher/{dist}"].fix == "write"
    assert not [p for p in cisfix_host_paths(NodeInfo()) if p.path.startswith("/var/lib/rancher")]


def test_k3s_on_sqlite_has_no_etcd_client_certificates_to_check(tmp_path):
    state = k3s_node(tmp_path)
    for check_id in ("1.2.23", "1.2.26"):  # the API server's etcd client certificate and etcd's CA
        verdict = check(K3S_1_9, check_id).audit(state)
        assert verdict.status == NOT_APPLICABLE and "SQLite" in verdict.reason
    etcd_config = "/var/lib/rancher/k3s/server/db/etcd/config"
    write(Path(state.node.host("/")), etcd_config, b"name: server-0\n")
    info = state.info
    with_etcd = NodeState(state.node, NodeInfo(info.distribution, info.version, info.node_types,
                                               {**info.components, "etcd": Component("etcd", config=etcd_config)},
                                               info.benchmark))
    assert check(K3S_1_9, "1.2.23").audit(with_etcd).status == FAIL  # embedded etcd: the flags must be set
