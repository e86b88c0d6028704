"""Edit dotted paths in a YAML or JSON config file (the kubelet's config.yaml or config.json, policies),
changing only the lines it must. Positions come from the parser; text is spliced; the result must read
back as the original data with the operations applied (self-check). A text whose first non-blank
character is `{` is JSON (`jsontext.is_json`), edited with `cisfix.editors.jsontext`, whatever its name."""
from __future__ import annotations

import copy
from typing import Any, List, Optional, Sequence, Tuple

from ruamel.yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from ..errors import EditError
from ..plan import Edited, PathOp, SetPath, UnsetPath
from . import jsontext
from . import yamltext as yt

_MISSING = object()


# --- public API --------------------------------------------------------------------------------------


def read_path(text: str, path: str, kind: Optional[str] = None) -> Tuple[bool, Any]:
    """(True, value) when the dotted path exists in the selected document, else (False, None)."""
    if jsontext.is_json(text):
        return read_data(_json_doc(text, kind).data, path)
    parsed = yt.parse(text)
    return read_data(parsed.data[_select(parsed, kind)], path)


def edit_paths(text: str, ops: Sequence[PathOp], kind: Optional[str] = None) -> Edited:
    """Apply path operations in order; returns the input text unchanged when nothing had to change."""
    if jsontext.is_json(text):
        return _edit_json(text, ops, kind)
    original = yt.parse(text)
    index = _select(original, kind)
    step = yt.indentation(text, original.nodes[index]).mapping
    intended = copy.deepcopy(original.data)
    notes: List[str] = []
    current = text
    for op in ops:
        parsed = yt.parse(current)
        edits, note = _plan(current, parsed.nodes[index], parsed.data[index], op, step)
        if edits:
            current = yt.splice(current, edits)
            notes.append(note)
        intended[index] = _apply_data(intended[index], op)
    if current == text:
        return Edited(text, ())
    yt.self_check(current, intended)
    return Edited(current, tuple(notes))


def read_data(data: Any, path: str) -> Tuple[bool, Any]:
    """`read_path` of data already parsed."""
    value = _lookup(data, split_path(path))
    return (False, None) if value is _MISSING else (True, value)


# --- JSON ---------------------------------------------------------------------------------------------


def _json_doc(text: str, kind: Optional[str]) -> jsontext.Doc:
    """The JSON document, refused when it says it is another kind than `kind`; one without `kind` is
    taken for the kind asked for (a JSON file holds one document: there is no other to choose)."""
    doc = jsontext.parse(text)
    found = doc.data.get("kind", kind)
    if kind is not None and found != kind:
        raise EditError(f"the document's kind is {found}, not {kind}")
    return doc


def _edit_json(text: str, ops: Sequence[PathOp], kind: Optional[str]) -> Edited:
    """`edit_paths` of a JSON text: each operation on the text the previous ones left, then the
    self-check against the original data with the operations applied."""
    intended = copy.deepcopy(_json_doc(text, kind).data)
    notes: List[str] = []
    current = text
    for op in ops:
        parts = split_path(op.path)
        if isinstance(op, UnsetPath):
            # every occurrence of a duplicated key goes, under every occurrence of its parents (Go merges
            # repeated objects: an earlier one would decide otherwise), in one pass; the objects do not
            # nest in one another, so each is edited from the last on without moving the others
            root = jsontext.parse(current).root
            _descend(root, parts)  # a path through a scalar or a list is refused
            found = jsontext.occurrences(root, parts)
            for obj, indices in sorted(found, key=lambda pair: pair[0].start, reverse=True):
                current = jsontext.remove_members(current, obj, indices)
            if found:
                notes.append(f"removed {op.path}")
        else:
            doc = jsontext.parse(current)
            old = _lookup(doc.data, parts)
            if old is _MISSING or not yt.same_data(old, op.value):
                current = _set_json(current, doc, parts, op)
                notes.append(f"added {op.path}: {_shown(op.value)}" if old is _MISSING
                             else f"set {op.path}: {_shown(op.value)} (was {_shown(old)})")
        intended = _apply_data(intended, op)
    if current == text:
        return Edited(text, ())
    try:
        got = jsontext.parse(current).data
    except EditError as exc:
        raise EditError(f"internal: splice self-check failed: {exc}") from exc
    if not yt.same_data(got, intended):
        raise EditError("internal: splice self-check failed: the edited text does not read back as intended")
    return Edited(current, tuple(notes))


