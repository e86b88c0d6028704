"""`cisfix drift` on a node tree (nothing runs, so nothing is gated): it enforces only what cisfix fixed
and committed here, classifies drift, corrects it with one event per correction, stops correcting a
flapping check, stands aside while paused, HALTed or while kubeadm runs, refuses state files another
user could have written, and writes a textfile that parses strictly after every run."""
from __future__ import annotations

import datetime
import json
import os
import subprocess
import sys

import pytest

from conftest import APISERVER
from node_processes import fake_process
from prometheus import parse_prometheus, value
from test_unattended_runs import NEEDS_A_PERSON, with_exceptions

CONFIG = "/etc/cisfix/config.yaml"
STATE = "/var/lib/cisfix"
PROFILING = "1.2.15"


@pytest.fixture
def drift(node, cisfix, tmp_path):
    """Run `cisfix drift` with a textfile in a temp folder; every run's textfile must parse strictly.
    Returns (result, samples)."""
    textfile = tmp_path / "textfile" / "cisfix.prom"
    textfile.parent.mkdir()

    def run(*args: str):
        result = cisfix("drift", "--textfile", str(textfile), *args)
        samples = parse_prometheus(textfile.read_text())
        assert value(samples, "cisfix_last_run_exit_code") == result.returncode
        return result, samples
    return run


@pytest.fixture
def fixed(node, cisfix):
    """A node cisfix fixed, with the checks that need a person accepted as risks."""
    expires = datetime.date.today() + datetime.timedelta(days=30)
    with_exceptions(node, NEEDS_A_PERSON, expires.isoformat())
    assert cisfix("fix").returncode == 0
    return node


def events(node) -> list:
    path = node.root / STATE.lstrip("/") / "events.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def committed(node) -> dict:
    records = [json.loads(line) for line in node.read(f"{STATE}/journal.jsonl").splitlines()]
    return {r["txid"]: r for r in records if r["type"] == "commit"}


def set_profiling(node, value_: str) -> None:
    text = node.read(APISERVER).decode()
    current = "--profiling=false" if "--profiling=false" in text else "--profiling=true"
    node.write(APISERVER, text.replace(current, f"--profiling={value_}").encode())


def tree(root) -> dict:
    """Every path under root: mode and owner, and a file's bytes. The drift lock is left out: its bytes
    are the pid of the run holding it."""
    return {str(p.relative_to(root)): (os.lstat(p).st_mode, os.lstat(p).st_uid,
                                       p.read_bytes() if p.is_file() and not p.is_symlink() else None)
            for p in root.rglob("*") if p.name != "drift.lock"}


def test_a_compliant_node_is_silent_and_unchanged(fixed, cisfix):
    """Nothing but the textfile is written: no journal record, backup, event or state file."""
    before = tree(fixed.root)
    result = cisfix("drift")
    assert result.returncode == 0 and result.stdout == "" and result.stderr == ""
    after = tree(fixed.root)
    textfile = "var/lib/node_exporter/textfile/cisfix.prom"
    assert sorted(set(after) - set(before)) == ["var/lib/node_exporter", "var/lib/node_exporter/textfile", textfile]
    assert {path: after[path] for path in before} == before
    samples = parse_prometheus((fixed.root / textfile).read_text())
    assert value(samples, "cisfix_compliance_state") == 2  # compliant but for the accepted risks
    assert value(samples, "cisfix_flapping", id=PROFILING) == 0
    assert value(samples, "cisfix_paused") == 0 and value(samples, "cisfix_halted") == 0


