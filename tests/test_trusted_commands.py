"""Every command root runs passes the trust rule first, like a plugin file: a component's restart command
and the older runner's audit scripts. Her script (or any script in her folder) is never run — one line,
exit 2, nothing changed — and a restart command that does not exist is one line, never a traceback, and
never keeps recovery or a rollback from putting the files back."""
from __future__ import annotations

import json
import os
import stat

import pytest

from cisfix import Runner
from cisfix.commands import SEARCH_PATH, CommandRefused, trusted_command
from conftest import APISERVER, KUBELET_CONFIG, run_cisfix
from hostile import as_mallory, her_dir, mallory, shared_dir  # noqa: F401 (fixtures)

CONFIG = "/etc/cisfix/config.yaml"
SET_KUBELET = ("edit", KUBELET_CONFIG, "--set", "readOnlyPort=0")


def one_line(result) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    return lines[0]


def live_node_config(node, restart: str) -> None:
    """The node configuration of a node where components run (not `offline`), the kubelet restarted by
    `restart`."""
    node.write(CONFIG, f"apiVersion: cisfix/v1\nkind: NodeConfig\ncomponents:\n  kubelet:\n"
                       f"    restart: [{json.dumps(restart)}]\n".encode(), 0o644)


def offline(node) -> None:
    node.write(CONFIG, b"apiVersion: cisfix/v1\nkind: NodeConfig\noffline: true\n", 0o644)


def script_writing(marker) -> bytes:
    return f"#!/bin/sh\necho ran > {marker}\nexit 0\n".encode()


@pytest.fixture(params=["her file", "root's file in her folder"])
def her_script(request, her_dir, mallory):
    """A script that would leave a marker if root ran it, in her folder: hers, or root's (she can still
    replace it, since the folder is hers)."""
    marker = her_dir.parent / "marker"
    script = her_dir / "restart.sh"
    script.write_bytes(script_writing(marker))
    os.chmod(script, 0o755)
    if request.param == "her file":
        os.chown(script, *mallory)
    yield script, marker
    assert not marker.exists(), "root ran her script"


@pytest.mark.parametrize("command", [SET_KUBELET, ("fix",)])
def test_her_restart_command_is_never_run_and_nothing_changes(node, her_script, mallory, command):
    script, marker = her_script
    live_node_config(node, str(script))
    before = node.snapshot()
    result = run_cisfix(node, *command)
    assert result.returncode == 2, result.stdout + result.stderr
    assert one_line(result) == (f"cisfix: error: {script.parent}: owned by uid {mallory[0]}, not root; "
                                "not running kubelet's restart command")
    assert node.snapshot() == before and not marker.exists() and not node.journal_records()


def test_her_reload_command_is_never_run_and_nothing_changes(node, her_script, mallory):
    """`reload` (systemctl daemon-reload) is checked with the restart command, before anything changes."""
    script, marker = her_script
    node.write(CONFIG, f"apiVersion: cisfix/v1\nkind: NodeConfig\ncomponents:\n  kubelet:\n"
                       f"    restart: [\"true\"]\n    reload: [{json.dumps(str(script))}]\n".encode(), 0o644)
    before = node.snapshot()
    result = run_cisfix(node, "fix")
    assert result.returncode == 2, result.stdout + result.stderr
    assert one_line(result) == (f"cisfix: error: {script.parent}: owned by uid {mallory[0]}, not root; "
                                "not running kubelet's reload command")
    assert node.snapshot() == before and not marker.exists() and not node.journal_records()


def test_her_file_reached_through_a_link_in_root_folders_is_refused(node, tmp_path, shared_dir, mallory):
    marker = shared_dir / "marker"
    hers = shared_dir / "restart.sh"  # in a root-owned folder, but hers
    hers.write_bytes(script_writing(marker))
    os.chmod(hers, 0o755)
    os.chown(hers, *mallory)
    link = tmp_path / "restart-kubelet"
    link.symlink_to(hers)
    live_node_config(node, str(link))
    before = node.snapshot()
    result = run_cisfix(node, *SET_KUBELET)
    assert result.returncode == 2
    assert f"{link}: owned by uid {mallory[0]}, not root; not running kubelet's restart command" in one_line(result)
    assert node.snapshot() == before and not marker.exists()


