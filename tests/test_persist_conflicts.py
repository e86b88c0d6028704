"""`cisfix persist` against a live kubeadm-config ConfigMap: a value someone else set there is reported and
kept until `--force`; a write that loses a race (HTTP 409) is read and written again, then reported."""
from __future__ import annotations

import json

from test_lab_upgrade import cluster_configuration, put_cluster_configuration
from test_persist_upgrade import GATE, cisfix, extra_args, fix, persist


def test_a_conflicting_value_in_cluster_configuration_is_reported_and_kept_until_forced(make_lab):
    lab = make_lab(version="1.30")  # kubeadm 1.30 stores v1beta3: extraArgs is a map
    config = cluster_configuration(lab)
    config["scheduler"] = {"extraArgs": {"profiling": "true"}}  # a person's choice, not yet rolled out
    put_cluster_configuration(lab, config)
    report = fix(lab, "--check", "1.4.1", "--check", "1.3.2", "--persist")

    [outcome] = report["persist"]["objects"]
    assert outcome["status"] == "updated"
    assert any("scheduler.extraArgs: profiling is 'true' there" in c for c in outcome["conflicts"])
    stored = cluster_configuration(lab)
    assert stored["scheduler"]["extraArgs"] == {"profiling": "true"}  # kept
    assert stored["controllerManager"]["extraArgs"] == {"profiling": "false"}  # no conflict there
    result = cisfix(lab, "fix", "--check", "1.4.1", "--persist", *GATE)
    assert result.returncode == 1 and "CONFLICT" in result.stdout  # the fix is done, the conflict is left

    code, forced = persist(lab, "--force")
    assert code == 0 and forced["objects"][0]["status"] == "updated"
    assert cluster_configuration(lab)["scheduler"]["extraArgs"] == {"profiling": "false"}


def test_a_conflict_on_write_is_read_and_written_again_then_reported(make_lab, monkeypatch):
    from cisfix import apiobjects as persist_module  # where persist reads and writes API objects
    from cisfix.persist import run_persist
    from cisfix.plugins import Plugins
    from cisfix.node import Node

    lab = make_lab(version="1.31")
    fix(lab, "--check", "1.4.1")
    writes = []
    real_fetch = persist_module.fetch

    def racing_fetch(url, state, settings, timeout, limit=None, method="GET", body=None):
        if method == "PUT" and len(writes) < racing:  # someone else writes just before us
            writes.append(url)
            current = json.loads(real_fetch(url, state, settings, timeout)[1])
            real_fetch(url, state, settings, timeout, method="PUT", body=json.dumps(current).encode())
        return real_fetch(url, state, settings, timeout, limit, method=method, body=body)

    monkeypatch.setattr(persist_module, "fetch", racing_fetch)
    plugins = lambda: Plugins(Node(str(lab.root)), [], [], [], None)  # noqa: E731
    racing = 2
    report = run_persist(plugins(), dry_run=False)
    assert [o.status for o in report.objects] == ["updated"] and len(writes) == 2
    assert extra_args(cluster_configuration(lab)["scheduler"]) == {"profiling": "false"}

    fix(lab, "--check", "1.3.2")
    racing = 2 + persist_module.ATTEMPTS
    report = run_persist(plugins(), dry_run=False)
    assert [o.status for o in report.objects] == ["conflict"] and "HTTP 409" in report.objects[0].reason
    assert report.exit_code == 1
    assert extra_args(cluster_configuration(lab).get("controllerManager") or {}) == {}
