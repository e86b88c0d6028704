"""Done when: on a cluster of three control-plane nodes at 1.31, fixed at level 1 and persisted, the
documented rolling upgrade to 1.32 (`kubeadm upgrade apply` on the first node, `upgrade node` on each
other, with the package step) keeps every verdict once drift has run; a node that lacks the cluster's
encryption configuration is rolled back by kubeadm without disturbing the others, and upgrades once it
has installed the bundle.

One cluster for the whole story: lab starts are what costs."""
from __future__ import annotations

import stat
import time

from test_lab_cluster import COMPONENTS, DROPIN, image, kubelet_starts, lab, manifests, started
from test_persist_cluster import GATE, as_json, cisfix, name_node

KEY = "/etc/kubernetes/encryption-config.yaml"
STATE = "var/lib/cisfix"


def fix(node, *options: str) -> dict:
    result = cisfix(node.root, "fix", "--level", "1", "--persist", "--format", "json", *GATE, *options)
    assert result.returncode in (0, 1, 7), result.stdout[-2000:] + result.stderr[-2000:]
    return as_json(result)


def verdicts(node) -> dict:
    return {r["id"]: r["status"] for r in as_json(cisfix(node.root, "audit", "--format", "json"))["results"]}


def verdict(node, check: str) -> str:
    [result] = as_json(cisfix(node.root, "audit", "--check", check, "--format", "json"))["results"]
    return result["status"]


def patches(node) -> list:
    """`--patches <state>/persist/files` when persist wrote patch files there (pass them on every upgrade)."""
    files = node.root / STATE / "persist/files"
    return ["--patches", str(files)] if files.is_dir() and any(files.iterdir()) else []


def quiet_since(node, since: float, kubelet_pid: int) -> None:
    """Healthy, and nothing of the node restarted since `since`: no pod started, the same kubelet."""
    assert all(s.healthy for s in node.status().values()), node.status()
    assert started(node, since) == {} and node.events("restarted", since=since) == []
    assert node.unit_pid() == kubelet_pid


def upgraded_once(node, since: float, kubelets: int, kubelet_pid: int, components=COMPONENTS) -> None:
    """Each of `components` started once since `since` (no other), the kubelet restarted once, the new
    images running."""
    assert started(node, since) == dict.fromkeys(components, 1), node.events(since=since)
    assert kubelet_starts(node) == kubelets + 1 and node.unit_pid() != kubelet_pid
    for component in COMPONENTS[1:]:
        assert image(node, component) == f"registry.k8s.io/{component}:v1.32.0"


