"""The HTML report an auditor reads: one self-contained page per node (`render_node`) or per fleet
(`render_fleet`), from node report documents (`cisfix-node-report/1`, see cisfix/nodereport.py) only.

Every string of a document is untrusted (a node's files, a plugin, another node's report): it is
escaped wherever it lands, and a plugin section's `html` is never inserted. The page is XHTML-shaped
(quoted attributes, closed void elements, no entities but XML's) so a strict XML parser reads it, and
its Content-Security-Policy allows only its own inline style and the one script whose hash it names:
nothing is fetched from anywhere, and injected markup could not run even if escaping failed. The
skeleton, style and script live in cisfix/templates/, read with importlib.resources (works from the pyz).
"""
from __future__ import annotations

import base64
import hashlib
import re
from functools import lru_cache
from html import escape
from string import Template
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from .reports import section

# Summary order and the words a person reads for each status.
STATUSES: Tuple[Tuple[str, str], ...] = (
    ("PASS", "PASS"), ("FAIL", "FAIL"), ("NEEDS_A_PERSON", "needs a person"), ("EXCEPTED", "EXCEPTED"),
    ("NOT_APPLICABLE", "NOT_APPLICABLE"), ("MANUAL", "MANUAL"), ("ERROR", "ERROR"),
    ("FIXED_BY_CISFIX", "fixed by cisfix"))
KNOWN = {s for s, _ in STATUSES}
VERDICTS = ("healthy", "unhealthy", "none")
# A fleet page opens the sections of nodes that need attention only up to this many nodes: a browser lays
# out a closed <details> lazily, so hundreds of closed nodes load in a fraction of the time; the matrix
# is the index, and printing opens every section.
OPEN_NODES = 50
OPEN = ("FAIL", "NEEDS_A_PERSON", "ERROR")  # what a fleet page counts as failing


@lru_cache(maxsize=None)
def template(name: str) -> str:
    from importlib.resources import files

    return files("cisfix").joinpath("templates", name).read_text(encoding="utf-8")


def e(value: Any) -> str:
    """Text or attribute value, escaped for HTML and XML alike (quotes too)."""
    return escape("" if value is None else str(value), quote=True)


def status_class(status: Any) -> str:
    return f"st-{status}" if status in KNOWN else "st-other"


def badge(status: Any) -> str:
    return f'<span class="badge {status_class(status)}">{e(status)}</span>'


def natural(key: str) -> list:
    """1.2.9 before 1.2.10; digits compare as numbers, the rest as text."""
    return [(0, int(p), "") if p.isdigit() else (1, 0, p) for p in re.split(r"(\d+)", key) if p]


class Ids:
    """Unique, safe element ids: `check-1-2-15` for ("", "check", "1.2.15"), `node-cp-1-check-1-2-15` on the
    fleet page, with a suffix when two keys would collide ("1.2" and "1-2", two nodes of one name)."""

    def __init__(self) -> None:
        self.used: set = set()

    def __call__(self, *key: Any) -> str:
        base = "-".join(re.sub(r"[^A-Za-z0-9]+", "-", str(k)).strip("-") or "x" for k in key if k != "")
        candidate, n = base, 1
        while candidate in self.used:
            n += 1
            candidate = f"{base}-{n}"
        self.used.add(candidate)
        return candidate


def facts(pairs: Iterable[Tuple[str, Any]]) -> str:
    rows = "".join(f"<dt>{e(k)}</dt><dd>{v}</dd>" for k, v in pairs)
    return f'<dl class="facts">{rows}</dl>' if rows else ""


def counts(summary: Mapping[str, Any]) -> str:
    items = "".join(f'<li class="count {status_class(s)}"><span class="n">{e(summary.get(s, 0) or 0)}</span> '
                    f'<span class="label">{e(label)}</span></li>' for s, label in STATUSES)
    return f'<ul class="counts">{items}</ul>'


def alerts(doc: Mapping[str, Any]) -> str:
    """HALT and PAUSE first and loud, then the other warnings."""
    out = []
    if doc.get("halted"):
        out.append(f'<p class="alert halt" role="alert">HALTED: {e(doc["halted"])} '
                   f'(cisfix refuses to change this node until a person runs resume)</p>')
    paused = doc.get("paused")
    if isinstance(paused, Mapping):
        until = f" until {e(paused.get('until'))}" if paused.get("until") else " until resumed"
        out.append(f'<p class="alert pause" role="alert">PAUSED by {e(paused.get("by"))} since '
                   f'{e(paused.get("since"))}{until}: {e(paused.get("reason"))}</p>')
    out += [f'<p class="alert warn">WARNING: {e(w)}</p>' for w in doc.get("warnings") or ()]
    return "".join(out)


