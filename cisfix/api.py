"""The Python API, for scripts written against the older runner that cisfix replaces."""
from __future__ import annotations

import logging
import os
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Dict, Optional

from . import status
from .commands import CommandRefused, run_trusted, trusted_script
from .errors import CisfixError
from .plan import AddFlagItem, RemoveFlag, RemoveFlagItem, SetFlag, SetSetting
from .trust import Untrusted, trusted_realpath
from .types import EditFile

if TYPE_CHECKING:
    from .plugins import Plugins
    from .state import NodeState

ROOT_ENV = "CISFIX_ROOT"  # the node's root when `root` is not given: the name deploy/'s units use
_locks: Dict[str, threading.Lock] = {}
_locks_guard = threading.Lock()


def _thread_lock(state_dir: str) -> threading.Lock:
    # flock excludes other processes; threads of this one queue here instead of failing with exit 5.
    with _locks_guard:
        return _locks.setdefault(state_dir, threading.Lock())


class Runner:
    """Change node files safely from Python.

    >>> runner = Runner(verbose=1)   # the node at $CISFIX_ROOT, else /
    >>> runner.update_manifest_safely(filepath="/srv/manifests/kube-apiserver.yaml",
    ...                               key="--audit-policy-file=", value="/srv/audit-policy.yaml")
    {'success': True, 'status': 'FIXED', ...}
    """

    def __init__(self, root: Optional[str] = None, verbose: int = 0, state_dir: Optional[str] = None,
                 lock_wait: float = 300.0, log_file: Optional[str] = None) -> None:
        """`root`: the node's root, else `$CISFIX_ROOT`, else `/`; one that does not look like a Kubernetes
        node raises `NotANode` before anything is created there. `log_file`: where the REMEDIATION and
        ROLLBACK lines go instead of `<root>/var/log/cisfix.log` (a folder another user could change is
        refused here, a file that is a link or someone else's is left alone, as for that log)."""
        from .builtin import require_a_node
        from .node import Node

        self.node = Node(root or os.environ.get(ROOT_ENV) or "/", state_dir)
        require_a_node(self.node)
        self.log = _change_log(log_file) if log_file else None
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
        return self._change(filepath, key, value, label=f"api {check_id}", timeout=timeout, check_id=check_id,
                            script_dict=script_dict)

    def _change(self, filepath: str, key: str, value: Optional[str], *, label: str, dry_run: bool = False,
                timeout: Optional[float] = None, check_id: Optional[str] = None,
                script_dict: Optional[dict] = None) -> dict:
        """The one path of every change (`cisfix.apply`): recovery gated, the change gated. `check_id`: the
        check the change remedies, which joins drift's baseline when it is the node's (`_remedies`)."""
        from functools import partial

        from .apply import apply_gated, component_of, open_session
        from .audit import node_state
        from .engine import EditOutcome, run_changes
        from .gate import gate_settings, make_gate
        from .journal import fix_label
        from .pause import read_pause
        from .plugins import Plugins

        name = key.strip().lstrip("-").rstrip("=")
        original = filepath
        paused = None
        try:
            paused = read_pause(self.node)  # a script is an unattended run: a pause holds it back, as it does fix
            if paused and not dry_run:
                skipped = EditOutcome(status.SKIPPED, f"{paused.line()}; nothing was changed")
                skipped.original_path = original
                return skipped.as_dict()
            verify = _script_verifier(check_id, script_dict) if check_id else None  # refused before any change
            edit = EditFile(self.node.node_path(filepath), (SetFlag(name, value),))
            real = self.node.resolve(edit.path)
            original = str(self.node.host(real))
            plugins = Plugins(self.node)
            # A `timeout` too short for the node's stability window shortens the window to a quarter of it.
            settings = gate_settings(plugins.config, timeout, None if timeout is None else
                                     min(gate_settings(plugins.config).stability, timeout / 4))
            gate = make_gate(plugins, settings)
            component = component_of(plugins.info, real)
            state = node_state(plugins)
            if check_id and _remedies(plugins, state, check_id, component, real, name):
                label = fix_label([check_id])
            gated = partial(apply_gated, plugins=plugins, gate=gate, label=label, verify=verify, component=component)
            with _thread_lock(os.fspath(self.node.state_dir)):
                outcome = run_changes(self.node, [edit], dry_run=dry_run, wait=self.lock_wait, applier=gated,
                                      editors=plugins.editors(), state=state,
                                      session=partial(open_session, plugins, gate, self.lock_wait, log=self.log))
        except CisfixError as exc:
            outcome = EditOutcome(status.REMEDIATION_FAILED, str(exc), exit_code=exc.exit_code)
        outcome.original_path = original
        if paused:  # a dry run still shows the plan, first saying a real change would change nothing now
            outcome.reason = f"{paused.line()} — a real change would change nothing now; {outcome.reason}"
        return outcome.as_dict()


def _remedies(plugins: "Plugins", state: "NodeState", check_id: str, component: Optional[str], path: str,
              flag: str) -> bool:
    """Whether setting `flag` in the node file `path` is the remedy of the node's check `check_id`: the
    check fails now and its own fix sets that flag there. Then the change is journaled as `cisfix fix`
    journals it, so `cisfix drift` enforces the check; an id of another numbering (the older runner's
    suites follow older benchmarks) names some other check, which drift must not start enforcing."""
    from .audit import audit_one, node_exceptions
    from .types import FAIL, Configure

    check = plugins.checks.get(check_id)
    if check is None or check.remediate is None or audit_one(state, check, node_exceptions(plugins)).status != FAIL:
        return False
    try:
        plan = check.remediate(state)
    except CisfixError:  # its own fix cannot be planned here: nothing says this change is it
        return False
    for change in plan.changes:
        if isinstance(change, Configure):
            here = change.component == component
        else:
            here = isinstance(change, EditFile) and plugins.node.resolve(change.path) == path
        if here and flag in map(_flag_of, change.ops):
            return True
    return False


def _flag_of(op: object) -> Optional[str]:
    if isinstance(op, SetSetting):
        return op.flag
    return op.name if isinstance(op, (SetFlag, RemoveFlag, AddFlagItem, RemoveFlagItem)) else None


def _change_log(log_file: str) -> Path:
    """The caller's change log: every folder above it checked as root checks the state folder's."""
    path = Path(os.path.abspath(log_file))
    return trusted_realpath(path.parent, Untrusted, "; not writing the change log there") / path.name


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
