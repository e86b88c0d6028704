"""Retention: the journal and the backups must not grow until the disk is full on a cron-driven node.

A finished transaction (committed, or rolled back) is pruned — its journal records and its backups —
once it is older than `retention.days` (default 30) and not among the last `retention.keep` (default
50) finished ones. Never pruned: an unfinished transaction (recovery needs it), one whose rollback
failed (a person needs its backups), the last committed transaction of any file (so that the last
change to every file can still be rolled back), and the last committed fix of any check (the baseline
`cisfix drift` enforces, and the version it classifies drift against). The journal is rewritten atomically with what is kept,
then the pruned backups are removed; a crash between the two leaves backup folders that no transaction
names, which the next prune removes.
"""
from __future__ import annotations

import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional

from .atomic import fsync_dir
from .config import load_node_config
from .errors import CisfixError
from .journal import Journal, TxInfo
from .node import Node

FINISHED = ("committed", "rolled-back")
DAY = 86400.0


@dataclass(frozen=True)
class Retention:
    days: float = 30.0
    keep: int = 50

    @classmethod
    def from_config(cls, config: dict) -> "Retention":
        configured = config.get("retention", {})
        return cls(configured.get("days", cls.days), configured.get("keep", cls.keep))


def prunable(txs: Dict[str, TxInfo], policy: Retention, now: float) -> List[TxInfo]:
    """The transactions the policy lets go, oldest first."""
    finished = [tx for tx in txs.values() if tx.state in FINISHED]
    last_of = {}  # node path or check id -> the last committed transaction that wrote or fixed it
    for tx in txs.values():
        if tx.state == "committed":
            for key in [entry["path"] for entry in tx.files] + [f"check {i}" for i in tx.fixed_checks]:
                last_of[key] = tx.txid
    protected = set(last_of.values()) | {tx.txid for tx in finished[-policy.keep:]}
    return [tx for tx in finished
            if tx.txid not in protected and now - tx.time > policy.days * DAY]


def prune(journal: Journal, backups: Path, policy: Retention, dry_run: bool = False,
          now: Optional[float] = None) -> List[TxInfo]:
    """Prune what the policy allows (the caller holds the run lock); return what was (or would be) pruned."""
    txs = journal.transactions()
    pruned = prunable(txs, policy, time.time() if now is None else now)
    if dry_run:
        return pruned
    gone = {tx.txid for tx in pruned}
    if gone:
        journal.compact(t for t in txs if t not in gone)
    orphans = [d for d in backups.iterdir() if d.name not in txs or d.name in gone] if backups.is_dir() else []
    for directory in orphans:
        if directory.is_dir() and not directory.is_symlink():
            shutil.rmtree(directory)
        else:
            directory.unlink()
    if orphans:
        fsync_dir(backups)
    return pruned


def prune_node(node: Node, journal: Journal, dry_run: bool = False) -> List[TxInfo]:
    """Prune by the node's configured retention (`cisfix prune`)."""
    policy = Retention.from_config(load_node_config(node))
    try:
        return prune(journal, node.state_dir / "backups", policy, dry_run)
    except OSError as exc:
        raise CisfixError(f"{node.state_dir}: cannot prune: {exc.strerror}; the journal is unchanged")


def housekeeping(node: Node, journal: Journal) -> List[TxInfo]:
    """Prune at the start of every mutating run, so the state folder stays bounded. A failure here (a
    full disk, an invalid node configuration reported elsewhere) leaves everything as it was."""
    try:
        return prune_node(node, journal)
    except CisfixError as exc:
        logging.getLogger("cisfix").warning("retention not applied: %s", exc)
        return []
