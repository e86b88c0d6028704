"""Low-level helpers for editing a JSON document in place: locate members with a scanner of our own,
splice into the original text. Managed kubelets read JSON configs (EKS's kubelet-config.json and
nodeadm's config.json, AKS's kubeletconfig.json); re-serialising one would change its layout, so an
edit replaces only the characters it must and keeps key order, indentation, line endings and every
other byte.

The scanner is linear in the text (strings through the stdlib's C `scanstring`), iterative (nesting
costs no interpreter stack) and strict as Go's encoding/json: no comments, trailing commas, NaN or
trailing data. Duplicate keys are kept in the tree; the data is what encoding/json decodes into the
kubelet's configuration: a repeated scalar or list is the last occurrence's, a repeated object is merged
into the earlier one, key by key (golang/go#24415: it decodes into the struct or map it filled already).
An edit targets the last occurrence (see `member`); a removal, every occurrence on the way.
"""
from __future__ import annotations

import json
import re
from collections import deque
from dataclasses import dataclass, field
from functools import lru_cache
from json.decoder import scanstring
from typing import Any, List, Optional, Tuple

from ..bounds import MAX_NESTING
from ..errors import EditError, InputError

_WS = " \t\r\n"
_SKIP = re.compile(r"[ \t\r\n]*")
_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
_LITERALS = ("true", "false", "null")


_BOM = "\ufeff"


def is_json(text: str) -> bool:
    """A JSON document rather than YAML: its first non-blank character opens an object. (Kubernetes
    decoders tell them apart the same way: sigs.k8s.io/yaml's YAMLOrJSONDecoder looks for a `{`.) A file
    a Windows editor saved with a byte order mark is JSON too, edited as such (RFC 8259 lets a parser
    ignore the mark): the YAML editor would add its keys to it in YAML's flow style, which is no JSON."""
    match = _SKIP.match(text, 1 if text.startswith(_BOM) else 0)
    return text.startswith("{", match.end())


@dataclass
class Node:
    """A value's span in the text; an object's members as (key, key start, value) in file order."""

    start: int
    end: int = -1
    kind: str = "scalar"  # "object", "array" or "scalar"
    members: List[Tuple[str, int, "Node"]] = field(default_factory=list)

    def member(self, key: str) -> Optional[Tuple[int, "Node"]]:
        """(index, value) of the key's last occurrence — the one encoding/json keeps — or None."""
        for index in range(len(self.members) - 1, -1, -1):
            if self.members[index][0] == key:
                return index, self.members[index][2]
        return None


@dataclass(frozen=True)
class Style:
    """How the file is written, for what an edit adds: the indentation unit (None: all on one line),
    the separators after a key and between inline items, and the line ending."""

    unit: Optional[str]
    colon: str
    comma: str
    newline: str


@dataclass(frozen=True)
class Doc:
    root: Node
    data: Any
    style: Style


def line_of(text: str, index: int) -> int:
    return text.count("\n", 0, index) + 1


class JsonError(EditError):
    """Text that is no JSON document: the line (1-based) and why."""

    def __init__(self, line: int, reason: str) -> None:
        super().__init__(f"invalid JSON at line {line}: {reason}")
        self.line, self.reason = line, reason


def _error(text: str, index: int, reason: str) -> JsonError:
    return JsonError(line_of(text, index), reason)


def parse(text: str) -> Doc:
    """The document's tree, data and style; an EditError (`invalid JSON at line N: why`) otherwise."""
    root = _scan(text)
    if root.kind != "object":
        raise _error(text, root.start, "the document is not an object")
    bom = text.startswith(_BOM)
    try:
        # With the mark, the kubelet takes the file for YAML (k8s.io/apimachinery IsJSONBuffer), and its
        # YAML-to-JSON conversion keeps the last of a repeated object whole: no merge.
        data = json.loads(text[1:] if bom else text, parse_constant=_refuse_constant,
                          object_pairs_hook=None if bom else _go_object)
    except (ValueError, RecursionError) as exc:  # the scanner accepted it: only nesting beyond the stack
        raise _error(text, (getattr(exc, "pos", 0) or 0) + int(bom), str(exc).split(":")[0]) from None
    return Doc(root, data, _style(text, root))


def load(text: str, shown: str) -> Any:
    """The document's data, or InputError `FILE:LINE: invalid JSON: why` (`shown`: the file's name)."""
    try:
        return parse(text).data
    except JsonError as exc:
        raise InputError(f"{shown}:{exc.line}", f"invalid JSON: {exc.reason}") from None


def key_line(text: str, parts: List[str]) -> Optional[int]:
    """The line of the path's last key (its last occurrence, under any occurrence of its parents: Go merges
    a repeated object), None when the path is not in the text."""
    try:
        node = _tree(text)
    except EditError:
        return None
    found = occurrences(node, parts) if parts and node.kind == "object" else []
    if not found:
        return None
    obj, indices = found[-1]
    return line_of(text, obj.members[indices[-1]][1])


