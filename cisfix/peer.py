"""Who answered a probe: the server side of our own TCP connection, traced to the process that holds it.

The controller manager, the scheduler and the kubelet listen on ports above 1024, and their probes do not
check certificates (or are plain http): while a component restarts, any local user or hostNetwork pod can
bind its port and answer "ok" (or serve the kubelet's /configz). So an answer counts only when the
connection it came on is held by the component's own process: in the component's network namespace
(`<proc>/<pid>/net/tcp`, `tcp6`) the ESTABLISHED socket whose local port is the probed port and whose
remote end is our socket, and that socket among the descriptors of the component's process
(`<proc>/<pid>/fd`). The server must still hold the connection when we look, as Go's servers do (they
keep an HTTP/1.1 connection open until the client closes it).

A process table that cannot be read (a capability-less container cannot read another process's fds)
proves nothing: the answer is not counted, and the message says why.
"""
from __future__ import annotations

import os
import re
import socket
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Optional, Tuple

if TYPE_CHECKING:  # pragma: no cover
    from .state import NodeState

ESTABLISHED = "01"  # include/net/tcp_states.h
TABLE_LIMIT = 32 * 1024 * 1024  # bytes of a connection table read at most (~200k connections)
LINE_LIMIT = 512  # a table line is about 150 bytes
FIELD = re.compile(rb"([0-9A-Fa-f]{8}|[0-9A-Fa-f]{32}):([0-9A-Fa-f]{4})")  # hex digits only, nothing else int() takes
MAPPED_V4 = b"\0" * 10 + b"\xff\xff"  # ::ffff:a.b.c.d, an IPv4 peer of a dual-stack listener

Endpoint = Tuple[bytes, int]  # packed address (IPv4-mapped IPv6 as IPv4), port


class NotTheComponent(ValueError):
    """The answer did not come from the component's own process (or that cannot be shown)."""


@dataclass(frozen=True)
class Owner:
    """The component whose process must hold the server side of a probe's connection."""

    state: "NodeState"
    component: str

    def vouch(self, sock: Optional[socket.socket]) -> None:
        """Return when the server side of `sock` (connected, still open) is held by the component's own
        process; NotTheComponent naming the component, its pid and the port otherwise."""
        if sock is None:  # http.client lets go of a connection the server said it would close
            raise NotTheComponent(f"the server closed the connection before its answer could be traced to "
                                  f"{self.component}")
        port = sock.getpeername()[1]
        process = self.state.process(self.component)
        if process is None:
            raise NotTheComponent(f"answered on port {port}, but {self.component} is not running")
        proc = self.state.proc_dir / str(process.pid)
        try:
            inode = server_inode(proc / "net", port, endpoint(sock.getsockname()))
            held = inode is not None and holds(proc / "fd", inode)
        except PermissionError as exc:
            raise NotTheComponent(f"cannot tell whether {self.component} (pid {process.pid}) answered on port "
                                  f"{port}: {exc.strerror} reading {exc.filename} (an answer that cannot be "
                                  f"traced to it is not counted)") from None
        except OSError:  # the process is gone: it did not answer
            held = False
        if not held:
            raise NotTheComponent(f"answered by a process that is not {self.component} (pid {process.pid}) "
                                  f"on port {port}")


def endpoint(address: tuple) -> Endpoint:
    """A socket address (getsockname) as the connection tables write it."""
    host = address[0].split("%", 1)[0]  # an IPv6 scope is not in the tables
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return _unmapped(socket.inet_pton(family, host)), int(address[1])


def server_inode(net: Path, port: int, client: Endpoint) -> Optional[int]:
    """The inode of the ESTABLISHED socket in `net`/tcp or tcp6 whose local port is `port` and whose
    remote end is `client`; None when there is none."""
    for name in ("tcp", "tcp6"):
        try:
            table = open(net / name, "rb")
        except FileNotFoundError:  # no IPv6 in this kernel
            continue
        with table:
            for local, remote, inode in connections(table):
                if local[1] == port and remote == client:
                    return inode
    return None


def connections(table) -> Iterator[Tuple[Endpoint, Endpoint, int]]:
    """(local, remote, inode) of each ESTABLISHED connection of a /proc/net/tcp{,6} table: read line by
    line, at most TABLE_LIMIT bytes; a line that is not the kernel's numbers is skipped."""
    read = 0
    table.readline(LINE_LIMIT)  # the header
    while read < TABLE_LIMIT:
        line = table.readline(LINE_LIMIT)
        if not line:
            return
        read += len(line)
        fields = line.split()
        if len(fields) < 10 or fields[3] != ESTABLISHED.encode() or not fields[9].isdigit():
            continue
        local, remote = _endpoint(fields[1]), _endpoint(fields[2])
        if local and remote:
            yield local, remote, int(fields[9])


def _endpoint(field: bytes) -> Optional[Endpoint]:
    """`0100007F:2823` (IPv4) or 32 hex digits:port (IPv6): the address is 32-bit words in the kernel's
    byte order."""
    match = FIELD.fullmatch(field)
    if not match:
        return None
    address, port = match.groups()
    words = [int(address[i:i + 8], 16) for i in range(0, len(address), 8)]
    return _unmapped(struct.pack(f"={len(words)}I", *words)), int(port, 16)


def _unmapped(packed: bytes) -> bytes:
    return packed[12:] if len(packed) == 16 and packed.startswith(MAPPED_V4) else packed


def holds(fds: Path, inode: int) -> bool:
    """Is socket `inode` among the descriptors in `fds` (a process's fd table, shared by its threads)?"""
    wanted = f"socket:[{inode}]"
    with os.scandir(fds) as entries:  # PermissionError without the right to read another's fds
        for entry in entries:
            try:
                if os.readlink(entry.path) == wanted:
                    return True
            except FileNotFoundError:  # closed while we looked (EACCES is not: it proves nothing)
                continue
    return False
