"""`cisfix report`: the node report document (`--format json`) of a lab node before and after `fix --level 1`
— every check with its status, counted as `audit` counts; every change with its transaction, diff and
gate verdict; the accepted risks with who and until when; a drift correction; a plugin's section — and
never a secret the journal, the backups or the node's files hold. `--fleet` reads such documents as
untrusted data. One lab node for the whole module: the fixture does every change, the tests read."""
from __future__ import annotations

import base64
import datetime
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lab_fixtures import FAST, LabNode, lab_factory
from cisfix.lab.tree import create

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


@pytest.fixture(scope="module")
def story(tmp_path_factory):
    """A lab node's reports before and after `fix --level 1` and a drift correction, with accepted risks
    (one expired), a plugin section and secrets planted in a node file and in the backups."""
    tmp = tmp_path_factory.mktemp("report")
    factory = lab_factory(tmp, LabNode, create, "lab", FAST, key_algorithm="ECDSA-P256")
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
        story["fix"] = as_json(cisfix(root, "fix", "--level", "1", "--format", "json", *GATE), 0, 1)

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
        yield story
    finally:
        next(factory, None)  # stop the lab, assert nothing of it is left


def by_id(doc: dict) -> dict:
    return {c["id"]: c for c in doc["checks"]}


def test_before_the_fix_every_check_has_the_status_audit_gives_it(story):
    before, audit = story["before"], story["audit_before"]
    assert before["format"] == "cisfix-node-report/1"
    assert [c["id"] for c in before["checks"]] == [r["id"] for r in audit["results"]]
    would_fix = {r["id"] for r in story["dry_run"]["results"] if r["fix"] == "WOULD_FIX"}
    for r in audit["results"]:
        status = by_id(before)[r["id"]]["status"]
        if r["status"] == "FAIL":  # FAIL: cisfix fixes it; NEEDS_A_PERSON: it does not
            assert status == ("FAIL" if r["id"] in would_fix else "NEEDS_A_PERSON"), r["id"]
        elif r["status"] == "WARN":  # the audit could not decide
            assert status == "NEEDS_A_PERSON", r["id"]
        else:
            assert status == r["status"], r["id"]
    counts, summary = before["summary"], audit["summary"]
    assert counts["FAIL"] == len(would_fix) > 0
    assert counts["FAIL"] + counts["NEEDS_A_PERSON"] == summary["FAIL"] + summary["WARN"]
    for status in ("PASS", "EXCEPTED", "NOT_APPLICABLE", "MANUAL", "ERROR"):
        assert counts[status] == summary[status], status
    assert counts["FIXED_BY_CISFIX"] == 0 and all(not c["changes"] for c in before["checks"])
    for c in before["checks"]:
        if c["status"] in ("FAIL", "NEEDS_A_PERSON"):
            assert c["remediation"] and c["evidence"] is not None, c["id"]
    assert before["node"]["kubernetes_version"] and before["benchmark"]["name"]
    assert before["halted"] is None and before["paused"] is None


def test_after_the_fix_every_change_shows_its_transaction_diff_and_gate_verdict(story):
    after = by_id(story["after"])
    fixed = [r for r in story["fix"]["results"] if r["fix"] == "FIXED"]
    assert fixed and story["after"]["summary"]["FIXED_BY_CISFIX"] == len(fixed)
    for r in fixed:
        check = after[r["id"]]
        assert check["status"] == "PASS" and check["remediation"] is None
        change = next(c for c in check["changes"] if c["txid"] == r["txid"])
        assert change["state"] == "committed" and change["label"].startswith("fix ") and change["time"]
        for f in change["files"]:
            if f["path"].endswith("kube-scheduler.yaml"):
                continue  # its backup was tampered with: see below
            assert f["diff"] and f["diff"].startswith("--- a"), f
        gate = change["gate"]
        if gate["components"]:
            assert gate["verdict"] == "healthy" and gate["verified"] is True, (r["id"], gate)
            assert gate["restart_seen"] and gate["healthy_since"] and gate["stability_window"] == 1.0
        else:  # a change no component's restart picks up (a file's mode)
            assert gate["verdict"] == "none"
    manifest = next(f for c in after["1.2.15"]["changes"] for f in c["files"] if f["path"].endswith("kube-apiserver.yaml"))
    assert "+    - --profiling=false" in manifest["diff"]
    modes = [f for c in after["1.1.9"]["changes"] for f in c["files"]]
    assert modes and all(f["mode"] == "0644 -> 0600" and "mode 0644 → 0600" in f["diff"] for f in modes)


