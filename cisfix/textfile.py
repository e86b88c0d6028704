"""The Prometheus textfile an unattended run leaves at its end whatever its outcome: `drift` always,
`fix` with `--textfile`. A timer or a cron line that writes its metrics only after a run that went well
(`fix && audit --output`) never writes them on a node with checks that need a person, which is every
kubeadm node: so the run writes them itself, also after an error.

The run's body fills a `RunMetrics` as it learns (the audit's results, paused); an error is still one
line on stderr and its exit code, and the textfile says so. A textfile that cannot be written turns
exit 0 into 2 (a silent timer would hide that the node is no longer monitored) and leaves any other
exit code alone (it says more about the node)."""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Optional

from . import status
from .cli_context import internal_error
from .errors import CisfixError

if TYPE_CHECKING:  # the metrics import the audit: only a run that writes the textfile pays for it
    from .metrics import RunMetrics
    from .node import Node

TEXTFILE = "/var/lib/node_exporter/textfile/cisfix.prom"
WHERE = f"a host path (default <root>{TEXTFILE}; a missing folder is created)"


def run_with_textfile(args: argparse.Namespace, node: "Node", textfile: Optional[str],
                      body: Callable[["RunMetrics"], int]) -> int:
    """body(run)'s exit code (or its error's), after writing the textfile: `textfile`, a host path, or
    when empty the node's own (<root>TEXTFILE). `node` is `load_node`'s: under a root that is not a
    node, the textfile would be a stray."""
    from .halt import halt_file
    from .metrics import RunMetrics

    run = RunMetrics(time.time())
    try:
        run.exit_code = body(run)
    except CisfixError as exc:
        print(f"cisfix: error: {exc}", file=sys.stderr)
        run.exit_code = exc.exit_code
    except Exception as exc:  # a bug: the textfile still tells monitoring, with the code of one
        run.exit_code = internal_error(exc, args.verbose)
    run.finished = time.time()
    run.halted = run.halted or halt_file(node).exists() or halt_file(node).is_symlink()  # also a HALT this run made
    if not _write(node, textfile, run) and run.exit_code == status.EXIT_OK:
        return status.EXIT_INPUT
    return run.exit_code


def _write(node: "Node", textfile: Optional[str], run: "RunMetrics") -> bool:
    """Written as every output file is (`cisfix.outputfile`: atomically, 0644 for node_exporter, which
    runs as another user; never through a link, into a folder others can change or among the static
    pods); whether it was. A failure is one line on stderr."""
    from .metrics import render
    from .outputfile import managed_places, write_output_file
    from .statedir import confined

    try:
        target = Path(textfile) if textfile else node.host(TEXTFILE)
        if not textfile:
            confined(node, target.parent)  # the default folder is the node's: a link may not lead out of it
        keep_out = managed_places(node, run.node_info)
        write_output_file(target, render(run).encode(), "the metrics textfile", keep_out=keep_out)
        return True
    except CisfixError as exc:
        print(f"cisfix: error: {exc}", file=sys.stderr)
        return False
