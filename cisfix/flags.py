"""The one flag parser: a component's command line as its flag library reads it, whether the words come
from a live process's argv, a static pod manifest's `command`/`args` or a flag file's variable.

Go's pflag accepts `--name=value`, `-name=value`, `--name value` (the next word, when it is not a flag),
bare `--name`, and stops at `--`. Audits, the gate and the editors all read flags through `parse`, so
they agree on what a command line means (a manifest with `-v=2` reads the same as the process it runs).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence


@dataclass(frozen=True)
class FlagWord:
    """One flag: its name (no dashes), its value (None when bare) and the index of its first and last
    word (equal unless the value is the next word)."""

    name: str
    value: Optional[str]
    first: int
    last: int


def is_flag(word: Optional[str]) -> bool:
    return word is not None and word.startswith("-") and len(word) > 1 and word != "--"


def parse(words: Sequence[Optional[str]]) -> List[FlagWord]:
    """Every flag of `words` in order; duplicates are all listed (the last one is effective). Words
    that are not flags (the program, positional arguments, None for a non-scalar item) are skipped."""
    flags: List[FlagWord] = []
    i = 0
    while i < len(words):
        word = words[i]
        if word == "--":
            break
        if not is_flag(word):
            i += 1
            continue
        name, eq, value = word.lstrip("-").partition("=")
        following = words[i + 1] if i + 1 < len(words) else None
        if eq:
            flags.append(FlagWord(name, value, i, i))
        elif following is not None and not following.startswith("-"):
            flags.append(FlagWord(name, following, i, i + 1))
            i += 1
        else:
            flags.append(FlagWord(name, None, i, i))
        i += 1
    return flags


# Flags the components parse as lists (pflag string slices: kube-apiserver's admission.go and
# authorization.go, serving.go's and the kubelet's --tls-cipher-suites): repeated, their values add up.
# k3s and RKE2 repeat a flag once per value (k3s's GetArgs), so this is how their live flags read.
LIST_FLAGS = frozenset({"enable-admission-plugins", "disable-admission-plugins", "authorization-mode",
                        "tls-cipher-suites"})


def effective(words: Sequence[Optional[str]]) -> Dict[str, Optional[str]]:
    """The flags in effect: the last occurrence of each name wins, but the occurrences of a list flag
    (`LIST_FLAGS`) add up, comma-joined, as the component's own flag parser takes them."""
    values: Dict[str, Optional[str]] = {}
    for flag in parse(words):
        earlier = values.get(flag.name)
        joined = flag.name in LIST_FLAGS and earlier and flag.value
        values[flag.name] = f"{earlier},{flag.value}" if joined else flag.value
    return values