def test_a_generated_key_shows_as_fix_diff_shows_it(story):
    encryption = next(f for c in by_id(story["after"])["1.2.27"]["changes"] for f in c["files"]
                      if f["path"] == "/etc/kubernetes/encryption-config.yaml")
    assert "secret: <32 random bytes, generated when applied>" in encryption["diff"]
    assert story["generated_key"] not in story["after_text"]


def test_no_planted_secret_reaches_the_report(story):
    for text in (story["after_text"], story["page"], story["audit_page"]):
        assert AESCBC not in text and story["generated_key"] not in text
    tampered = next(f for c in by_id(story["after"])["1.4.1"]["changes"] if c["txid"] == story["tampered"]
                    for f in c["files"])
    assert tampered["diff"] is None and "does not hold what the journal recorded" in tampered["note"]


def test_exceptions_say_who_and_until_when_and_flag_the_expired(story):
    after = story["after"]
    accepted = {e["id"]: e for e in after["exceptions"]}
    assert accepted["1.2.5"]["who"] == "alice (SEC-123)" and accepted["1.2.5"]["expired"] is False
    assert accepted["1.3.1"]["who"] is None and accepted["1.3.1"]["expired"] is True
    assert datetime.date.fromisoformat(accepted["1.3.1"]["expires"]) < datetime.date.today()
    checks = by_id(after)
    assert checks["1.2.5"]["status"] == "EXCEPTED" and checks["1.2.5"]["exception"] == accepted["1.2.5"]
    assert checks["1.3.1"]["status"] == "NEEDS_A_PERSON" and checks["1.3.1"]["exception"]["expired"] is True
    assert after["summary"]["EXCEPTED"] == story["audit_after"]["summary"]["EXCEPTED"] == 1


def test_a_drift_correction_appears_with_its_class_and_transaction(story):
    assert story["drift"].returncode in (0, 1), story["drift"].stdout + story["drift"].stderr
    corrections = story["after"]["drift"]["corrections"]
    assert [(c["check"], c["class"], c["outcome"]) for c in corrections] == [("1.4.1", "manual", "FIXED")]
    txid = corrections[0]["txid"]
    assert any(c["txid"] == txid and c["gate"]["verdict"] == "healthy" for c in by_id(story["after"])["1.4.1"]["changes"])
    summary = next(s for s in story["after"]["sections"] if s["title"] == "Drift summary")
    assert "manual" in summary["text"] and "FIXED" in summary["text"] and summary["plugin"] == "cisfix.builtin"


def test_a_plugin_adds_a_section_through_the_report_hook(story):
    sections = story["after"]["sections"]
    assert [s["title"] for s in sections] == ["Drift summary", "ACME change ticket"]
    assert sections[1]["text"].startswith("CHG-42 covers 1.1.12") and sections[1]["html"] is None


def test_the_fleet_reads_the_documents_nodes_wrote_without_a_node(story, tmp_path):
    written = tmp_path / "cp-1.json"
    written.write_text(story["after_text"])
    fleet = as_json(cisfix(tmp_path / "no-such-node", "report", "--format", "json", "--fleet", str(written)), 0)
    assert fleet["format"] == "cisfix-fleet-report/1" and fleet["nodes"] == [story["after"]]


