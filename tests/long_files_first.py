"""Test files that start lab nodes run first, the most lab starts first.

Under `-n 4 --dist loadfile` xdist hands whole files to workers in the order of the collection, after
sorting them by their number of tests (its --loadscope-reorder, on by default). That puts the files with a
few long lab tests (a fleet of three nodes, a soak, a fix of the whole benchmark) last, where the slowest
of them runs alone after every other worker has finished. Longest first keeps the workers busy to the
end: this plugin orders the files by an estimate of their cost and turns xdist's reordering off.

The estimate counts lab starts, which take most of the suite's time: one per test that asks for a lab
factory (the `lab` fixture asks for one too), three for a test of the fleet playbook or of a lab cluster
(make_cluster, three nodes by default), one per file for the story the report tests share; every other
test counts as a small fraction of one."""
from __future__ import annotations

from collections import defaultdict
from typing import Dict, List

import pytest

# Function-scoped fixtures, with the lab starts (and what comes with them) a test that asks for one costs.
# A managed worker lab runs a kubelet only: it starts in a second or two, its fix's gate is most of its cost.
PER_TEST = {"make_lab": 1, "make_rke2_lab": 1, "make_k3s_lab": 1, "fleet": 3, "make_cluster": 3, "worker": 0.5,
            "workers": 0.25}
PER_FILE = ("report_story",)  # told once for the files that read it
OTHER_TEST = 1 / 50  # a test without a lab: tenths of a second against a lab test's tens of seconds


def pytest_configure(config: pytest.Config) -> None:
    if hasattr(config.option, "loadscopereorder"):  # xdist is loaded: keep the order made below
        config.option.loadscopereorder = False


def cost(items: List[pytest.Item]) -> Dict[str, float]:
    """Each file's estimated cost in lab starts."""
    costs: Dict[str, float] = defaultdict(float)
    shared = set()
    for item in items:
        path = item.nodeid.split("::", 1)[0]
        names = getattr(item, "fixturenames", ())
        costs[path] += max((labs for name, labs in PER_TEST.items() if name in names), default=OTHER_TEST)
        shared.update((path, name) for name in PER_FILE if name in names)
    for path, _ in shared:
        costs[path] += 1
    return costs


def pytest_collection_modifyitems(items: List[pytest.Item]) -> None:
    costs = cost(items)
    items.sort(key=lambda item: -costs[item.nodeid.split("::", 1)[0]])  # stable: each file's own order kept