@lru_cache(maxsize=16)
def _tree(text: str) -> Node:
    """The text's tree, kept for the lines of a config's many settings (an audit asks for each)."""
    return _scan(text)


def _go_object(pairs: List[Tuple[str, Any]]) -> dict:
    """An object as encoding/json decodes it into a struct or map: a key given again replaces a scalar or
    list, and an object given again is merged into the one before it (its keys over the earlier's)."""
    found: dict = {}
    for key, value in pairs:
        earlier = found.get(key)
        if isinstance(earlier, dict) and isinstance(value, dict):
            _merge_into(earlier, value)
        else:
            found[key] = value
    return found


def _merge_into(target: dict, later: dict) -> None:
    for key, value in later.items():  # nesting is bounded (MAX_NESTING): the recursion is too
        if isinstance(target.get(key), dict) and isinstance(value, dict):
            _merge_into(target[key], value)
        else:
            target[key] = value


def occurrences(root: Node, parts: List[str]) -> List[Tuple[Node, List[int]]]:
    """Every object holding the path's last key, through every occurrence of the keys on the way, with
    the indices of that key's members: all of them decide its merged value."""
    objects = [root]
    for key in parts[:-1]:
        objects = [value for obj in objects for name, _, value in obj.members if name == key and value.kind == "object"]
    found = [(obj, [i for i, (name, _, _) in enumerate(obj.members) if name == parts[-1]]) for obj in objects]
    return [(obj, indices) for obj, indices in found if indices]


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _scan(text: str) -> Node:
    """The tree of the text's one JSON value, scanned without recursion."""
    i = _SKIP.match(text, 1 if text.startswith(_BOM) else 0).end()
    stack: List[Node] = []
    pending_key: List[Tuple[str, int]] = []  # per open object: the key whose value comes next
    root: Optional[Node] = None
    while True:
        if i >= len(text):
            raise _error(text, i, "unexpected end of text")
        char = text[i]
        # a value starts at i
        if char == "{" or char == "[":
            if len(stack) >= MAX_NESTING:  # deeper, the data's readers and editors run out of recursion
                raise _error(text, i, f"nested more than {MAX_NESTING} deep")
            node = Node(i, kind="object" if char == "{" else "array")
            _attach(stack, pending_key, node)
            stack.append(node)
            i = _SKIP.match(text, i + 1).end()
            closing = "}" if char == "{" else "]"
            if text.startswith(closing, i):
                node.end = i + 1
                stack.pop()
                i += 1
            elif char == "{":
                i = _key(text, i, pending_key)
                continue
            else:
                continue
        else:
            node = Node(i)
            i = _scalar_end(text, i)
            node.end = i
            _attach(stack, pending_key, node)
        # after a value: a comma, or closings
        while True:
            i = _SKIP.match(text, i).end()
            if not stack:
                if i != len(text):
                    raise _error(text, i, "data after the document's end")
                return root if root is not None else node
            top = stack[-1]
            if root is None:
                root = stack[0]
            if text.startswith(",", i):
                i = _SKIP.match(text, i + 1).end()
                if top.kind == "object":
                    i = _key(text, i, pending_key)
                break
            closing = "}" if top.kind == "object" else "]"
            if not text.startswith(closing, i):
                raise _error(text, i, f"expected ',' or '{closing}'")
            top.end = i + 1
            stack.pop()
            i += 1
            if not stack:
                root = top


def _attach(stack: List[Node], pending_key: List[Tuple[str, int]], node: Node) -> None:
    if stack and stack[-1].kind == "object":
        key, start = pending_key.pop()
        stack[-1].members.append((key, start, node))


def _key(text: str, i: int, pending_key: List[Tuple[str, int]]) -> int:
    """Scan `"key" :` at i; the key waits in `pending_key` for its value. Returns the value's start."""
    if not text.startswith('"', i):
        raise _error(text, i, "expected a double-quoted key")
    key, end = _string(text, i)
    end = _SKIP.match(text, end).end()
    if not text.startswith(":", end):
        raise _error(text, end, "expected ':' after a key")
    pending_key.append((key, i))
    return _SKIP.match(text, end + 1).end()


def _string(text: str, i: int) -> Tuple[str, int]:
    try:
        return scanstring(text, i + 1, True)
    except ValueError as exc:  # json.JSONDecodeError: `msg` as "Invalid control character at"
        reason = getattr(exc, "msg", str(exc))
        raise _error(text, getattr(exc, "pos", i), reason[:-3] if reason.endswith(" at") else reason) from None


def _scalar_end(text: str, i: int) -> int:
    if text.startswith('"', i):
        return _string(text, i)[1]
    for literal in _LITERALS:
        if text.startswith(literal, i):
            return i + len(literal)
    match = _NUMBER.match(text, i)
    if match and match.end() > i:
        return match.end()
    raise _error(text, i, f"unexpected {text[i]!r}")


# --- style -------------------------------------------------------------------------------------------


