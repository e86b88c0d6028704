"""The shipped systemd units and cron line of `cisfix drift` (deploy/systemd, deploy/cron), exactly as
the README shows them, run on a lab node: ExecStart as systemd runs it (no shell; Environment= and the
EnvironmentFile= a user writes expanded as systemd expands them, with the lab's root as CISFIX_ROOT),
the cron line through /bin/sh with cron's empty environment. The archive's path is replaced by a
launcher for this checkout."""
from __future__ import annotations

import datetime
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

from prometheus import parse_prometheus, value

REPO = Path(__file__).resolve().parents[1]
SERVICE = REPO / "deploy/systemd/cisfix-drift.service"
TIMER = REPO / "deploy/systemd/cisfix-drift.timer"
CRON = REPO / "deploy/cron/cisfix-drift"
PYZ = "/usr/local/bin/cisfix.pyz"


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


def test_the_readme_shows_the_shipped_units_and_cron_line():
    readme = (REPO / "README.md").read_text()
    for path in (SERVICE, TIMER):
        body = path.read_text().split("\n[", 1)[1]  # from the first section on
        assert "[" + body in readme, f"README does not show {path.name} as shipped"
    cron_line = CRON.read_text().splitlines()[-1]
    assert cron_line in readme
    service, timer = unit_settings(SERVICE.read_text()), unit_settings(TIMER.read_text())
    assert service["Type"] == ["oneshot"] and int(service["Nice"][0]) > 0
    assert int(timer["RandomizedDelaySec"][0]) > 0 and timer["OnCalendar"]


def test_unit_and_cron_line_on_a_lab_node(make_lab, tmp_path):
    lab = make_lab()
    launcher = tmp_path / "cisfix.pyz"
    launcher.write_text(f"#!/bin/sh\nexec {sys.executable} -m cisfix \"$@\"\n")
    launcher.chmod(0o755)
    config = lab.root / "etc/cisfix/config.yaml"
    config.write_text(config.read_text() + "gate: {timeout: 90, stabilityWindow: 1}\n")
    cli = [str(launcher), "--root", str(lab.root)]
    dry = subprocess.run([*cli, "fix", "--level", "1", "--dry-run", "--format", "json"], capture_output=True, text=True)
    people = [r["id"] for r in json.loads(dry.stdout)["results"] if r["fix"] == "SKIPPED" and r["status"] == "FAIL"]
    expires = datetime.date.today() + datetime.timedelta(days=90)
    config.write_text(config.read_text() + "exceptions:\n" + "".join(
        f"  - {{id: '{i}', reason: 'needs a person', expires: {expires}}}\n" for i in people))
    assert subprocess.run([*cli, "-q", "fix", "--level", "1"], capture_output=True).returncode == 0
    textfile = lab.root / "var/lib/node_exporter/textfile/cisfix.prom"

    # The unit, as systemd runs it, with /etc/default/cisfix naming the lab's root.
    settings = unit_settings(SERVICE.read_text())
    defaults = tmp_path / "default-cisfix"
    defaults.write_text(f"CISFIX_ROOT={lab.root}\n")
    [command] = settings["ExecStart"]
    argv = exec_argv(command.replace(PYZ, str(launcher)), environment(settings, defaults))
    lab.edit_manifest("kube-scheduler", "--profiling=false", "--profiling=true")
    lab.wait_for_event("pod-started", "kube-scheduler")
    lab.wait_healthy(120)
    run = subprocess.run(argv, capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"})
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.startswith("CORRECTED 1.4.1 (manual, /etc/kubernetes/manifests/kube-scheduler.yaml")
    assert value(parse_prometheus(textfile.read_text()), "cisfix_corrections_total", id="1.4.1", outcome="FIXED") == 1
    again = subprocess.run(argv, capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"})
    assert (again.returncode, again.stdout, again.stderr) == (0, "", "")

    # The cron line, through cron's shell and empty environment; the launcher carries the lab's root.
    launcher.write_text(f"#!/bin/sh\nexec {sys.executable} -m cisfix --root {lab.root} \"$@\"\n")
    command = CRON.read_text().splitlines()[-1].split(" root ", 1)[1].replace(PYZ, str(launcher))
    cron = subprocess.run(["env", "-i", "PATH=/usr/bin:/bin", "/bin/sh", "-c", command],
                          capture_output=True, text=True, stdin=subprocess.DEVNULL)
    assert (cron.returncode, cron.stdout, cron.stderr) == (0, "", "")
    samples = parse_prometheus(textfile.read_text())
    assert value(samples, "cisfix_last_run_exit_code") == 0 and value(samples, "cisfix_compliance_state") == 2
    assert all(s.healthy for s in lab.status().values())
