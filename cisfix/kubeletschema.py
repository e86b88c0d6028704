"""The kubelet's configuration as the kubelet decodes it: which keys a KubeletConfiguration
(kubelet.config.k8s.io/v1beta1) has in a given Kubernetes version, and what type each value must be.

A value of the wrong type (`readOnlyPort: abc`, `cacheTTL: 5`) stops the kubelet at start: the gate
would roll the change back minutes later. A key it does not know (`readOnlyPrt`) is dropped with a
warning by its lenient v1beta1 decoding, so the setting meant never takes effect. Both are refused
before anything is locked or written.

The types come from `schemas/kubelet-config.v1beta1.json` (its `source` says where they were read),
loaded on the first check only: auditing never reads it.
"""
from __future__ import annotations

import re
from functools import lru_cache
from typing import Any, Dict, List, Optional, Sequence, Tuple

from .shown import shown

KIND = "KubeletConfiguration"
Version = Optional[Tuple[int, int]]  # (1, 31); None: unknown, checked against the newest fields

# Patterns as text, compiled (and cached by re) on the first check: importing this module stays cheap.
# Go's time.ParseDuration: "0", or numbers (with an optional fraction) each followed by a unit.
_DURATION = r"[-+]?(0|((\d+(\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h))+)"
# resource.Quantity: a number, then an optional binary or decimal suffix or exponent ("100Mi", "1.5", "2e3").
_QUANTITY = r"[-+]?(\d+(\.\d*)?|\.\d+)(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E|[eE][-+]?\d+)?"
_RANGES = {"int32": (-2**31, 2**31 - 1), "int64": (-2**63, 2**63 - 1), "uint32": (0, 2**32 - 1)}
_MAP, _LIST = "map[string]", "[]"
_EXPECTED = {
    "bool": "true or false", "string": "a string", "float64": "a number", "mapping": "a mapping",
    "duration": 'a duration such as "30s" or "4h0m0s"', "quantity": 'a quantity such as "100Mi"',
    "timeOrDuration": 'a duration such as "5s", or a number of nanoseconds',
}


@lru_cache(maxsize=None)
def _schema() -> Dict[str, Any]:
    import json
    from importlib.resources import files

    return json.loads(files("cisfix").joinpath("schemas", "kubelet-config.v1beta1.json").read_text(encoding="utf-8"))


def problem(keys: Sequence[str], value: Any, version: Version) -> Optional[str]:
    """Why setting the path `keys` to `value` gives a configuration the kubelet of `version` refuses or
    ignores (one line, naming the key); None when it takes it."""
    checker = _Checker(version)
    try:
        kind = checker.walk(keys)
        if kind is not None:
            checker.check(list(keys), kind, value)
    except _Refused as refused:
        return str(refused)
    return None


class _Refused(Exception):
    """The one line saying why, raised from wherever in the value the problem is."""