def level_text(benchmark: Mapping[str, Any]) -> str:
    level = benchmark.get("level")
    name = str(benchmark.get("name") or "unknown") + (f" ({benchmark['title']})" if benchmark.get("title") else "")
    return f"{name}, level {level}" if level is not None else f"{name}, all levels"


def build_text(build: Mapping[str, Any]) -> str:
    return f"{build.get('version') or '?'} (commit {build.get('commit') or 'unknown'})"


def node_facts(doc: Mapping[str, Any]) -> str:
    node, build = doc.get("node") or {}, doc.get("cisfix") or {}
    layout = node.get("layout")
    distribution = node.get("distribution") or "unknown"
    return facts([
        ("Node", e(node.get("name") or "unknown")),
        ("Kubernetes", e(node.get("kubernetes_version") or "unknown")),
        ("Distribution", e(distribution if not layout or layout == distribution
                           else f"{distribution} (layout {layout})")),
        ("Node types", e(", ".join(map(str, node.get("node_types") or ())) or "unknown")),
        ("Benchmark", e(level_text(doc.get("benchmark") or {}))),
        ("Audited", f'<time>{e(doc.get("generated") or "unknown")}</time>'),
        ("cisfix", e(build_text(build))),
    ])


def diff_block(text: str, element_id: str = "") -> str:
    def line(text: str) -> str:
        kind = ("hunk" if text.startswith("@@") else "" if text.startswith(("+++", "---"))
                else "add" if text.startswith("+") else "del" if text.startswith("-") else "")
        return f'<span class="{kind}">{e(text)}</span>' if kind else e(text)
    lines = "\n".join(line(t) for t in str(text).splitlines())
    id_attr = f' id="{element_id}"' if element_id else ""
    return f'<pre class="diff"{id_attr}>{lines}</pre>'


def gate_block(gate: Mapping[str, Any]) -> str:
    message = f' <span class="muted">{e(gate.get("message"))}</span>' if gate.get("message") else ""
    return (f'<p class="gate">Health gate ({e(components_of(gate))}): <strong class="{verdict_class(gate)}">'
            f'{e(verdict_of(gate))}</strong>{message}</p><p class="timeline">{timeline(gate)}</p>')


def verdict_of(gate: Mapping[str, Any]) -> str:
    return str(gate.get("verdict") or "none")


def verdict_class(gate: Mapping[str, Any]) -> str:
    return "verdict" + (f" verdict-{verdict_of(gate)}" if verdict_of(gate) in VERDICTS else "")


def components_of(gate: Mapping[str, Any]) -> str:
    return ", ".join(map(str, gate.get("components") or ())) or "none"


def timeline(gate: Mapping[str, Any]) -> str:
    """restart seen → healthy since → stability window → verified, escaped."""
    window = gate.get("stability_window")
    verified = {True: "yes", False: "NO", None: "not checked"}.get(gate.get("verified"), str(gate.get("verified")))
    steps = [("restart seen", gate.get("restart_seen") or "—"),
             ("healthy since", gate.get("healthy_since") or "—"),
             ("stability window", f"{window} s" if window is not None else "—"),
             ("verified", verified)]
    return " → ".join(f"{e(k)}: {e(v)}" for k, v in steps)


def change_once(change: Mapping[str, Any], check: Mapping[str, Any], element_id: str,
                tx_shown: Dict[str, Tuple[str, str]]) -> str:
    txid = str(change.get("txid") or "")
    if not txid or txid not in tx_shown:
        if txid:
            tx_shown[txid] = (element_id, str(check.get("id")))
        return change_block(change)
    gate = change.get("gate") if isinstance(change.get("gate"), Mapping) else {}
    where, first = tx_shown[txid]
    return (f'<p class="change change-ref">Transaction <code>{e(txid)}</code> ({e(change.get("state"))}, '
            f'<time>{e(change.get("time"))}</time>, gate <strong class="{verdict_class(gate)}">{e(verdict_of(gate))}'
            f'</strong>): its files, diffs and gate timeline are under <a href="#{where}">{e(first)}</a>.</p>')


