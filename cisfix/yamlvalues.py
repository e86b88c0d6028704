"""Values of parsed YAML documents, shared by what reads them (node configuration, declarative checks,
component settings): a plain Python copy of a round-trip document, and a setting found by dotted path."""
from __future__ import annotations

from typing import Any, Tuple


def plain(value: Any) -> Any:
    """Round-trip YAML types to plain Python ones."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    return str(value) if value is not None else None


def lookup(data: Any, dotted: str) -> Tuple[bool, Any]:
    """(present, value) of `a.b.c` in nested mappings."""
    for part in dotted.split("."):
        if not isinstance(data, dict) or part not in data:
            return False, None
        data = data[part]
    return True, data
