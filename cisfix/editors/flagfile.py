"""Kubelet flag files: environment files (`KUBELET_KUBEADM_ARGS="--a=b --c=d"` in kubeadm-flags.env,
`KUBELET_EXTRA_ARGS=...` in /etc/default/kubelet) and the `Environment="VAR=--a=b"` lines of a systemd
drop-in. Reading them, and editing the flags in them.

The editor changes only the characters of the flag it touches: every flag is located by its span in
the original line, so spacing, comments, quotes and a missing final newline stay as they were. It
re-reads its result and checks that exactly the intended flags changed before answering.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

from .. import flags
from ..errors import EditError
from ..plan import AddFlagItem, Edited, FlagOp, RemoveFlag, RemoveFlagItem, SetFlag

# NAME="value", NAME=value, Environment="NAME=value" or Environment='NAME=value' (systemd quotes the
# whole assignment; Amazon Linux 2's bootstrap.sh writes `Environment='KUBELET_ARGS=--node-ip=... --v=2'`).
_LEAD = re.compile(r'^(?P<lead>[ \t]*(?:Environment=)?(?P<q1>["\']?)(?P<var>[A-Za-z_][A-Za-z0-9_]*)=(?P<q2>["\']?))')
_EXEC_START = re.compile(r"^[ \t]*ExecStart=(?P<cmd>.*\S)[ \t]*$")
_ENV_FILE = re.compile(r"^[ \t]*EnvironmentFile=-?(?P<path>\S+)[ \t]*$")
_SLICE = re.compile(r"^[ \t]*Slice=(?P<name>\S*)[ \t]*$")


def _assignment_value(body: str) -> Optional[Tuple[str, int, int]]:
    """(variable, start, end of its value in `body`) for a line assigning a variable, None for any other.
    The value is the rest of the line (trailing blanks aside) within its one pair of quotes, if any: an
    unquoted value may hold quotes (AKS's `--node-labels=...`), a single-quoted one double quotes (AL2's
    `--register-with-taints="..."`); a double-quoted one holds none."""
    match = _LEAD.match(body)
    if not match or (match.group("q1") and match.group("q2")):
        return None
    quote = match.group("q1") or match.group("q2")
    start, end = match.end(), len(body.rstrip(" \t"))
    if quote:
        if end <= start or body[end - 1] != quote:
            return None
        end -= 1
    if quote and quote in body[start:end]:
        return None
    return match.group("var"), start, end


@dataclass(frozen=True)
class Token:
    """One word of a flag variable, with its position in the file's text."""

    start: int
    end: int
    text: str


@dataclass(frozen=True)
class Assignment:
    """A variable holding kubelet flags, with the position of its value in the text."""

    var: str
    tokens: Tuple[Token, ...]
    value_start: int
    value_end: int
    line: int  # 1-based

    def flags(self) -> List[flags.FlagWord]:
        """The flags of the value in order (`first`/`last` index `tokens`), read as the kubelet's flag
        parser reads the words systemd passes it."""
        return flags.parse([t.text for t in self.tokens])


@dataclass(frozen=True)
class FlagFile:
    """What a flag file defines: its flag variables, the `ExecStart` command and further env files."""

    assignments: Tuple[Assignment, ...]
    exec_start: Optional[str]
    env_files: Tuple[str, ...]
    slices: Tuple[str, ...] = ()  # a unit's `Slice=` values in order ("" resets it)


def parse(text: str) -> FlagFile:
    assignments, exec_start, env_files, slices = [], None, [], []
    offset = 0
    lines = text.splitlines(keepends=True)
    continued: Optional[List[str]] = None  # an ExecStart= line ending in `\\`, and the lines that continue it
    unit = False  # a unit or drop-in (it has `[Service]`): only its Environment= lines assign variables
    for number, line in enumerate(lines, 1):
        body = line.rstrip("\r\n")
        if continued is not None:
            # systemd joins a line ending in a backslash with the next one (the units of AL2 and AKS).
            continued.append(body.rstrip(" \t").rstrip("\\"))
            if not body.rstrip(" \t").endswith("\\"):
                exec_start, continued = " ".join(continued).strip(), None
            offset += len(line)
            continue
        unit = unit or bool(re.match(r"^[ \t]*\[\w+\][ \t]*$", body))
        directive = (_EXEC_START.match(body) or _ENV_FILE.match(body)
                     or (unit and not body.lstrip().startswith("Environment=")))
        found = None if directive else _assignment_value(body)
        if _EXEC_START.match(body):
            command = _EXEC_START.match(body).group("cmd")
            if command.endswith("\\"):
                continued = [command.rstrip("\\")]
            else:
                exec_start = command
        elif _ENV_FILE.match(body):
            env_files.append(_ENV_FILE.match(body).group("path"))
        elif unit and _SLICE.match(body):
            slices.append(_SLICE.match(body).group("name"))
        elif found:
            var, start, end = found
            tokens = tuple(Token(offset + start + m.start(), offset + start + m.end(), m.group())
                           for m in re.finditer(r"\S+", body[start:end]))
            assignments.append(Assignment(var, tokens, offset + start, offset + end, number))
        offset += len(line)
    if continued is not None:
        exec_start = " ".join(continued).strip()
    return FlagFile(tuple(assignments), exec_start, tuple(env_files), tuple(slices))