def note(file: Mapping[str, Any]) -> str:
    """Why a file's diff is not shown (its backup does not hold what the journal recorded, ...)."""
    return f' <em class="note">{e(file["note"])}</em>' if file.get("note") else ""


def change_block(change: Mapping[str, Any]) -> str:
    head = facts([("When", f'<time>{e(change.get("time"))}</time>'),
                  ("Transaction", f'<code>{e(change.get("txid"))}</code>'),
                  ("What", e(change.get("label"))), ("State", e(change.get("state")))])
    files = []
    for f in change.get("files") or ():
        mode = "".join(f' <span class="{k}">{k} {e(f[k])}</span>' for k in ("mode", "owner") if f.get(k))
        diff = diff_block(f["diff"]) if f.get("diff") else ""
        files.append(f'<div class="file"><code>{e(f.get("path"))}</code>{mode}{note(f)}{diff}</div>')
    gate = gate_block(change["gate"]) if isinstance(change.get("gate"), Mapping) else ""
    return f'<div class="change">{head}{"".join(files)}{gate}</div>'


EXPIRED = '<strong class="expired">EXPIRED</strong>'
EXPIRED_ROW = ' class="expired"'


def exception_text(exc: Mapping[str, Any]) -> str:
    expired = f" {EXPIRED}" if exc.get("expired") else ""
    return (f'{e(exc.get("reason"))} — accepted by {e(exc.get("who") or "(not recorded)")}, '
            f'expires <time>{e(exc.get("expires") or "never")}</time>{expired}')


def findings(check: Mapping[str, Any]) -> str:
    """What this node said about a check: the reason, why cisfix leaves it to a person, the evidence, its
    exception."""
    parts = [f'<p class="reason">{e(check["reason"])}</p>'] if check.get("reason") else []
    if check.get("needs_a_person"):
        parts.append(f'<p class="why-not">Why cisfix does not fix it: {e(check["needs_a_person"])}</p>')
    evidence = check.get("evidence") or ()
    if evidence:
        parts.append('<ul class="evidence">' + "".join(f"<li>{e(x)}</li>" for x in evidence) + "</ul>")
    if isinstance(check.get("exception"), Mapping):
        parts.append(f'<p class="exception">Exception: {exception_text(check["exception"])}</p>')
    return "".join(parts)


def check_block(check: Mapping[str, Any], element_id: str, tx_shown: Dict[str, Tuple[str, str]]) -> str:
    """One check on a node's page: all it is, including the remediation while open and cisfix's changes.
    `tx_shown`: the element (and check) each transaction was shown in full under (one `fix` transaction covers every
    check of a component); later checks of it name it, its state and verdict, and link there."""
    status = check.get("status")
    parts = [findings(check)]
    if check.get("remediation") and status not in ("PASS", "NOT_APPLICABLE"):
        parts.append(f'<h4>Remediation</h4><pre class="remediation">{e(check["remediation"])}</pre>')
    changes = check.get("changes") or ()
    if changes:
        parts.append("<h4>Changes by cisfix</h4>"
                     + "".join(change_once(c, check, element_id, tx_shown) for c in changes))
    meta = [f"level {e(check.get('level'))}" if check.get("level") is not None else "",
            "automated" if check.get("automated") else "manual" if check.get("automated") is False else "",
            e(check.get("component")) if check.get("component") else ""]
    meta_text = ", ".join(m for m in meta if m)
    meta_html = f' <span class="muted">({meta_text})</span>' if meta_text else ""
    opened = ' open="open"' if status != "PASS" or changes else ""
    return (f'<details class="check" id="{element_id}" data-status="{e(status)}"{opened}><summary>'
            f'<code>{e(check.get("id"))}</code> {e(check.get("title"))} {badge(status)}{meta_html}'
            f'</summary>{"".join(parts)}</details>')


def check_brief(check: Mapping[str, Any], element_id: str, once: "Once") -> str:
    """One check on the fleet page: this node's findings; the benchmark's title and remediation, the same
    on every node, are printed once at the end and linked."""
    status = check.get("status")
    anchor = once.benchmark_text(check)
    return (f'<div class="check" id="{element_id}" data-status="{e(status)}"><p><a href="#{anchor}">'
            f'{e(check.get("id"))}</a> {badge(status)}</p>{findings(check)}</div>')


