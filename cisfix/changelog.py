"""The append-only change log `<root>/var/log/cisfix.log`, for people who grep.

Every line about a change carries REMEDIATION or ROLLBACK, the txid and the file, so
`grep REMEDIATION /var/log/cisfix.log` lists what cisfix changed and when.
"""
from __future__ import annotations

import logging
import os
import time
from pathlib import Path

log = logging.getLogger("cisfix")
CHANGE_LOG = "/var/log/cisfix.log"  # node path


class ChangeLog:
    def __init__(self, path: Path) -> None:
        self.path = path

    def write(self, word: str, txid: str, node_path: str, message: str) -> None:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        line = f"{stamp} {word} txid={txid} file={node_path} pid={os.getpid()} {message}\n"
        log.info("%s", line.rstrip("\n"))  # on stderr with -v, and for Runner(verbose=1)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)
