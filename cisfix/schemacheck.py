"""A fast "surely valid" for the JSON Schema keywords cisfix's own schemas use (`cisfix/schemas`), so that
a valid node configuration or checks.d file is accepted without importing jsonschema: that import (with
urllib, http.client, ssl, email, attrs and pyrsistent) is about a sixth of a warm `cisfix audit`.

It answers True only when the document is valid as jsonschema's Draft 2020-12 validator judges it (the
same type, equality and comparison rules); anything else — invalid, or a keyword, `$ref` or value it does
not decide — is False, and `cisfix.schema` asks jsonschema, which stays the reference and writes every
message. tests/test_schema_check.py checks the two agree."""
from __future__ import annotations

import numbers
import re
from typing import Any, Callable, Dict

_ANNOTATIONS = frozenset({"$schema", "$id", "title", "description", "$defs", "then", "else"})  # then/else: see `if`


class _Unsure(Exception):
    """Something this checker does not decide: jsonschema must."""


def surely_valid(doc: Any, schema: dict) -> bool:
    try:
        return _valid(doc, schema, schema)
    except (_Unsure, re.error, RecursionError, TypeError):
        return False


def _valid(instance: Any, schema: Any, root: dict) -> bool:
    if isinstance(schema, bool):
        return schema
    if not isinstance(schema, dict) or ("$id" in schema and schema is not root):  # a new base for `$ref`
        raise _Unsure
    for keyword, value in schema.items():
        if keyword in _ANNOTATIONS:
            continue
        check = _KEYWORDS.get(keyword)
        if check is None:
            raise _Unsure
        if not check(instance, value, schema, root):
            return False
    return True


def _is_number(instance: Any) -> bool:
    return not isinstance(instance, bool) and isinstance(instance, numbers.Number)


_TYPES: Dict[str, Callable[[Any], bool]] = {
    "object": lambda i: isinstance(i, dict),
    "array": lambda i: isinstance(i, list),
    "string": lambda i: isinstance(i, str),
    "boolean": lambda i: isinstance(i, bool),
    "null": lambda i: i is None,
    "number": _is_number,
    "integer": lambda i: not isinstance(i, bool) and (isinstance(i, int) or isinstance(i, float) and i.is_integer()),
}


def _type(instance: Any, value: Any, schema: dict, root: dict) -> bool:
    names = [value] if isinstance(value, str) else value
    if any(name not in _TYPES for name in names):
        raise _Unsure
    return any(_TYPES[name](instance) for name in names)


def _unbool(value: Any) -> Any:
    return ("bool", True) if value is True else ("bool", False) if value is False else value


def _equal(one: Any, two: Any) -> bool:
    if isinstance(one, str) or isinstance(two, str):
        return one == two
    if isinstance(one, (list, dict, tuple)) or isinstance(two, (list, dict, tuple)):
        raise _Unsure
    return _unbool(one) == _unbool(two)


def _properties(instance: Any, value: dict, schema: dict, root: dict) -> bool:
    return not isinstance(instance, dict) or all(
        _valid(instance[name], sub, root) for name, sub in value.items() if name in instance)


def _additional(instance: Any, value: Any, schema: dict, root: dict) -> bool:
    if "patternProperties" in schema:
        raise _Unsure
    known = schema.get("properties", {})
    return not isinstance(instance, dict) or all(
        _valid(instance[name], value, root) for name in instance if name not in known)


def _unique(instance: Any, value: Any, schema: dict, root: dict) -> bool:
    if not value or not isinstance(instance, list):
        return True
    if not all(isinstance(item, str) for item in instance):
        raise _Unsure
    return len(set(instance)) == len(instance)


def _ref(instance: Any, value: str, schema: dict, root: dict) -> bool:
    if not value.startswith("#/$defs/") or value[len("#/$defs/"):] not in root.get("$defs", {}):
        raise _Unsure
    return _valid(instance, root["$defs"][value[len("#/$defs/"):]], root)


def _if(instance: Any, value: Any, schema: dict, root: dict) -> bool:
    branch = "then" if _valid(instance, value, root) else "else"
    return _valid(instance, schema.get(branch, True), root)


def _items(instance: Any, value: Any, schema: dict, root: dict) -> bool:
    if "prefixItems" in schema:
        raise _Unsure
    return not isinstance(instance, list) or all(_valid(item, value, root) for item in instance)


# Each as jsonschema 4.17's `_validators` words it (`not instance < minimum`: a NaN passes, as there).
_KEYWORDS: Dict[str, Callable[[Any, Any, dict, dict], bool]] = {
    "type": _type,
    "properties": _properties,
    "additionalProperties": _additional,
    "required": lambda i, v, s, r: not isinstance(i, dict) or all(name in i for name in v),
    "minProperties": lambda i, v, s, r: not isinstance(i, dict) or len(i) >= v,
    "const": lambda i, v, s, r: _equal(i, v),
    "enum": lambda i, v, s, r: any(_unbool(i) == _unbool(each) for each in v) if i == 0 or i == 1 else i in v,
    "pattern": lambda i, v, s, r: not isinstance(i, str) or re.search(v, i) is not None,
    "minLength": lambda i, v, s, r: not isinstance(i, str) or len(i) >= v,
    "minimum": lambda i, v, s, r: not _is_number(i) or not i < v,
    "maximum": lambda i, v, s, r: not _is_number(i) or not i > v,
    "exclusiveMinimum": lambda i, v, s, r: not _is_number(i) or not i <= v,
    "items": _items,
    "minItems": lambda i, v, s, r: not isinstance(i, list) or len(i) >= v,
    "uniqueItems": _unique,
    "$ref": _ref,
    "allOf": lambda i, v, s, r: all(_valid(i, sub, r) for sub in v),
    "anyOf": lambda i, v, s, r: any([_valid(i, sub, r) for sub in v]),
    "oneOf": lambda i, v, s, r: sum(_valid(i, sub, r) for sub in v) == 1,
    "not": lambda i, v, s, r: not _valid(i, v, r),
    "if": _if,
}