def by_section(checks: Sequence[Mapping[str, Any]]) -> List[Tuple[str, List[Mapping[str, Any]]]]:
    groups: Dict[str, List[Mapping[str, Any]]] = {}
    for c in checks:
        groups.setdefault(str(c.get("section") or section(str(c.get("id")))), []).append(c)
    return sorted(groups.items(), key=lambda kv: natural(kv[0]))


def tally(checks: Iterable[Mapping[str, Any]]) -> Dict[str, int]:
    out: Dict[str, int] = {}
    for c in checks:
        out[str(c.get("status"))] = out.get(str(c.get("status")), 0) + 1
    return out


def tally_text(t: Mapping[str, int]) -> str:
    return ", ".join(f"{n} {label}" for s, label in STATUSES if (n := t.get(s)))


def status_filter(statuses: Iterable[str]) -> str:
    """Hidden unless the script runs: without it every check shows."""
    order = [s for s, _ in STATUSES]
    boxes = "".join(f'<label><input type="checkbox" value="{e(s)}" checked="checked" /> {e(s)}</label>'
                    for s in sorted(set(statuses), key=lambda s: order.index(s) if s in KNOWN else len(order)))
    return f'<form id="status-filter" hidden="hidden"><fieldset><legend>Show checks</legend>{boxes}</fieldset></form>'


def exceptions_block(exceptions: Sequence[Mapping[str, Any]], link) -> str:
    if not exceptions:
        return "<p>No exceptions recorded.</p>"
    rows = "".join(
        f'<tr{EXPIRED_ROW if x.get("expired") else ""}><td>{link(x.get("id"))}</td><td>{e(x.get("reason"))}</td>'
        f'<td>{e(x.get("who") or "(not recorded)")}</td><td><time>{e(x.get("expires") or "never")}</time></td>'
        f'<td>{EXPIRED if x.get("expired") else "in force"}</td></tr>'
        for x in exceptions)
    return ('<div class="table"><table class="exceptions"><thead><tr><th>Check</th><th>Reason</th><th>Who</th>'
            f'<th>Expires</th><th>State</th></tr></thead><tbody>{rows}</tbody></table></div>')


def drift_block(drift: Mapping[str, Any], link) -> str:
    corrections = drift.get("corrections") or ()
    flapping = drift.get("flapping") or {}
    if not corrections and not flapping:
        return "<p>No drift corrections recorded.</p>"
    out = []
    if corrections:
        classes = tally({"status": c.get("class")} for c in corrections)
        out.append("<p>Corrections by class: " + e(", ".join(f"{k}: {v}" for k, v in sorted(classes.items()))) + "</p>")
        rows = "".join(
            f'<tr><td><time>{e(c.get("time"))}</time></td><td>{link(c.get("check"))}</td><td>{e(c.get("class"))}</td>'
            f'<td><code>{e(c.get("file"))}</code></td><td>{e(c.get("found"))}</td><td>{e(c.get("outcome"))}</td>'
            f'<td><code>{e(c.get("txid"))}</code></td></tr>' for c in corrections)
        out.append('<div class="table"><table class="drift"><thead><tr><th>Time</th><th>Check</th><th>Class</th>'
                   '<th>File</th><th>Found</th><th>Outcome</th><th>Transaction</th></tr></thead>'
                   f'<tbody>{rows}</tbody></table></div>')
    for check_id, history in sorted(flapping.items(), key=lambda kv: natural(str(kv[0]))):
        items = "".join(f'<li><time>{e(h.get("time"))}</time> {e(h.get("class"))}: {e(h.get("outcome"))}</li>'
                        for h in history or ())
        out.append(f'<h3>Flapping: {link(check_id)}</h3><ol class="flapping">{items}</ol>')
    return "".join(out)


def plugin_sections(sections: Sequence[Mapping[str, Any]], ids: Ids, scope: str) -> str:
    """Plugin sections as text: their `html` is not trusted and not inserted."""
    def by(s: Mapping[str, Any]) -> str:
        return f' <span class="muted">(from {e(s["plugin"])})</span>' if s.get("plugin") else ""
    return "".join(f'<details class="plugin" id="{ids(scope, "plugin", i)}" open="open"><summary>{e(s.get("title"))}'
                   f'{by(s)}</summary><pre>{e(s.get("text"))}</pre></details>' for i, s in enumerate(sections))


