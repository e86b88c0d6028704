"""The HTML report as an auditor sees it: pages rendered by headless Chromium (tests/browser.py) from
node report documents, asserted from the rendered DOM, the screenshot, the console and the network;
and the page source read by a strict XML parser. The PNGs go to $CISFIX_RENDER_DIR when set, else to a
temporary folder; the test prints which (pytest -s or -rP shows it):

    node-phone.png   a node's page on a phone-sized screen (412x915): the summary and its counts first
    fleet.png        a fleet of three nodes (1280x900): the summary, then the node x section matrix
    node-print-*.pdf a short node page printed without its script: every section open by print CSS alone
"""
from __future__ import annotations

import base64
import hashlib
import re

import pytest

import browser
from cisfix.htmlreport import render_fleet, render_node
from html_checks import Dom, ids_of, render_dir, strict  # noqa: F401  (render_dir: a fixture)
from report_docs import HOSTILE, node_doc

PHONE = (412, 915)


@pytest.fixture(scope="module")
def node_page(render_dir):
    doc = node_doc("cp-1", seed=1, hostile=True)
    excepted = doc["checks"][1]
    doc["summary"][excepted["status"]] -= 1
    doc["summary"]["EXCEPTED"] += 1
    excepted.update(status="EXCEPTED", exception={"reason": "needed until the migration", "who": "alice (config.yaml)",
                                                   "expires": "2026-09-30", "expired": True})
    doc["exceptions"].append(dict(excepted["exception"], id=excepted["id"]))
    page = render_dir / "node.html"
    page.write_text(render_node(doc), encoding="utf-8")
    return doc, page, browser.render(page, render_dir / "node-phone.png", size=PHONE)


@pytest.fixture(scope="module")
def fleet_page(render_dir):
    docs = [node_doc("n-fixed", seed=11), node_doc("n-unfixed", seed=12, fixed=False),
            node_doc("n-halted", seed=13, halted=True)]
    page = render_dir / "fleet.html"
    page.write_text(render_fleet(docs), encoding="utf-8")
    return docs, page, browser.render(page, render_dir / "fleet.png", size=(1280, 900))


# --- the harness sees what it must -------------------------------------------------------------------

def test_the_harness_catches_console_messages_errors_and_any_network_request(tmp_path):
    page = tmp_path / "bad.html"
    page.write_text('<!DOCTYPE html><html><body><p>x</p><img src="http://cdn.example.com/logo.png"/>'
                    '<link rel="stylesheet" href="https://fonts.example.net/a.css"/>'
                    '<script>console.log("MARK"); console.error("BAD"); missing();</script></body></html>')
    seen = browser.render(page)
    assert [m.split(",")[0] for m in seen.console] == \
        ['"MARK"', '"BAD"', '"Uncaught ReferenceError: missing is not defined"']
    assert sorted(browser.host_of(r) for r in seen.requests) == ["cdn.example.com", "fonts.example.net"]


# --- a node's page -----------------------------------------------------------------------------------

def test_node_page_renders_without_console_message_or_network_request(node_page):
    _, _, seen = node_page
    assert seen.console == [] and seen.requests == []


def test_node_page_summary_comes_first_with_every_count_and_fills_the_first_phone_screen(node_page):
    doc, _, seen = node_page
    dom = Dom(seen.dom)
    sections = [attrs.get("id") for tag, attrs in dom.tags if tag in ("section", "main", "details")]
    assert sections[0] == "summary"
    summary = dom.text("summary")
    for status, label in (("PASS", "PASS"), ("FAIL", "FAIL"), ("NEEDS_A_PERSON", "needs a person"),
                          ("EXCEPTED", "EXCEPTED"), ("NOT_APPLICABLE", "NOT_APPLICABLE"), ("MANUAL", "MANUAL"),
                          ("ERROR", "ERROR")):
        assert f"{doc['summary'][status]} {label}" in summary
    for fact in ("cp-1", "1.32.1", "kubeadm", "cis-1.12, level 1", "2026-12-02T13:40:00Z", "abc123def456"):
        assert fact in summary
    assert "WARNING: Kubernetes 1.35 is newer" in summary
    # The screenshot's top third (the summary and its counts at this size) is not blank.
    assert browser.ink(seen.png, 300) > 0.05