@pytest.mark.parametrize("content, reason", [
    (b"{not json", "not JSON"),
    (b'{"format": "kube-bench"}', "format 'kube-bench'"),
    (b'{"format": "cisfix-node-report/1", "generated": "x", "node": {"name": "n"}, "summary": {"PASS": "1"},'
     b' "checks": []}', "summary.PASS: expected an integer, got str"),
    (b'{"format": "cisfix-node-report/1", "generated": "x", "node": {"name": "n"}, "summary": {},'
     b' "checks": [{"id": "1", "title": "t", "status": "PASS", "changes": [{"txid": 7}]}]}',
     "checks[0].changes[0].txid: expected text"),
    (b'{"format": "cisfix-node-report/1", "generated": "x", "node": {"name": "n"}, "summary": {},'
     b' "checks": [], "sections": [{"title": "t", "text": "x", "html": "<script>"}]}', "sections[0].html: expected null"),
    (b"[" * 100000, "nested too deeply"),
])
def test_a_bad_fleet_file_is_one_line_naming_it(tmp_path, content, reason):
    good = tmp_path / "good.json"
    good.write_text(json.dumps({"format": "cisfix-node-report/1", "generated": "x", "node": {"name": "n"},
                                "summary": {}, "checks": []}))
    bad = tmp_path / "bad.json"
    bad.write_bytes(content)
    result = cisfix(tmp_path / "no-such-node", "report", "--format", "json", "--output", str(tmp_path / "out.json"),
                    "--fleet", str(good), str(bad))
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.count("\n") == 1 and f"{bad}: not a node report" in result.stderr and reason in result.stderr
    assert not (tmp_path / "out.json").exists()


def test_a_fleet_file_too_large_or_not_a_file_is_refused_unread(tmp_path):
    big = tmp_path / "big.json"
    with open(big, "wb") as f:
        f.truncate(9 << 20)
    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)
    for path, reason in ((big, "more than the 8388608 a node report may have"), (fifo, "is a FIFO")):
        result = cisfix(tmp_path, "report", "--format", "json", "--fleet", str(path))
        assert (result.returncode, result.stdout) == (2, "") and f"{path}" in result.stderr and reason in result.stderr


def test_the_page_is_the_document_rendered_and_audit_gives_the_same_page(story):
    page = story["page"]
    assert page.startswith("<!DOCTYPE html>")
    for text in ("ACME change ticket", "generated when applied", "alice (SEC-123)", story["tampered"]):
        assert text in page, text
    assert all(f">{c['id']}<" in page or c["id"] in page for c in story["after"]["checks"])
    assert story["audit_page_run"].returncode == 1  # audit's exit code: checks still fail
    stamp = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")  # when each was generated
    assert stamp.sub("", story["audit_page"]) == stamp.sub("", page)


def test_a_generated_key_replaced_later_stays_hidden_on_both_sides_of_the_diff(node, cisfix):
    """A transaction replacing a file that held a generated key diffs against that key as it was shown."""
    from cisfix.engine import run_changes
    from cisfix.node import Node
    from cisfix.types import CreateFile

    assert cisfix("fix", "--check", "1.2.27").returncode == 0
    path = "/etc/kubernetes/encryption-config.yaml"
    first = (node.root / path.lstrip("/")).read_text()
    run_changes(Node(str(node.root)), [CreateFile(path, f"secret: {AESCBC}\n".encode(), replace=True,
                                                  shown=b"secret: <replaced>\n")], label="edit")
    text = as_json(cisfix("report", "--format", "json"), 0)
    (created,) = [f["diff"] for c in by_id(text)["1.2.27"]["changes"] for f in c["files"] if f["path"] == path]
    (replaced,) = [f["diff"] for c in text["other_changes"] for f in c["files"] if f["path"] == path]
    assert "+              secret: <32 random bytes, generated when applied>" in created
    assert "-              secret: <32 random bytes, generated when applied>" in replaced
    assert "+secret: <replaced>" in replaced
    dumped = json.dumps(text)
    assert AESCBC not in dumped and next(line.split("secret:")[1].strip() for line in first.splitlines()
                                         if "secret:" in line) not in dumped


