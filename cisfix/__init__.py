"""cisfix: audit and safely fix CIS Kubernetes Benchmark findings on Kubernetes nodes.

Everything a plugin author needs is importable from here; see `cisfix.hookspecs` for the hooks.
Names load lazily so that `cisfix --version` stays fast.
"""
from __future__ import annotations

from importlib import import_module

__version__ = "0.1.0"

_EXPORTS = {
    "hookimpl": "cisfix.markers",
    "Runner": "cisfix.api",
    "EditError": "cisfix.errors",
    # registered objects and plans
    **{name: "cisfix.types" for name in (
        "Check", "AuditResult", "Evidence", "Plan", "Configure", "EditFile", "CreateFile", "SetMode",
        "AddHostPathMount",
        "Component", "ArgList", "NodeInfo", "Benchmark", "Editor", "Probe", "ReportFormat", "ReportSection",
        "CheckResult",
        "NetChange", "ApiObject", "ObjectUpdate", "PersistPlan", "ClusterAccess", "HostPath",
        "PASS", "FAIL", "WARN", "MANUAL", "ERROR", "NOT_APPLICABLE")},
    **{name: "cisfix.plan" for name in (
        "SetFlag", "RemoveFlag", "AddFlagItem", "RemoveFlagItem", "SetPath", "UnsetPath", "SetSetting", "Edited")},
    "NodeState": "cisfix.state",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'cisfix' has no attribute {name!r}")