def _descend(root: jsontext.Node, parts: List[str]) -> Tuple[jsontext.Node, int, Optional[int]]:
    """(object, depth, index): the deepest object on the path, the depth of its key in `parts`, and
    that key's member index (None: absent, the path exists down to `object` only)."""
    obj = root
    for depth, key in enumerate(parts):
        if obj.kind != "object":
            raise EditError(f"{'.'.join(parts[:depth])} is {'a list' if obj.kind == 'array' else 'a scalar'}, "
                            "not a mapping")
        found = obj.member(key)
        if found is None or depth == len(parts) - 1:
            return obj, depth, None if found is None else found[0]
        obj = found[1]
    raise EditError("empty path")


def _set_json(text: str, doc: jsontext.Doc, parts: List[str], op: SetPath) -> str:
    obj, depth, index = _descend(doc.root, parts)
    if index is None:  # missing from parts[depth] on: added with its missing parents
        value = op.value
        for key in reversed(parts[depth + 1:]):
            value = {key: value}
        return jsontext.add_member(text, doc, obj, parts[depth], value)
    node = obj.members[index][2]
    if node.kind != "scalar" and not isinstance(op.value, dict if node.kind == "object" else list):
        raise EditError(f"{op.path} is {'a mapping' if node.kind == 'object' else 'a list'}; it can only "
                        f"be replaced with {'a mapping {...}' if node.kind == 'object' else 'a list [...]'}")
    return jsontext.replace_value(text, doc, node, op.value)


# --- selecting the document --------------------------------------------------------------------------


def _kind(node: Node) -> str:
    if not isinstance(node, MappingNode):
        return "not a mapping"
    return yt.scalar(yt.node_at(node, "kind")) or "no kind"


def _select(parsed: yt.Parsed, kind: Optional[str]) -> int:
    """Index of the document to edit: the one with `kind:` equal to `kind`, else the only one."""
    docs = [(i, n) for i, n in enumerate(parsed.nodes) if not yt.is_empty_scalar(n)]
    if kind is not None:
        matches = [i for i, n in docs if isinstance(n, MappingNode) and _kind(n) == kind]
        if len(matches) != 1:
            found = ", ".join(_kind(n) for _, n in docs) or "none"
            raise EditError(f"{len(matches)} documents with kind: {kind} (found: {found})")
        return matches[0]
    if not docs:
        raise EditError("empty file: not a YAML mapping")
    if len(docs) > 1:
        kinds = ", ".join(_kind(n) for _, n in docs)
        raise EditError(f"{len(docs)} documents ({kinds}); choose one with --kind")
    if not isinstance(docs[0][1], MappingNode):
        raise EditError("not a YAML mapping")
    return docs[0][0]


# --- planning ----------------------------------------------------------------------------------------


def split_path(path: str) -> List[str]:
    """`a.b.c` into keys; a double-quoted segment holds dots: `evictionHard."memory.available"`."""
    parts: List[str] = []
    i = 0
    while True:
        if path.startswith('"', i):
            end = path.find('"', i + 1)
            if end < 0:
                raise EditError(f"bad path {path!r}: unclosed double quote")
            part, i = path[i + 1:end], end + 1
            if i < len(path) and path[i] != ".":
                raise EditError(f"bad path {path!r}: a quoted key must be followed by '.' or the end")
        else:
            end = path.find(".", i)
            end = len(path) if end < 0 else end
            part, i = path[i:end], end
            if '"' in part:
                raise EditError(f"bad path {path!r}: quote a whole key, as in a.\"b.c\"")
        if not part:
            raise EditError(f"bad path {path!r}: empty key")
        parts.append(part)
        if i >= len(path):
            return parts
        i += 1  # the dot


def _describe(node: Node) -> str:
    return "a list" if isinstance(node, SequenceNode) else "a mapping" if isinstance(node, MappingNode) else "a scalar"


