"""Low-level helpers shared by the YAML editors: locate with the parser, splice into the original text.

Re-emitting YAML cannot keep a file's bytes (see docs/FACTS.md, "ruamel.yaml round trip"), so editors
read positions from ruamel's node tree (`start_mark.index` / `end_mark.index` are character offsets into
the original string, CRLF intact) and replace only the characters they must. An edit is a
`(start, end, replacement)` triple on the current text; `splice` applies a batch of them.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Iterable, List, Optional, Sequence, Tuple

from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from ..errors import EditError

Edit = Tuple[int, int, str]
Span = Tuple[int, int]

QUOTES = ('"', "'")
_DASH_PREFIX = re.compile(r"[ ]*-[ ]+\Z")


@dataclass(frozen=True)
class Parsed:
    """Every document of a text, as nodes (for positions) and as plain data (for comparisons)."""

    nodes: List[Node]
    data: List[Any]


def parse(text: str) -> Parsed:
    """Parse all documents; any parser, scanner or duplicate-key error becomes an EditError."""
    try:
        nodes = list(YAML(typ="rt").compose_all(text))
        # The composer does not see duplicate keys; the constructor does.
        data = list(YAML(typ="safe", pure=True).load_all(text))
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = f" at line {mark.line + 1}" if mark is not None else ""
        problem = exc.problem or exc.context or "unparsable"
        raise EditError(f"invalid YAML{line}: {problem}") from exc
    except YAMLError as exc:
        raise EditError(f"invalid YAML: {exc}") from exc
    return Parsed(nodes, data)


def newline(text: str) -> str:
    """The file's line ending, judged by its first line."""
    first = text.find("\n")
    return "\r\n" if first > 0 and text[first - 1] == "\r" else "\n"


def line_start(text: str, index: int) -> int:
    return text.rfind("\n", 0, index) + 1


def line_end(text: str, index: int) -> int:
    """Index just past the newline ending the line that holds `index` (or the end of the text)."""
    found = text.find("\n", index)
    return len(text) if found < 0 else found + 1


def line_number(text: str, index: int) -> int:
    """1-based line number of `index`, for messages."""
    return text.count("\n", 0, index) + 1


# --- reading nodes -----------------------------------------------------------------------------------


def scalar(node: Optional[Node]) -> Optional[str]:
    """The raw text value of a scalar node, None for anything else."""
    return node.value if isinstance(node, ScalarNode) else None


def mapping_get(node: Node, key: str) -> Optional[Tuple[ScalarNode, Node]]:
    """The (key node, value node) pair of `key` in a mapping node (the last one if repeated)."""
    found = None
    for k, v in node.value:
        if isinstance(k, ScalarNode) and k.value == key:
            found = (k, v)
    return found


def node_at(node: Node, *keys: str) -> Optional[Node]:
    """Follow mapping keys; None when a key is missing or a step is not a mapping."""
    for key in keys:
        if not isinstance(node, MappingNode):
            return None
        pair = mapping_get(node, key)
        if pair is None:
            return None
        node = pair[1]
    return node


def is_empty_scalar(node: Node) -> bool:
    """`key:` with nothing after it: the node has no text and its marks point past the line."""
    return isinstance(node, ScalarNode) and node.style is None and node.value == ""


def node_end(text: str, node: Node) -> int:
    """Index just past the last character of the node's own text.

    Block collections and block scalars end where the next token starts (possibly lines later);
    walking back over whitespace keeps the position on the node's last line.
    """
    if isinstance(node, (MappingNode, SequenceNode)) and not node.flow_style and node.value:
        last = node.value[-1]
        if isinstance(node, MappingNode):
            return entry_end(text, *last)
        return node_end(text, last)
    end = node.end_mark.index
    while end > node.start_mark.index and text[end - 1] in " \t\r\n":
        end -= 1
    return end