def test_commands_are_found_in_the_fixed_search_path_only(tmp_path, monkeypatch):
    planted = tmp_path / "systemctl"
    planted.write_bytes(b"#!/bin/sh\nexit 0\n")
    os.chmod(planted, 0o755)
    monkeypatch.setenv("PATH", str(tmp_path))  # the caller's PATH is never searched
    with pytest.raises(CommandRefused, match=r"no such command in /usr/local/sbin:.*:/bin"):
        trusted_command(["systemctl-of-nobody"], "a restart command")
    found = trusted_command(["true", "--x"], "a restart command")
    assert found[1:] == ["--x"] and os.path.dirname(found[0]) in {os.path.realpath(d) for d in SEARCH_PATH}
    with pytest.raises(CommandRefused, match="relative path"):
        trusted_command(["./restart.sh"], "a restart command")


def test_a_group_writable_script_of_root_is_refused(tmp_path):
    script = tmp_path / "restart.sh"
    script.write_bytes(b"#!/bin/sh\nexit 0\n")
    os.chmod(script, 0o775)
    with pytest.raises(CommandRefused, match=r"writable by group or others \(mode 0775\); not running x"):
        trusted_command([str(script)], "x")
    os.chmod(script, 0o644)
    with pytest.raises(CommandRefused, match="is not executable; not running x"):
        trusted_command([str(script)], "x")


def interrupted_kubelet_change(node) -> bytes:
    """A kubelet change committed, then a second one killed before its commit; the file as the first
    left it."""
    offline(node)
    assert run_cisfix(node, *SET_KUBELET).returncode == 0
    committed = node.read(KUBELET_CONFIG)
    killed = run_cisfix(node, "edit", KUBELET_CONFIG, "--set", "eventRecordQPS=5", env={"CISFIX_FAULT": "before-commit"})
    assert killed.returncode == -9 and node.read(KUBELET_CONFIG) != committed
    return committed


def states(node):
    result = run_cisfix(node, "history", "--format", "json")
    assert result.returncode == 0, result.stderr
    return [tx["state"] for tx in json.loads(result.stdout)]


def test_a_missing_restart_command_never_keeps_recovery_or_rollback_from_the_files(node):
    original = node.read(KUBELET_CONFIG)
    committed = interrupted_kubelet_change(node)
    live_node_config(node, "/usr/sbin/no-such-restart-kubelet")

    recovered = run_cisfix(node, "recover")
    assert recovered.returncode == 2, recovered.stdout + recovered.stderr
    line = one_line(recovered)
    assert "/usr/sbin/no-such-restart-kubelet: no such file; not running kubelet's restart command" in line
    assert "restart kubelet by hand" in line
    assert node.read(KUBELET_CONFIG) == committed and states(node) == ["committed", "rolled-back"]
    # Reported once: the next run is not stopped by it again.
    again = run_cisfix(node, "recover")
    assert (again.returncode, again.stderr) == (0, ""), again.stderr

    rolled = run_cisfix(node, "rollback", "--last")
    assert rolled.returncode == 2
    assert "no-such-restart-kubelet: no such file" in one_line(rolled)
    assert node.read(KUBELET_CONFIG) == original and states(node) == ["rolled-back", "rolled-back"]
    # A change that would need the missing command is refused before anything is written.
    before = node.snapshot()
    refused = run_cisfix(node, *SET_KUBELET)
    assert refused.returncode == 2 and "no-such-restart-kubelet: no such file" in one_line(refused)
    assert node.snapshot() == before


@pytest.fixture
def her_suite(her_dir, mallory):
    """The older runner's script folder, hers: a remediation script and the sibling audit script that
    would pass any change (and leave a marker) if root ran it."""
    marker = her_dir.parent / "marker"
    for name in ("1.2.15_remediate.sh", "1.2.15_audit.sh"):
        (her_dir / name).write_bytes(script_writing(marker))
        os.chmod(her_dir / name, 0o755)
        os.chown(her_dir / name, *mallory)
    return her_dir, marker


@pytest.mark.parametrize("owner", ["hers", "root's"])
def test_the_older_runners_audit_script_in_her_folder_is_never_run(node, her_suite, owner):
    suite, marker = her_suite
    if owner == "root's":
        os.chown(suite / "1.2.15_audit.sh", 0, 0)
    before = node.snapshot()
    result = Runner(root=str(node.root)).apply_remediation_with_health_gate(
        APISERVER, "--profiling=", "false", "1.2.15", script_dict={"path": str(suite / "1.2.15_remediate.sh")})
    assert result["success"] is False and result["status"] == "REMEDIATION_FAILED", result
    assert result["audit_verified"] is not True and result["txid"] is None
    assert str(suite) in result["reason"] and "not running the audit script of 1.2.15" in result["reason"]
    assert node.snapshot() == before and not marker.exists()


