"""What an interrupted run leaves behind, and what the next run's recovery did with it — each said in one
line: Ctrl-C's exit-130 line names the transaction it left open (`interrupt_line`), and every mutating
run that recovered one says so first (`Recovered.line`), so that no change is undone silently."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Optional, Sequence, Set, Tuple

from .errors import CisfixError
from .journal import Journal, TxInfo
from .node import Node
from .transaction import RollbackReport

# What the undoing of a file did when the file was already as before: nothing was put back.
_ALREADY_BACK = ("unchanged, as before", "absent, as before")
INTERRUPTED = "cisfix: interrupted (exit 130)"


@dataclass
class Recovered:
    """One transaction an interrupted run left, as this run's recovery finished it: undone (it was
    open), or only gated (its files were final but its gate was cut short)."""

    txid: str
    undone: Optional[List[str]]  # node paths put back; None: nothing to undo, only the gate to finish
    components: List[str] = field(default_factory=list)  # whose files these are
    healthy: Optional[List[str]] = None  # proven healthy afterwards; None: this run gates nothing

    @classmethod
    def of(cls, report: RollbackReport) -> "Recovered":
        return cls(report.txid, [r["path"] for r in report.restored if r["action"] not in _ALREADY_BACK])

    def line(self, node: Node) -> str:
        if self.undone is None:
            what = "its files were final, its gate unfinished"
        elif not self.undone:
            what = "none of its files had been changed yet"
        else:
            whose = f" of {', '.join(self.components)}" if self.components else ""
            what = f"undid {len(self.undone)} file(s){whose} ({', '.join(node.display(p) for p in self.undone)})"
        health = f"; {', '.join(self.healthy)} healthy" if self.healthy else ""
        return f"cisfix: recovered transaction {self.txid} left by an interrupted run: {what}{health}"

    def as_dict(self, node: Node) -> dict:
        return {"txid": self.txid, "undone": self.undone, "components": self.components, "healthy": self.healthy,
                "message": self.line(node)}


def recovery_lines(node: Node, recovered: Sequence[Recovered]) -> List[str]:
    return [r.line(node) for r in recovered]


def interrupt_line(root: str, state_dir: Optional[str]) -> str:
    """The exit-130 line: what this process left half done (its open transactions and unfinished gates,
    from the journal) and what finishes it."""
    try:
        node = Node(root, state_dir)
        open_txs, gates = left_by(Journal(node.state_dir / "journal.jsonl"), os.getpid())
    except (CisfixError, OSError):  # the journal cannot be read now: the next run's recovery will say
        return (f"{INTERRUPTED}; anything it left half done is undone by the next mutating run, or now by "
                "`cisfix recover`")
    if not open_txs and not gates:
        return f"{INTERRUPTED}; nothing was left half done"
    parts = []
    for tx in open_txs:
        components = _gated(tx)
        whose = f"{', '.join(components)}: " if components else ""
        files = ", ".join(node.display(f["path"]) for f in tx.files)
        state = "is open" if tx.state == "open" else "was being undone"
        proven = f" and proves {', '.join(components)} healthy" if components else ""
        parts.append(f"transaction {tx.txid} {state} ({whose}{files}); recovery undoes it — puts those files back "
                     f"as they were —{proven}")
    for txid, components in gates.items():
        parts.append(f"the gate of transaction {txid} was cut short; recovery proves {', '.join(sorted(components))} "
                     "healthy")
    return f"{INTERRUPTED}; {'; '.join(parts)}: the next mutating run recovers first, or `cisfix recover` now"


def left_by(journal: Journal, pid: int) -> Tuple[List[TxInfo], Dict[str, Set[str]]]:
    """The transactions process `pid` was the last to begin or undo and left unfinished, and those whose
    gate it left open (txid -> components): what the next run's recovery undoes, and what it proves healthy."""
    mine = [tx for tx in journal.transactions().values() if _last_worked_on_by(tx) == pid]
    return [tx for tx in mine if tx.unfinished], unfinished_gates(mine)


def left_over(journal: Journal) -> bool:
    """Did an interrupted run leave something for recovery: an open transaction, or a gate cut short?"""
    txs = journal.transactions().values()
    return any(tx.unfinished for tx in txs) or bool(unfinished_gates(txs))


def unfinished_gates(txs: Iterable[TxInfo]) -> Dict[str, Set[str]]:
    """The components whose gate a crash cut short after their transaction's files were final (a rollback
    restored them, a commit was never reached): txid -> components. A `gate` record opens a gate, a
    `health` record closes it."""
    pending: Dict[str, Set[str]] = {}
    for tx in txs:
        opened: Dict[str, bool] = {}
        for record in tx.records:
            if record["type"] in ("gate", "health"):
                opened[record.get("component")] = record["type"] == "gate"
        components = {c for c, still_open in opened.items() if still_open and c}
        if components and not tx.unfinished:
            pending[tx.txid] = components
    return pending


def _last_worked_on_by(tx: TxInfo) -> Optional[int]:
    """The process that last began or undid the transaction: a run waiting for the lock names nothing
    another run is still working on, and an interrupted recovery names what it was undoing."""
    return [r for r in tx.records if r["type"] in ("begin", "rollback-begin")][-1].get("pid")


def _gated(tx: TxInfo) -> List[str]:
    """The components the transaction's gate records name: those its change restarts."""
    return sorted({r["component"] for r in tx.records if r["type"] == "gate" and r.get("component")})
