"""The Python API, for scripts written against the older runner that cisfix replaces."""
from __future__ import annotations

import logging
import os
import sys
import threading
from pathlib import Path
from typing import Dict, Optional

from . import status
from .commands import CommandRefused, run_trusted, trusted_script
from .errors import CisfixError
from .plan import SetFlag
from .trust import trusted_realpath

_locks: Dict[str, threading.Lock] = {}
_locks_guard = threading.Lock()


def _thread_lock(state_dir: str) -> threading.Lock:
    # flock excludes other processes; threads of this one queue here instead of failing with exit 5.
    with _locks_guard:
        return _locks.setdefault(state_dir, threading.Lock())


class Runner:
    """Change node files safely from Python.

    >>> runner = Runner(root="/", verbose=1)
    >>> runner.update_manifest_safely(filepath="/srv/manifests/kube-apiserver.yaml",
    ...                               key="--audit-policy-file=", value="/srv/audit-policy.yaml")
    {'success': True, 'status': 'FIXED', ...}
    """

    def __init__(self, root: str = "/", verbose: int = 0, state_dir: Optional[str] = None,
                 lock_wait: float = 300.0) -> None:
        from .node import Node

        self.node = Node(root, state_dir)
        self.lock_wait = lock_wait
        _configure_logging(verbose)

    def update_manifest_safely(self, filepath: str, key: str, value: Optional[str],
                               dry_run: bool = False) -> dict:
        """Set one flag in a static pod manifest, transactionally and, like every change, gated on the
        component's health. `key` may be `--name=`, `--name` or `name`; `value` None writes a bare flag.
        Never raises for bad input: the dict says why."""
        return self._change(filepath, key, value, dry_run=dry_run, label="api")

    def apply_remediation_with_health_gate(self, filepath: str, key: str, value: Optional[str], check_id: str,
                                           script_dict: Optional[dict] = None, timeout: float = 60) -> dict:
        """Set one flag like `update_manifest_safely`, then gate: the component must restart with it and
        stay healthy within `timeout` seconds, or the change is rolled back (and HALT written when even
        the rollback does not come back). With `script_dict={"path": ".../1.2.5_remediate.sh"}`, the
        sibling `1.2.5_audit.sh`, when present, verifies the live result (exit 0 = pass)."""
        try:
            verify = _script_verifier(check_id, script_dict)
        except CisfixError as exc:  # refused before anything was changed
            from .engine import EditOutcome

            return EditOutcome(status.REMEDIATION_FAILED, str(exc), exit_code=exc.exit_code).as_dict()
        return self._change(filepath, key, value, label=f"api {check_id}", timeout=timeout, verify=verify)

    def _change(self, filepath: str, key: str, value: Optional[str], *, label: str, dry_run: bool = False,
                timeout: Optional[float] = None, verify=None) -> dict:
        """The one path of every change (`cisfix.apply`): recovery gated, the change gated."""
        from functools import partial

        from .apply import apply_gated, component_of, open_session
        from .audit import node_state
        from .engine import EditOutcome, run_changes
        from .gate import gate_settings, make_gate
        from .pause import read_pause
        from .plugins import Plugins
        from .types import EditFile

        name = key.strip().lstrip("-").rstrip("=")
        paused = None
        try:
            paused = read_pause(self.node)  # a script is an unattended run: a pause holds it back, as it does fix
            if paused and not dry_run:
                return EditOutcome(status.SKIPPED, f"{paused.line()}; nothing was changed").as_dict()
            edit = EditFile(self.node.node_path(filepath), (SetFlag(name, value),))
            plugins = Plugins(self.node)
            settings = gate_settings(plugins.config, timeout,
                                     None if timeout is None else min(gate_settings({}).stability, timeout / 4))
            gate = make_gate(plugins, settings)
            gated = partial(apply_gated, plugins=plugins, gate=gate, label=label, verify=verify,
                            component=component_of(plugins.info, self.node.resolve(edit.path)))
            with _thread_lock(os.fspath(self.node.state_dir)):
                outcome = run_changes(self.node, [edit], dry_run=dry_run, wait=self.lock_wait, applier=gated,
                                      editors=plugins.editors(), state=node_state(plugins),
                                      session=partial(open_session, plugins, gate, self.lock_wait))
        except CisfixError as exc:
            outcome = EditOutcome(status.REMEDIATION_FAILED, str(exc), exit_code=exc.exit_code)
        if paused:  # a dry run still shows the plan, first saying a real change would change nothing now
            outcome.reason = f"{paused.line()} — a real change would change nothing now; {outcome.reason}"
        return outcome.as_dict()


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is at the time (a script may redirect it after creating a Runner)."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(logging.Formatter("cisfix: %(message)s"))

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, value: object) -> None:
        pass


_stderr_handler = _StderrHandler()


def _configure_logging(verbose: int) -> None:
    """`verbose=1` shows what the older runner printed: every REMEDIATION and ROLLBACK line, on stderr."""
    logger = logging.getLogger("cisfix")
    logger.setLevel(logging.DEBUG if verbose else logging.WARNING)
    if verbose and _stderr_handler not in logger.handlers:
        logger.addHandler(_stderr_handler)


def _script_verifier(check_id: str, script_dict: Optional[dict]):
    """The old suites' convention: N_remediate.sh fixes, the sibling N_audit.sh exits 0 when compliant.
    Root runs the audit script, so it must pass the trust rule (`cisfix.commands`), checked before any
    change: its folder — the remediation script's — and the file itself root's alone. A script that is
    not executable is run by bash, as the older runner did."""
    if not script_dict or "path" not in script_dict:
        return None
    remediate = Path(script_dict["path"])
    audit = remediate.with_name(remediate.name.replace("_remediate", "_audit"))
    what = f"the audit script of {check_id}"
    real = trusted_realpath(Path(os.path.abspath(audit)), CommandRefused, f"; not running {what}")
    if audit == remediate or not real.is_file():
        return None
    command = trusted_script(real, what)

    def verify():
        passed = run_trusted(command, what, timeout=120) == 0
        return [(check_id, "PASS" if passed else "FAIL")]
    return verify
