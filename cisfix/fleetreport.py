"""Reading the node reports a fleet's nodes wrote (`cisfix report --fleet FILE...`), on a controller that
need not be a node. Each file is untrusted data: read only when it is a regular file of at most
`MAX_REPORT_BYTES`, parsed as JSON, and accepted only when it is a node report document of this format
whose every field the page shows has the type it must have (`cisfix.nodereport`); anything else is one
line naming the file (exit 2). The page escapes every string it shows (`cisfix.htmlreport`)."""
from __future__ import annotations

import json
from typing import Any, List, Sequence

from .bounds import MAX_REPORT_BYTES
from .errors import InputError
from .nodefile import read_bytes

FORMAT = "cisfix-node-report/1"  # `cisfix.nodereport.FORMAT`, which imports the node's modules
FLEET_FORMAT = "cisfix-fleet-report/1"
STATUSES = ("PASS", "FAIL", "NEEDS_A_PERSON", "EXCEPTED", "NOT_APPLICABLE", "MANUAL", "ERROR")

# What a field must be: a type, a tuple of types, [spec] (a list of such), {key: spec} (a mapping;
# a key ending in "?" may be missing), or a one-key {str: spec} mapping of any keys to spec.
Maybe = (str, type(None))
_GATE = {"components?": [str], "verdict?": str, "restart_seen?": Maybe, "healthy_since?": Maybe,
         "stability_window?": (int, float, type(None)), "verified?": (bool, type(None)), "message?": str}
_FILE = {"path": str, "diff?": Maybe, "mode?": Maybe, "owner?": Maybe, "note?": Maybe}
_CHANGE = {"txid": str, "time?": Maybe, "label?": str, "state?": str, "files?": [_FILE], "gate?": _GATE}
_EXCEPTION = {"id?": str, "reason?": str, "who?": Maybe, "expires?": Maybe, "expired?": bool}
_CORRECTION = {"time?": Maybe, "check?": str, "class?": str, "file?": Maybe, "found?": Maybe, "outcome?": str,
               "txid?": Maybe}
_CHECK = {"id": str, "title": str, "status": str, "section?": str, "level?": int, "automated?": bool,
          "component?": Maybe, "evidence?": [str], "reason?": str, "remediation?": Maybe,
          "needs_a_person?": Maybe, "exception?": (dict, type(None)), "changes?": [_CHANGE]}
SPEC = {
    "format": str, "generated": str,
    "cisfix?": {"version?": Maybe, "commit?": Maybe},
    "node": {"name": str, "root?": Maybe, "distribution?": Maybe, "layout?": Maybe,
             "kubernetes_version?": Maybe, "node_types?": [str]},
    "benchmark?": {"name?": Maybe, "level?": (int, type(None)), "title?": Maybe},
    "warnings?": [str], "halted?": Maybe,
    "paused?": (type(None), {"by?": str, "since?": Maybe, "until?": Maybe, "reason?": str}),
    "summary": {str: int},
    "checks": [_CHECK],
    "exceptions?": [_EXCEPTION],
    "drift?": {"corrections?": [_CORRECTION], "corrections_total?": int, "flapping?": {str: [_CORRECTION]}},
    "other_changes?": [_CHANGE],
    "sections?": [{"title": str, "text": str, "html?": type(None), "plugin?": Maybe}],
}


def read_fleet(paths: Sequence[str]) -> List[dict]:
    """The node report documents of `paths`, in that order; the first bad one is an InputError naming it."""
    return [read_node_report(path) for path in paths]


def read_node_report(path: str) -> dict:
    from pathlib import Path

    data = read_bytes(Path(path), path, missing_ok=False, limit=MAX_REPORT_BYTES, what="a node report")
    try:
        doc = json.loads(data)
    except RecursionError:
        raise InputError(path, "not a node report: nested too deeply") from None
    except ValueError as exc:
        raise InputError(path, f"not a node report: not JSON ({exc})")
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        found = doc.get("format") if isinstance(doc, dict) else None
        raise InputError(path, f"not a node report: format {found!r}, expected {FORMAT!r} "
                               "(cisfix report --format json)")
    problem = _mismatch(doc, SPEC, "")
    if problem:
        raise InputError(path, f"not a node report: {problem}")
    unknown = sorted({c["status"] for c in doc["checks"]} - set(STATUSES))
    if unknown:
        raise InputError(path, f"not a node report: unknown check status {unknown[0]!r}")
    return doc


def _mismatch(value: Any, spec: Any, where: str) -> str:
    """Where `value` does not match `spec`, and how ("": it matches)."""
    if isinstance(spec, list):
        if not isinstance(value, list):
            return f"{where or 'the document'}: expected a list"
        return next((p for i, item in enumerate(value) if (p := _mismatch(item, spec[0], f"{where}[{i}]"))), "")
    if isinstance(spec, dict):
        if not isinstance(value, dict):
            return f"{where or 'the document'}: expected an object"
        if len(spec) == 1 and str in spec:  # any keys
            return next((p for k, v in value.items() if (p := _mismatch(v, spec[str], f"{where}.{k}"))), "")
        for key, inner in spec.items():
            name = key.rstrip("?")
            if name not in value:
                if key.endswith("?"):
                    continue
                return f"{where}.{name}: missing".lstrip(".")
            problem = _mismatch(value[name], inner, f"{where}.{name}".lstrip("."))
            if problem:
                return problem
        return ""
    if isinstance(spec, tuple) and any(isinstance(s, (dict, list)) for s in spec):
        problems = [_mismatch(value, s, where) for s in spec]
        return "" if "" in problems else problems[-1]
    kinds = spec if isinstance(spec, tuple) else (spec,)
    if isinstance(value, bool) and bool not in kinds:  # True is an int to Python, not to a report
        return f"{where}: expected {_names(kinds)}, got a boolean"
    return "" if isinstance(value, kinds) else f"{where}: expected {_names(kinds)}, got {type(value).__name__}"


def _names(kinds: tuple) -> str:
    words = {str: "text", int: "an integer", float: "a number", bool: "true or false", type(None): "null",
             dict: "an object"}
    return " or ".join(words.get(k, k.__name__) for k in kinds)