def entry_end(text: str, key: Node, value: Node) -> int:
    """End of a mapping entry; an empty value ends with its key (plus colon)."""
    if is_empty_scalar(value):
        return colon_after(text, key) + 1
    return node_end(text, value)


def colon_after(text: str, key: Node) -> int:
    """Index of the `:` following a mapping key."""
    found = text.find(":", key.end_mark.index)
    if found < 0:
        raise EditError(f"internal: no ':' after key at line {line_number(text, key.start_mark.index)}")
    return found


def seq_spans(text: str, seq: SequenceNode) -> List[Span]:
    return [(item.start_mark.index, node_end(text, item)) for item in seq.value]


def map_spans(text: str, mapping: MappingNode) -> List[Span]:
    return [(k.start_mark.index, entry_end(text, k, v)) for k, v in mapping.value]


# --- rendering ---------------------------------------------------------------------------------------


def _loader(version: Optional[Tuple[int, int]]) -> YAML:
    yaml = YAML(typ="safe", pure=True)
    if version is not None:
        yaml.version = version
    return yaml


@lru_cache(maxsize=4096)
def _plain_round_trips(value: str, flow: bool) -> bool:
    """Does the string, written plain, read back as itself? Checked under YAML 1.2 (ruamel) and 1.1
    (Kubernetes' decoders still read `on`/`yes`/`y` as booleans and `0777` as octal)."""
    doc = f"[{value}]" if flow else f"- {value}\n"
    for version in (None, (1, 1)):
        try:
            loaded = _loader(version).load(doc)
        except YAMLError:
            return False
        if not (isinstance(loaded, list) and len(loaded) == 1 and type(loaded[0]) is str):
            return False
        if loaded[0] != value:
            return False
    return True


