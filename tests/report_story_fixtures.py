"""`report_story`: one lab node's life for the report tests (tests/test_node_report.py reads its documents,
tests/test_html_report_lab.py renders its pages): reports before and after `fix --level 1` and a drift
correction, with accepted risks (one expired), a plugin section and secrets planted in a node file and in
the backups.

Starting a lab and fixing it is most of those tests' time, and they only read what the story recorded,
so the story runs once per test run: the first xdist worker to ask tells it under a lock in the run's
shared temp folder (stopping the lab, with lab_factory's no-process-left check), the others wait for
that lock and read what it recorded. The node's tree stays on disk for tests that read its files."""
from __future__ import annotations

import base64
import datetime
import fcntl
import json
import os
import pickle
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from cisfix.lab.tree import create
from lab_fixtures import FAST, LabNode, lab_factory

GATE = ("--timeout", "60", "--stability-window", "1")
AESCBC = base64.b64encode(b"planted-aescbc-secret-0123456789").decode()  # a key no report may show
PLUGIN = '''
import cisfix

@cisfix.hookimpl
def cisfix_report_sections(report):
    failing = sorted(c["id"] for c in report["checks"] if c["status"] == "NEEDS_A_PERSON")
    return [cisfix.ReportSection("ACME change ticket", "CHG-42 covers " + ", ".join(failing))]
'''


def cisfix(root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cisfix", "--root", str(root), *args], capture_output=True, text=True)


def as_json(result: subprocess.CompletedProcess, *codes: int) -> dict:
    assert result.returncode in codes, result.stdout[-2000:] + result.stderr[-2000:]
    return json.loads(result.stdout)


def tell(tmp: Path) -> dict:
    """Start the lab node cp-1 under `tmp`, live its story, stop it; what each step gave, by name. Pages
    (`report --format html`) are files in `tmp`: `before.html` and, right after the fix, `after-fix.html`
    with its document `after-fix.json`."""
    factory = lab_factory(tmp, LabNode, create, "cp-1", FAST, key_algorithm="ECDSA-P256")
    make = next(factory)
    try:
        lab = make()
        root = lab.root
        today = datetime.date.today()
        config = root / "etc/cisfix/config.yaml"
        config.write_text(config.read_text() + "exceptions:\n"
                          f"  - {{id: '1.2.5', reason: 'serving certs in Q3', by: 'alice (SEC-123)', "
                          f"expires: {today + datetime.timedelta(days=90)}}}\n"
                          f"  - {{id: '1.3.1', reason: 'was accepted last year', expires: {today - datetime.timedelta(days=1)}}}\n")
        (root / "etc/kubernetes/planted-aescbc.yaml").write_text(
            f"kind: EncryptionConfiguration\nresources:\n- providers:\n  - aescbc:\n      keys:\n      - name: k\n"
            f"        secret: {AESCBC}\n")
        plugins = tmp / "checks.d"
        plugins.mkdir()
        (plugins / "acme_report.py").write_text(PLUGIN)
        os.chmod(tmp, 0o755)

        story = {"root": root}
        story["audit_before"] = as_json(cisfix(root, "audit", "--format", "json"), 1)
        story["dry_run"] = as_json(cisfix(root, "fix", "--dry-run", "--format", "json", *GATE), 0, 1)  # all levels, as the report
        story["before"] = as_json(cisfix(root, "report", "--format", "json"), 0)
        story["before_page_run"] = cisfix(root, "report", "--format", "html", "--output", str(tmp / "before.html"))
        story["fix"] = as_json(cisfix(root, "fix", "--level", "1", "--format", "json", *GATE), 0, 1)
        story["after_fix_run"] = cisfix(root, "report", "--format", "json", "--output", str(tmp / "after-fix.json"))
        story["after_fix_page_run"] = cisfix(root, "report", "--format", "html", "--output", str(tmp / "after-fix.html"))

        since = time.time()
        lab.edit_manifest("kube-scheduler", "--profiling=false", "--profiling=true")
        lab.wait_for_event("pod-started", "kube-scheduler", since)
        lab.wait_healthy(120)
        story["drift"] = cisfix(root, "drift", "--level", "1", *GATE)

        # A secret where no report may take it from: a stray file among the backups, and the backup of a
        # file cisfix changed replaced by other bytes holding it.
        journal = [json.loads(line) for line in (root / "var/lib/cisfix/journal.jsonl").read_text().splitlines()]
        scheduler_fix = next(r for r in journal if r["type"] == "begin" and r["label"].startswith("fix ")
                             and any(f["path"].endswith("kube-scheduler.yaml") for f in r["files"]))
        backup = root / "var/lib/cisfix/backups" / scheduler_fix["txid"] / "etc/kubernetes/manifests/kube-scheduler.yaml"
        backup.write_text(backup.read_text() + f"# secret: {AESCBC}\n")
        (backup.parent / "stray.yaml").write_text(f"secret: {AESCBC}\n")
        story["tampered"] = scheduler_fix["txid"]

        story["audit_after"] = as_json(cisfix(root, "audit", "--format", "json"), 0, 1)
        story["after_text"] = cisfix(root, "--checks-dir", str(plugins), "report", "--format", "json").stdout
        story["after"] = json.loads(story["after_text"])
        story["page"] = cisfix(root, "--checks-dir", str(plugins), "report").stdout
        audit_page = tmp / "audit.html"
        story["audit_page_run"] = cisfix(root, "--checks-dir", str(plugins), "audit", "--format", "html",
                                         "--output", str(audit_page))
        story["audit_page"] = audit_page.read_text()
        story["generated_key"] = next(line.split("secret:")[1].strip() for line in
                                      (root / "etc/kubernetes/encryption-config.yaml").read_text().splitlines()
                                      if "secret:" in line)
        return story
    finally:
        next(factory, None)  # stop the lab, assert nothing of it is left


@pytest.fixture(scope="session")
def report_story(tmp_path_factory) -> dict:
    """tell()'s story, told once per test run (see the module's docstring); a worker that finds it told
    reads it."""
    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base  # xdist: the run's folder
    told = shared / "report-story.pickle"
    with open(shared / "report-story.lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        if not told.exists():  # also when the worker that tried first failed: try (and fail) again, afresh
            story = tell(Path(tempfile.mkdtemp(prefix="report-story-", dir=shared)))
            told.write_bytes(pickle.dumps(story))
    return pickle.loads(told.read_bytes())
