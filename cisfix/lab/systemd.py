"""The part of systemd's unit loading the lab's init needs: a service's ExecStart, expanded as systemd runs it.

The unit file is the first of /etc/systemd/system, /run/systemd/system, /usr/lib/systemd/system that has it;
its drop-ins are every `<unit>.d/*.conf` of those folders, applied in file-name order (a name in /etc hides
the same name further down). systemd reads them when it loads the unit — at its first start and at every
`systemctl daemon-reload` (`Manager`) —, not at every start. Directives as systemd.exec(5) and
systemd.syntax(7) read them:
- a line ending in a backslash continues on the next; `#` and `;` lines are comments;
- `ExecStart=` empty resets the list (a drop-in's `ExecStart=` then `ExecStart=...` replaces the unit's);
- `Environment=` takes quoted `NAME=value` words, a later assignment winning; `EnvironmentFile=` files
  (`-` prefix: optional) are read at start, in order, and override `Environment=` (systemd.exec:
  "Settings from these files override settings made with Environment=");
- in ExecStart, `${NAME}` is replaced by the value as one word (or part of one), and `$NAME` standing alone
  as a word by the value split at whitespace (zero or more words).
Environment files are parsed as systemd's env-file.c does: `NAME=value`, single or double quotes (inside
double quotes a backslash escapes `"`, `\\`, `` ` `` and `$`), unquoted values trimmed, quotes inside an
unquoted value kept as they are.
"""
from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Tuple

from .layout import Layout

UNIT_DIRS = ("/etc/systemd/system", "/run/systemd/system", "/usr/lib/systemd/system")


class UnitError(ValueError):
    """A unit the init cannot run (no such unit, no ExecStart, a required EnvironmentFile missing)."""


@dataclass(frozen=True)
class Service:
    argv: List[str]  # ExecStart expanded; argv[0] the node's path of the program
    slice: str  # Slice=, "system.slice" by default
    restart_sec: float  # RestartSec= (seconds, or a systemd time span "5s", "1min"); systemd's default 100ms


def unit_files(layout: Layout, unit: str) -> List[str]:
    """The node paths systemd reads for `unit`: the unit file, then its drop-ins in name order."""
    main = next((f"{d}/{unit}" for d in UNIT_DIRS if layout.host(f"{d}/{unit}").is_file()), None)
    if main is None:
        raise UnitError(f"Unit {unit} not found.")
    dropins: Dict[str, str] = {}
    for folder in reversed(UNIT_DIRS):  # an earlier folder's drop-in hides a later one's of the same name
        host = layout.host(f"{folder}/{unit}.d")
        if host.is_dir():
            dropins.update({p.name: f"{folder}/{unit}.d/{p.name}" for p in host.iterdir()
                            if p.name.endswith(".conf") and p.is_file()})
    return [main] + [dropins[name] for name in sorted(dropins)]


def _directives(text: str) -> List[Tuple[str, str]]:
    """(key, value) of every directive of a [Service] section, continuation lines joined."""
    out, section, pending = [], "", ""
    for raw in text.splitlines():
        line = pending + raw
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        pending = ""
        stripped = line.strip()
        if not stripped or stripped[0] in "#;":
            continue
        if stripped.startswith("["):
            section = stripped
        elif section == "[Service]" and "=" in stripped:
            key, _, value = stripped.partition("=")
            out.append((key.strip(), value.strip()))
    return out


@dataclass(frozen=True)
class Definition:
    """A service as systemd loaded it from its unit files: at boot and at `systemctl daemon-reload` only, so
    an edit of them changes nothing until then. Its environment files are read at every start."""

    exec_start: str
    environment: Dict[str, str]  # Environment=
    env_files: Tuple[str, ...]  # EnvironmentFile=, "-" prefix kept
    slice: str
    restart_sec: float

    def service(self, layout: Layout) -> Service:
        """What a start of it runs now."""
        environment = dict(self.environment)
        for name in self.env_files:
            optional, path = name.startswith("-"), name.lstrip("-")
            try:
                environment.update(parse_environment_file(layout.host(path).read_text(encoding="utf-8")))
            except FileNotFoundError:
                if not optional:
                    raise UnitError(f"Failed to load environment files: {path}: No such file or directory")
        return Service(_expand(self.exec_start.lstrip("-@+!:"), environment), self.slice, self.restart_sec)


