"""The Python API, for scripts written against the older runner that cisfix replaces."""
from __future__ import annotations

import logging
import os
import threading
from typing import Dict, Optional

from . import status
from .errors import CisfixError
from .plan import SetFlag

_locks: Dict[str, threading.Lock] = {}
_locks_guard = threading.Lock()


def _thread_lock(state_dir: str) -> threading.Lock:
    # flock excludes other processes; threads of this one queue here instead of failing with exit 5.
    with _locks_guard:
        return _locks.setdefault(state_dir, threading.Lock())


class Runner:
    """Change node files safely from Python.

    >>> runner = Runner(root="/", verbose=1)
    >>> runner.update_manifest_safely(filepath="/etc/kubernetes/manifests/kube-apiserver.yaml",
    ...                               key="--audit-policy-file=", value="/etc/kubernetes/audit-policy.yaml")
    {'success': True, 'status': 'FIXED', ...}
    """

    def __init__(self, root: str = "/", verbose: int = 0, state_dir: Optional[str] = None,
                 lock_wait: float = 300.0) -> None:
        from .node import Node

        self.node = Node(root, state_dir)
        self.lock_wait = lock_wait
        logging.getLogger("cisfix").setLevel(logging.DEBUG if verbose else logging.WARNING)

    def update_manifest_safely(self, filepath: str, key: str, value: Optional[str],
                               dry_run: bool = False) -> dict:
        """Set one flag in a static pod manifest, transactionally. `key` may be `--name=`, `--name`
        or `name`; `value` None writes a bare flag. Never raises for bad input: the dict says why."""
        from .engine import EditOutcome, run_changes
        from .types import EditFile

        name = key.strip().lstrip("-").rstrip("=")
        try:
            edit = EditFile(self.node.node_path(filepath), (SetFlag(name, value),))
            with _thread_lock(os.fspath(self.node.state_dir)):
                outcome = run_changes(self.node, [edit], dry_run=dry_run, wait=self.lock_wait, label="api")
        except CisfixError as exc:
            outcome = EditOutcome(status.REMEDIATION_FAILED, str(exc), exit_code=exc.exit_code)
        return outcome.as_dict()
