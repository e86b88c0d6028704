"""A failing check's remedy: its remediation plan, and why a fix would not apply it — no safe automatic
fix (the plan's `manual`), or a plugin's veto (`cisfix_veto_plan`). `fix` plans with it, and the node
report tells FAIL (cisfix fixes it) from NEEDS_A_PERSON with it, without loading the fix engine."""
from __future__ import annotations

from typing import Tuple

from .plugins import Plugins
from .state import NodeState
from .types import Check, Plan


def remedy(plugins: Plugins, state: NodeState, check: Check) -> Tuple[Plan, str]:
    """The plan, and "" when a fix would apply it, else why not."""
    plan = check.remediate(state) if check.remediate else Plan(manual="no automatic remediation")
    veto = None if plan.manual else plugins.pm.hook.cisfix_veto_plan(check=check, plan=plan, node_info=plugins.info)
    return plan, plan.manual or (f"vetoed: {veto}" if veto else "")
