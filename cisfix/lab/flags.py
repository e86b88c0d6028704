"""Command lines parsed the way the Kubernetes binaries parse them (spf13/pflag under cobra).

The flag tables (name, type, default) are the components' published 1.32 references, shipped in
`cisfix/lab/data/` and read with importlib.resources so that they load from the zipapp too; the other
versions' tables are those plus the flags added, removed or re-defaulted between 1.32 and them
(`flag-changes.tsv`, sources in `data/SOURCES.md`). Errors carry
the real binaries' wording: `unknown flag: --x`, `invalid argument "x" for "--y" flag: strconv.ParseBool:
parsing "x": invalid syntax`, `time: unknown unit "x" in duration "5x"`.
"""
from __future__ import annotations

import csv
import ipaddress
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable, Dict, FrozenSet, List, Sequence, Tuple


class FlagError(ValueError):
    """A command line the binary rejects while parsing; the message is the binary's."""


@dataclass(frozen=True)
class FlagSpec:
    name: str
    type: str
    default: str
    deprecated: bool


def data_text(name: str) -> str:
    from importlib.resources import files

    return files("cisfix.lab").joinpath("data", name).read_text(encoding="utf-8")


BASE_VERSION = (1, 32)  # the version of the `<component>-flags.tsv` tables


def _tsv(name: str) -> List[List[str]]:
    """A TSV data file's rows, header dropped."""
    return [r for r in csv.reader(data_text(name).splitlines(), delimiter="\t")][1:]


def minor_of(version: str) -> Tuple[int, int]:
    """"1.33.2" or "1.33" -> (1, 33)."""
    major, minor = version.lstrip("v").split(".")[:2]
    return int(major), int(minor)


@lru_cache(maxsize=None)
def flag_table(component: str, version: str) -> Dict[str, FlagSpec]:
    """The flags `component` of Kubernetes `version` ("1.33.0" or "1.33") registers: the 1.32 table
    with the changes between 1.32 and `version` applied. A flag added in X exists from X on, one
    removed in X exists before X; a `default` change gives the default from its version on."""
    minor = minor_of(version)
    table = {r[0]: FlagSpec(r[0], r[1], r[2], r[3] == "yes") for r in _tsv(f"{component}-flags.tsv") if r}
    for row in _tsv("flag-changes.tsv"):
        owner, name, change, since, kind, default, deprecated = row[:7]
        if owner != component:
            continue
        present = (minor >= minor_of(since)) == (change == "added")
        if change == "default":
            if minor >= minor_of(since):
                table[name] = FlagSpec(name, kind, default, table[name].deprecated)
        elif not present:
            table.pop(name, None)
        elif name not in table:  # added after 1.32, or removed before it
            table[name] = FlagSpec(name, kind, default, deprecated == "yes")
    return table


@lru_cache(maxsize=None)
def name_list(name: str) -> Tuple[str, ...]:
    """A list file of names, one per line (the first column of a TSV, header skipped)."""
    lines = [line.split("\t")[0] for line in data_text(name).splitlines() if line.strip()]
    return tuple(lines[1:] if name.endswith(".tsv") or lines[:1] == ["name"] else lines)


# Shorthands every component registers (cobra's -h, klog's -v).
SHORTHANDS = {"h": "help", "v": "v"}
# Flags whose table type is `string` but whose Go type is net.IP.
IP_FLAGS = frozenset({"advertise-address", "bind-address", "healthz-bind-address", "address", "node-ip"})


# ---- Go value syntax ----

_GO_BOOLS = {"1": True, "t": True, "T": True, "TRUE": True, "true": True, "True": True,
             "0": False, "f": False, "F": False, "FALSE": False, "false": False, "False": False}


def go_quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def parse_bool(text: str) -> bool:
    if text not in _GO_BOOLS:
        raise ValueError(f"strconv.ParseBool: parsing {go_quote(text)}: invalid syntax")
    return _GO_BOOLS[text]


def parse_int(text: str, bits: int = 64) -> int:
    """strconv.ParseInt(text, 0, bits): decimal, 0x/0o/0b prefixes, a leading 0 means octal."""
    try:
        legacy_octal = re.fullmatch(r"[+-]?0[0-7]+", text)
        value = int(text.replace("0", "0o", 1) if legacy_octal else text, 0)
    except ValueError:
        raise ValueError(f"strconv.ParseInt: parsing {go_quote(text)}: invalid syntax") from None
    if not -(1 << (bits - 1)) <= value < (1 << (bits - 1)):
        raise ValueError(f"strconv.ParseInt: parsing {go_quote(text)}: value out of range")
    return value


def parse_float(text: str) -> float:
    if not re.fullmatch(r"[+-]?(inf|infinity|nan|(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?)", text, re.IGNORECASE):
        raise ValueError(f"strconv.ParseFloat: parsing {go_quote(text)}: invalid syntax")
    return float(text)


