"""Reading a node file without trusting it: only regular files, at most `MAX_BYTES`, UTF-8 text without
NUL bytes, YAML without aliases. Every refusal is an `InputError` naming the file: one line, exit 2.

Opening a FIFO blocks until a writer comes and reading a device may never end, so the file type is
checked before `open` and again on the open descriptor (O_NONBLOCK: a FIFO swapped in between cannot
block either). Node files are small (a kubeadm manifest is a few KiB); a 1 MiB limit keeps one hostile
file from costing minutes and gigabytes. YAML aliases make a few hundred bytes expand exponentially
for anything that walks the data (comparisons, validation, JSON); Kubernetes' files never use them.
"""
from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any, List, Optional, Tuple

from .errors import InputError

MAX_BYTES = 1 << 20

_KINDS = {stat.S_IFIFO: "a FIFO", stat.S_IFSOCK: "a socket", stat.S_IFCHR: "a character device",
          stat.S_IFBLK: "a block device", stat.S_IFDIR: "a directory"}


def _refuse_kind(mode: int, shown: object) -> None:
    if not stat.S_ISREG(mode):
        kind = _KINDS.get(stat.S_IFMT(mode), "not a regular file")
        raise InputError(shown, f"is {kind}, not a regular file; refused")


def require_regular(host: Path, shown: object) -> bool:
    """True when `host` is a regular file, False when it does not exist; refuse anything else."""
    try:
        info = os.stat(host)
    except (FileNotFoundError, NotADirectoryError):
        return False
    _refuse_kind(info.st_mode, shown)
    return True


def read_bytes(host: Path, shown: object, missing_ok: bool = True, limit: int = MAX_BYTES,
               what: str = "a node file") -> Optional[bytes]:
    """The bytes of a regular file of at most `limit` bytes (`what` it is, for the refusal); None when it
    does not exist (and missing_ok)."""
    if not require_regular(host, shown):
        if missing_ok:
            return None
        raise InputError(shown, "no such file")
    try:
        fd = os.open(host, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        if missing_ok:
            return None
        raise InputError(shown, "no such file")
    except OSError as exc:
        raise InputError(shown, exc.strerror or str(exc))
    try:
        return read_open(fd, shown, limit, what)
    finally:
        os.close(fd)


def read_open(fd: int, shown: object, limit: int = MAX_BYTES, what: str = "a node file") -> bytes:
    """The bytes of the open regular file `fd`, refused when it is anything else or more than `limit`
    bytes (checked before reading and while reading: it may grow). The caller closes `fd`."""
    try:
        info = os.fstat(fd)
        _refuse_kind(info.st_mode, shown)
        if info.st_size > limit:
            raise InputError(shown, f"is {info.st_size} bytes, more than the {limit} {what} may have; refused")
        chunks, total = [], 0
        while True:
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                return b"".join(chunks)
            total += len(chunk)
            if total > limit:  # it grew while being read
                raise InputError(shown, f"is more than {limit} bytes, the most {what} may have; refused")
            chunks.append(chunk)
    except OSError as exc:
        raise InputError(shown, exc.strerror or str(exc))


def decode_text(data: bytes, shown: object) -> str:
    """UTF-8 text without NUL bytes (no configuration file holds one; parsers report them badly)."""
    nul = data.find(b"\0")
    if nul >= 0:
        line = data.count(b"\n", 0, nul) + 1
        raise InputError(f"{shown}:{line}", f"contains a NUL byte (offset {nul}); not a text file")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(shown, f"not UTF-8 text (byte {exc.start})")


def refuse_yaml_aliases(text: str, shown: object) -> None:
    """Refuse YAML anchors and aliases, in time linear in the text (the scanner only, no data built)."""
    if "&" not in text:  # without an anchor there is nothing an alias could expand
        return
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError
    from ruamel.yaml.tokens import AliasToken, AnchorToken

    try:
        for token in YAML(typ="safe", pure=True).scan(text):
            if isinstance(token, (AnchorToken, AliasToken)):
                line = token.start_mark.line + 1
                raise InputError(f"{shown}:{line}", "YAML anchors and aliases are not accepted in node files")
    except YAMLError:
        return  # not valid YAML: the parser that follows says where and why


@dataclass(frozen=True)
class Composed:
    """A YAML text parsed once by the safe loader (`compose_yaml`)."""

    nodes: Tuple[Any, ...]  # every document's nodes, in order, up to `error`
    error: Optional[BaseException]  # what stopped the composing, if anything did
    first: Any  # the first document's data (None when there is no document)
    first_error: Optional[BaseException]  # what constructing the first document raised


def compose_yaml(text: str) -> Composed:
    """Every document's nodes and the first document's data, from one parse: a manifest is read both ways
    (its data by `parse_yaml`, its flags from the nodes), and parsing is most of an audit's time. The first
    document is constructed before the next one is read, as the loader's `load_all` does, so its data and
    its errors are the loader's; a later document's error is kept in `error`, for readers of every node."""
    from ruamel.yaml import YAML

    yaml = YAML(typ="safe", pure=True)
    nodes: List[Any] = []
    first, first_error = None, None
    try:
        for node in yaml.compose_all(text):
            nodes.append(node)
            if len(nodes) == 1:
                try:
                    first = yaml.constructor.construct_document(node)
                except Exception as exc:  # raised again to whoever asks for the data
                    first_error = exc
    except Exception as exc:  # raised again to whoever asks for the nodes (or the first document's data)
        return Composed(tuple(nodes), exc, first, first_error)
    return Composed(tuple(nodes), None, first, first_error)


def parse_yaml(text: str, shown: str, composed: Optional[Composed] = None) -> Any:
    """The first document of a node's YAML text, safely loaded; invalid YAML or an alias is an `InputError`
    naming `shown` (and the line). `composed`: the text's `compose_yaml`, when the caller has it."""
    from ruamel.yaml.error import MarkedYAMLError, YAMLError

    refuse_yaml_aliases(text, shown)
    composed = composed or compose_yaml(text)
    try:
        if composed.error is not None and not composed.nodes:
            raise composed.error
        if composed.first_error is not None:
            raise composed.first_error
        return composed.first
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        raise InputError(f"{shown}:{mark.line + 1}" if mark else shown,
                         f"invalid YAML: {exc.problem or exc.context or 'unparsable'}")
    except YAMLError as exc:
        raise InputError(shown, f"invalid YAML: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}")
    except RecursionError:  # the composer nests on the interpreter's stack
        raise InputError(shown, "invalid YAML: nested too deeply") from None


def parse_config_yaml(text: str, shown: str, composed: Optional[Composed] = None) -> Any:
    """`parse_yaml` of a configuration (a kubelet's config file or drop-in): refused when nested more than
    MAX_NESTING deep, past which merging drop-ins, the editor and its self-check run out of recursion."""
    from .bounds import MAX_NESTING, nesting_depth

    data = parse_yaml(text, shown, composed)
    if nesting_depth(data) > MAX_NESTING:
        raise InputError(shown, f"invalid YAML: nested more than {MAX_NESTING} deep")
    return data