def test_the_older_runners_audit_script_of_root_still_verifies(node, tmp_path):
    suite = tmp_path / "suite"
    suite.mkdir()
    (suite / "1.2.15_remediate.sh").write_bytes(b"#!/bin/sh\nexit 0\n")
    (suite / "1.2.15_audit.sh").write_bytes(b"exit 0\n")  # not executable: run by bash, as before
    assert not os.stat(suite / "1.2.15_audit.sh").st_mode & stat.S_IXUSR
    result = Runner(root=str(node.root)).apply_remediation_with_health_gate(
        APISERVER, "--profiling=", "false", "1.2.15", script_dict={"path": str(suite / "1.2.15_remediate.sh")})
    assert result["status"] == "FIXED", result
    assert b"--profiling=false" in node.read(APISERVER)


def test_on_a_live_node_neither_her_restart_script_nor_her_audit_script_runs(make_lab, her_dir, mallory):
    """The attacks as reported, on a lab node whose components run: her script as the kubelet's restart
    command (it ran as uid 0), and her audit script, whose exit 0 made a change `FIXED, audit_verified`."""
    lab = make_lab()
    marker = her_dir.parent / "marker"
    script = her_dir / "restart.sh"
    script.write_bytes(script_writing(marker))
    os.chmod(script, 0o755)
    os.chown(script, *mallory)
    config = lab.root / CONFIG.lstrip("/")
    good = config.read_text()
    config.write_text(good.replace(str(lab.layout.restart_kubelet_program), str(script)))
    kubelet, manifest = lab.layout.host(KUBELET_CONFIG).read_bytes(), lab.manifest("kube-apiserver").read_bytes()

    result = run_cisfix(lab, *SET_KUBELET)
    assert result.returncode == 2
    assert f"{her_dir}: owned by uid {mallory[0]}, not root; not running kubelet's restart command" in one_line(result)
    assert lab.layout.host(KUBELET_CONFIG).read_bytes() == kubelet

    config.write_text(good)
    for name in ("1.2.15_remediate.sh", "1.2.15_audit.sh"):
        (her_dir / name).write_bytes(script_writing(marker))
        os.chmod(her_dir / name, 0o755)
        os.chown(her_dir / name, *mallory)
    outcome = Runner(root=str(lab.root)).apply_remediation_with_health_gate(
        APISERVER, "--profiling=", "true", "1.2.15", script_dict={"path": str(her_dir / "1.2.15_remediate.sh")},
        timeout=60)
    assert outcome["status"] == "REMEDIATION_FAILED" and outcome["audit_verified"] is None, outcome
    assert lab.manifest("kube-apiserver").read_bytes() == manifest
    assert not marker.exists()


def test_her_script_handed_to_a_trusted_interpreter_is_never_run(node, her_script, mallory):
    """`restart: [/bin/sh, her script]`: the interpreter is root's, the script is what runs."""
    script, marker = her_script
    node.write(CONFIG, f"apiVersion: cisfix/v1\nkind: NodeConfig\ncomponents:\n  kubelet:\n"
                       f"    restart: [/bin/sh, {json.dumps(str(script))}]\n".encode(), 0o644)
    before = node.snapshot()
    result = run_cisfix(node, *SET_KUBELET)
    assert result.returncode == 2, result.stdout + result.stderr
    line = one_line(result)
    assert f"owned by uid {mallory[0]}, not root; not running kubelet's restart command" in line
    assert str(script.parent) in line
    assert node.snapshot() == before and not marker.exists()


def test_a_trusted_restart_command_the_kernel_cannot_run_undoes_the_change_in_one_line(make_lab, tmp_path):
    """Root's own file, trusted, but no program (no `#!` line): the change it was to restart is undone,
    one line says so, never an internal error on this run or the next."""
    lab = make_lab()
    broken = tmp_path / "restart-kubelet"
    broken.write_bytes(b"no interpreter line here\n")
    os.chmod(broken, 0o755)
    config = lab.root / CONFIG.lstrip("/")
    config.write_text(config.read_text().replace(str(lab.layout.restart_kubelet_program), str(broken)))
    kubelet = lab.layout.host(KUBELET_CONFIG).read_bytes()

    for attempt in range(2):
        result = run_cisfix(lab, *SET_KUBELET, "--timeout", "60", "--stability-window", "1")
        assert result.returncode == 2, result.stdout + result.stderr
        line = one_line(result)
        assert f"{broken}: cannot be run: Exec format error" in line and "restart kubelet by hand" in line
        assert lab.layout.host(KUBELET_CONFIG).read_bytes() == kubelet
    assert states(lab) == ["rolled-back", "rolled-back"]
