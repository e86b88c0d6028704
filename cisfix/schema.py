"""JSON Schema validation of YAML documents, with errors pointing at the offending line.

Schemas ship inside the package (`cisfix/schemas/*.json`) and are read with importlib.resources, so they
load from the zipapp too.
"""
from __future__ import annotations

import json
import math
from functools import lru_cache
from typing import Any, List, Tuple

from .schemacheck import surely_valid


class DocumentError(ValueError):
    """A problem in a YAML document at a 1-based line."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(f"{line}: {message}")
        self.line, self.message = line, message


@lru_cache(maxsize=None)
def schema_text(name: str) -> str:
    from importlib.resources import files

    return files("cisfix").joinpath("schemas", f"{name}.schema.json").read_text(encoding="utf-8")


@lru_cache(maxsize=None)
def _schema(name: str) -> dict:
    return json.loads(schema_text(name))


@lru_cache(maxsize=None)
def _validator(name: str):
    from jsonschema import Draft202012Validator

    return Draft202012Validator(_schema(name))


def load_documents(text: str) -> List[Any]:
    """Every YAML document of `text`, in round-trip form (mappings know their keys' lines)."""
    from ruamel.yaml import YAML
    from ruamel.yaml.error import MarkedYAMLError, YAMLError

    try:
        return [doc for doc in YAML(typ="rt").load_all(text) if doc is not None]
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        raise DocumentError((mark.line + 1) if mark else 1, f"invalid YAML: {exc.problem or exc.context}")
    except YAMLError as exc:
        raise DocumentError(1, f"invalid YAML: {exc}")
    except RecursionError:  # lists or mappings nested thousands deep: the parser recurses per level
        raise DocumentError(1, "invalid YAML: nested too deep") from None


def _line_of(doc: Any, path: Tuple[Any, ...]) -> int:
    """1-based line of the value at `path` in a round-trip document (or of the nearest parent)."""
    node, line = doc, (doc.lc.line + 1 if hasattr(doc, "lc") else 1)
    for key in path:
        try:
            if hasattr(node, "lc"):
                line = (node.lc.key(key)[0] if isinstance(key, str) else node.lc.item(key)[0]) + 1
            node = node[key]
        except (KeyError, IndexError, TypeError, AttributeError):
            break
    return line


def _message(error: Any) -> str:
    where = ".".join(str(p) for p in error.absolute_path)
    if error.validator == "oneOf" and not error.absolute_path:
        return "needs exactly one target: flag (with component), configPath (with component) or file"
    if error.validator == "oneOf" and error.schema.get("description"):
        return f"{where}: {error.instance!r} is not {error.schema['description']}"
    if error.validator == "additionalProperties":
        return f"unknown field: {error.message.split('(')[-1].rstrip(')')}"
    return f"{where}: {error.message}" if where else error.message


def validate(doc: Any, schema: str) -> List[Tuple[int, str]]:
    """Problems of one document as (line, message), best first; empty when valid. A NaN or an infinity
    (YAML's `.nan`, `.inf`) is a problem wherever it is: it passes every minimum and maximum of a schema."""
    non_finite = _non_finite(doc)
    if not non_finite and surely_valid(doc, _schema(schema)):  # the usual case, without importing jsonschema
        return []
    errors = sorted(_validator(schema).iter_errors(doc), key=lambda e: (len(e.absolute_path), str(e.message)))
    return ([(_line_of(doc, path), f"{'.'.join(map(str, path))}: must be a finite number, not {value}")
             for path, value in non_finite]
            + [(_line_of(doc, _where(e)), _message(e)) for e in errors])


def _non_finite(doc: Any) -> List[Tuple[Tuple[Any, ...], float]]:
    """(path, value) of every NaN or infinite number in the document, walked without recursion."""
    found, pending = [], [((), doc)]
    while pending:
        path, value = pending.pop()
        if isinstance(value, float) and not math.isfinite(value):
            found.append((path, value))
        elif isinstance(value, dict):
            pending.extend((path + (k,), v) for k, v in value.items())
        elif isinstance(value, list):
            pending.extend((path + (i,), v) for i, v in enumerate(value))
    return sorted(found, key=lambda item: str(item[0]))


def _where(error: Any) -> Tuple[Any, ...]:
    """The path to point at: for an unknown field, the field itself rather than its parent."""
    path = tuple(error.absolute_path)
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        known = error.schema.get("properties", {})
        extra = [k for k in error.instance if k not in known]
        return path + tuple(extra[:1])
    return path
