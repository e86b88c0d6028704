"""HALT: the node needs a person. Written when a rollback could not bring a component back healthy, or
when recovery found files someone else changed; while `<state>/HALT` exists every mutating command
refuses (exit 4) and audits still run, until an operator has repaired the node and run `cisfix resume`
(which clears it once the components answer healthy)."""
from __future__ import annotations

import os
import shlex
import time
from typing import List, Optional, Sequence

from . import status
from .atomic import Meta, fsync_dir, write_atomic
from .errors import CisfixError
from .node import Node
from .statedir import UntrustedState
from .trust import read_trusted


class Halted(CisfixError):
    exit_code = status.EXIT_ROLLBACK_FAILED


def halt_file(node: Node):
    return node.state_dir / "HALT"


def _halt_text(node: Node) -> Optional[str]:
    """What HALT says, or None when the node is not halted. HALT in any other form than a file (a
    directory, a FIFO) halts the node all the same and is named as what it is."""
    try:
        return read_trusted(halt_file(node), UntrustedState, "; HALT must be root's own file, remove it by hand"
                            ).decode("utf-8", errors="replace")
    except FileNotFoundError:
        return None


def refuse_if_halted(node: Node) -> None:
    text = _halt_text(node)
    if text is not None:
        first = text.splitlines()[1:2] or ["(no reason recorded)"]
        raise Halted(f"{halt_file(node)} exists: {first[0]}; repair the node as it says, then run `cisfix resume`")


def halt_reason(node: Node) -> Optional[str]:
    """The reason HALT gives, or None when the node is not halted."""
    text = _halt_text(node)
    return None if text is None else (text.splitlines()[1:2] or [""])[0]


def clear_halt(node: Node) -> Optional[str]:
    """Remove HALT; return the reason it gave, or None when the node was not halted."""
    reason = halt_reason(node)
    if reason is None:
        return None
    try:
        halt_file(node).unlink()
        fsync_dir(halt_file(node).parent)
    except OSError as exc:
        raise Halted(f"{halt_file(node)}: cannot remove HALT: {exc.strerror}")
    return reason


def write_halt(node: Node, reason: str, txid: str, files: Sequence[dict], commands: Sequence[Sequence[str]]) -> str:
    """Record why and how to recover by hand: each file's backup and the `cp` that restores it, then the
    `commands` that restart the component (systemctl daemon-reload, systemctl restart kubelet)."""
    lines: List[str] = [f"cisfix HALT {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} (transaction {txid})",
                        reason, "", "To put the files back by hand:"]
    for entry in files:
        target = node.display(entry["path"])
        if entry["backup"]:
            backup = node.state_dir / entry["backup"]
            lines.append(f"  cp -p {shlex.quote(str(backup))} {shlex.quote(target)}")
        else:
            lines.append(f"  rm -f {shlex.quote(target)}    # created by this transaction")
    lines += [f"  {' '.join(shlex.quote(a) for a in command)}" for command in commands]
    lines += ["", "Check the component is healthy, then run: cisfix resume"]
    text = "\n".join(lines) + "\n"
    try:
        write_atomic(halt_file(node), text.encode(), Meta(0o600, os.geteuid(), os.getegid()))
    except OSError as exc:
        raise Halted(f"{halt_file(node)}: cannot write HALT ({exc.strerror}); the node needs a person: {reason}")
    return text