def newline(text: str) -> str:
    first = text.find("\n")
    return "\r\n" if first > 0 and text[first - 1] == "\r" else "\n"


def _line_indent(text: str, index: int) -> str:
    start = text.rfind("\n", 0, index) + 1
    match = re.compile(r"[ \t]*").match(text, start)
    return text[start:match.end()]


def _style(text: str, root: Node) -> Style:
    """The file's indentation unit: the step from the first multi-line object's line to its first
    member's (2 or 4 spaces, a tab; None when every object is on one line); its separators as the
    first member and the first inline comma write them (Go's json.Marshal: `:` and `,`)."""
    unit, colon, comma = None, None, None
    queue = deque([root])
    while queue and (unit is None or colon is None or comma is None):
        node = queue.popleft()
        if node.kind != "object" or not node.members:
            queue.extend(v for _, _, v in node.members)
            continue
        key, start, value = node.members[0]
        if colon is None:
            colon = text[_string(text, start)[1]:value.start]
        if unit is None and "\n" in text[node.start:start]:
            outer, inner = _line_indent(text, node.start), _line_indent(text, start)
            if inner.startswith(outer) and len(inner) > len(outer):
                unit = inner[len(outer):]
        if comma is None and len(node.members) > 1:
            between = text[value.end:node.members[1][1]]
            if "\n" not in between:
                comma = between
        queue.extend(v for _, _, v in node.members)
    return Style(unit, colon if colon is not None else ": ", comma if comma is not None else ", ", newline(text))


# --- rendering and splicing ---------------------------------------------------------------------------


def render(value: Any, style: Style, indent: str) -> str:
    """`value` as JSON in the file's style; continuation lines start with `indent` (the line's own)."""
    try:
        if style.unit is None:
            return json.dumps(value, ensure_ascii=False, allow_nan=False,
                              separators=(style.comma, style.colon))
        dumped = json.dumps(value, ensure_ascii=False, allow_nan=False, indent=style.unit,
                            separators=(",", style.colon))
    except (TypeError, ValueError) as exc:
        raise EditError(f"cannot write {value!r} as JSON: {exc}") from None
    return dumped.replace("\n", style.newline + indent)


def _pair(key: str, value: Any, style: Style, indent: str) -> str:
    return json.dumps(key, ensure_ascii=False) + style.colon + render(value, style, indent)


def replace_value(text: str, doc: Doc, node: Node, value: Any) -> str:
    """The text with `node` (a member's value) replaced by `value`."""
    rendered = render(value, doc.style, _line_indent(text, node.start))
    return text[:node.start] + rendered + text[node.end:]


def add_member(text: str, doc: Doc, obj: Node, key: str, value: Any) -> str:
    """The text with `"key": value` added after the object's last member, laid out as its siblings
    (or, in an empty object, one unit deeper than the object's line)."""
    style = doc.style
    if obj.members:
        last = obj.members[-1]
        first_start = obj.members[0][1]
        if "\n" in text[obj.start:first_start]:  # one member per line
            indent = _line_indent(text, last[1])
            addition = "," + style.newline + indent + _pair(key, value, style, indent)
        else:
            addition = style.comma + _pair(key, value, style, _line_indent(text, last[1]))
        end = last[2].end
        return text[:end] + addition + text[end:]
    outer = _line_indent(text, obj.start)
    if style.unit is None:
        body = "{" + _pair(key, value, style, outer) + "}"
    else:
        inner = outer + style.unit
        body = "{" + style.newline + inner + _pair(key, value, style, inner) + style.newline + outer + "}"
    return text[:obj.start] + body + text[obj.end:]


def remove_members(text: str, obj: Node, indices: List[int]) -> str:
    """The text without the object's members `indices`, as `remove_member` leaves it after removing them one
    by one, in one pass (a key duplicated thousands of times goes in linear time): a run of removed
    members goes up to the next kept member's key, a run at the end from the last kept member's value on."""
    members, removed = obj.members, set(indices)
    kept = [i for i in range(len(members)) if i not in removed]
    if not kept:
        return text[:obj.start] + "{}" + text[obj.end:]
    pieces, at, index = [], 0, 0
    while index < len(members):
        if index not in removed:
            index += 1
            continue
        end = index
        while end + 1 < len(members) and end + 1 in removed:
            end += 1
        start, stop = ((members[index][1], members[end + 1][1]) if end + 1 < len(members)
                       else (members[index - 1][2].end, members[end][2].end))
        pieces.append(text[at:start])
        at, index = stop, end + 1
    return "".join(pieces) + text[at:]


def remove_member(text: str, obj: Node, index: int) -> str:
    """The text without the object's member `index`, commas and the member's line left right: the
    member and what separates it from its next sibling go (or, for the last, from its previous one)."""
    members = obj.members
    if len(members) == 1:
        return text[:obj.start] + "{}" + text[obj.end:]
    if index < len(members) - 1:
        return text[:members[index][1]] + text[members[index + 1][1]:]
    return text[:members[index - 1][2].end] + text[members[index][2].end:]
