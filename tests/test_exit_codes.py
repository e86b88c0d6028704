"""Exit codes never lie: a bug is exit 70, never 1 (which fleet automation accepts as "checks still
fail"); `drift` exits 2 when a check cannot be audited, as `fix` does; an unknown component is bad input;
a recovery conflict keeps the node HALTed until `resume`, and `resume` clears HALT only when the
components answer healthy (or with `--force`, which names what it did not prove)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import APISERVER, KUBELET_CONFIG, run_cisfix
from prometheus import parse_prometheus, value
from test_drift import fixed  # noqa: F401 (a fixture: a node cisfix fixed, risks accepted)

EDIT = ("edit", APISERVER, "--flag", "profiling=false")
BUGGY_FORMAT = '''import cisfix


def render(results, summary):
    return {}["no such key"]  # a plugin's bug, met while the command runs


@cisfix.hookimpl
def cisfix_register_report_formats():
    return [cisfix.ReportFormat("buggy", render)]
'''


@pytest.fixture
def buggy(tmp_path):
    folder = tmp_path / "checks.d"
    folder.mkdir()
    (folder / "buggy.py").write_text(BUGGY_FORMAT)
    return folder


def test_an_internal_error_is_exit_70_in_one_line(cisfix, buggy):
    result = cisfix("--checks-dir", str(buggy), "audit", "--format", "buggy")
    assert result.returncode == 70, result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("cisfix: internal error (exit 70): KeyError at buggy.py:")
    assert "'no such key'" in line and "rerun with -v for the traceback" in line


def test_an_internal_error_with_v_shows_the_traceback(cisfix, buggy):
    result = cisfix("-v", "--checks-dir", str(buggy), "audit", "--format", "buggy")
    assert result.returncode == 70
    assert "Traceback (most recent call last)" in result.stderr and 'return {}["no such key"]' in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("cisfix: internal error (exit 70): KeyError")


def test_the_readme_documents_exit_70():
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert "| 70 | internal error" in readme


def test_the_readme_exit_table_has_every_code_the_cli_returns():
    """Each code of `cisfix.status` and the lab's, 130 (Ctrl-C) too, has its row; exit 1 says which
    commands use it for something other than failing checks."""
    import re

    from cisfix import status
    from cisfix.lab import cli as lab_cli

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    table = readme.split("### Statuses and exit codes", 1)[1].split("\n## ", 1)[0]
    rows = {int(code): text for code, text in re.findall(r"^\| (\d+) \| (.*) \|$", table, re.M)}
    codes = {v for module in (status, lab_cli) for k, v in vars(module).items() if k.startswith("EXIT_")}
    assert codes | {130} <= rows.keys()
    assert "`persist`" in rows[1] and "`lab`" in rows[1] and "`health`" in rows[2]


def test_an_unknown_component_is_bad_input_naming_the_known_ones(cisfix):
    result = cisfix("health", "--component", "kube-apiserver", "--component", "nosuch")
    assert result.returncode == 2 and result.stdout == ""
    (line,) = result.stderr.strip().splitlines()
    assert "--component nosuch: no such component" in line
    assert "known: etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubelet" in line


def test_drift_exits_2_when_a_baseline_check_cannot_be_audited_and_corrects_the_rest(fixed, tmp_path):  # noqa: F811
    textfile = tmp_path / "cisfix.prom"
    os.chmod(fixed.path(KUBELET_CONFIG), 0o644)  # a drift drift can still correct
    fixed.write(APISERVER, fixed.read(APISERVER).replace(b"spec:\n", b"spec:\n\t", 1))  # no longer YAML
    result = run_cisfix(fixed, "drift", "--textfile", str(textfile))
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    cannot = [line for line in lines if line.startswith("CANNOT AUDIT ")]
    assert any(line.startswith("CANNOT AUDIT 1.2.15 ") and f"{APISERVER}" in line for line in cannot), lines
    assert any(line.startswith("CORRECTED 4.1.9 ") for line in lines), lines
    assert lines[-1].startswith("exit 2: ") and "could not be audited" in lines[-1]
    assert oct(fixed.path(KUBELET_CONFIG).stat().st_mode & 0o777) == "0o600"
    assert value(parse_prometheus(textfile.read_text()), "cisfix_last_run_exit_code") == 2
    as_json = run_cisfix(fixed, "drift", "--textfile", str(textfile), "--format", "json")
    assert as_json.returncode == 2 and "1.2.15" in json.loads(as_json.stdout)["unaudited"]


def test_fix_and_drift_agree_on_a_check_that_cannot_be_audited(fixed, tmp_path):  # noqa: F811
    fixed.write(APISERVER, fixed.read(APISERVER).replace(b"spec:\n", b"spec:\n\t", 1))
    assert run_cisfix(fixed, "fix").returncode == 2
    assert run_cisfix(fixed, "drift", "--textfile", str(tmp_path / "m.prom")).returncode == 2


def meddled_after_a_crash(node):
    """A run killed before its commit, then the file changed by someone else: recovery cannot undo it."""
    killed = run_cisfix(node, *EDIT, env={"CISFIX_FAULT": "before-commit"})
    assert killed.returncode == -9
    meddled = node.read(APISERVER) + b"# someone else\n"
    node.write(APISERVER, meddled)
    return meddled


@pytest.mark.parametrize("first", [("recover",), ("fix",), EDIT, ("rollback", "--last")])
def test_a_recovery_conflict_keeps_the_node_halted_until_resume(node, first):
    meddled = meddled_after_a_crash(node)
    result = run_cisfix(node, *first)
    assert result.returncode == 4 and "changed since cisfix wrote it" in result.stderr, result.stderr
    halt = node.state_dir / "HALT"
    assert halt.exists() and "found files changed by someone else" in halt.read_text()
    for later in (("recover",), ("fix",), EDIT, ("drift", "--textfile", str(node.root.parent / "m.prom"))):
        refused = run_cisfix(node, *later)
        assert refused.returncode == 4, (later, refused.stdout, refused.stderr)
        assert "HALT exists" in refused.stderr and "nothing to recover" not in refused.stdout
        assert node.read(APISERVER) == meddled
    assert [tx["state"] for tx in json.loads(run_cisfix(node, "history", "--format", "json").stdout)] == [
        "rollback-failed"]
    # Nothing runs on this node, so there is no component to prove healthy: resume clears HALT.
    resumed = run_cisfix(node, "resume")
    assert resumed.returncode == 0 and "HALT cleared" in resumed.stdout and not halt.exists()
    assert "RESUME" in node.read("/var/log/cisfix.log").decode()
    after = run_cisfix(node, "recover")
    assert after.returncode == 0 and after.stdout.strip() == "nothing to recover"


def lab_cisfix(lab, *args):
    return subprocess.run([sys.executable, "-m", "cisfix", "--root", str(lab.root), *args],
                          capture_output=True, text=True, timeout=300)


def halt_the_lab(lab) -> Path:
    """HALT as cisfix writes it when a rollback did not bring a component back."""
    from cisfix.halt import write_halt
    from cisfix.node import Node
    from cisfix.statedir import prepare_state_dir

    node = Node(str(lab.root))
    prepare_state_dir(node)
    write_halt(node, "the rollback did not bring kube-apiserver back", "20261202T000000Z-000000", [], ())
    return node.state_dir / "HALT"


def test_resume_clears_halt_only_when_the_components_answer_healthy(lab):
    halt = halt_the_lab(lab)
    lab.add_flag("kube-apiserver", "--no-such-flag")  # the API server crash-loops from now on
    lab.wait_for(lambda: not lab.status()["kube-apiserver"].healthy, 120, "the API server to go down")

    refused = lab_cisfix(lab, "resume")
    assert refused.returncode == 4, refused.stdout + refused.stderr
    (line,) = refused.stderr.strip().splitlines()
    assert f"{halt} kept: not healthy: " in line and "kube-apiserver (" in line and "--force" in line
    assert halt.exists() and refused.stdout == ""
    assert lab_cisfix(lab, "edit", APISERVER, "--flag", "profiling=false").returncode == 4  # still HALTed

    forced = lab_cisfix(lab, "resume", "--force")
    assert forced.returncode == 0 and not halt.exists(), forced.stdout + forced.stderr
    (warning,) = forced.stderr.strip().splitlines()
    assert warning.startswith("cisfix: warning: HALT cleared without proof of health: ") and "kube-apiserver (" in warning
    assert "forced, not proven healthy: kube-apiserver" in (lab.root / "var/log/cisfix.log").read_text()

    halt = halt_the_lab(lab)
    lab.edit_manifest("kube-apiserver", "    - --no-such-flag\n", "")  # repaired by hand
    lab.wait_for(lambda: all(s.healthy for s in lab.status().values()), 120, "every component healthy")
    resumed = lab_cisfix(lab, "resume")
    assert resumed.returncode == 0 and resumed.stderr == "", resumed.stderr
    assert resumed.stdout.strip() == f"HALT cleared ({halt} removed)" and not halt.exists()


BUG_AFTER_THE_CHANGE = '''
import cisfix
calls = []

def check(state, component):
    calls.append(1)  # healthy for the pre-gate and for the rollback; a bug on the first look after the change
    if len(calls) == 2:
        raise KeyError("a bug in the probe")
    return (True, "ok")

@cisfix.hookimpl
def cisfix_register_probes():
    return [cisfix.Probe("kube-apiserver", check)]
'''


def test_a_bug_while_the_gate_judges_a_change_puts_the_files_back_before_exit_70(lab, tmp_path):
    """An unattended run that meets a bug mid-gate must not leave an unproven change on the node until
    the next run recovers it."""
    probes = tmp_path / "probes.d"
    probes.mkdir()
    (probes / "bug.py").write_text(BUG_AFTER_THE_CHANGE)
    manifest = Path(lab.root) / APISERVER.lstrip("/")
    before = manifest.read_bytes()
    result = lab_cisfix(lab, "--checks-dir", str(probes), "edit", APISERVER, "--flag", "profiling=false",
                        "--timeout", "120", "--stability-window", "2")
    assert result.returncode == 70, result.stdout + result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("cisfix: internal error (exit 70): KeyError")
    assert manifest.read_bytes() == before
    history = json.loads(lab_cisfix(lab, "history", "--format", "json").stdout)
    assert [tx["state"] for tx in history] == ["rolled-back"], history
    assert not (Path(lab.root) / "var/lib/cisfix/HALT").exists()
    assert lab_cisfix(lab, "recover").stdout.strip() == "nothing to recover"


def test_an_interrupt_while_waiting_for_the_lock_says_nothing_was_left_half_done(node):
    """Ctrl-C before anything began: exit 130, and one line saying there is nothing to recover."""
    import signal

    from lab_fixtures import poll

    from cisfix.lock import RunLock
    from cisfix.statedir import prepare_state_dir
    from cisfix.node import Node

    state = Node(str(node.root)).state_dir
    prepare_state_dir(Node(str(node.root)))
    with RunLock(state / "lock"):
        waiting = subprocess.Popen([sys.executable, "-m", "cisfix", "--root", str(node.root), "edit", APISERVER,
                                    "--flag", "profiling=false", "--wait", "120"],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        def holds_lock_open() -> bool:
            assert waiting.poll() is None, "it ended before waiting for the lock"
            fds = Path(f"/proc/{waiting.pid}/fd")
            return any(os.path.realpath(fd) == str(state / "lock") for fd in fds.iterdir())
        poll(holds_lock_open, 60, "the run to open the lock", lambda: "")
        waiting.send_signal(signal.SIGINT)
        _, stderr = waiting.communicate(timeout=60)
    assert waiting.returncode == 130
    assert stderr.splitlines() == ["cisfix: interrupted (exit 130); nothing was left half done"]


def journal_records(root) -> list:
    """The journal's complete lines (one being appended is left for the next look)."""
    journal = Path(root) / "var/lib/cisfix/journal.jsonl"
    text = journal.read_text() if journal.exists() else ""
    return [json.loads(line) for line in text.split("\n")[:-1] if line]