class Once:
    """What the fleet page prints once however many nodes share it: the benchmark's titles and remediation
    texts (together at the end) and identical diffs (in full where first seen, linked after)."""

    def __init__(self, ids: Ids) -> None:
        self.ids = ids
        self.texts: Dict[str, Tuple[str, str, str]] = {}
        self.anchors: Dict[Tuple[str, str], str] = {}
        self.diffs: set = set()

    def anchor(self, kind: str, text: str, label: str = "") -> str:
        """The one id of this text: made the first time it is asked for."""
        if (kind, text) not in self.anchors:
            self.anchors[(kind, text)] = self.ids(kind, label)
        return self.anchors[(kind, text)]

    def benchmark_text(self, check: Mapping[str, Any]) -> str:
        """The anchor of this check's title and remediation in the appendix."""
        text = (str(check.get("id")), str(check.get("title")), str(check.get("remediation") or ""))
        anchor = self.anchor("b", "\0".join(text), text[0])
        self.texts[anchor] = text
        return anchor

    def diff(self, text: Any) -> str:
        anchor = self.anchor("diff", str(text))
        if anchor in self.diffs:
            return f' <a class="diff-link" href="#{anchor}">same diff as above</a>'
        self.diffs.add(anchor)
        return diff_block(str(text), anchor)

    def appendix(self) -> str:
        items = sorted(self.texts.items(), key=lambda kv: natural(kv[1][0]))
        return "".join(f'<h3 id="{anchor}"><code>{e(check_id)}</code> {e(title)}</h3>'
                       + (f'<pre class="remediation">{e(remediation)}</pre>' if remediation else "")
                       for anchor, (check_id, title, remediation) in items)


def detailed(check: Mapping[str, Any]) -> bool:
    """The checks the fleet page shows in full: what is open or accepted."""
    return check.get("status") not in ("PASS", "NOT_APPLICABLE", "MANUAL")


def listed(group: Sequence[Mapping[str, Any]]) -> str:
    """The fleet page's one line for a node's checks not shown in full."""
    t = tally(group)
    parts = [f"{t['PASS']} PASS"] if t.get("PASS") else []
    for status in ("NOT_APPLICABLE", "MANUAL"):
        named = [str(c.get("id")) for c in group if c.get("status") == status]
        if named:
            parts.append(f"{status} {', '.join(named)}")
    return f'<p class="muted">Not listed: {e("; ".join(parts))}.</p>' if parts else ""


def changes_table(checks: Sequence[Mapping[str, Any]], link, once: Once) -> str:
    """The fleet page's form of a node's changes: one row per transaction (one `fix` transaction covers
    every check of a component) naming its checks, a diff in full only where first seen."""
    transactions: Dict[str, Tuple[Mapping[str, Any], List[Any]]] = {}
    for check in checks:
        for change in check.get("changes") or ():
            key = str(change.get("txid")) if change.get("txid") else f"{check.get('id')} {change.get('time')}"
            transactions.setdefault(key, (change, []))[1].append(check.get("id"))
    rows = []
    for change, check_ids in transactions.values():
        gate = change.get("gate") if isinstance(change.get("gate"), Mapping) else {}
        files = "".join(f'<code>{e(f.get("path"))}</code>'
                        + "".join(f" {k} {e(f[k])}" for k in ("mode", "owner") if f.get(k)) + note(f)
                        + (once.diff(f["diff"]) if f.get("diff") else "") for f in change.get("files") or ())
        rows.append(f'<tr><td><code>{e(change.get("txid"))}</code></td><td><time>{e(change.get("time"))}</time></td>'
                    f'<td>{", ".join(link(c) for c in check_ids)}</td><td>{e(change.get("state"))}</td><td>{files}</td>'
                    f'<td><strong class="{verdict_class(gate)}">{e(verdict_of(gate))}</strong> '
                    f'{e(components_of(gate))}: '
                    f'{timeline(gate)}</td></tr>')
    if not rows:
        return "<p>No changes by cisfix recorded.</p>"
    return ('<div class="table"><table class="changes"><thead><tr><th>Transaction</th><th>When</th><th>Checks</th>'
            '<th>State</th><th>Files</th><th>Gate</th></tr></thead><tbody>' + "".join(rows) + "</tbody></table></div>")


