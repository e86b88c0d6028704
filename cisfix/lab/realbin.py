"""Run a real binary (etcd) as a container would: it sees only its mounts.

Without a mount namespace the binary must be given host paths, yet tools reading /proc must see the
manifest's flags. So this wrapper is the container's main process, with the manifest's flags unchanged in
its command line; it runs the binary as its child with every path flag re-rooted through the container's
mounts (a path under no mount points to a place that does not exist), forwards SIGTERM and SIGINT, maps host
paths in the binary's output back to container paths, and exits with the binary's status.
"""
from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path
from typing import List, Optional

from .container import Mounts, resolver, translate_args
from .pods import exit_code


def main(name: str, binary: str, root: str, argv: Optional[List[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    mounts = Mounts.from_env() or Mounts([])
    unmounted = Path(root) / "run/lab/unmounted"
    args = translate_args(argv, resolver(mounts, unmounted))
    # argv[0] under the lab directory, but not the wrapper's path: cisfix finds the wrapper, `lab stop` both.
    child = subprocess.Popen([str(Path(root) / "usr/local/lib/lab" / name)] + args, executable=binary,
                             stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, _: child.send_signal(signum))
    replacements = [(host, mount) for mount, host, _ in mounts.entries] + [(str(unmounted), "")]
    for raw in child.stdout:
        line = raw.decode("utf-8", "replace")
        for host, mount in replacements:
            line = line.replace(host, mount)
        sys.stderr.write(line)
        sys.stderr.flush()
    return exit_code(child.wait())