def test_node_page_shows_every_check_with_its_status_and_a_change_with_its_diff(node_page):
    doc, _, seen = node_page
    dom = Dom(seen.dom)
    for check in doc["checks"]:
        element = "check-" + check["id"].replace(".", "-")
        assert check["id"] in dom.text(element) and check["status"] in dom.text(element)
    fixed = next(c for c in doc["checks"] if c["changes"])
    text = dom.text("check-" + fixed["id"].replace(".", "-"))
    change = fixed["changes"][0]
    flag = fixed["id"].replace(".", "-")
    # The transaction's other checks name it and link to where it is shown in full.
    also = next(c for c in doc["checks"] if c is not fixed and c["changes"] and c["changes"][0] is change)
    assert f"Transaction {change['txid']} (committed, {change['time']}, gate healthy): its files, diffs and gate " \
           f"timeline are under {fixed['id']}." in dom.text("check-" + also["id"].replace(".", "-"))
    for expected in (change["txid"], change["time"], f"-    - --flag-{flag}=true", f"+    - --flag-{flag}=false",
                     "mode 0644 -> 0600", "healthy", "restart seen: 2026-12-02T13:40", "stability window: 15.0 s",
                     "verified: yes", "--etcd-keyfile=<hidden>"):
        assert re.sub(r"\s+", " ", expected) in text, expected


def test_node_page_flags_an_expired_exception(node_page):
    doc, _, seen = node_page
    dom = Dom(seen.dom)
    expired = doc["exceptions"][-1]
    element = "check-" + expired["id"].replace(".", "-")
    assert "Exception: needed until the migration — accepted by alice (config.yaml), expires 2026-09-30 EXPIRED" \
        in dom.text(element)
    row = f"{expired['id']} needed until the migration alice (config.yaml) 2026-09-30 EXPIRED"
    assert ("table", {"class": "exceptions"}) in dom.tags and row in re.sub(r"\s+", " ", " ".join(dom.words))


def test_hostile_strings_render_as_text_and_never_run(node_page):
    doc, page, seen = node_page
    dom = Dom(seen.dom)
    assert '<script>console.log("HOSTILE-RAN")</script>' in dom.text("check-1-1-1")
    assert HOSTILE in dom.text()  # evidence, plugin title and text, as written
    assert not any("HOSTILE-RAN" in m for m in seen.console)
    assert [t for t, _ in dom.tags if t in ("script", "img", "iframe", "object")] == ["script"]
    assert "<img src=x>" not in page.read_text()  # the plugin's `html` is not inserted


def test_the_filter_script_ran_under_the_pages_content_security_policy(node_page):
    """The form is hidden in the source and shown by the script: the CSP's hash admits exactly it."""
    _, page, seen = node_page
    form = next(attrs for tag, attrs in Dom(seen.dom).tags if tag == "form")
    assert "hidden" not in form and 'hidden="hidden"' in page.read_text()


def test_printed_without_script_every_collapsed_check_opens(render_dir):
    """Print CSS alone opens the collapsed sections: the page with its script removed prints as many
    pages as the page with every section opened by hand (and more than with them closed)."""
    doc = node_doc("cp-print", seed=1)
    doc["checks"] = doc["checks"][:30]  # a few pages are enough, and quicker to print
    html = re.sub(r"<script>.*?</script>", "", render_node(doc), flags=re.S)
    variants = {"no-script": html, "all-open": html.replace("<details ", '<details open="" '),
                "closed-no-print-css": html.replace("details::details-content", "details::x-none")}
    pages = {}
    for name, text in variants.items():
        path = render_dir / f"node-print-{name}.html"
        path.write_text(text, encoding="utf-8")
        pages[name] = browser.printed_pages(path, render_dir / f"node-print-{name}.pdf")
    assert pages["no-script"] == pages["all-open"] > pages["closed-no-print-css"], pages


def test_node_page_is_strict_markup_with_unique_ids_and_small(node_page):
    _, page, _ = node_page
    root = strict(page.read_text())
    ids = ids_of(root)
    assert len(ids) == len(set(ids)) and len(ids) > 130
    targets = {el.get("href")[1:] for el in root.iter("a") if (el.get("href") or "").startswith("#")}
    assert targets <= set(ids)
    assert page.stat().st_size <= 1_000_000


# --- a fleet's page ----------------------------------------------------------------------------------

def test_fleet_page_renders_clean_with_failing_nodes_first_each_linked_to_its_section(fleet_page):
    docs, page, seen = fleet_page
    assert seen.console == [] and seen.requests == []
    assert browser.ink(seen.png, 400) > 0.05
    root = strict(page.read_text())
    rows = [tr for tr in root.iter("tr") if tr.find("th/a") is not None]
    names = [tr.find("th/a").text for tr in rows]
    assert names == ["n-unfixed", "n-halted", "n-fixed"]  # most failing first
    ids = ids_of(root)
    assert len(ids) == len(set(ids))
    dom = Dom(seen.dom)
    for tr in rows:
        anchor = tr.find("th/a").get("href")[1:]
        assert dom.text(anchor).startswith(tr.find("th/a").text)
    assert "HALTED: n-halted" in dom.text("summary")