def test_drift_of_a_fixed_check_is_corrected_and_classified(fixed, drift):
    set_profiling(fixed, "true")  # a person, same version
    result, samples = drift("-q")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith(f"CORRECTED {PROFILING} (manual, {APISERVER}; found true)")
    assert len(result.stdout.splitlines()) == 1
    assert b"--profiling=false" in fixed.read(APISERVER)
    [event] = events(fixed)
    assert (event["id"], event["class"], event["outcome"]) == (PROFILING, "manual", "FIXED")
    assert event["txid"] in committed(fixed)
    assert value(samples, "cisfix_drift_detected_total", id=PROFILING, **{"class": "manual"}) == 1
    assert value(samples, "cisfix_corrections_total", id=PROFILING, outcome="FIXED") == 1

    # An upgrade: the manifest regenerated with a new image tag, without cisfix's edit.
    text = fixed.read(APISERVER).decode().replace("--profiling=false", "--profiling=true")
    tag = next(line for line in text.splitlines() if "image:" in line)
    fixed.write(APISERVER, text.replace(tag, tag.rsplit(":", 1)[0] + ":v1.31.9").encode())
    result, samples = drift("-q")
    assert result.returncode == 0 and result.stdout.startswith(f"CORRECTED {PROFILING} (upgrade,")
    assert [e["class"] for e in events(fixed)] == ["manual", "upgrade"]
    assert value(samples, "cisfix_drift_detected_total", id=PROFILING, **{"class": "upgrade"}) == 1

    set_profiling(fixed, "true")
    result, _ = drift("--format", "json", "--random-delay", "0.2")
    report = json.loads(result.stdout)
    assert result.returncode == report["exit_code"] == 0
    assert [(c["id"], c["class"], c["outcome"]) for c in report["corrections"]] == [(PROFILING, "manual", "FIXED")]
    assert report["corrections"][0]["txid"] == events(fixed)[-1]["txid"] and PROFILING in report["baseline"]

    result, samples = drift()  # nothing drifted since
    assert result.returncode == 0 and result.stdout == ""
    assert len(events(fixed)) == 3
    assert value(samples, "cisfix_corrections_total", id=PROFILING, outcome="FIXED") == 3


def test_checks_cisfix_never_fixed_are_reported_not_changed(node, drift):
    before = node.read(APISERVER)
    result, samples = drift()
    assert result.returncode == 1
    assert f"NOT ENFORCED {PROFILING} " in result.stdout
    assert result.stdout.splitlines()[-1].startswith("exit 1: ")
    assert node.read(APISERVER) == before and events(node) == []
    assert value(samples, "cisfix_compliance_state") == 1

    result, _ = drift("-q")  # quiet: only the reason
    assert result.returncode == 1 and len(result.stdout.splitlines()) == 1

    result, _ = drift("--all", "-q")  # as fix does: every automated check, drift class unknown
    assert result.returncode == 1  # the checks that need a person still fail
    assert b"--profiling=false" in node.read(APISERVER)
    assert {e["class"] for e in events(node)} == {"unknown"}
    assert len(events(node)) == len([line for line in result.stdout.splitlines() if line.startswith("CORRECTED")])


def test_a_flapping_check_is_no_longer_corrected_until_reset(fixed, drift):
    fixed.write(CONFIG, fixed.read(CONFIG) + b"drift: {flapLimit: 2, flapWindowHours: 1}\n")
    for _ in range(2):
        set_profiling(fixed, "true")
        assert drift("-q")[0].returncode == 0
    set_profiling(fixed, "true")
    broken = fixed.read(APISERVER)
    for _ in range(2):
        result, samples = drift("-q")
        assert result.returncode == 6, result.stdout + result.stderr
        assert result.stdout.startswith(f"FLAPPING {PROFILING}: corrected 2 time(s) in the window (")
        assert result.stdout.count("manual /etc/kubernetes/manifests/kube-apiserver.yaml found true -> FIXED") == 2
        assert result.stdout.splitlines()[-1] == f"exit 6: 1 check(s) flapping: {PROFILING}"
        assert fixed.read(APISERVER) == broken and len(events(fixed)) == 2
        assert value(samples, "cisfix_flapping", id=PROFILING) == 1
        assert value(samples, "cisfix_drift_detected_total", id=PROFILING, **{"class": "manual"}) == 3

    result, samples = drift("-q", "--reset", PROFILING)
    assert result.returncode == 0 and result.stdout.startswith(f"CORRECTED {PROFILING} (manual")
    assert len(events(fixed)) == 3 and value(samples, "cisfix_flapping", id=PROFILING) == 0


def test_flapping_ends_after_a_window_with_no_drift(fixed, drift):
    fixed.write(CONFIG, fixed.read(CONFIG) + b"drift: {flapLimit: 1}\n")
    set_profiling(fixed, "true")
    drift("-q")
    set_profiling(fixed, "true")
    assert drift("-q")[0].returncode == 6
    set_profiling(fixed, "false")  # the other actor gave up
    assert drift("-q")[0].returncode == 6  # still within the window
    # A day passes with no drift: move the state's clock back rather than wait.
    path = fixed.root / STATE.lstrip("/") / "drift.json"
    state = json.loads(path.read_text())
    state["flapping"][PROFILING]["lastDrift"] -= 86400
    path.write_text(json.dumps(state))
    result, samples = drift("-q")
    assert result.returncode == 0 and result.stdout == ""
    assert value(samples, "cisfix_flapping", id=PROFILING) == 0


