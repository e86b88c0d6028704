"""Low-level helpers shared by the YAML editors: locate with the parser, splice into the original text.

Re-emitting YAML cannot keep a file's bytes (see docs/FACTS.md, "ruamel.yaml round trip"), so editors
read positions from ruamel's node tree (`start_mark.index` / `end_mark.index` are character offsets into
the original string, CRLF intact) and replace only the characters they must. An edit is a
`(start, end, replacement)` triple on the current text; `splice` applies a batch of them.
"""
from __future__ import annotations

import json
import re
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Tuple

from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from ..errors import EditError
from ..nodefile import Composed

Edit = Tuple[int, int, str]
Span = Tuple[int, int]

QUOTES = ('"', "'")
_DASH_PREFIX = re.compile(r"[ ]*-[ ]+\Z")


@dataclass(frozen=True)
class Parsed:
    """Every document of a text, as nodes (for positions) and as plain data (for comparisons)."""

    nodes: List[Node]
    data: List[Any]


def parse(text: str, with_data: bool = True, to_edit: bool = True) -> Parsed:
    """Parse all documents; any parser, scanner or duplicate-key error becomes an EditError. Without
    `with_data` only the nodes are made (enough to read, and half the work; duplicate keys go unseen).
    Without `to_edit` the nodes come from the safe composer, which skips comments: the same values and
    positions, a fifth faster, but nothing an editor may splice comments around."""
    with _edit_errors():
        nodes = list(YAML(typ="rt").compose_all(text) if to_edit else YAML(typ="safe", pure=True).compose_all(text))
        # The composer does not see duplicate keys; the constructor does.
        data = list(YAML(typ="safe", pure=True).load_all(text)) if with_data else []
    return Parsed(nodes, data)


def read_nodes(composed: Composed) -> Parsed:
    """The nodes of a text composed already (`cisfix.nodefile.compose_yaml`), as `parse(text,
    with_data=False, to_edit=False)` gives them, or its error as `parse` raises it."""
    with _edit_errors():
        if composed.error is not None:
            raise composed.error
    return Parsed(list(composed.nodes), [])


@contextmanager
def _edit_errors() -> Iterator[None]:
    """Any parser, scanner or composer error as an EditError."""
    try:
        yield
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = f" at line {mark.line + 1}" if mark is not None else ""
        problem = exc.problem or exc.context or "unparsable"
        raise EditError(f"invalid YAML{line}: {problem}") from exc
    except YAMLError as exc:
        raise EditError(f"invalid YAML: {exc}") from exc
    except RecursionError:  # lists or mappings nested thousands deep: the parser recurses per level
        raise EditError("invalid YAML: nested too deep") from None


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


# --- adding a mapping to a list ----------------------------------------------------------------------


@dataclass(frozen=True)
class Indent:
    """A file's block indentation: how far a nested mapping's keys sit right of their parent key, and a
    sequence's dash right of its key (kubeadm: 2 and 0)."""

    mapping: int = 2
    offset: int = 0


def dash_column(text: str, item: Node) -> Optional[int]:
    """Column of the `-` before a block sequence item, None when the item does not start its line."""
    prefix = text[line_start(text, item.start_mark.index) : item.start_mark.index]
    return prefix.index("-") if _DASH_PREFIX.match(prefix) else None


def indentation(text: str, root: Node) -> Indent:
    """The file's own indentation, by majority over its nested block collections (defaults: kubeadm's)."""
    steps: Counter = Counter()
    offsets: Counter = Counter()

    def walk(node: Node) -> None:
        if isinstance(node, SequenceNode):
            for item in node.value:
                walk(item)
        elif isinstance(node, MappingNode):
            for key, value in node.value:
                if isinstance(value, (MappingNode, SequenceNode)) and not value.flow_style and value.value:
                    if isinstance(value, MappingNode):
                        step = value.value[0][0].start_mark.column - key.start_mark.column
                        if step > 0:
                            steps[step] += 1
                    else:
                        dash = dash_column(text, value.value[0])
                        if dash is not None and dash >= key.start_mark.column:
                            offsets[dash - key.start_mark.column] += 1
                walk(value)

    walk(root)
    default = Indent()
    return Indent(steps.most_common(1)[0][0] if steps else default.mapping,
                  offsets.most_common(1)[0][0] if offsets else default.offset)


def ordered_like(data: Mapping[str, Any], like: Optional[Node]) -> Dict[str, Any]:
    """`data` with the key order of a sibling mapping node: keys it has first, in its order, then the
    others in their given order; nested mappings likewise (against the sibling's nested node)."""
    known = [scalar(k) for k, _ in like.value] if isinstance(like, MappingNode) else []
    keys = sorted(data, key=lambda k: known.index(k) if k in known else len(known))  # stable
    return {k: ordered_like(data[k], node_at(like, k)) if isinstance(data[k], Mapping) else data[k] for k in keys}