def test_halt_and_pause_are_in_the_report(node, cisfix):
    from cisfix.halt import write_halt
    from cisfix.node import Node

    assert cisfix("pause", "--reason", "change freeze CHG-7", "--until", "2h").returncode == 0
    write_halt(Node(str(node.root)), "the rollback did not bring kube-apiserver back", "20261202T000000Z-abcdef", [], ())
    report = as_json(cisfix("report", "--format", "json"), 0)
    assert report["halted"] == "the rollback did not bring kube-apiserver back"
    paused = report["paused"]
    assert paused["reason"] == "change freeze CHG-7" and paused["by"] and paused["since"] < paused["until"]


def test_a_flapping_check_is_listed_with_its_corrections(node, cisfix):
    from cisfix.drift import DriftState
    from cisfix.events import EventLog
    from cisfix.node import Node
    from cisfix.statedir import prepare_state_dir

    lab_node = Node(str(node.root))
    prepare_state_dir(lab_node)
    log = EventLog(lab_node.state_dir / "events.jsonl")
    now = time.time()
    for minutes in (30, 20, 10):
        log.append({"time": now - minutes * 60, "id": "1.2.15", "class": "manual", "file": "/etc/x.yaml",
                    "found": "true", "outcome": "FIXED", "txid": None})
    state = DriftState(lab_node)
    state.flapping["1.2.15"] = {"since": now - 600, "lastDrift": now - 60}
    state.save(lab_node)
    report = as_json(cisfix("report", "--format", "json"), 0)
    assert [c["outcome"] for c in report["drift"]["flapping"]["1.2.15"]] == ["FIXED"] * 3
    assert len(report["drift"]["corrections"]) == 3
    summary = next(s["text"] for s in report["sections"] if s["title"] == "Drift summary")
    assert "flapping checks: 1.2.15" in summary and "    3  " in summary


def test_a_plugin_section_that_is_not_text_is_refused_naming_the_plugin(node, cisfix, tmp_path):
    plugins = tmp_path / "bad.d"
    plugins.mkdir()
    (plugins / "bad_section.py").write_text("import cisfix\n\n@cisfix.hookimpl\ndef cisfix_report_sections():\n"
                                            "    return ['<script>alert(1)</script>']\n")
    result = cisfix("--checks-dir", str(plugins), "report", "--format", "json")
    assert (result.returncode, result.stdout) == (2, "")
    assert "plugin bad_section: cisfix_report_sections returned str, not a cisfix.ReportSection" in result.stderr


def test_a_check_a_plugin_vetoes_needs_a_person_as_fix_says(node, cisfix, tmp_path):
    plugins = tmp_path / "veto.d"
    plugins.mkdir()
    (plugins / "ticket.py").write_text("import cisfix\n\n@cisfix.hookimpl\ndef cisfix_veto_plan(check):\n"
                                       "    if check.component == 'kube-scheduler':\n"
                                       "        return 'scheduler changes need a ticket'\n")
    report = as_json(cisfix("--checks-dir", str(plugins), "report", "--format", "json"), 0)
    dry = as_json(cisfix("--checks-dir", str(plugins), "fix", "--dry-run", "--format", "json"), 0, 1)
    vetoed = {r["id"] for r in dry["results"] if r["reason"] == "vetoed: scheduler changes need a ticket"}
    assert vetoed
    for check in report["checks"]:
        if check["id"] in vetoed:
            assert check["status"] == "NEEDS_A_PERSON", check["id"]
            assert check["needs_a_person"] == "vetoed: scheduler changes need a ticket"
        elif check["component"] == "kube-scheduler":
            assert check["status"] != "FAIL", check["id"]
