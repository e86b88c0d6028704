"""`cisfix report` pages of lab nodes as an auditor sees them, rendered by headless Chromium: a fresh
node's page before and after `fix --level 1` shows every check with the status its report document
gives it and, after the fix, every change with its transaction, diff and gate verdict; a fleet page
from three lab nodes' JSON reports (`report --fleet`) puts the failing node first and links each node to
its section. One started lab node, cp-1, whose fix (with two accepted risks) test_node_report.py reads
too (tests/report_story_fixtures.py: one lab run for both), and two created here but not started (cheap:
their files are audited as they are). PNGs (printed folder, or $CISFIX_RENDER_DIR):

    lab-before-phone.png   cp-1 before the fix, phone-sized: summary and counts on the first screen
    lab-after.png          cp-1 after the fix (1280x900): summary, FIXED count, warnings
    lab-fleet.png          cp-1 (fixed), cp-2 and cp-3 (never fixed): matrix, failing nodes first
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import browser
from cisfix.lab.tree import create
from html_checks import Dom, ids_of, render_dir, strict  # noqa: F401  (render_dir: a fixture)
from lab_fixtures import FAST


def cisfix(root: Path, *args: str) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", "cisfix", "--root", str(root), *args],
                            capture_output=True, text=True)
    assert result.returncode in (0, 1), result.stdout[-2000:] + result.stderr[-2000:]
    return result


def element(check_id: str) -> str:
    return "check-" + re.sub(r"[^A-Za-z0-9]+", "-", check_id)


def flat(text: str) -> str:
    return re.sub(r"\s+", " ", text)


@pytest.fixture(scope="module")
def lab_pages(tmp_path_factory, render_dir, report_story):
    """cp-1's pages before and after its fix (tests/report_story_fixtures.py: the lab node's story, shared
    with test_node_report.py) and the fleet page of cp-1 and two nodes created here, never started;
    rendered by Chromium."""
    tmp = tmp_path_factory.mktemp("report-lab")
    told = Path(report_story["root"]).parent  # where the story left its pages
    for run in ("before_page_run", "after_fix_run", "after_fix_page_run"):
        assert report_story[run].returncode in (0, 1), report_story[run].stderr[-2000:]
    for told_name, kept in (("before.html", "lab-before.html"), ("after-fix.html", "lab-after.html"),
                            ("after-fix.json", "lab-after.json")):
        shutil.copyfile(told / told_name, render_dir / kept)
    out = {"root": report_story["root"], "before_json": report_story["before"], "fix": report_story["fix"],
           "after_json": json.loads((render_dir / "lab-after.json").read_text()),
           "before": render_dir / "lab-before.html", "after": render_dir / "lab-after.html"}
    others = [create(tmp / "cp-2", **FAST, key_algorithm="ECDSA-P256"),
              create(tmp / "cp-3", **FAST, key_algorithm="ECDSA-P256", version="1.31")]
    fleet_docs = [render_dir / "lab-after.json"] + [render_dir / f"{o.root.name}.json" for o in others]
    for other, doc in zip(others, fleet_docs[1:]):
        cisfix(other.root, "report", "--format", "json", "--output", str(doc))
    out["fleet"] = render_dir / "lab-fleet.html"
    cisfix(tmp / "no-node", "report", "--fleet", *map(str, fleet_docs), "--output", str(out["fleet"]))
    out["fleet_docs"] = [json.loads(p.read_text()) for p in fleet_docs]
    out["seen"] = {"before": browser.render(out["before"], render_dir / "lab-before-phone.png", size=(412, 915)),
                   "after": browser.render(out["after"], render_dir / "lab-after.png"),
                   "fleet": browser.render(out["fleet"], render_dir / "lab-fleet.png")}
    return out


@pytest.mark.parametrize("page", ["before", "after", "fleet"])
def test_each_page_renders_clean_strict_and_small(lab_pages, page):
    seen, path = lab_pages["seen"][page], lab_pages[page]
    assert seen.console == [] and seen.requests == [], (seen.console, seen.requests)
    assert browser.ink(seen.png, 300) > 0.05
    ids = ids_of(strict(path.read_text()))
    assert len(ids) == len(set(ids))
    assert path.stat().st_size <= 1_000_000


def test_before_the_fix_every_check_shows_the_status_of_its_report(lab_pages):
    doc, dom = lab_pages["before_json"], Dom(lab_pages["seen"]["before"].dom)
    assert doc["summary"]["FAIL"] > 0
    for check in doc["checks"]:
        text = dom.text(element(check["id"]))
        assert text.startswith(f"{check['id']} ") and f" {check['status']} " in f" {text} ", (check["id"], text[:200])
    summary = dom.text("summary")
    for status, label in (("PASS", "PASS"), ("FAIL", "FAIL"), ("NEEDS_A_PERSON", "needs a person"),
                          ("MANUAL", "MANUAL"), ("EXCEPTED", "EXCEPTED"), ("NOT_APPLICABLE", "NOT_APPLICABLE")):
        assert f"{doc['summary'][status]} {label}" in summary
    assert doc["node"]["kubernetes_version"] in summary and doc["benchmark"]["name"] in summary


def test_after_the_fix_every_change_shows_its_transaction_diff_and_gate_verdict(lab_pages):
    """Each fixed check names its transaction, state and gate verdict; the transaction's files, diffs and
    gate timeline are shown in full under the first of its checks on the page, which the others link to."""
    doc, dom = lab_pages["after_json"], Dom(lab_pages["seen"]["after"].dom)
    fixed = [r for r in lab_pages["fix"]["results"] if r["fix"] == "FIXED"]
    assert fixed and f"{len(fixed)} fixed by cisfix" in dom.text("summary")
    checks = {c["id"]: c for c in doc["checks"]}
    in_page_order = [attrs["id"] for _, attrs in dom.tags if attrs.get("id", "").startswith("check-")]
    full_under = {}
    for element_id in in_page_order:
        for change in next(c for c in doc["checks"] if element(c["id"]) == element_id)["changes"]:
            full_under.setdefault(change["txid"], element_id)
    for r in fixed:
        text = dom.text(element(r["id"]))
        assert " PASS " in text and r["txid"] in text, r["id"]
        for change in checks[r["id"]]["changes"]:
            assert change["txid"] in text and change["state"] in text and change["gate"]["verdict"] in text
            full = dom.text(full_under[change["txid"]])
            if full_under[change["txid"]] != element(r["id"]):
                link = next(attrs["href"] for tag, attrs in dom.tags if tag == "a" and attrs.get("href") ==
                            "#" + full_under[change["txid"]])
                assert link
            if change["gate"]["components"]:
                assert "restart seen: " + change["gate"]["restart_seen"] in full
                assert f"stability window: {change['gate']['stability_window']} s" in full and "verified: yes" in full
            for f in change["files"]:
                assert f["path"] in full
                changed = [line for line in (f["diff"] or "").splitlines()
                           if line[:1] in "+-" and not line.startswith(("+++", "---"))]
                assert all(flat(line) in full for line in changed), (r["id"], f["path"])
    assert "+ - --profiling=false" in dom.text(full_under[checks["1.2.15"]["changes"][0]["txid"]])


def test_the_fleet_page_of_three_lab_nodes_puts_failures_first_and_links_each_node(lab_pages):
    docs, dom = lab_pages["fleet_docs"], Dom(lab_pages["seen"]["fleet"].dom)
    root = strict(lab_pages["fleet"].read_text())
    links = [tr.find("th/a") for tr in root.iter("tr") if tr.find("th/a") is not None]
    failing = {d["node"]["name"]: d["summary"]["FAIL"] + d["summary"]["NEEDS_A_PERSON"] + d["summary"]["ERROR"]
               for d in docs}
    assert [a.text for a in links][-1] == "cp-1" and sorted(failing.values(), reverse=True) == \
        [failing[a.text] for a in links]
    for a in links:
        assert dom.text(a.get("href")[1:]).startswith(a.text)
    cp1 = dom.text("node-cp-1")
    for r in lab_pages["fix"]["results"]:
        if r["fix"] == "FIXED":
            assert r["txid"] in cp1
    for d in docs[1:]:
        section = dom.text("node-" + d["node"]["name"])
        for c in d["checks"]:
            if c["status"] in ("FAIL", "NEEDS_A_PERSON"):
                assert c["id"] in section and (c["evidence"][0] if c["evidence"] else c["id"]) in section


def test_no_key_of_the_node_reaches_a_page(lab_pages):
    root = lab_pages["root"]
    keys = [line for key in sorted((root / "etc/kubernetes/pki").rglob("*.key"))
            for line in key.read_text().splitlines() if len(line) >= 40 and "-----" not in line]
    keys += [line.split("secret:")[1].strip() for line in
             (root / "etc/kubernetes/encryption-config.yaml").read_text().splitlines() if "secret:" in line]
    assert keys
    for page in ("before", "after", "fleet"):
        html = lab_pages[page].read_text()
        assert not [k for k in keys if k in html], page
