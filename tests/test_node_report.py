"""`cisfix report`: the node report document (`--format json`) of a lab node before and after `fix --level 1`
— every check with its status, counted as `audit` counts; every change with its transaction, diff and
gate verdict; the accepted risks with who and until when; a drift correction; a plugin's section — and
never a secret the journal, the backups or the node's files hold. `--fleet` reads such documents as
untrusted data. One lab node for the whole module, shared with test_html_report_lab.py: the fixture
(tests/report_story_fixtures.py) does every change, the tests read."""
from __future__ import annotations

import datetime
import json
import os
import re
import time

import pytest

from report_story_fixtures import AESCBC, as_json, cisfix


def by_id(doc: dict) -> dict:
    return {c["id"]: c for c in doc["checks"]}


def test_before_the_fix_every_check_has_the_status_audit_gives_it(report_story):
    before, audit = report_story["before"], report_story["audit_before"]
    assert before["format"] == "cisfix-node-report/1"
    assert [c["id"] for c in before["checks"]] == [r["id"] for r in audit["results"]]
    would_fix = {r["id"] for r in report_story["dry_run"]["results"] if r["fix"] == "WOULD_FIX"}
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


def test_after_the_fix_every_change_shows_its_transaction_diff_and_gate_verdict(report_story):
    after = by_id(report_story["after"])
    fixed = [r for r in report_story["fix"]["results"] if r["fix"] == "FIXED"]
    assert fixed and report_story["after"]["summary"]["FIXED_BY_CISFIX"] == len(fixed)
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


def test_a_generated_key_shows_as_fix_diff_shows_it(report_story):
    encryption = next(f for c in by_id(report_story["after"])["1.2.27"]["changes"] for f in c["files"]
                      if f["path"] == "/etc/kubernetes/encryption-config.yaml")
    assert "secret: <32 random bytes, generated when applied>" in encryption["diff"]
    assert report_story["generated_key"] not in report_story["after_text"]


def test_no_planted_secret_reaches_the_report(report_story):
    for text in (report_story["after_text"], report_story["page"], report_story["audit_page"]):
        assert AESCBC not in text and report_story["generated_key"] not in text
    tampered = next(f for c in by_id(report_story["after"])["1.4.1"]["changes"] if c["txid"] == report_story["tampered"]
                    for f in c["files"])
    assert tampered["diff"] is None and "does not hold what the journal recorded" in tampered["note"]


def test_exceptions_say_who_and_until_when_and_flag_the_expired(report_story):
    after = report_story["after"]
    accepted = {e["id"]: e for e in after["exceptions"]}
    assert accepted["1.2.5"]["who"] == "alice (SEC-123)" and accepted["1.2.5"]["expired"] is False
    assert accepted["1.3.1"]["who"] is None and accepted["1.3.1"]["expired"] is True
    assert datetime.date.fromisoformat(accepted["1.3.1"]["expires"]) < datetime.date.today()
    checks = by_id(after)
    assert checks["1.2.5"]["status"] == "EXCEPTED" and checks["1.2.5"]["exception"] == accepted["1.2.5"]
    assert checks["1.3.1"]["status"] == "NEEDS_A_PERSON" and checks["1.3.1"]["exception"]["expired"] is True
    assert after["summary"]["EXCEPTED"] == report_story["audit_after"]["summary"]["EXCEPTED"] == 1


def test_a_drift_correction_appears_with_its_class_and_transaction(report_story):
    assert report_story["drift"].returncode in (0, 1), report_story["drift"].stdout + report_story["drift"].stderr
    corrections = report_story["after"]["drift"]["corrections"]
    assert [(c["check"], c["class"], c["outcome"]) for c in corrections] == [("1.4.1", "manual", "FIXED")]
    txid = corrections[0]["txid"]
    assert any(c["txid"] == txid and c["gate"]["verdict"] == "healthy" for c in by_id(report_story["after"])["1.4.1"]["changes"])
    summary = next(s for s in report_story["after"]["sections"] if s["title"] == "Drift summary")
    assert "manual" in summary["text"] and "FIXED" in summary["text"] and summary["plugin"] == "cisfix.builtin"


def test_a_plugin_adds_a_section_through_the_report_hook(report_story):
    sections = report_story["after"]["sections"]
    assert [s["title"] for s in sections] == ["Drift summary", "ACME change ticket"]
    assert sections[1]["text"].startswith("CHG-42 covers 1.1.12") and sections[1]["html"] is None


def test_the_fleet_reads_the_documents_nodes_wrote_without_a_node(report_story, tmp_path):
    written = tmp_path / "cp-1.json"
    written.write_text(report_story["after_text"])
    fleet = as_json(cisfix(tmp_path / "no-such-node", "report", "--format", "json", "--fleet", str(written)), 0)
    assert fleet["format"] == "cisfix-fleet-report/1" and fleet["nodes"] == [report_story["after"]]


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


def test_the_page_is_the_document_rendered_and_audit_gives_the_same_page(report_story):
    page = report_story["page"]
    assert page.startswith("<!DOCTYPE html>")
    for text in ("ACME change ticket", "generated when applied", "alice (SEC-123)", report_story["tampered"]):
        assert text in page, text
    assert all(f">{c['id']}<" in page or c["id"] in page for c in report_story["after"]["checks"])
    assert report_story["audit_page_run"].returncode == 1  # audit's exit code: checks still fail
    stamp = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")  # when each was generated
    assert stamp.sub("", report_story["audit_page"]) == stamp.sub("", page)


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