def _value_style(like: Optional[Node], key: str) -> Optional[str]:
    """The quote style of the sibling's value for `key`, so `'/etc/x'` neighbours get quoted paths."""
    node = node_at(like, key) if like is not None else None
    return node.style if isinstance(node, ScalarNode) and node.style in QUOTES else None


def render_flow_mapping(data: Mapping[str, Any], like: Optional[Node], quote: str = '"') -> str:
    """`{k: v, ...}` for a mapping of scalars and nested mappings."""
    parts = []
    for key, value in data.items():
        if isinstance(value, Mapping):
            rendered = render_flow_mapping(value, node_at(like, key) if like is not None else None, quote)
        else:
            rendered = render_scalar(value, _value_style(like, key), True, quote)
        parts.append(f"{render_scalar(key, flow=True)}: {rendered}")
    return "{" + ", ".join(parts) + "}"


def render_block_mapping(data: Mapping[str, Any], like: Optional[Node], column: int, step: int,
                         quote: str = '"') -> List[str]:
    """Lines (without line endings) of a block mapping with its keys at `column`. A nested mapping
    follows its counterpart in `like`: flow when that is flow, else block, indented as that one is
    (`step` when there is no counterpart)."""
    lines = []
    for key, value in data.items():
        head = " " * column + render_scalar(key)
        if not isinstance(value, Mapping):
            lines.append(f"{head}: {render_scalar(value, _value_style(like, key), False, quote)}")
            continue
        pair = mapping_get(like, key) if isinstance(like, MappingNode) else None
        nested = pair[1] if pair else None
        if isinstance(nested, MappingNode) and nested.flow_style:
            lines.append(f"{head}: {render_flow_mapping(value, nested, quote)}")
            continue
        own = step
        if isinstance(nested, MappingNode) and nested.value:
            own = nested.value[0][0].start_mark.column - pair[0].start_mark.column
        lines.append(head + ":")
        lines.extend(render_block_mapping(value, nested, column + own, step, quote))
    return lines


def _block_item(prefix: str, entry: Mapping[str, Any], like: Optional[Node], step: int, quote: str) -> List[str]:
    """A block sequence item `prefix` (`    - `) + mapping, a one-line flow mapping when `like` is one."""
    if isinstance(like, MappingNode) and like.flow_style:
        return [prefix + render_flow_mapping(entry, like, quote)]
    lines = render_block_mapping(entry, like, len(prefix), step, quote)
    lines[0] = prefix + lines[0][len(prefix):]
    return lines


def _values(nodes: Iterable[Node]) -> Iterable[Node]:
    """The values of the mappings among `nodes`, nested mappings' values too (`hostPath: {path: ...}`)."""
    for node in nodes:
        if isinstance(node, MappingNode):
            for _, value in node.value:
                if isinstance(value, MappingNode):
                    yield from _values([value])
                else:
                    yield value


def append_item(text: str, owner: MappingNode, key: str, entry: Mapping[str, Any],
                indent: Indent) -> Tuple[Edit, Dict[str, Any]]:
    """Add a mapping as the last item of the list under `key` in `owner`, creating the key (after the
    owner's last entry) when it is missing or null. The new item copies the last item's key order,
    quoting and layout. Returns the edit and the entry with the key order written (for the self-check)."""
    pair = mapping_get(owner, key)
    items = pair[1].value if pair is not None and isinstance(pair[1], SequenceNode) else []
    like = next((n for n in reversed(items) if isinstance(n, MappingNode)), None)
    entry = ordered_like(entry, like)
    quote = sibling_quote(_values(items or [owner]))
    flow = render_flow_mapping(entry, like, quote)
    if pair is None:
        if owner.flow_style:
            spans = map_spans(text, owner)
            return flow_insert(text, owner, spans, len(spans) - 1 if spans else None, True,
                               [f"{render_scalar(key, flow=True)}: [{flow}]"]), entry
        column = owner.value[0][0].start_mark.column
        lines = [" " * column + render_scalar(key) + ":"]
        lines += _block_item(" " * (column + indent.offset) + "- ", entry, None, indent.mapping, quote)
        return insert_lines(text, line_end(text, node_end(text, owner)), lines), entry
    key_node, seq = pair
    if is_empty_scalar(seq):
        colon = colon_after(text, key_node)
        if owner.flow_style:
            return (colon + 1, colon + 1, f" [{flow}]"), entry
        prefix = " " * (key_node.start_mark.column + indent.offset) + "- "
        return insert_lines(text, line_end(text, colon), _block_item(prefix, entry, None, indent.mapping, quote)), entry
    if not isinstance(seq, SequenceNode):
        raise EditError(f"{key} at line {line_number(text, seq.start_mark.index)} is not a list")
    if seq.flow_style:
        spans = seq_spans(text, seq)
        return flow_insert(text, seq, spans, len(spans) - 1 if spans else None, True, [flow]), entry
    last = seq.value[-1]
    lines = _block_item(block_prefix(text, last), entry, like, indent.mapping, quote)
    return insert_lines(text, line_end(text, node_end(text, last)), lines), entry


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