def _plan(text: str, root: Node, data: Any, op: PathOp, step: int) -> Tuple[List[yt.Edit], str]:
    parts = split_path(op.path)
    mapping, parent_key = root, None
    for depth, key in enumerate(parts):
        if not isinstance(mapping, MappingNode):
            raise EditError(f"{'.'.join(parts[:depth])} is {_describe(mapping)}, not a mapping")
        pair = yt.mapping_get(mapping, key)
        if pair is None:
            if isinstance(op, UnsetPath):
                return [], ""
            return [_create(text, mapping, parts[depth:], op.value, step)], f"added {op.path}: {_shown(op.value)}"
        if depth == len(parts) - 1:
            break
        parent_key, mapping = pair[0], pair[1]
    key, node = pair
    if isinstance(op, UnsetPath):
        index = [k for k, _ in mapping.value].index(key)
        return yt.delete_entries(text, mapping, yt.map_spans(text, mapping), [index], parent_key), f"removed {op.path}"
    old = _lookup(data, parts)
    if yt.same_data(old, op.value):
        return [], ""
    return [_replace(text, mapping, key, node, op)], f"set {op.path}: {_shown(op.value)} (was {_shown(old)})"


def _shown(value: Any) -> str:
    return _render_value(value, None, False, '"')


def _render_value(value: Any, style: Optional[str], flow: bool, quote: str) -> str:
    """A scalar in the file's style, or a list or mapping as a YAML flow collection (`[a, b]`,
    `{memory.available: 100Mi}`) whose items are scalars or further flow collections."""
    if isinstance(value, list):
        return "[" + ", ".join(_render_value(v, None, True, quote) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_render_key(k)}: {_render_value(v, None, True, quote)}"
                               for k, v in value.items()) + "}"
    return yt.render_scalar(value, style, flow, quote)


def _render_key(key: Any) -> str:
    if isinstance(key, (list, dict)):
        raise EditError("mapping keys must be scalars")
    return yt.render_scalar(key, flow=True)


def _replace(text: str, mapping: MappingNode, key: Node, node: Node, op: SetPath) -> yt.Edit:
    """Replace an existing value in place, keeping its quotes (for strings) and trailing comment."""
    quote = yt.sibling_quote(v for _, v in mapping.value)
    collection = {MappingNode: dict, SequenceNode: list}.get(type(node))
    if collection and not isinstance(op.value, collection):
        raise EditError(f"{op.path} is {_describe(node)}; it can only be replaced with "
                        f"{'a mapping {...}' if collection is dict else 'a list [...]'}")
    style = node.style if isinstance(node, ScalarNode) and isinstance(op.value, str) else None
    rendered = _render_value(op.value, style if style in yt.QUOTES else None, bool(mapping.flow_style), quote)
    if yt.is_empty_scalar(node) or (collection and not node.flow_style):
        # nothing (or block lines) after the colon: the new value goes on the key's line
        colon = yt.colon_after(text, key) + 1
        end = colon if yt.is_empty_scalar(node) else yt.node_end(text, node)
        return (colon, end, " " + rendered)
    return (node.start_mark.index, yt.node_end(text, node), rendered)


def _create(text: str, mapping: MappingNode, parts: List[str], value: Any, step: int) -> yt.Edit:
    """Add `parts` (missing keys, nested) after the mapping's last entry, in the mapping's style."""
    quote = yt.sibling_quote(v for _, v in mapping.value)
    flow = bool(mapping.flow_style)
    keys = [yt.render_scalar(p, flow=flow) for p in parts]
    rendered = _render_value(value, None, flow, quote)
    if flow or not mapping.value:
        entry = rendered
        for key in reversed(keys[1:]):
            entry = "{" + f"{key}: {entry}" + "}"
        spans = yt.map_spans(text, mapping)
        anchor = len(spans) - 1 if spans else None
        return yt.flow_insert(text, mapping, spans, anchor, True, [f"{keys[0]}: {entry}"])
    column = mapping.value[0][0].start_mark.column
    lines = [" " * (column + i * step) + k + ":" for i, k in enumerate(keys)]
    lines[-1] += " " + rendered
    return yt.insert_lines(text, yt.line_end(text, yt.node_end(text, mapping)), lines)


# --- the same edits on plain data (for the self-check) -----------------------------------------------


def _lookup(data: Any, parts: List[str]) -> Any:
    for part in parts:
        if not isinstance(data, dict) or part not in data:
            return _MISSING
        data = data[part]
    return data


def _apply_data(data: dict, op: PathOp) -> dict:
    *parents, last = split_path(op.path)
    node = data
    for part in parents:
        if part not in node:
            if isinstance(op, UnsetPath):
                return data
            node[part] = {}
        node = node[part]
    if isinstance(op, SetPath):
        node[last] = copy.deepcopy(op.value)
    else:
        node.pop(last, None)
    return data