def test_pause_stops_fix_and_drift_until_unpause(fixed, cisfix, drift):
    set_profiling(fixed, "true")
    broken = fixed.read(APISERVER)
    paused = cisfix("pause", "--reason", "change freeze CHG-42", "--until", "2h")
    assert paused.returncode == 0 and "change freeze CHG-42" in paused.stdout
    for run in (lambda: cisfix("fix"), lambda: drift()[0], lambda: cisfix("-q", "fix")):
        result = run()
        assert result.returncode == 0
        [line] = result.stdout.splitlines()
        assert line.startswith("paused by ") and " until " in line and line.endswith(": change freeze CHG-42")
    assert fixed.read(APISERVER) == broken and events(fixed) == []
    assert value(drift()[1], "cisfix_paused") == 1
    assert cisfix("unpause").stdout == "unpaused\n"
    result, samples = drift("-q")
    assert result.returncode == 0 and result.stdout.startswith(f"CORRECTED {PROFILING}")
    assert value(samples, "cisfix_paused") == 0


@pytest.mark.parametrize("until, why", [("2001-01-01T00:00Z", "that time has passed"),
                                        ("99999999999999d", "after 9999-12-31T00:00:00Z")])
def test_pause_until_a_time_no_pause_can_have_is_bad_input(fixed, cisfix, until, why):
    result = cisfix("pause", "--reason", "x", "--until", until)
    assert result.returncode == 2 and why in result.stderr and len(result.stderr.splitlines()) == 1
    assert not (fixed.root / STATE.lstrip("/") / "PAUSE").exists()


