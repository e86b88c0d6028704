"""Limits on what a person hands cisfix — command-line numbers, nested values — so that every run can
honour what it was asked: a NaN stability window is never reached (the gate rolls a healthy change back),
an infinite timeout holds the lock for ever, an infinite delay ends in a traceback, a value nested
100,000 deep exhausts the parser's recursion. Each limit is a day or an hour, far beyond any real need;
the node configuration's numbers have the same limits in its schema (`node-config.schema.json`).
"""
from __future__ import annotations

import argparse
import math
from typing import Callable, Optional

MINUTE, HOUR, DAY = 60.0, 3600.0, 86400.0
MAX_TIMEOUT = DAY  # --timeout, gate.timeout: how long one component may take to come back
MAX_STABILITY = HOUR  # --stability-window, gate.stabilityWindow
MAX_WAIT = DAY  # --wait for another run's lock, --random-delay, lab waits
MAX_NESTING = 64  # levels of lists and mappings in a value given on the command line (--set); Kubernetes' need < 10
MAX_REPORT_BYTES = 8 << 20  # a node report `report --fleet` reads; a node writes < 1 MB (issue 23)
MAX_PATH_KEYS = 32  # keys of a dotted path given on the command line (--set, --unset); Kubernetes' need < 10


def number_problem(value: float, low: float, high: float, low_allowed: bool) -> str:
    """Why `value` is not a number a run can honour ('' when it is): finite, above `low` (or equal to it
    with `low_allowed`), at most `high`."""
    if not math.isfinite(value):
        return f"must be a finite number, not {value}"
    if value < low or (value == low and not low_allowed):
        return f"must be {'at least' if low_allowed else 'more than'} {low:g}"
    if value > high:
        return f"must be at most {high:g} ({_spelled(high)})"
    return ""


def _spelled(seconds: float) -> str:
    for unit, name in ((DAY, "a day"), (HOUR, "an hour"), (MINUTE, "a minute")):
        if seconds == unit:
            return name
    return f"{seconds:g} s"


def bounded(high: float, zero: bool = False, what: str = "a number of seconds") -> Callable[[str], float]:
    """An argparse `type` for `what`: finite, more than 0 (at least 0 with `zero`), at most
    `high`. Every numeric flag of every command takes one, so a refusal is argparse's one line and exit
    2, before anything is read, locked or changed."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        problem = number_problem(value, 0.0, high, zero)
        if problem:
            raise argparse.ArgumentTypeError(f"{text}: {problem}")
        return value
    return parse


def nesting_depth(value: object) -> int:
    """How deep lists and mappings nest in a parsed value (a scalar: 0), without recursion."""
    deepest, pending = 0, [(value, 1)]
    while pending:
        item, depth = pending.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is None:
            continue
        deepest = max(deepest, depth)
        if depth <= MAX_NESTING:  # deeper is refused anyway: no need to walk it all
            pending.extend((child, depth + 1) for child in children)
    return deepest


def non_finite(value: object) -> Optional[float]:
    """The first infinite or NaN number in a parsed value (YAML's `.inf`, `.nan`, `1e309`), else None:
    no configuration takes one, and NaN is not even equal to itself (the edit's self-check fails)."""
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, float) and not math.isfinite(item):
            return item
        if isinstance(item, dict):
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return None
