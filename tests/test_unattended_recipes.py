"""Every unattended recipe is a file shipped under deploy/ (the cron lines of deploy/cron, the drift units
of deploy/systemd), shown verbatim in the README, and run here as written on a stock lab node — whose
checks that need a person are neither fixed nor accepted, as on every kubeadm node in its first week:
each run writes its metrics, which parse, with the exit code the README documents.

A recipe runs as its runner runs it: a cron line through /bin/sh with cron's empty environment; a unit's
ExecStart without a shell, with Environment= and the EnvironmentFile= expanded as systemd expands them.
Only the archive's path is replaced (by this checkout's `python -m cisfix`); the lab's root comes in as
a real node's would: the unit's CISFIX_ROOT from /etc/default/cisfix, the cron line's `--root` beside
the replaced path. Paths in the recipes are the node's, resolved under that root."""
from __future__ import annotations

import datetime
import re
import shlex
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from prometheus import parse_prometheus, value
from test_drift import tree
from test_unattended_runs import NEEDS_A_PERSON, with_exceptions

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
DEPLOY = REPO / "deploy"
PYZ = "/usr/local/bin/cisfix.pyz"
PATH = "PATH=/usr/bin:/bin"
TEXTFILE = "var/lib/node_exporter/textfile/cisfix.prom"
CRON_FILES = sorted((DEPLOY / "cron").iterdir())
UNIT_FILES = sorted((DEPLOY / "systemd").iterdir())


def unit_settings(text: str) -> dict:
    """key -> [values] of a unit file (comments and section headers left out)."""
    settings: dict = {}
    for line in text.splitlines():
        if line and not line.startswith(("#", ";", "[")):
            key, _, val = line.partition("=")
            settings.setdefault(key, []).append(val)
    return settings


def environment(settings: dict, environment_file: Path) -> dict:
    """Environment= assignments, then the EnvironmentFile= (whose `-` means: may be missing)."""
    env = {}
    for assignment in settings.get("Environment", []):
        for word in shlex.split(assignment):
            key, _, val = word.partition("=")
            env[key] = val
    assert settings["EnvironmentFile"] == ["-/etc/default/cisfix"]
    for line in environment_file.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            key, _, val = line.partition("=")
            env[key.strip()] = val.strip().strip('"')
    return env


def exec_argv(command: str, env: dict) -> list:
    """systemd's ExecStart expansion: ${VAR} is one word, $VAR splits on whitespace."""
    argv = []
    for word in shlex.split(command):
        braced = re.fullmatch(r"\$\{(\w+)\}", word)
        bare = re.fullmatch(r"\$(\w+)", word)
        if braced:
            argv.append(env[braced.group(1)])
        elif bare:
            argv += env[bare.group(1)].split()
        else:
            argv.append(re.sub(r"\$\{(\w+)\}", lambda m: env[m.group(1)], word))
    return argv


def this_checkout(command: str, *options: str) -> str:
    """The command with the archive's path replaced by this checkout's cisfix, then `options`."""
    assert command.startswith(PYZ + " "), command
    return " ".join(map(shlex.quote, (sys.executable, "-m", "cisfix", *options))) + command[len(PYZ):]


def run_cron_file(path: Path, root: Path) -> subprocess.CompletedProcess:
    """The file's one cron line, its command as cron runs it (/bin/sh, an empty environment, no stdin)."""
    [line] = [line for line in path.read_text().splitlines() if line and not line.startswith("#")]
    *schedule, user, command = line.split(None, 6)
    assert user == "root" and len(schedule) == 5, line
    return subprocess.run(["env", "-i", PATH, "/bin/sh", "-c", this_checkout(command, "--root", str(root))],
                          capture_output=True, text=True, stdin=subprocess.DEVNULL)


def run_unit(path: Path, defaults: Path) -> subprocess.CompletedProcess:
    """The unit's ExecStart as systemd runs it, with `defaults` as its /etc/default/cisfix."""
    settings = unit_settings(path.read_text())
    assert "ExecStartPost" not in settings and "ExecStopPost" not in settings  # the run writes its own metrics
    [command] = settings["ExecStart"]
    argv = exec_argv(this_checkout(command), environment(settings, defaults))
    return subprocess.run(["env", "-i", PATH, *argv], capture_output=True, text=True, stdin=subprocess.DEVNULL)


