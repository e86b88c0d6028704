"""The shipped recipes on a lab node whose checks that need a person are accepted risks (the README shows
them verbatim and tests/test_unattended_recipes.py runs them on a node where they are not): the fix cron
line fixes the node and then stays silent, exit 0; the drift unit corrects a drift, then is silent; so is
the drift cron line. Each run's textfile says so."""
from __future__ import annotations

import datetime
import json
import subprocess
import sys

from prometheus import parse_prometheus, value
from test_unattended_recipes import DEPLOY, TEXTFILE, run_cron_file, run_unit


def test_with_the_risks_accepted_the_recipes_fix_correct_and_stay_silent(make_lab, tmp_path):
    lab = make_lab()
    config = lab.root / "etc/cisfix/config.yaml"
    config.write_text(config.read_text() + "gate: {timeout: 90, stabilityWindow: 1}\n")
    dry = subprocess.run([sys.executable, "-m", "cisfix", "--root", str(lab.root), "fix", "--level", "1", "--dry-run",
                          "--format", "json"], capture_output=True, text=True)
    people = [r["id"] for r in json.loads(dry.stdout)["results"] if r["fix"] == "SKIPPED" and r["status"] == "FAIL"]
    expires = datetime.date.today() + datetime.timedelta(days=90)
    config.write_text(config.read_text() + "exceptions:\n" + "".join(
        f"  - {{id: '{i}', reason: 'needs a person', expires: {expires}}}\n" for i in people))
    textfile = lab.root / TEXTFILE

    def samples() -> dict:
        return parse_prometheus(textfile.read_text())

    fix = run_cron_file(DEPLOY / "cron/cisfix-fix", lab.root)
    assert (fix.returncode, fix.stderr) == (0, ""), fix.stdout[-2000:] + fix.stderr[-2000:]
    assert fix.stdout and all(line.startswith("FIXED ") for line in fix.stdout.splitlines()), fix.stdout
    assert value(samples(), "cisfix_compliance_state") == 2 and value(samples(), "cisfix_last_run_exit_code") == 0
    again = run_cron_file(DEPLOY / "cron/cisfix-fix", lab.root)  # nothing left to change
    assert (again.returncode, again.stdout, again.stderr) == (0, "", "")

    # The unit, with /etc/default/cisfix naming the lab's root, corrects a hand edit.
    defaults = tmp_path / "default-cisfix"
    defaults.write_text(f"CISFIX_ROOT={lab.root}\n")
    service = DEPLOY / "systemd/cisfix-drift.service"
    lab.edit_manifest("kube-scheduler", "--profiling=false", "--profiling=true")
    lab.wait_for_event("pod-started", "kube-scheduler")
    lab.wait_healthy(120)
    run = run_unit(service, defaults)
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.startswith("CORRECTED 1.4.1 (manual, /etc/kubernetes/manifests/kube-scheduler.yaml")
    assert value(samples(), "cisfix_corrections_total", id="1.4.1", outcome="FIXED") == 1
    again = run_unit(service, defaults)
    assert (again.returncode, again.stdout, again.stderr) == (0, "", "")

    cron = run_cron_file(DEPLOY / "cron/cisfix-drift", lab.root)
    assert (cron.returncode, cron.stdout, cron.stderr) == (0, "", "")
    assert value(samples(), "cisfix_last_run_exit_code") == 0 and value(samples(), "cisfix_compliance_state") == 2
    assert all(s.healthy for s in lab.status().values())