class _Checker:
    """Paths and values against the schema's types as the kubelet of `version` has them."""

    def __init__(self, version: Version) -> None:
        self.version = version
        self.structs: Dict[str, Dict[str, Any]] = _schema()["types"]

    def field(self, struct: str, key: str, path: Sequence[Any]) -> str:
        """The type of `struct`'s field `key` in this version; raises _Refused naming `path` when none."""
        fields = self.structs[struct]
        spec = fields.get(key)
        if spec is None:
            known = [name for name, s in fields.items() if self._here(s)]
            close = next((n for n in known if n.lower() == key.lower()), None) or _closest(key, known)
            hint = f" (did you mean {_path([*path[:-1], close])}?)" if close else ""
            raise _Refused(f"{_path(path)}: not a {KIND} field{hint}")
        if not self._here(spec):
            raise _Refused(f"{_path(path)}: not a {KIND} field in Kubernetes {_minor(self.version)} "
                           f"(it came in 1.{spec[1]})")
        return spec if isinstance(spec, str) else spec[0]

    def _here(self, spec: Any) -> bool:
        return isinstance(spec, str) or self.version is None or self.version >= (1, spec[1])

    def walk(self, keys: Sequence[str]) -> Optional[str]:
        """The type at the end of the path; None inside a structure not modelled (any content)."""
        kind, in_map = KIND, False
        for depth, key in enumerate(keys):
            base = kind.lstrip("*")
            if base == "mapping":
                return None
            if base.startswith(_MAP):
                kind, in_map = base[len(_MAP):], True
            elif base in self.structs:
                kind, in_map = self.field(base, key, keys[:depth + 1]), False
            else:
                dotted = f'{_path(keys[:depth - 1])}."{keys[depth - 1]}.{key}"'
                hint = f" (a key holding dots is quoted: {dotted})" if in_map else ""
                raise _Refused(f"{_path(keys)}: {_path(keys[:depth])} is {_expected(base)}, not a mapping{hint}")
        return kind

    def check(self, path: List[Any], kind: str, value: Any) -> None:
        nullable = kind.startswith(("*", _LIST, _MAP))  # Go decodes null into a pointer, slice or map as nil
        base = kind.lstrip("*")
        if value is None and nullable:
            return
        if base.startswith(_LIST) and isinstance(value, list):
            for index, item in enumerate(value):
                self.check([*path, index], base[len(_LIST):], item)
        elif base.startswith(_MAP) and isinstance(value, dict):
            for key, item in value.items():
                self.check([*path, key], base[len(_MAP):], item)
        elif base in self.structs and isinstance(value, dict):
            for key, item in value.items():
                self.check([*path, key], self.field(base, str(key), [*path, key]), item)
        elif not _scalar_ok(base, value):
            expected = _expected(base)
            if base in _RANGES and isinstance(value, int) and not isinstance(value, bool):
                expected = "an integer from {} to {}".format(*_RANGES[base])  # a number out of its range
            raise _Refused(f"{_path(path)}: expected {expected}, got {_got(value)} "
                           f"({KIND} v1beta1{f', Kubernetes {_minor(self.version)}' if self.version else ''})")


def _scalar_ok(kind: str, value: Any) -> bool:
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind in _RANGES:
        low, high = _RANGES[kind]
        return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "string":
        return isinstance(value, str)
    if kind == "float64":
        return number
    if kind == "mapping":
        return isinstance(value, dict)
    if kind == "duration":
        return isinstance(value, str) and re.fullmatch(_DURATION, value) is not None
    if kind == "quantity":
        return number or (isinstance(value, str) and re.fullmatch(_QUANTITY, value) is not None)
    if kind == "timeOrDuration":
        return (isinstance(value, int) and not isinstance(value, bool)) or _scalar_ok("duration", value)
    return False  # a list, mapping or structure given something else


def _expected(kind: str) -> str:
    kind = kind.lstrip("*")
    if kind in _RANGES:
        return "an integer" if kind != "uint32" else "an integer from {} to {}".format(*_RANGES[kind])
    if kind.startswith(_LIST):
        return "a list of " + _plural(kind[len(_LIST):])
    if kind.startswith(_MAP):
        return "a mapping of names to " + _plural(kind[len(_MAP):])
    return _EXPECTED.get(kind, "a mapping")


def _plural(kind: str) -> str:
    one = _expected(kind)
    return {"a string": "strings", "an integer": "integers", "true or false": "booleans",
            "a mapping": "mappings"}.get(one, one)


def _got(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, dict)):
        return "a list" if isinstance(value, list) else "a mapping"
    if isinstance(value, str):
        return f"'{shown(value, 60)}'"
    return shown(str(value), 60)


def _path(keys: Sequence[Any]) -> str:
    """Keys as `--set` spells them: `evictionHard."memory.available"`; list items as `[0]`."""
    text = ""
    for key in keys:
        if isinstance(key, int) and not isinstance(key, bool):
            text += f"[{key}]"
        else:
            name = shown(str(key), 60)
            text += ("." if text else "") + (f'"{name}"' if "." in name else name)
    return text


def _closest(key: str, names: List[str]) -> Optional[str]:
    from difflib import get_close_matches

    return next(iter(get_close_matches(key, names, n=1, cutoff=0.75)), None)


def _minor(version: Version) -> str:
    return f"{version[0]}.{version[1]}" if version else ""