def node_sections(doc: Mapping[str, Any], ids: Ids, scope: str, once: Optional[Once] = None) -> str:
    """The per-check, exceptions, drift and plugin parts of one node. With `once` (the fleet page) it is
    compact: only the `detailed` checks in full, the others named or counted."""
    compact = once is not None
    checks = [c for c in doc.get("checks") or () if isinstance(c, Mapping)]
    element_ids = [ids(scope, "check", c.get("id")) if not compact or detailed(c) else "" for c in checks]
    check_ids: Dict[str, str] = {}  # where a link to a check id goes: its first element
    for c, element_id in zip(checks, element_ids):
        if element_id:
            check_ids.setdefault(str(c.get("id")), element_id)
    element_of = {id(c): element_id for c, element_id in zip(checks, element_ids)}
    tx_shown: Dict[str, Tuple[str, str]] = {}

    def link(check_id: Any) -> str:
        target = check_ids.get(str(check_id))
        return f'<a href="#{target}">{e(check_id)}</a>' if target else e(check_id)

    out = [f'<h2 id="{ids(scope, "checks")}">Checks</h2>']
    for name, group in by_section(checks):
        shown = [c for c in group if not compact or detailed(c)]
        if not shown:
            continue  # the fleet page: the matrix and the line below count this section
        opened = ' open="open"' if any(c.get("status") in OPEN for c in group) or not compact else ""
        body = "".join(check_brief(c, element_of[id(c)], once) if once else check_block(c, element_of[id(c)], tx_shown)
                       for c in shown)
        out.append(f'<details class="section" id="{ids(scope, "section", name)}"{opened}><summary>Section {e(name)}: '
                   f'{len(group)} checks — {e(tally_text(tally(group)))}</summary>{body}</details>')
    if compact:
        out.append(listed([c for c in checks if not detailed(c)]))
    other = [c for c in doc.get("other_changes") or () if isinstance(c, Mapping)]
    if compact:
        out.append(f'<h2 id="{ids(scope, "changes")}">Changes by cisfix</h2>'
                   + changes_table([*checks, {"id": "—", "changes": other}], link, once))
    elif other:
        out.append(f'<h2 id="{ids(scope, "other-changes")}">Other changes by cisfix</h2><p>Transactions no check '
                   f'asked for (such as <code>cisfix edit</code>).</p>' + "".join(change_block(c) for c in other))
    out.append(f'<h2 id="{ids(scope, "exceptions")}">Exceptions</h2>'
               + exceptions_block(doc.get("exceptions") or (), link))
    out.append(f'<h2 id="{ids(scope, "drift")}">Drift</h2>' + drift_block(doc.get("drift") or {}, link))
    sections = [s for s in doc.get("sections") or () if isinstance(s, Mapping)]
    if sections:
        out.append(f'<h2 id="{ids(scope, "plugins")}">From plugins</h2>' + plugin_sections(sections, ids, scope))
    return "".join(out)


def page(title: str, body: str, generator: str) -> str:
    script = template("report.js").rstrip("\n")
    # The CSP hash covers exactly the text between <script> and </script>: the template puts the script
    # on lines of its own.
    digest = base64.b64encode(hashlib.sha256(f"\n{script}\n".encode("utf-8")).digest()).decode("ascii")
    return Template(template("report.html")).substitute(
        title=e(title), generator=e(generator), style=template("report.css"), body=body,
        script=script, script_hash=f"sha256-{digest}")


def render_node(doc: Mapping[str, Any]) -> str:
    """The page of one node report document."""
    ids = Ids()
    name = (doc.get("node") or {}).get("name") or "unknown node"
    statuses = [c.get("status") for c in doc.get("checks") or () if isinstance(c, Mapping)]
    body = (f'<header><h1>CIS benchmark report: {e(name)}</h1></header>'
            f'<section class="summary" id="summary"><h2>Summary</h2>{alerts(doc)}'
            f'{counts(doc.get("summary") or tally({"status": s} for s in statuses))}{node_facts(doc)}</section>'
            f'{status_filter(map(str, statuses))}<main>{node_sections(doc, ids, "")}</main>')
    return page(f"cisfix report: {name}", body, generator_of([doc]))


def generator_of(docs: Sequence[Mapping[str, Any]]) -> str:
    builds = sorted({build_text(d.get("cisfix") or {}) for d in docs})
    return "cisfix " + "; ".join(builds[:3])


def failing(doc: Mapping[str, Any]) -> int:
    summary = doc.get("summary") or {}
    return sum(int(summary.get(s) or 0) for s in OPEN)