def flags_of(text: str) -> Dict[str, Optional[str]]:
    """Every flag the file sets, the last definition winning (for the self-check and tests)."""
    return {f.name: f.value for a in parse(text).assignments for f in a.flags()}


# ---- editing ----

def edit(text: str, ops: Sequence[FlagOp]) -> Edited:
    """Apply flag operations to the flag variables of an env file or drop-in. A flag that is not set
    anywhere is appended to the file's only flag variable; with several, which one is ambiguous."""
    new_text, notes = text, []
    for op in ops:
        new_text, note = _apply(new_text, op)
        if note:
            notes.append(note)
    _self_check(text, new_text, ops)
    return Edited(new_text, tuple(notes))


def _apply(text: str, op: FlagOp) -> Tuple[str, str]:
    parsed = parse(text)
    occurrences = [(a, f) for a in parsed.assignments for f in a.flags() if f.name == op.name]
    if isinstance(op, RemoveFlag):
        if not occurrences:
            return text, ""
        for assignment, flag in reversed(occurrences):
            text = _remove_words(text, assignment, flag.first, flag.last)
        return text, f"removed --{op.name}"
    current = occurrences[-1][1].value if occurrences else None
    if isinstance(op, SetFlag):
        value = op.value
    else:
        items = [i for i in (current or "").split(",") if i]
        if isinstance(op, AddFlagItem):
            value = ",".join(items + [op.item]) if op.item not in items else current
        else:
            if op.item not in items:
                return text, ""
            value = ",".join(i for i in items if i != op.item)
    if occurrences and current == value:
        return text, ""
    word = f"--{op.name}" + (f"={value}" if value is not None else "")
    _check_word(word)
    if occurrences:
        # Earlier duplicates are dead (the last one wins); only the effective one is changed.
        assignment, flag = occurrences[-1]
        span = (assignment.tokens[flag.first].start, assignment.tokens[flag.last].end)
        return text[:span[0]] + word + text[span[1]:], f"set --{op.name}={value} (was {current})"
    # The variable meant for flags: one named so (`*_ARGS`), else one holding flags (AKS's /etc/default/kubelet
    # has KUBELET_FLAGS beside KUBELET_NODE_LABELS and KUBELET_REGISTER_SCHEDULABLE), else any.
    flagged = ([a for a in parsed.assignments if a.var.endswith("_ARGS")]
               or [a for a in parsed.assignments if a.flags()] or list(parsed.assignments))
    if len(flagged) != 1:
        raise EditError(f"--{op.name} is not set and the file has {len(flagged)} flag variables; "
                        "cannot tell where it belongs")
    target = flagged[0]
    insert = target.tokens[-1].end if target.tokens else target.value_start
    addition = (" " if target.tokens else "") + word
    return text[:insert] + addition + text[insert:], f"added {word}"


def _check_word(word: str) -> None:
    # Inside systemd's double quotes, quotes, backslashes and `$` would be interpreted, not kept.
    if re.search(r'[\s"\'\\$]', word):
        raise EditError(f"{word!r} cannot be written into a flag variable without quoting")


def _remove_words(text: str, assignment: Assignment, first: int, last: int) -> str:
    tokens = assignment.tokens
    start, end = tokens[first].start, tokens[last].end
    if last + 1 < len(tokens):
        end = tokens[last + 1].start  # take the space after it
    elif first > 0:
        start = tokens[first - 1].end  # last word: take the space before it
    return text[:start] + text[end:]


def _self_check(before: str, after: str, ops: Sequence[FlagOp]) -> None:
    """Re-read the result: the flags the ops name must be as intended, all others untouched."""
    old, new = flags_of(before), flags_of(after)
    touched = {op.name for op in ops}
    if {k: v for k, v in old.items() if k not in touched} != {k: v for k, v in new.items() if k not in touched}:
        raise EditError("editing changed flags it was not asked to change")
    for op in ops:
        if isinstance(op, RemoveFlag) and op.name in new:
            raise EditError(f"--{op.name} is still set after removing it")
        if isinstance(op, SetFlag) and new.get(op.name, "<unset>") != op.value:
            raise EditError(f"--{op.name} is not {op.value} after setting it")
        if isinstance(op, AddFlagItem) and op.item not in (new.get(op.name) or "").split(","):
            raise EditError(f"{op.item} is not in --{op.name} after adding it")
        if isinstance(op, RemoveFlagItem) and op.item in (new.get(op.name) or "").split(","):
            raise EditError(f"{op.item} is still in --{op.name} after removing it")