def test_the_readme_shows_every_shipped_recipe_verbatim_and_no_other():
    readme = README.read_text()
    for path in CRON_FILES:  # the whole file, as an indented block
        text = "".join("    " + line if line.strip() else line for line in path.read_text().splitlines(True))
        assert "\n" + text in readme, f"README does not show deploy/cron/{path.name} as shipped"
    for path in UNIT_FILES:  # from the first section on (the file's own header says how to install it)
        body = re.search(r"^\[.*", path.read_text(), re.M | re.S).group(0)
        assert f"# /etc/systemd/system/{path.name}\n{body}" in readme, f"README does not show {path.name} as shipped"
    named = set(re.findall(r"\b(cisfix[\w-]*\.(?:service|timer))\b", readme))
    assert named == {p.name for p in UNIT_FILES}, f"the README names the units {named}, not those deploy/systemd ships"
    assert set(re.findall(r"/etc/cron\.d/([\w-]+)", readme)) == {p.name for p in CRON_FILES}
    shown = [line for line in readme.splitlines() if re.match(r"\s*(\*/\d+|\d+)( \S+){4} root ", line)]
    assert sorted(shown) == sorted("    " + line for p in CRON_FILES for line in p.read_text().splitlines()
                                   if line and not line.startswith("#"))
    for path in CRON_FILES:
        assert path.read_text().endswith("\n")  # cron skips a last line without one


def ids(why: str) -> set:
    """The check ids an `exit 1: N check(s) ...: ID, ID; what to do` line names."""
    return set(re.search(r": (\d[\w.]*(?:, \d[\w.]*)*);", why).group(1).split(", "))


def metrics(root: Path) -> dict:
    return parse_prometheus((root / TEXTFILE).read_text())


def test_every_recipe_writes_its_metrics_on_a_node_with_checks_that_need_a_person(make_lab, tmp_path):
    lab = make_lab()
    config = lab.root / "etc/cisfix/config.yaml"
    config.write_text(config.read_text() + "gate: {timeout: 90, stabilityWindow: 1}\n")  # no exceptions
    assert not (lab.root / "var/lib/node_exporter").exists()

    # fix from cron: the fixes are made, the checks that need a person stay (exit 1, one line saying
    # why), and the metrics are written all the same, their folders created 0755.
    fix = run_cron_file(DEPLOY / "cron/cisfix-fix", lab.root)
    assert fix.returncode == 1 and fix.stderr == "", fix.stdout[-2000:] + fix.stderr[-2000:]
    *changes, why = fix.stdout.splitlines()
    assert changes and all(line.startswith("FIXED ") for line in changes), fix.stdout
    assert why.startswith("exit 1: ") and "need a person" in why
    samples = metrics(lab.root)
    assert value(samples, "cisfix_last_run_exit_code") == 1 and value(samples, "cisfix_compliance_state") == 1
    assert value(samples, "cisfix_checks", status="FAIL") >= 1
    assert value(samples, "cisfix_checks", status="PASS") > len(changes)  # the audit after the fix
    for folder in ("var/lib/node_exporter", "var/lib/node_exporter/textfile"):
        assert stat.S_IMODE((lab.root / folder).stat().st_mode) == 0o755
    assert all(s.healthy for s in lab.status().values())

    # The drift unit (the recommended way), then the drift cron line: what fix could not fix is not
    # cisfix's baseline, so both exit 1 (the unit is marked failed), say why, and write the metrics.
    defaults = tmp_path / "default-cisfix"
    defaults.write_text(f"CISFIX_ROOT={lab.root}\n")
    for run in (lambda: run_unit(DEPLOY / "systemd/cisfix-drift.service", defaults),
                lambda: run_cron_file(DEPLOY / "cron/cisfix-drift", lab.root)):
        (lab.root / TEXTFILE).unlink()
        drift = run()
        assert drift.returncode == 1 and drift.stderr == "", drift.stdout + drift.stderr
        [line] = drift.stdout.splitlines()
        assert line.startswith("exit 1: ") and ids(line) == ids(why), (line, why)
        # these need a person: the line says how to tell which cisfix could fix, not just "run fix"
        assert "`cisfix fix --dry-run` shows which of them it can fix" in line, line
        samples = metrics(lab.root)
        assert value(samples, "cisfix_last_run_exit_code") == 1 and value(samples, "cisfix_compliance_state") == 1


