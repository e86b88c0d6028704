"""Text others wrote (a server's answer, a container's log, a path in another process's file system),
made safe to print on root's terminal, in the journal and in HALT."""
from __future__ import annotations

from typing import Optional

SHOWN = 200  # characters of such text a message quotes


def shown(text: "str | bytes", limit: Optional[int] = SHOWN) -> str:
    """Control and format characters (terminal escape sequences, bidi overrides) and invalid UTF-8
    escaped as Python escapes them, cut to `limit` characters."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "backslashreplace")
    cut = text if limit is None else text[:limit]
    escaped = "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in cut)
    return escaped + ("..." if len(cut) < len(text) else "")
