"""Result statuses and exit codes shared by every command."""
from __future__ import annotations

FIXED = "FIXED"
ALREADY_COMPLIANT = "ALREADY_COMPLIANT"
WOULD_FIX = "WOULD_FIX"
REMEDIATION_FAILED = "REMEDIATION_FAILED"
REMEDIATION_FAILED_ROLLED_BACK = "REMEDIATION_FAILED_ROLLED_BACK"
REMEDIATION_FAILED_ROLLBACK_FAILED = "REMEDIATION_FAILED_ROLLBACK_FAILED"
SKIPPED = "SKIPPED"
EXCEPTED = "EXCEPTED"  # failing, but the node configuration accepts the risk until a date
NOT_APPLICABLE = "NOT_APPLICABLE"  # the check's component is not on this node
FAILED = (REMEDIATION_FAILED, REMEDIATION_FAILED_ROLLED_BACK, REMEDIATION_FAILED_ROLLBACK_FAILED)

EXIT_OK = 0
EXIT_STILL_FAILING = 1
EXIT_INPUT = 2
EXIT_ROLLED_BACK = 3
EXIT_ROLLBACK_FAILED = 4
EXIT_LOCKED = 5
EXIT_FLAPPING = 6  # `cisfix drift`: a check flaps; it is no longer corrected until `--reset ID`
EXIT_APPLY_ELSEWHERE = 7  # persist: the API server could not be reached; what to apply elsewhere is written
EXIT_INTERNAL = 70  # a bug in cisfix (an uncaught exception), sysexits' EX_SOFTWARE: never "checks still fail"

# Where several outcomes apply, the most serious decides the exit code.
_SEVERITY = [EXIT_OK, EXIT_STILL_FAILING, EXIT_FLAPPING, EXIT_INPUT, EXIT_ROLLED_BACK, EXIT_ROLLBACK_FAILED]


def worst(*codes: int) -> int:
    """The exit code that wins: 4 over 3, 3 over 2 (a check that could not be audited while others were
    fixed), 2 over 6, 6 over 1, 1 over 0; any other (5, 7, 70) ends a run and wins outright."""
    return max(codes, key=lambda c: _SEVERITY.index(c) if c in _SEVERITY else len(_SEVERITY))