@pytest.mark.parametrize("command", [
    ("drift",), ("drift", "--textfile", "{tmp}/metrics/cisfix.prom"), ("fix", "--textfile"),
    ("fix", "--textfile", "{tmp}/metrics/cisfix.prom"),
    ("audit", "--format", "prometheus", "--output", "{root}/" + TEXTFILE)])
@pytest.mark.parametrize("shape", ["missing", "empty", "half a node"])
def test_a_recipe_on_a_root_that_is_not_a_node_creates_nothing(tmp_path, command, shape):
    """One line, exit 2, and no textfile, folder, lock or state folder: not under the root, not where
    --textfile or --output points."""
    root = tmp_path / "typo"
    if shape != "missing":
        root.mkdir()
    if shape == "half a node":  # the folders a node has, without a manifest or the kubelet's config
        (root / "etc/kubernetes/manifests").mkdir(parents=True)
        (root / "var/lib/kubelet").mkdir(parents=True)
    before = sorted(tmp_path.rglob("*"))
    args = [a.format(tmp=tmp_path, root=root) for a in command]
    result = subprocess.run([sys.executable, "-m", "cisfix", "--root", str(root), "-q", *args],
                            capture_output=True, text=True, stdin=subprocess.DEVNULL)
    assert result.returncode == 2 and result.stdout == "", result.stdout + result.stderr
    [line] = result.stderr.splitlines()
    assert line.startswith(f"cisfix: error: {root} does not look like a Kubernetes node: "), line
    assert sorted(tmp_path.rglob("*")) == before


# ---- fix --textfile: the metrics whatever the fix found, with the fix's exit code ----

def fix_with_textfile(cisfix, node):
    before = node.read("/etc/kubernetes/manifests/kube-apiserver.yaml")
    result = cisfix("-q", "fix", "--level", "1", "--textfile")
    assert node.read("/etc/kubernetes/manifests/kube-apiserver.yaml") == before  # nothing was fixed
    samples = metrics(node.root)
    assert value(samples, "cisfix_last_run_exit_code") == result.returncode
    return result, samples


def test_paused_fix_changes_nothing_and_its_textfile_has_the_audit(node, cisfix):
    assert cisfix("pause", "--reason", "change freeze CHG-42").returncode == 0
    result, samples = fix_with_textfile(cisfix, node)
    assert result.returncode == 0 and result.stdout.startswith("paused by ") and result.stderr == ""
    assert value(samples, "cisfix_paused") == 1 and value(samples, "cisfix_compliance_state") == 1
    assert value(samples, "cisfix_checks", status="FAIL") > 1


def test_a_halted_node_exits_4_and_its_textfile_says_so(node, cisfix):
    from cisfix.halt import write_halt
    from cisfix.node import Node
    from cisfix.statedir import prepare_state_dir

    prepare_state_dir(Node(str(node.root)))
    write_halt(Node(str(node.root)), "a rollback did not come back", "20260101T000000Z-abcdef", [], [])
    result, samples = fix_with_textfile(cisfix, node)
    assert result.returncode == 4 and "HALT exists" in result.stderr
    assert value(samples, "cisfix_halted") == 1 and value(samples, "cisfix_compliance_state") == 3


def test_a_fix_that_finds_the_lock_held_exits_5_and_its_textfile_claims_no_compliance(node, cisfix):
    from cisfix.lock import RunLock
    from cisfix.node import Node
    from cisfix.statedir import prepare_state_dir

    with RunLock(prepare_state_dir(Node(str(node.root))) / "lock"):
        result, samples = fix_with_textfile(cisfix, node)
    assert result.returncode == 5 and "holds the lock" in result.stderr
    assert value(samples, "cisfix_compliance_state") == 3  # nothing was audited: unknown, never "compliant"


def test_fix_on_a_compliant_node_writes_nothing_but_its_textfile(node, cisfix):
    with_exceptions(node, NEEDS_A_PERSON, (datetime.date.today() + datetime.timedelta(days=30)).isoformat())
    assert cisfix("fix").returncode == 0
    before = tree(node.root)
    result = cisfix("-q", "fix", "--level", "1", "--textfile")
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    after = tree(node.root)
    assert sorted(set(after) - set(before)) == ["var/lib/node_exporter", "var/lib/node_exporter/textfile", TEXTFILE]
    assert {path: after[path] for path in before} == before  # no journal record, backup, lock or log line
    samples = metrics(node.root)
    assert value(samples, "cisfix_compliance_state") == 2 and value(samples, "cisfix_last_run_exit_code") == 0
