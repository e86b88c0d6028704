"""The README's cron and systemd lines, run literally on a lab node (the archive's path replaced by a
launcher for this checkout): with the checks that need a person excepted, the `.prom` file is written
and the run exits 0; without, `fix` exits 1, says why in one line, and the audit does not run."""
from __future__ import annotations

import datetime
import json
import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"
PYZ = "/usr/local/bin/cisfix.pyz"
TEXTFILE_DIR = "/var/lib/node_exporter/textfile"


def readme_cron_command() -> str:
    line = next(line for line in README.read_text().splitlines() if line.strip().startswith("*/10 * * * * root "))
    return line.split(" root ", 1)[1]


def readme_systemd_commands() -> list:
    text = README.read_text()
    return [re.search(rf"^\s*{key}=(.+)$", text, re.M).group(1) for key in ("ExecStart", "ExecStartPost")]


def as_cron_runs_it(command: str, launcher: Path, textfile_dir: Path) -> subprocess.CompletedProcess:
    command = command.replace(PYZ, str(launcher)).replace(TEXTFILE_DIR, str(textfile_dir))
    return subprocess.run(["env", "-i", "PATH=/usr/bin:/bin", "/bin/sh", "-c", command],
                          capture_output=True, text=True, stdin=subprocess.DEVNULL)


def test_readme_cron_and_systemd_lines_on_a_lab_node(make_lab, tmp_path):
    lab = make_lab()
    launcher = tmp_path / "cisfix.pyz"
    launcher.write_text(f"#!/bin/sh\nexec {sys.executable} -m cisfix --root {lab.root} \"$@\"\n")
    launcher.chmod(0o755)
    textfile = tmp_path / "textfile"
    textfile.mkdir()
    prom = textfile / "cisfix.prom"
    config = lab.root / "etc/cisfix/config.yaml"
    base = config.read_text() + "gate: {timeout: 60, stabilityWindow: 1}\n"
    config.write_text(base)

    # What needs a person on this node, as an operator would find out: a dry run.
    dry = subprocess.run([str(launcher), "fix", "--level", "1", "--dry-run", "--format", "json"],
                         capture_output=True, text=True)
    people = [r["id"] for r in json.loads(dry.stdout)["results"] if r["fix"] == "SKIPPED" and r["status"] == "FAIL"]
    assert people, dry.stdout[-1000:]
    expires = datetime.date.today() + datetime.timedelta(days=90)
    config.write_text(base + "exceptions:\n" + "".join(
        f"  - {{id: '{i}', reason: 'accepted until the next maintenance window', expires: {expires}}}\n"
        for i in people))

    result = as_cron_runs_it(readme_cron_command(), launcher, textfile)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert all(line.startswith("FIXED ") for line in result.stdout.splitlines()), result.stdout
    metrics = prom.read_text()
    assert 'cisfix_checks{status="FAIL"} 0' in metrics and 'cisfix_checks{status="EXCEPTED"}' in metrics
    assert all(s.healthy for s in lab.status().values())

    # Without the exceptions: exit 1, one line saying why, no audit (the .prom file stays as it was).
    config.write_text(base)
    written = prom.stat().st_mtime_ns
    result = as_cron_runs_it(readme_cron_command(), launcher, textfile)
    assert result.returncode == 1
    assert result.stdout.strip().splitlines() == [result.stdout.strip()]
    assert result.stdout.startswith("exit 1: ") and all(i in result.stdout for i in people)
    assert prom.stat().st_mtime_ns == written

    # The systemd unit's lines, with the exceptions back: ExecStartPost runs after ExecStart's exit 0.
    config.write_text(base + "exceptions:\n" + "".join(
        f"  - {{id: '{i}', reason: 'accepted', expires: {expires}}}\n" for i in people))
    prom.unlink()
    start, post = readme_systemd_commands()
    first = as_cron_runs_it(start, launcher, textfile)
    assert first.returncode == 0 and first.stdout == "", first.stdout + first.stderr  # nothing left to change
    assert as_cron_runs_it(post, launcher, textfile).returncode == 0
    assert "cisfix_check_status" in prom.read_text()