_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """time.ParseDuration, in seconds."""
    invalid = ValueError(f"time: invalid duration {go_quote(text)}")
    rest, sign = text, 1.0
    if rest[:1] in "+-" and rest:
        sign, rest = (-1.0 if rest[0] == "-" else 1.0), rest[1:]
    if rest == "0":
        return 0.0
    if not rest:
        raise invalid
    total = 0.0
    while rest:
        number = re.match(r"(\d*)(\.\d*)?", rest)
        if not number or number.group(0) in ("", "."):
            raise invalid
        rest = rest[number.end():]
        unit = re.match(r"[^\d.]*", rest).group(0)
        if not unit:
            raise ValueError(f"time: missing unit in duration {go_quote(text)}")
        if unit not in _DURATION_UNITS:
            raise ValueError(f"time: unknown unit {go_quote(unit)} in duration {go_quote(text)}")
        total += float(number.group(0)) * _DURATION_UNITS[unit]
        rest = rest[len(unit):]
    return sign * total


def split_list(text: str) -> List[str]:
    """pflag's StringSlice: a CSV record; empty text is an empty list."""
    return next(csv.reader([text])) if text else []


def _pairs(text: str, message: str) -> List[Tuple[str, str]]:
    pairs = []
    for item in split_list(text):
        key, eq, value = item.partition("=")
        if not eq:
            raise ValueError(message.format(item=item))
        pairs.append((key.strip(), value.strip()))
    return pairs


def _check_map_bool(text: str) -> None:
    for key, value in _pairs(text, "missing bool value for {item}"):
        try:
            parse_bool(value)
        except ValueError as exc:
            raise ValueError(f"invalid value of {key}={value}, err: {exc}") from None


def _check_ip(text: str) -> None:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        raise ValueError(f"failed to parse IP: {go_quote(text)}") from None


def _check_quantity(text: str) -> None:
    if not re.fullmatch(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+|[KMGTPE]i?|[munk])?", text):
        raise ValueError("quantities must match the regular expression "
                         "'^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'")


def _check_port_range(text: str) -> None:
    if not re.fullmatch(r"\d+([-+]\d+)?", text):
        raise ValueError(f"unable to parse port range: {text}")


def _check_module_spec(text: str) -> None:
    for item in split_list(text):
        pattern, eq, level = item.partition("=")
        if not eq or not pattern:
            raise ValueError(f"{item!r} does not have the pattern=N format")
        parse_int(level, 32)


def _check_version(text: str) -> None:
    if text not in ("true", "false", "raw") and not re.fullmatch(r"v?\d+\.\d+\.\d+.*", text):
        parse_bool(text)


_CHECKS: Dict[str, Callable[[str], object]] = {
    "bool": parse_bool,
    "int": parse_int, "int64": parse_int, "int32": lambda t: parse_int(t, 32),
    "uint": parse_int, "uint32": lambda t: parse_int(t, 32),
    "float": parse_float, "float32": parse_float,
    "duration": parse_duration,
    "quantity": _check_quantity,
    "portRange": _check_port_range,
    "moduleSpec": _check_module_spec,
    "version": _check_version,
    "mapStringBool": _check_map_bool,
    "colonSeparatedMultimapStringString": lambda t: _pairs(t, "malformed pair, expect string=string"),
    "mapStringString": lambda t: _pairs(t, "malformed pair, expect string=string"),
    "stringToString": lambda t: _pairs(t, "{item} must be formatted as key=value"),
}
_OPTIONAL_VALUE = frozenset({"bool", "version"})  # `--flag` alone means true


def parse_command_line(component: str, version: str, argv: Sequence[str]) -> Dict[str, str]:
    """The flags of `argv` (program name excluded) as name -> raw value, the last occurrence winning (a
    string slice's occurrences joined), as `component` of Kubernetes `version` parses them. Raises FlagError with the binary's message for
    an unknown flag, a missing or invalid value, or a positional argument."""
    table = flag_table(component, version)
    values: Dict[str, str] = {}
    i = 0
    while i < len(argv):
        arg = argv[i]
        i += 1
        if arg == "--" or not arg.startswith("-") or arg == "-":
            raise FlagError(f'"{component}" does not take any arguments, got [{arg}]')
        if arg.startswith("--"):
            name, eq, value = arg[2:].partition("=")
            shown = f"--{name}"
        else:
            short, eq, value = arg[1:].partition("=")
            short, rest = short[0], short[1:]
            if short not in SHORTHANDS:
                raise FlagError(f"unknown shorthand flag: {short!r} in -{arg[1:]}")
            name, shown = SHORTHANDS[short], f"-{short}"
            if rest and not eq:
                value, eq = rest, "="
        spec = table.get(name)
        if spec is None:
            raise FlagError(f"unknown flag: {shown}")
        if not eq:
            if spec.type in _OPTIONAL_VALUE:
                value = "true"
            elif i < len(argv):
                value, i = argv[i], i + 1
            else:
                raise FlagError(f"flag needs an argument: {shown}")
        check = _check_ip if name in IP_FLAGS else _CHECKS.get(spec.type)
        if check:
            try:
                check(value)
            except ValueError as exc:
                raise FlagError(f"invalid argument {go_quote(value)} for \"{shown}\" flag: {exc}") from None
        # pflag's string slices append on every repeat after the first (k3s gives one `--name=v` per
        # value: --enable-admission-plugins=NodeRestriction --enable-admission-plugins=X); others: last wins.
        values[name] = f"{values[name]},{value}" if spec.type == "strings" and name in values else value
    return values


def flag_bool(values: Dict[str, str], name: str, default: bool) -> bool:
    return parse_bool(values[name]) if name in values else default


def known_names(list_name: str) -> FrozenSet[str]:
    return frozenset(name_list(list_name))