def _plain_text(value: Any) -> str:
    """Canonical plain spelling of a non-string scalar."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if value != value:
            return ".nan"
        if value in (float("inf"), float("-inf")):
            return ".inf" if value > 0 else "-.inf"
    return repr(value)


def render_scalar(value: Any, style: Optional[str] = None, flow: bool = False, quote: str = '"') -> str:
    """YAML text for a scalar value.

    Non-strings are written plain. A string keeps `style` when it is a quote character; otherwise it is
    plain when that reads back as the same string (under YAML 1.1 and 1.2), else quoted with `quote`.
    Single quotes fall back to double quotes for text they cannot hold.
    """
    if not isinstance(value, str):
        if not isinstance(value, (bool, int, float)) and value is not None:
            raise EditError(f"cannot write a {type(value).__name__} as a YAML scalar")
        return _plain_text(value)
    if style not in QUOTES:
        if value and value == value.strip() and "\n" not in value and _plain_round_trips(value, flow):
            return value
        style = quote
    if style == "'" and value.isprintable():
        return "'" + value.replace("'", "''") + "'"
    return json.dumps(value, ensure_ascii=False)


def sibling_quote(nodes: Iterable[Node]) -> str:
    """The quote style the neighbours use, double quotes when none is quoted."""
    for node in nodes:
        if isinstance(node, ScalarNode) and node.style in QUOTES:
            return node.style
    return '"'


def render_flow_sequence(values: Sequence[Any], quote: str = '"') -> str:
    return "[" + ", ".join(render_scalar(v, flow=True, quote=quote) for v in values) + "]"


# --- splicing ----------------------------------------------------------------------------------------


def splice(text: str, edits: Iterable[Edit]) -> str:
    """Apply non-overlapping edits; inserts at one position keep the order they were given in."""
    ordered = sorted(enumerate(edits), key=lambda e: (e[1][0], e[1][1], e[0]), reverse=True)
    limit = len(text)
    for _, (start, end, new) in ordered:
        if end > limit or start > end:
            raise EditError("internal: overlapping edits")
        text = text[:start] + new + text[end:]
        limit = start
    return text


def insert_lines(text: str, pos: int, lines: Sequence[str]) -> Edit:
    """Insert whole lines at a line start `pos`, with the file's line ending. At the end of a text
    without a final newline, the lines go after a new line break and the text still ends without one."""
    nl = newline(text)
    body = nl.join(lines)
    if pos == len(text) and text and not text.endswith("\n"):
        return (pos, pos, nl + body)
    return (pos, pos, body + nl)


def delete_lines(text: str, start: int, end: int) -> Edit:
    """Delete the whole lines from the one holding `start` to the one holding `end - 1`. When they are
    the last lines of a text without a final newline, the line break before them goes too."""
    first, last = line_start(text, start), line_end(text, max(start, end - 1))
    if last == len(text) and not text.endswith("\n") and first > 0:
        first -= 2 if text[first - 2 : first] == "\r\n" else 1
    return (first, last, "")


def block_prefix(text: str, item: Node) -> str:
    """The `    - ` before a block sequence item, reused verbatim for a new item."""
    prefix = text[line_start(text, item.start_mark.index) : item.start_mark.index]
    if not _DASH_PREFIX.match(prefix):
        raise EditError(f"cannot add an item next to line {line_number(text, item.start_mark.index)}")
    return prefix


def flow_insert(text: str, node: Node, spans: Sequence[Span], anchor: Optional[int], after: bool,
                entries: Sequence[str]) -> Edit:
    """Insert entries into a flow collection, next to entry `anchor` (None: the collection is empty)."""
    joined = ", ".join(entries)
    if anchor is None:
        close = node.end_mark.index - 1
        if text[close] not in "]}":
            raise EditError(f"internal: no closing bracket at line {line_number(text, close)}")
        return (close, close, joined)
    start, end = spans[anchor]
    return (end, end, ", " + joined) if after else (start, start, joined + ", ")


def delete_entries(text: str, node: Node, spans: Sequence[Span], indices: Iterable[int],
                   parent_key: Optional[Node]) -> List[Edit]:
    """Delete entries of a collection. A block collection loses whole lines; a flow one loses each run
    of entries plus one separator. A block collection left empty becomes `[]`/`{}` after its key."""
    wanted = sorted(set(indices))
    if not wanted:
        return []
    runs: List[List[int]] = []
    for i in wanted:
        if runs and runs[-1][-1] == i - 1:
            runs[-1].append(i)
        else:
            runs.append([i])
    edits: List[Edit] = []
    count = len(spans)
    for run in runs:
        first, last = run[0], run[-1]
        if node.flow_style:
            if last + 1 < count:
                edits.append((spans[first][0], spans[last + 1][0], ""))
            elif first > 0:
                edits.append((spans[first - 1][1], spans[last][1], ""))
            else:
                edits.append((spans[first][0], spans[last][1], ""))
        else:
            edits.append(delete_lines(text, spans[first][0], spans[last][1]))
    if len(wanted) == count and not node.flow_style:
        empty = "[]" if isinstance(node, SequenceNode) else "{}"
        if parent_key is None:
            pos = edits[0][0]
            edits.append(insert_lines(text, pos, [empty]))
        else:
            colon = colon_after(text, parent_key) + 1
            edits.append((colon, colon, " " + empty))
    return edits


# --- data --------------------------------------------------------------------------------------------


def same_data(a: Any, b: Any) -> bool:
    """Equality that also compares types: `1`, `1.0` and `true` differ, as they do for Kubernetes."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(same_data(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same_data(x, y) for x, y in zip(a, b))
    return a == b


def self_check(new_text: str, intended: List[Any]) -> None:
    """Re-parse the spliced text and compare with the data the edit meant to produce."""
    try:
        got = parse(new_text).data
    except EditError as exc:
        raise EditError(f"internal: splice self-check failed: {exc}") from exc
    if not same_data(got, intended):
        raise EditError("internal: splice self-check failed: the edited text does not read back as intended")