def load_unit(layout: Layout, unit: str) -> Definition:
    environment: Dict[str, str] = {}
    env_files: List[str] = []
    exec_start, slice_, restart_sec = "", "system.slice", 0.1
    for path in unit_files(layout, unit):
        for key, value in _directives(layout.host(path).read_text(encoding="utf-8")):
            if key == "Environment":
                if not value:
                    environment.clear()
                for word in shlex.split(value):
                    name, _, val = word.partition("=")
                    environment[name] = val
            elif key == "EnvironmentFile":
                env_files = env_files + [value] if value else []
            elif key == "ExecStart":
                exec_start = value
            elif key == "Slice":
                slice_ = value or "system.slice"
            elif key == "RestartSec":
                restart_sec = _timespan(value) if value else 0.1
    if not exec_start:
        raise UnitError(f"{unit} has no ExecStart= setting")
    return Definition(exec_start, environment, tuple(env_files), slice_, restart_sec)


def load_service(layout: Layout, unit: str) -> Service:
    """The service as a freshly booted systemd would start it."""
    return load_unit(layout, unit).service(layout)


class Manager:
    """systemd's memory of unit files in the lab's init: a unit is loaded when first started and again only
    after `daemon_reload` (`systemctl daemon-reload`); one that fails to load is tried again at its next start."""

    def __init__(self, layout: Layout) -> None:
        self.layout = layout
        self.loaded: Dict[str, Definition] = {}

    def service(self, unit: str) -> Service:
        if unit not in self.loaded:
            self.loaded[unit] = load_unit(self.layout, unit)
        return self.loaded[unit].service(self.layout)

    def daemon_reload(self) -> None:
        self.loaded.clear()


def _timespan(text: str) -> float:
    """systemd.time(7): a bare number is seconds; else units ("5s", "1min 30s", "100ms")."""
    units = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "hr": 3600.0}
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]*)", text)
    if not parts or re.sub(r"[\d.\sa-z]", "", text):
        raise UnitError(f"Invalid RestartSec= value: {text}")
    try:
        return sum(float(number) * units[unit or "s"] for number, unit in parts)
    except KeyError:
        raise UnitError(f"Invalid RestartSec= value: {text}") from None


def _expand(command: str, environment: Dict[str, str]) -> List[str]:
    words: List[str] = []
    for word in shlex.split(command):
        alone = re.fullmatch(r"\$(\w+)", word)
        if alone:
            words.extend(environment.get(alone.group(1), "").split())
        else:
            words.append(re.sub(r"\$\{(\w+)\}", lambda m: environment.get(m.group(1), ""), word))
    return words


def parse_environment_file(text: str) -> Dict[str, str]:
    """systemd's env-file parser (src/basic/env-file.c parse_env_file_internal), line by line."""
    env: Dict[str, str] = {}
    for line in text.replace("\\\n", "").splitlines():  # backslash-newline continues the line
        stripped = line.lstrip()
        if not stripped or stripped[0] in "#;" or "=" not in stripped:
            continue
        name, _, rest = stripped.partition("=")
        value, trim, i = "", 0, 0  # trim: unquoted trailing whitespace, dropped at the end
        state = "pre"
        while i < len(rest):
            char = rest[i]
            i += 1
            if state == "pre" and char in " \t":
                continue
            if state == "pre" and char in "'\"":
                state = char
            elif state in ("'", '"'):
                if char == state:
                    state, trim = "pre", 0
                elif state == '"' and char == "\\" and i < len(rest):
                    value += rest[i] if rest[i] in '"\\`$' else "\\" + rest[i]
                    i += 1
                else:
                    value += char
            else:
                state = "value"
                if char == "\\" and i < len(rest):
                    char, i = rest[i], i + 1
                    trim = 0
                else:
                    trim = trim + 1 if char in " \t" else 0
                value += char
        env[name.strip()] = value[:len(value) - trim] if trim else value
    return env