@pytest.mark.parametrize("root", ["missing", "", "a file"])
def test_drift_on_a_root_that_is_no_node_writes_nothing_anywhere(tmp_path, root):
    """Not even its textfile: under a mistyped root (or, for --root "", the cwd) it would be a stray."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    (tmp_path / "a file").write_text("127.0.0.1 localhost\n")
    given = str(tmp_path / root) if root else ""
    result = subprocess.run([sys.executable, "-m", "cisfix", "--root", given, "drift"], cwd=cwd,
                            capture_output=True, text=True)
    assert result.returncode == 2 and len(result.stderr.splitlines()) == 1, result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")) == ["a file", "cwd"]


def kubeadm_upgrading(node, in_a_container: bool = False) -> None:
    """The node's process table (this tree's /proc): root runs kubeadm upgrade apply, on the host or in
    a container (a file system of its own, where any file may be called kubeadm)."""
    kubeadm = node.write("/usr/bin/kubeadm", b"\x7fELF", 0o755)
    fake_process(node.root / "proc", 1, ["/sbin/init"], exe=str(kubeadm))
    process = fake_process(node.root / "proc", 4242, ["/usr/bin/kubeadm", "--v=5", "upgrade", "apply", "v1.32.1"],
                           exe=str(kubeadm))
    if in_a_container:
        image = node.path("/var/lib/containerd/image")
        image.mkdir(parents=True)
        (process / "root").unlink()
        (process / "root").symlink_to(image)


def test_drift_stands_aside_while_kubeadm_upgrades_the_node(fixed, drift):
    set_profiling(fixed, "true")
    broken = fixed.read(APISERVER)
    kubeadm_upgrading(fixed)
    result, samples = drift("-q")
    assert result.returncode == 0
    assert result.stdout == "kubeadm upgrade is running (pid 4242); drift stands aside until it ends\n"
    assert fixed.read(APISERVER) == broken and events(fixed) == []
    assert value(samples, "cisfix_last_run_exit_code") == 0


def test_a_kubeadm_in_a_container_does_not_make_drift_stand_aside(fixed, drift):
    set_profiling(fixed, "true")
    kubeadm_upgrading(fixed, in_a_container=True)
    result, _ = drift("-q")
    assert "stands aside" not in result.stdout and result.stdout.startswith(f"CORRECTED {PROFILING}"), result.stdout


def test_a_halted_node_exits_4_and_says_so_in_the_metrics(fixed, drift):
    from cisfix.halt import write_halt
    from cisfix.node import Node

    set_profiling(fixed, "true")
    broken = fixed.read(APISERVER)
    write_halt(Node(str(fixed.root)), "a rollback did not come back", "20260101T000000Z-abcdef", [], [])
    result, samples = drift("-q")
    assert result.returncode == 4 and "HALT exists" in result.stderr
    assert fixed.read(APISERVER) == broken
    assert value(samples, "cisfix_halted") == 1 and value(samples, "cisfix_compliance_state") == 3


@pytest.mark.parametrize("name, content", [
    ("drift.json", b'{"detected": {"1.2.15 manual": "many"}}\n'),
    ("events.jsonl", b'{"id": "1.2.15", "time": 1}\n'),
    ("events.jsonl", b'{"id": "1.2.15", "class": "manual", "outcome": "FIXED", "time": 1e300}\n'),
    ("drift.json", b'{"resets": {"1.2.15": NaN}}\n'),
    ("PAUSE", b"paused\n"),
    ("PAUSE", b'{"who": "root", "reason": "x", "since": 0, "until": 1e300}\n'),
])
def test_state_files_cisfix_did_not_write_are_refused_naming_them(node, drift, name, content):
    path = node.root / STATE.lstrip("/") / name
    path.parent.mkdir(mode=0o700, parents=True)
    path.write_bytes(content)
    os.chmod(path, 0o600)
    result, samples = drift("-q")
    assert result.returncode == 4
    [line] = result.stderr.splitlines()
    assert str(path) in line and ("not a drift state" in line or "damaged" in line or "not a pause" in line)
    assert value(samples, "cisfix_compliance_state") == 3


@pytest.mark.skipif(os.geteuid() != 0, reason="trust is enforced only when cisfix runs as root")
@pytest.mark.parametrize("name, content", [
    ("PAUSE", b'{"who": "mallory", "reason": "x", "since": 0, "until": null}\n'),
    ("events.jsonl", b""),
    ("drift.json", b"{}\n"),
])
@pytest.mark.parametrize("how", ["owner", "mode"])
def test_state_files_another_user_could_write_are_refused(node, drift, name, content, how):
    before = node.read(APISERVER)
    path = node.root / STATE.lstrip("/") / name
    path.parent.mkdir(mode=0o700, parents=True)
    path.write_bytes(content)
    if how == "owner":
        os.chmod(path, 0o600)
        os.chown(path, 65534, 65534)
    else:
        os.chmod(path, 0o666)
    result, samples = drift("-q")
    assert result.returncode == 4, result.stdout + result.stderr
    [line] = result.stderr.splitlines()
    assert str(path) in line and ("owned by uid 65534" in line or "writable by group or others" in line
                                  or "not 0600" in line)
    assert node.read(APISERVER) == before
    assert value(samples, "cisfix_compliance_state") == 3


def test_an_upgrade_is_corrected_reusing_the_files_cisfix_wrote(node, cisfix, drift):
    """kubeadm regenerates the manifest: every flag and mount cisfix added is gone, the files it created
    (audit policy, encryption key, admission and authentication configuration) are still there. They are
    used again as they are — a new encryption key would make the encrypted secrets unreadable."""
    expires = datetime.date.today() + datetime.timedelta(days=30)
    with_exceptions(node, NEEDS_A_PERSON, expires.isoformat())
    regenerated = node.read(APISERVER).decode()
    assert cisfix("fix").returncode == 0
    created = {p: p.read_bytes() for p in (node.root / "etc/kubernetes").rglob("*")
               if p.is_file() and "manifests" not in p.parts and "pki" not in p.parts}
    assert any("encryption" in p.name for p in created)
    tag = next(line for line in regenerated.splitlines() if "image:" in line)
    node.write(APISERVER, regenerated.replace(tag, tag.rsplit(":", 1)[0] + ":v1.31.9").encode())
    result, _ = drift("-q")
    assert result.returncode == 0, result.stdout + result.stderr
    assert {e["class"] for e in events(node)} == {"upgrade"} and len(events(node)) > 5
    assert {p: p.read_bytes() for p in created} == created
    assert drift()[0].stdout == ""


def test_drift_runs_never_overlap(fixed, drift):
    """A second drift run while one holds the drift lock (a timer and a person) exits 5 and changes nothing."""
    from cisfix.lock import RunLock

    set_profiling(fixed, "true")
    before = fixed.read(APISERVER)
    with RunLock(fixed.root / STATE.lstrip("/") / "drift.lock"):
        result, samples = drift()
    assert result.returncode == 5 and "holds the lock" in result.stderr
    assert fixed.read(APISERVER) == before and events(fixed) == []
    result, _ = drift()
    assert result.returncode == 0 and b"--profiling=false" in fixed.read(APISERVER) and len(events(fixed)) == 1


def test_a_second_pause_is_refused_naming_the_first_unless_replaced(fixed, cisfix):
    assert cisfix("pause", "--reason", "change freeze CHG-42").returncode == 0
    state = fixed.root / STATE.lstrip("/") / "PAUSE"
    first = state.read_bytes()
    again = cisfix("pause", "--reason", "mine")
    assert again.returncode == 2 and state.read_bytes() == first
    [line] = again.stderr.splitlines()
    who = json.loads(state.read_bytes())["who"]  # who paused, since when, until when and why
    assert f"already paused by {who} since " in line and " until `cisfix unpause`: change freeze CHG-42;" in line
    assert "--replace" in line
    replaced = cisfix("pause", "--reason", "mine", "--replace")
    assert replaced.returncode == 0 and replaced.stdout.endswith(": mine\n")


def test_a_dry_run_while_paused_says_so_first(fixed, cisfix):
    set_profiling(fixed, "true")
    assert cisfix("pause", "--reason", "change freeze CHG-42").returncode == 0
    result = cisfix("fix", "--dry-run")
    assert result.returncode == 0
    first = result.stdout.splitlines()[0]
    assert first.startswith("paused by ") and "change freeze CHG-42" in first and "would change nothing now" in first
    assert "WOULD_FIX" in result.stdout  # the plan is still shown
    assert json.loads(cisfix("fix", "--dry-run", "--format", "json").stdout)["paused"].startswith("paused by ")


def test_a_command_a_person_gives_goes_ahead_while_paused_saying_so_first(node, cisfix):
    """A pause holds back the unattended runs; a person's edit, rollback or repair during a freeze must
    still work, but they learn first that someone paused the node, why and until when."""
    assert cisfix("pause", "--reason", "change freeze CHG-42", "--until", "2h").returncode == 0
    journal = node.root / STATE.lstrip("/") / "journal.jsonl"
    for command in [("edit", APISERVER, "--flag", "profiling=false"), ("edit", APISERVER, "--unflag", "profiling",
                     "--dry-run"), ("rollback", "--last"), ("recover",), ("resume",), ("persist", "--dry-run"),
                    ("persist",), ("prune",), ("prune", "--dry-run")]:
        before = journal.read_bytes() if journal.exists() else b""
        result = cisfix(*command)
        first = result.stdout.splitlines()[0] if result.stdout else ""
        assert first.startswith("paused by ") and " until " in first and first.endswith(
            f": change freeze CHG-42 — {command[0]} goes ahead: a pause holds back only fix, drift and scripts"), (
            command, result.stdout, result.stderr)
        if command[0] in ("edit", "rollback") and "--dry-run" not in command:  # it went ahead
            assert result.returncode == 0 and journal.read_bytes() != before, (command, result.stderr)
    for command in [("edit", APISERVER, "--flag", "profiling=false", "--dry-run"), ("recover",)]:
        assert json.loads(cisfix(*command, "--format", "json").stdout)["paused"].startswith("paused by ")


def test_a_fix_with_persist_and_a_script_are_held_back_while_paused(node, cisfix):
    from cisfix.api import Runner

    before = node.read(APISERVER)
    assert cisfix("pause", "--reason", "change freeze CHG-42").returncode == 0
    held = cisfix("fix", "--persist")
    assert held.returncode == 0 and held.stdout.startswith("paused by ") and len(held.stdout.splitlines()) == 1
    runner = Runner(root=str(node.root))
    result = runner.update_manifest_safely(APISERVER, "--profiling=", "false")
    assert result["success"] and result["status"] == "SKIPPED", result
    assert result["reason"].startswith("paused by ") and result["reason"].endswith("CHG-42; nothing was changed")
    tried = runner.update_manifest_safely(APISERVER, "--profiling=", "false", dry_run=True)
    assert tried["status"] == "WOULD_FIX" and tried["reason"].startswith("paused by ") and tried["diff"]
    assert node.read(APISERVER) == before


def test_drift_first_undoes_what_an_interrupted_run_left_and_says_so(fixed, cisfix, drift):
    """An open transaction is the node as an interrupted run left it, not drift: drift recovers it before
    it audits (so nothing is corrected), and says so even with -q, as its JSON does."""
    fixed_bytes = fixed.read(APISERVER)
    for args in (("-q",), ("--format", "json")):
        killed = cisfix("edit", APISERVER, "--flag", "profiling=true", env={"CISFIX_FAULT": "before-commit"})
        assert killed.returncode == -9 and fixed.read(APISERVER) != fixed_bytes
        txid = json.loads(cisfix("history", "--format", "json").stdout)[-1]["txid"]
        result, _ = drift(*args)
        assert result.returncode == 0, result.stdout + result.stderr
        line = (f"cisfix: recovered transaction {txid} left by an interrupted run: undid 1 file(s) of kube-apiserver "
                f"({fixed.path(APISERVER)})")
        if args == ("-q",):
            assert result.stdout.splitlines() == [line]
        else:
            assert [r["message"] for r in json.loads(result.stdout)["recovered"]] == [line]
        assert fixed.read(APISERVER) == fixed_bytes and events(fixed) == []