def test_fleet_page_details_what_is_open_and_changed_and_counts_what_passed(fleet_page):
    docs, _, seen = fleet_page
    dom = Dom(seen.dom)
    fixed = dom.text("node-n-fixed")
    check = next(c for c in docs[0]["checks"] if c["changes"])
    assert check["changes"][0]["txid"] in fixed and "healthy" in fixed and "verified: yes" in fixed
    unfixed = dom.text("node-n-unfixed")
    for c in docs[1]["checks"]:
        assert c["status"] == "PASS" or c["id"] in unfixed
    failing = next(c for c in docs[1]["checks"] if c["status"] == "FAIL")
    assert failing["evidence"][0] in unfixed
    assert f"{docs[1]['summary']['PASS']} PASS" in unfixed


# --- the renderer alone (no browser) -----------------------------------------------------------------

def test_every_string_field_is_escaped():
    doc = node_doc(HOSTILE, seed=3)

    def poison(value):
        if isinstance(value, dict):
            return {k: poison(v) for k, v in value.items()}
        if isinstance(value, list):
            return [poison(v) for v in value]
        return HOSTILE if isinstance(value, str) else value

    hostile = poison(doc)
    for html in (render_node(hostile), render_fleet([hostile, hostile])):
        root = strict(html)
        assert [el.tag for el in root.iter() if el.tag in ("script", "img")] == ["script"]
        assert len(ids_of(root)) == len(set(ids_of(root)))


def test_ids_stay_unique_when_names_and_check_ids_collide():
    a, b = node_doc("same", seed=1), node_doc("same", seed=2)
    a["checks"][0]["id"], a["checks"][1]["id"] = "1.1", "1-1"
    ids = ids_of(strict(render_fleet([a, b])))
    assert len(ids) == len(set(ids))
    ids = ids_of(strict(render_node(a)))
    assert len(ids) == len(set(ids))


def test_a_document_with_only_unknown_or_missing_fields_still_renders():
    for html in (render_node({"surprise": 1}), render_fleet([{}, {"node": {"name": "x"}}])):
        assert "unknown" in html or "x" in html
        strict(html)


def test_the_script_hash_in_the_policy_is_the_script_on_the_page():
    html = render_node(node_doc("n", seed=1))
    script = re.search(r"<script>(.*?)</script>", html, re.S).group(1)
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    assert f"script-src 'sha256-{digest}'" in html
    assert not re.search(r"(?:src|href)=\"(?:https?:)?//", html) and "url(" not in html


def test_changes_no_check_asked_for_are_shown_on_both_pages():
    doc = node_doc("n", seed=1)
    fixed = next(c for c in doc["checks"] if c["changes"])
    edit = dict(fixed["changes"][0], txid="EDIT-TX-1", label="edit kubelet config")
    doc["other_changes"] = [edit]
    for html in (render_node(doc), render_fleet([doc])):
        text = Dom(html).text()
        assert "EDIT-TX-1" in text and "kube-apiserver" in text


def test_a_large_fleet_keeps_node_sections_closed_and_a_small_one_opens_the_failing():
    failing = {"node": {"name": "n"}, "summary": {"FAIL": 1}, "checks": [{"id": "1.1.1", "status": "FAIL"}]}
    assert '<details class="node" id="node-n" open="open">' in render_fleet([failing])
    large = render_fleet([failing] * 51)
    assert large.count('<details class="node"') == 51 and 'class="node" id="node-n" open' not in large


def test_a_link_into_a_closed_node_section_opens_it(tmp_path):
    docs = [node_doc(f"n{i}", seed=i, fixed=False) for i in range(51)]
    page = tmp_path / "fleet.html"
    page.write_text(render_fleet(docs), encoding="utf-8")
    seen = browser.render(page, fragment="node-n7-check-1-2-9")
    assert seen.console == [] and seen.requests == []
    opened = {attrs["id"] for tag, attrs in Dom(seen.dom).tags if tag == "details" and "open" in attrs}
    assert {"node-n7", "node-n7-section-1-2"} <= opened and "node-n8" not in opened


def test_halt_and_pause_lead_the_node_summary_before_the_counts():
    doc = node_doc("cp-1", seed=1, halted=True)
    doc["paused"] = {"by": "alice", "since": "2026-12-01T08:00:00Z", "until": None, "reason": "change freeze"}
    summary = Dom(render_node(doc)).text("summary")
    halt = summary.index("HALTED: the gate saw kube-apiserver unhealthy after rollback")
    pause = summary.index("PAUSED by alice since 2026-12-01T08:00:00Z until resumed: change freeze")
    assert halt < pause < summary.index("WARNING: Kubernetes 1.35") < summary.index(f"{doc['summary']['PASS']} PASS")