def render_fleet(docs: Sequence[Mapping[str, Any]]) -> str:
    """One page for many nodes: totals, a node x section matrix (failing nodes first), then each node's
    compact section — what is not PASS and what cisfix changed, the passing checks only counted."""
    ids = Ids()
    once = Once(ids)
    docs = sorted((d for d in docs if isinstance(d, Mapping)),
                  key=lambda d: (-failing(d), not d.get("halted"), natural(str((d.get("node") or {}).get("name")))))
    names = [str((d.get("node") or {}).get("name") or "unknown") for d in docs]
    anchors = [ids("node", n) for n in names]
    totals: Dict[str, int] = {}
    for d in docs:
        for s, n in (d.get("summary") or {}).items():
            totals[s] = totals.get(s, 0) + int(n or 0)
    sections = sorted({str(c.get("section") or section(str(c.get("id")))) for d in docs for c in d.get("checks") or ()
                       if isinstance(c, Mapping)}, key=natural)
    head = "".join(f'<th scope="col">{e(s)}</th>' for s in sections)
    rows = []
    for d, name, anchor in zip(docs, names, anchors):
        per = {name_: tally(group) for name_, group in by_section(d.get("checks") or ())}
        cells = []
        for s in sections:
            t = per.get(s)
            if not t:
                cells.append('<td class="num muted">—</td>')
                continue
            bad, total = sum(t.get(x, 0) for x in OPEN), sum(t.values())
            cells.append(f'<td class="num {"bad" if bad else "ok"}" title="{e(tally_text(t))}">{bad}/{total}</td>')
        flags = (" HALTED" if d.get("halted") else "") + (" PAUSED" if d.get("paused") else "")
        rows.append(f'<tr><th scope="row"><a href="#{anchor}">{e(name)}</a>{e(flags)}</th>'
                    f'<td class="num {"bad" if failing(d) else "ok"}">{failing(d)}</td>{"".join(cells)}</tr>')
    matrix = ('<div class="table"><table class="matrix"><thead><tr><th scope="col">Node</th>'
              '<th scope="col">failing</th>'
              f'{head}</tr></thead><tbody>{"".join(rows)}</tbody></table></div>'
              '<p class="muted">Each cell: failing (FAIL, needs a person, ERROR) / checks in that section.</p>')
    halted = [n for d, n in zip(docs, names) if d.get("halted")]
    paused = [n for d, n in zip(docs, names) if d.get("paused")]
    fleet_alerts = (f'<p class="alert halt" role="alert">HALTED: {e(", ".join(halted))}</p>' if halted else "") + \
                   (f'<p class="alert pause" role="alert">PAUSED: {e(", ".join(paused))}</p>' if paused else "")
    times = sorted(str(d.get("generated")) for d in docs if d.get("generated"))
    span = f"{times[0]} to {times[-1]}" if times else "unknown"
    fleet_facts = [("Nodes", e(len(docs))), ("Nodes failing", e(sum(1 for d in docs if failing(d)))),
                   ("Audited", e(span)), ("cisfix", e(generator_of(docs)))]
    summary = (f'<section class="summary" id="summary"><h2>Summary</h2>{fleet_alerts}'
               f'{counts(totals)}{facts(fleet_facts)}'
               '</section>')
    nodes = []
    for d, name, anchor in zip(docs, names, anchors):
        attention = failing(d) or d.get("halted") or d.get("paused")
        opened = ' open="open"' if attention and len(docs) <= OPEN_NODES else ""
        nodes.append(f'<details class="node" id="{anchor}"{opened}><summary>{e(name)} — {failing(d)} failing, '
                     f'{e(tally_text(d.get("summary") or {}))}</summary>{alerts(d)}{node_facts(d)}'
                     f'{node_sections(d, ids, anchor, once)}</details>')
    statuses = [str(c.get("status")) for d in docs for c in d.get("checks") or () if isinstance(c, Mapping)]
    body = (f'<header><h1>CIS benchmark report: fleet of {len(docs)} nodes</h1></header>{summary}'
            f'<h2 id="matrix">Nodes by section</h2>{matrix}{status_filter(statuses)}'
            f'<main><h2 id="nodes">Nodes</h2>{"".join(nodes)}'
            f'<h2 id="benchmark-texts">Benchmark texts: titles and remediations</h2>{once.appendix()}</main>')
    return page(f"cisfix fleet report: {len(docs)} nodes", body, generator_of(docs))
