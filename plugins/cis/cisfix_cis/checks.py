"""Every benchmark this plugin implements (the catalog's generic ones and the distributions' derived from
them), and their entries turned into `cisfix.Check`s."""
from __future__ import annotations

from typing import Dict, List

from cisfix.types import Benchmark, Check

from . import catalog
from .catalog import NODE_TYPES, Spec
from .distributions import DERIVED, derived_specs


def benchmarks() -> Dict[str, Benchmark]:
    generic = {name: Benchmark(name, title, versions) for name, (title, versions) in catalog.BENCHMARKS.items()}
    return {**generic, **{b.name: Benchmark(b.name, b.title, b.versions, b.distribution) for b in DERIVED.values()}}


def specs_for(benchmark: str) -> Dict[str, Spec]:
    """The recommendations of any of the plugin's benchmarks by id."""
    return derived_specs(benchmark) if benchmark in DERIVED else catalog.specs_for(benchmark)


def to_check(spec: Spec, benchmark: str) -> Check:
    component = getattr(spec.audit, "component", None)
    return Check(
        id=spec.id, title=spec.title, audit=spec.audit or _not_automated, benchmark=benchmark, level=spec.level,
        node_types=NODE_TYPES[spec.id.split(".")[0]], automated=spec.audit is not None, component=component,
        target=getattr(spec.audit, "target", ""), remediate=spec.fix, remediation=spec.guidance)


def _not_automated(state: object) -> None:  # never called: the core reports non-automated checks MANUAL
    raise AssertionError("not automated")


def checks_for(benchmark: str) -> List[Check]:
    return [to_check(spec, benchmark) for spec in specs_for(benchmark).values()]
