"""Done when: fixes persisted on a 1.33 node keep every verdict through `kubeadm upgrade` to 1.34 and to
1.35, the two upgrades that rewrite kubeadm-flags.env (the runtime endpoint moves to
instance-config.yaml, then the pause image flag goes) and change etcd to 3.6."""
from __future__ import annotations

from pathlib import Path

from test_lab_upgrade import lab_upgrade
from test_persist_upgrade import audit, fix


def test_fixes_persisted_on_1_33_keep_every_verdict_through_the_upgrades_to_1_34_and_1_35(make_lab):
    lab = make_lab(version="1.33")
    report = fix(lab, "--persist")
    assert {r["fix"] for r in report["results"]} & {"FIXED"}, report["results"]
    assert {o["status"] for o in report["persist"]["objects"]} <= {"updated", "unchanged", "created"}, report["persist"]
    patches = ["--patches", report["persist"]["files_dir"]] if report["persist"].get("files") else []
    _, before = audit(lab)
    flags_env = lab.layout.host("/var/lib/kubelet/kubeadm-flags.env")
    # A node-local flag written as --name=value, as an operator or a fix writes one: the rewrites keep it.
    flags_env.write_text(flags_env.read_text().replace('="', '="--node-ip=127.0.0.1 '))

    for version in ("1.34", "1.35"):
        result = lab_upgrade(lab, "--to", version, *patches)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "kubeadm-flags.env rewritten" in result.stdout
        _, after = audit(lab)
        assert {i: after.get(i) for i in before} == before, version
    # The 1.35 kubelet would refuse the pause image flag; the endpoint is in instance-config.yaml.
    assert flags_env.read_text() == 'KUBELET_KUBEADM_ARGS="--node-ip=127.0.0.1"\n'
    assert all(s.healthy for s in lab.status().values())
    kubelet = Path(f"/proc/{lab.unit_pid()}/cmdline").read_bytes().split(b"\0")
    assert b"--node-ip=127.0.0.1" in kubelet and not any(b"pod-infra" in word for word in kubelet)
