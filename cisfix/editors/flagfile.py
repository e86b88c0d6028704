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

# NAME="value", NAME=value, Environment="NAME=value" (systemd quotes the whole assignment).
_ASSIGNMENT = re.compile(
    r'^(?P<lead>[ \t]*(?:Environment=)?(?P<q1>"?)(?P<var>[A-Za-z_][A-Za-z0-9_]*)=(?P<q2>"?))'
    r'(?P<value>[^"\r\n]*)(?P<close>"?)(?P<tail>[ \t]*)$')
_EXEC_START = re.compile(r"^[ \t]*ExecStart=(?P<cmd>.*\S)[ \t]*$")
_ENV_FILE = re.compile(r"^[ \t]*EnvironmentFile=-?(?P<path>\S+)[ \t]*$")


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


def parse(text: str) -> FlagFile:
    assignments, exec_start, env_files = [], None, []
    offset = 0
    for number, line in enumerate(text.splitlines(keepends=True), 1):
        body = line.rstrip("\r\n")
        match = _ASSIGNMENT.match(body)
        # One opening quote (before the name or after the `=`) that the line closes, or none at all.
        opened = (match.group("q1") + match.group("q2")) if match else None
        if match and len(opened) <= 1 and opened == match.group("close"):
            start = offset + match.start("value")
            tokens = tuple(Token(start + m.start(), start + m.end(), m.group())
                           for m in re.finditer(r"\S+", match.group("value")))
            assignments.append(Assignment(match.group("var"), tokens, start, offset + match.end("value"), number))
        elif _EXEC_START.match(body):
            exec_start = _EXEC_START.match(body).group("cmd")
        elif _ENV_FILE.match(body):
            env_files.append(_ENV_FILE.match(body).group("path"))
        offset += len(line)
    return FlagFile(tuple(assignments), exec_start, tuple(env_files))


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
    flagged = [a for a in parsed.assignments if a.var.endswith("_ARGS")] or list(parsed.assignments)
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
