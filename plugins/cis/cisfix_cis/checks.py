"""Every benchmark this plugin implements (the catalog's generic ones and those derived from them: the
distributions' and the managed providers' worker-node benchmarks), and their entries turned into
`cisfix.Check`s."""
from __future__ import annotations

from functools import lru_cache
from typing import Dict, List, Mapping, Tuple

from cisfix.types import Benchmark, Check

from . import catalog
from .catalog import Spec
from .distributions import DERIVED, Derived
from .managed import MANAGED

ALL_DERIVED: Mapping[str, Derived] = {**DERIVED, **MANAGED}


def benchmarks() -> Dict[str, Benchmark]:
    generic = {name: Benchmark(name, title, versions) for name, (title, versions) in catalog.BENCHMARKS.items()}
    return {**generic, **{b.name: Benchmark(b.name, b.title, b.versions, b.distribution) for b in ALL_DERIVED.values()}}


@lru_cache(maxsize=None)
def _derived_specs(benchmark: str) -> Dict[str, Spec]:
    """The recommendations of one derived benchmark by id (built once: they are frozen)."""
    return ALL_DERIVED[benchmark].specs()


def specs_for(benchmark: str) -> Dict[str, Spec]:
    """The recommendations of any of the plugin's benchmarks by id."""
    return _derived_specs(benchmark) if benchmark in ALL_DERIVED else catalog.specs_for(benchmark)


def sections(benchmark: str) -> Tuple[Dict[str, Tuple[str, str]], Dict[str, str], Dict[str, Tuple[str, ...]]]:
    """The benchmark's parts as kube-bench names them (part -> its node type and text; group -> text) and
    the node types cisfix selects each part's checks for: the catalog's, with a derived benchmark's own."""
    derived = ALL_DERIVED.get(benchmark)
    if derived is None:
        return dict(catalog.CONTROLS), dict(catalog.GROUPS), dict(catalog.NODE_TYPES)
    return ({**catalog.CONTROLS, **derived.controls}, {**catalog.GROUPS, **derived.groups},
            {**catalog.NODE_TYPES, **derived.node_types})


def to_check(spec: Spec, benchmark: str, node_types: Mapping[str, Tuple[str, ...]]) -> Check:
    component = getattr(spec.audit, "component", None)
    return Check(
        id=spec.id, title=spec.title, audit=spec.audit or _not_automated, benchmark=benchmark, level=spec.level,
        node_types=node_types[spec.id.split(".")[0]], automated=spec.audit is not None, component=component,
        target=getattr(spec.audit, "target", ""), remediate=spec.fix, remediation=spec.guidance)


def _not_automated(state: object) -> None:  # never called: the core reports non-automated checks MANUAL
    raise AssertionError("not automated")


def checks_for(benchmark: str) -> List[Check]:
    node_types = sections(benchmark)[2]
    return [to_check(spec, benchmark, node_types) for spec in specs_for(benchmark).values()]
