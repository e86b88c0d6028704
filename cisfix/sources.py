"""Each source is parsed once per run: the parse of a file is kept by its host path, size, mtime and
the hash of its bytes, so the many views of the node a run takes (audit, plan, gate, verify) share one
parse of each manifest, config and flag file — and a file that changed is parsed again."""
from __future__ import annotations

import hashlib
import os
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable, Optional, Tuple

from .nodefile import read_bytes

_MAX_ENTRIES = 512
_parsed: "OrderedDict[Tuple[Any, ...], Any]" = OrderedDict()
_guard = threading.Lock()  # a Runner may be shared by threads


def read(host: Path, shown: object) -> Tuple[Optional[bytes], Optional[Tuple[int, int]]]:
    """The file's bytes and (size, mtime_ns), or (None, None) when it does not exist. Only a regular file
    of at most 1 MiB is read (never blocking on a FIFO); anything else raises InputError naming `shown`."""
    data = read_bytes(host, shown)
    if data is None:
        return None, None
    try:
        info = os.stat(host)
    except OSError:  # gone since: the bytes read are what this run saw
        return data, None
    return data, (info.st_size, info.st_mtime_ns)


def parsed(host: Path, data: bytes, stamp: Optional[Tuple[int, int]], kind: str,
           parse: Callable[[bytes], Any]) -> Any:
    """`parse(data)`, computed once per (path, size, mtime, hash, kind). A parse that raises is not
    kept: the error is raised again on every call, as it would be without the cache."""
    key = (str(host), stamp, hashlib.sha256(data).digest(), kind)
    with _guard:
        if key in _parsed:
            _parsed.move_to_end(key)
            return _parsed[key]
    value = parse(data)
    with _guard:
        _parsed[key] = value
        if len(_parsed) > _MAX_ENTRIES:
            _parsed.popitem(last=False)
    return value
