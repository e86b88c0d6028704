"""HALT: the node needs a person. Written when a rollback could not bring a component back healthy;
while `<state>/HALT` exists every mutating command refuses (exit 4) and audits still run, until an
operator has repaired the node and run `cisfix resume`."""
from __future__ import annotations

import shlex
import time
from typing import List, Sequence

from . import status
from .atomic import write_atomic
from .errors import CisfixError
from .node import Node


class Halted(CisfixError):
    exit_code = status.EXIT_ROLLBACK_FAILED


def halt_file(node: Node):
    return node.state_dir / "HALT"


def refuse_if_halted(node: Node) -> None:
    path = halt_file(node)
    if path.exists():
        first = path.read_text(encoding="utf-8", errors="replace").splitlines()[1:2] or ["(no reason recorded)"]
        raise Halted(f"{path} exists: {first[0]}; repair the node as it says, then run `cisfix resume`")


def write_halt(node: Node, reason: str, txid: str, files: Sequence[dict], restart: Sequence[str]) -> str:
    """Record why and how to recover by hand: each file's backup and the `cp` that restores it."""
    lines: List[str] = [f"cisfix HALT {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} (transaction {txid})",
                        reason, "", "To put the files back by hand:"]
    for entry in files:
        target = node.display(entry["path"])
        if entry["backup"]:
            backup = node.state_dir / entry["backup"]
            lines.append(f"  cp -p {shlex.quote(str(backup))} {shlex.quote(target)}")
        else:
            lines.append(f"  rm -f {shlex.quote(target)}    # created by this transaction")
    if restart:
        lines.append(f"  {' '.join(shlex.quote(a) for a in restart)}")
    lines += ["", "Check the component is healthy, then run: cisfix resume"]
    text = "\n".join(lines) + "\n"
    node.state_dir.mkdir(parents=True, exist_ok=True)
    write_atomic(halt_file(node), text.encode())
    return text