def test_three_control_planes_fixed_and_persisted_upgrade_to_1_32_keeping_every_verdict(make_cluster):
    nodes = make_cluster(3, version="1.31")
    first, second, third = nodes
    for node, name in zip(nodes, ("lab-node", "lab-node-2", "lab-node-3")):  # the names their Nodes have
        name_node(node.root, name)

    # Node 1 makes the cluster's key and publishes the files; the two others have not confirmed yet.
    persisted = fix(first, "--first-control-plane")["persist"]
    control_plane = persisted["control_plane"]
    assert persisted["exit_code"] == 7 and control_plane["waiting"] == ["lab-node-2", "lab-node-3"], persisted
    assert KEY in {f["path"] for f in control_plane["files"]}
    bundle = control_plane["bundle"]
    assert bundle == str(first.root / STATE / "persist/control-plane")

    # Node 2 installs the bundle, and its fix adopts the key instead of making one.
    assert cisfix(second.root, "persist", "--check").returncode == 1
    result = cisfix(second.root, "persist", "--install", bundle)
    assert result.returncode == 0, result.stdout + result.stderr
    report = fix(second)
    assert {r["id"]: r["fix"] for r in report["results"]}["1.2.27"] == "FIXED"
    assert report["persist"]["control_plane"]["waiting"] == ["lab-node-3"], report["persist"]
    assert second.layout.host(KEY).read_bytes() == first.layout.host(KEY).read_bytes()

    # Node 3 is fixed without the bundle: with etcd's other members there, it makes no key of its own.
    report = fix(third)
    assert {r["id"]: r["fix"] for r in report["results"]}.get("1.2.27") != "FIXED", report["results"]
    assert not third.layout.host(KEY).exists()
    before = {node.root: verdicts(node) for node in nodes}
    assert before[first.root]["1.2.27"] == before[second.root]["1.2.27"] == "PASS"
    assert before[third.root]["1.2.27"] != "PASS"

    result = cisfix(third.root, "persist", "--check")
    assert result.returncode == 1 and f"missing {KEY}" in result.stdout.splitlines(), result.stdout
    assert "lab-node-3: not ready for `kubeadm upgrade node`" in result.stdout
    result = cisfix(second.root, "persist", "--check")
    assert result.returncode == 0 and "lab-node-2: ready for `kubeadm upgrade node`" in result.stdout, result.stdout

    # `kubeadm upgrade apply` on node 1, `upgrade node` on node 2, each with the package step.
    for node, action in ((first, ("upgrade", str(first.root), "--to", "1.32")),
                         (second, ("upgrade-node", str(second.root)))):
        since, kubelets, kubelet_pid = time.time(), kubelet_starts(node), node.unit_pid()
        result = lab(*action, "--packages", *patches(node))
        assert result.returncode == 0, result.stdout + result.stderr
        assert "upgraded from v1.31.0 to v1.32.0" in result.stdout
        upgraded_once(node, since, kubelets, kubelet_pid)

    # Node 3's new API server names the key it lacks: kubeadm puts its old manifests back; nodes 1 and 2
    # see nothing of it.
    others = {node.root: node.unit_pid() for node in (first, second)}
    old, kubelets, since = manifests(third), kubelet_starts(third), time.time()
    result = lab("upgrade-node", str(third.root), "--packages", "--wait", "10", *patches(third))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "couldn't upgrade control plane. kubeadm has tried to recover everything" in result.stderr
    assert "static Pod hash for component kube-apiserver on Node lab-node-3" in result.stderr
    exits = [e["message"] for e in third.events("container-exited", "kube-apiserver", since)]
    assert any(f"open {KEY}: no such file or directory" in m for m in exits), exits
    now = manifests(third)
    assert {c: now[c] == old[c] for c in COMPONENTS[1:]} == dict.fromkeys(COMPONENTS[1:], True)
    assert now["etcd"] != old["etcd"]  # etcd came up upgraded: kubeadm rolls it back only when it failed
    assert kubelet_starts(third) == kubelets and third.layout.settings().version == "1.31.0"
    third.wait_healthy(60)
    for component in COMPONENTS[1:]:
        assert image(third, component) == f"registry.k8s.io/{component}:v1.31.0"
    for node in (first, second):
        quiet_since(node, since, others[node.root])

    # Node 1, upgraded (its manifests kubeadm's now, nothing of this run to publish), still names node 3.
    result = cisfix(first.root, "persist", "--format", "json")
    assert result.returncode == 7 and as_json(result)["control_plane"]["waiting"] == ["lab-node-3"], result.stdout

    # Node 3 installs the bundle; its fix adopts the key; then every node is confirmed and it upgrades.
    result = cisfix(third.root, "persist", "--install", bundle)
    assert result.returncode == 0, result.stdout + result.stderr
    report = fix(third)
    assert {r["id"]: r["fix"] for r in report["results"]}["1.2.27"] == "FIXED", report["results"]
    assert third.layout.host(KEY).read_bytes() == first.layout.host(KEY).read_bytes()
    result = cisfix(third.root, "persist", "--check")
    assert result.returncode == 0 and "lab-node-3: ready for `kubeadm upgrade node`" in result.stdout, result.stdout
    result = cisfix(first.root, "persist", "--format", "json")
    assert result.returncode == 0 and as_json(result)["control_plane"]["waiting"] == [], result.stdout + result.stderr
    before[third.root] = verdicts(third)
    assert before[third.root]["1.2.27"] == "PASS"

    since, kubelets, kubelet_pid = time.time(), kubelet_starts(third), third.unit_pid()
    result = lab("upgrade-node", str(third.root), "--packages", *patches(third))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "unchanged: etcd" in result.stdout  # upgraded by the first try, which kept it
    upgraded_once(third, since, kubelets, kubelet_pid, COMPONENTS[1:])

    # The package step put the kubelet drop-in back at 0644 (CIS 4.1.1): failing until drift re-applies it,
    # as an upgrade's drift; then every verdict is what it was before the upgrade.
    for node in nodes:
        dropin = node.layout.host(DROPIN)
        assert stat.S_IMODE(dropin.stat().st_mode) == 0o644 and verdict(node, "4.1.1") == "FAIL"
        drift = as_json(cisfix(node.root, "drift", "--format", "json", *GATE))
        assert {(c["id"], c["class"]) for c in drift["corrections"] if c["id"] == "4.1.1"} == {("4.1.1", "upgrade")}
        assert stat.S_IMODE(dropin.stat().st_mode) == 0o600
        after = verdicts(node)
        assert after["4.1.1"] == "PASS"
        kept = {i: v for i, v in before[node.root].items() if i in after}
        assert {i: after[i] for i in kept} == kept, node.root
        # CIS v1.12 (1.32) dropped 4.2.15 and renumbered 5.2.13 as 5.2.12: manual checks, no verdict lost.
        assert set(before[node.root]) - set(after) == {"4.2.15", "5.2.13"}, node.root
