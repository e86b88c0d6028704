"""A strict reader of the Prometheus text exposition format (0.0.4), for the tests of every textfile
cisfix writes: HELP and TYPE at most once per family and before its samples, a family's samples
together, every line valid, label values escaped, no series twice, a final newline."""
from __future__ import annotations

import math
import re
from typing import Dict, FrozenSet, Tuple

NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
LABEL = r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"'
SAMPLE = re.compile(rf"^({NAME})(?:\{{((?:{LABEL},?)*)\}})? (\S+)(?: -?\d+)?$")
KINDS = ("counter", "gauge", "histogram", "summary", "untyped")

Series = Tuple[str, FrozenSet[Tuple[str, str]]]


def parse_prometheus(text: str) -> Dict[Series, float]:
    """{(name, frozenset of (label, value)): value}; any deviation fails an assertion naming the line."""
    assert text.endswith("\n"), "the exposition must end with a newline"
    typed: Dict[str, str] = {}
    helped, finished, samples = set(), set(), {}
    current = None
    for number, line in enumerate(text.splitlines(), 1):
        where = f"line {number}: {line!r}"
        if line.startswith("#"):
            parts = line.split(" ", 3)
            assert len(parts) >= 3 and parts[1] in ("HELP", "TYPE") and re.fullmatch(NAME, parts[2]), where
            name = parts[2]
            assert name not in finished and name != current, f"{where}: HELP or TYPE after its samples"
            if parts[1] == "TYPE":
                assert name not in typed and len(parts) == 4 and parts[3] in KINDS, where
                typed[name] = parts[3]
            else:
                assert name not in helped, where
                helped.add(name)
            continue
        match = SAMPLE.match(line)
        assert match, where
        name, labels, value = match.group(1), match.group(2) or "", match.group(5)
        family = name if name in typed else re.sub(r"_(bucket|sum|count)$", "", name)
        assert family in typed, f"{where}: no TYPE before the sample"
        if current != family:
            assert family not in finished, f"{where}: samples of {family} are not together"
            if current:
                finished.add(current)
            current = family
        if typed[family] == "counter":
            assert name.endswith("_total"), f"{where}: a counter's name ends in _total"
        pairs = re.findall(LABEL, labels)
        keys = [k for k, _ in pairs]
        assert len(keys) == len(set(keys)), f"{where}: a label twice"
        number_value = float(value)  # raises on anything but a float, +Inf, -Inf, NaN
        assert not math.isnan(number_value) or value == "NaN", where
        series = (name, frozenset(pairs))
        assert series not in samples, f"{where}: the same series twice"
        samples[series] = number_value
    return samples


def value(samples: Dict[Series, float], name: str, **labels: str) -> float:
    """The value of one series; KeyError when it is not there."""
    return samples[(name, frozenset(labels.items()))]