def test_an_interrupted_fix_names_what_it_left_open_and_the_next_fix_says_first_it_undid_it(lab):
    """Ctrl-C while the gate waits on a changed API server: the exit-130 line names the open transaction,
    its component and file; the next fix undoes it (gated) and says so in its first line, then fixes."""
    import signal

    from lab_fixtures import poll

    manifest = lab.manifest("kube-apiserver")
    before = manifest.read_bytes()
    # A long stability window: the transaction stays open (applied, gated, not committed) until interrupted.
    fixing = subprocess.Popen([sys.executable, "-m", "cisfix", "--root", str(lab.root), "fix", "--check", "1.2.15",
                               "--timeout", "120", "--stability-window", "60"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def applied_and_gating() -> str:
        assert fixing.poll() is None, "the fix ended before it was interrupted"
        records = journal_records(lab.root)
        gating = {r["txid"] for r in records if r["type"] == "gate"}
        return next((r["txid"] for r in records if r["type"] == "applied" and r["txid"] in gating), "")
    txid = poll(applied_and_gating, 120, "the fix to apply its change and gate it",
                lambda: str(journal_records(lab.root)))
    fixing.send_signal(signal.SIGINT)
    _, stderr = fixing.communicate(timeout=60)
    assert fixing.returncode == 130, stderr
    assert stderr.splitlines()[-1] == (
        f"cisfix: interrupted (exit 130); transaction {txid} is open (kube-apiserver: {manifest}); recovery undoes "
        "it — puts those files back as they were — and proves kube-apiserver healthy: the next mutating run "
        "recovers first, or `cisfix recover` now")
    intended = manifest.read_bytes()
    assert intended != before and b"--profiling=false" in intended
    assert [r["type"] for r in journal_records(lab.root) if r["txid"] == txid][-1] != "commit"

    again = lab_cisfix(lab, "-q", "fix", "--check", "1.2.15", "--timeout", "120", "--stability-window", "2")
    assert again.returncode == 0, again.stdout + again.stderr
    assert again.stdout.splitlines()[0] == (
        f"cisfix: recovered transaction {txid} left by an interrupted run: undid 1 file(s) of kube-apiserver "
        f"({manifest}); kube-apiserver healthy")
    assert manifest.read_bytes() == intended  # recovered, then fixed again
    history = json.loads(lab_cisfix(lab, "history", "--format", "json").stdout)
    assert [(tx["txid"] == txid, tx["state"]) for tx in history] == [(True, "rolled-back"), (False, "committed")]
    restored = [r for r in journal_records(lab.root) if r["txid"] == txid and r["type"] == "restored"]
    assert [(r["path"], r["action"]) for r in restored] == [(APISERVER, "restored from backup")]


def test_the_exit_1_line_names_the_configuration_file_under_root(node, cisfix):
    """The operator pastes what it names: under --root, the file is the one under the root."""
    done = cisfix("fix", "--check", "1.2.15", "--check", "4.2.13")
    assert done.returncode == 1, done.stdout + done.stderr
    why = done.stdout.strip().splitlines()[-2]
    assert why.startswith("exit 1:") and why.endswith(f"`exceptions:` in {node.root}/etc/cisfix/config.yaml"), why


@pytest.mark.parametrize("root, why", [
    ("/etc/hosts", "/etc/hosts: --root is not a directory: give the node's root folder"),
    ("/nonexistent-cisfix-root", "/nonexistent-cisfix-root does not look like a Kubernetes node: no such directory")])
def test_a_root_that_is_no_folder_says_which(root, why):
    done = subprocess.run([sys.executable, "-m", "cisfix", "--root", root, "audit"], capture_output=True, text=True)
    assert done.returncode == 2
    assert done.stderr == f"cisfix: error: {why}\n"
