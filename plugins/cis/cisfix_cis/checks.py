"""Turn the catalog's entries for one benchmark into `cisfix.Check`s."""
from __future__ import annotations

from typing import List

from cisfix.types import Check

from .catalog import NODE_TYPES, Spec, specs_for


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
