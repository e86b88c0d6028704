"""Commands root runs (a component's restart command, the older runner's audit scripts), checked like a
plugin file before they run.

A command is named by its absolute path, or by a bare name looked up in a fixed search path — never the
caller's PATH, which root may have inherited from anyone's shell. The executable's real path and every
directory on the way must be trusted (`cisfix.trust`): a script another user could write, or swap, is
refused with one line and never run. It is then run by that real path, with the same fixed PATH.
"""
from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

from .errors import InputError
from .trust import require_trusted_dir, require_trusted_file, trusted_realpath

SEARCH_PATH = ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin")


class CommandRefused(InputError):
    """A command root would run is missing, or another user could have written it: it is not run."""


def trusted_command(argv: Sequence[str], what: str) -> List[str]:
    """`argv` with its program replaced by the real path of a trusted executable. `what` says whose
    command it is (`kubelet's restart command`); it ends every refusal."""
    why = f"; not running {what}"
    if not argv or not argv[0]:
        raise CommandRefused(what, "is empty; nothing to run")
    name = argv[0]
    if "/" in name and not name.startswith("/"):
        raise CommandRefused(name, f"a relative path: name a command by its absolute path or a bare name{why}")
    for candidate in [Path(name)] if "/" in name else [Path(folder, name) for folder in SEARCH_PATH]:
        found = _trusted_file(candidate, why)
        if found is None:
            continue
        real, st = found
        if not st.st_mode & (stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH):
            raise CommandRefused(candidate, f"is not executable{why}")
        for argument in argv[1:]:
            _require_trusted_argument(argument, why)
        return [str(real), *argv[1:]]
    where = "no such file" if "/" in name else f"no such command in {':'.join(SEARCH_PATH)}"
    raise CommandRefused(name, f"{where}{why}")


def _require_trusted_argument(argument: str, why: str) -> None:
    """A path among the arguments may be what really runs (`sh /x/restart.sh`, `env python3 /x/y.py`,
    `--config=/x/c`): where one names a file or folder, it must pass the trust rule too. Commands run
    from `/`, so a relative path is read from there."""
    for value in {argument, argument.partition("=")[2]}:
        if "/" not in value or "\0" in value:
            continue
        path = Path("/", value)
        try:
            real = trusted_realpath(path, CommandRefused, why)
            is_dir = stat.S_ISDIR(os.stat(real).st_mode)
        except (FileNotFoundError, NotADirectoryError):
            continue  # names nothing here (a unit, a URL path): nothing of another user's can run
        except OSError as exc:
            raise CommandRefused(path, f"{exc.strerror}{why}")
        if is_dir:
            require_trusted_dir(path, CommandRefused, why)
        else:
            _trusted_file(path, why)  # refuses a file another user could write


def trusted_script(path: Path, what: str, interpreter: str = "bash") -> List[str]:
    """How to run the script `path` (absolute): itself when it is executable, else by `interpreter` —
    the script trusted either way, since its text is what runs."""
    found = _trusted_file(path, f"; not running {what}")
    if found is None:
        raise CommandRefused(path, f"no such file; not running {what}")
    real, st = found
    if st.st_mode & (stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH):
        return [str(real)]
    return [*trusted_command([interpreter], f"{interpreter} for {what}"), str(real)]


def _trusted_file(path: Path, why: str) -> Optional[Tuple[Path, os.stat_result]]:
    """(real path, status) of a regular file whose every directory and itself pass the trust rule;
    None when there is no such file."""
    real = trusted_realpath(path, CommandRefused, why)
    try:
        fd = os.open(real, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise CommandRefused(path, f"{exc.strerror}{why}")
    try:
        return real, require_trusted_file(fd, path, CommandRefused, why)
    finally:
        os.close(fd)


def run_trusted(argv: Sequence[str], what: str, timeout: float) -> int:
    """Run a trusted command (see `trusted_command`) without input or output; its exit status (124,
    as timeout(1) says it, when it did not end within `timeout` seconds and was killed)."""
    command = trusted_command(argv, what)
    environment = {**os.environ, "PATH": ":".join(SEARCH_PATH)}
    try:
        return subprocess.run(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              env=environment, cwd="/", timeout=timeout, check=False).returncode
    except subprocess.TimeoutExpired:
        return 124
    except OSError as exc:  # trusted, yet the kernel will not run it (no #! line, a foreign binary)
        raise CommandRefused(command[0], f"cannot be run: {exc.strerror}; not running {what}")


def output_of_trusted(argv: Sequence[str], what: str, timeout: float, limit: int = 4096) -> Optional[str]:
    """The first `limit` bytes a trusted command (see `trusted_command`) writes to its standard output,
    as text; None when it fails, does not end within `timeout` seconds, or cannot be run. For a
    question asked of a program (`kubelet --version`), whose answer is optional."""
    try:
        command = trusted_command(argv, what)
    except CommandRefused:
        return None
    environment = {**os.environ, "PATH": ":".join(SEARCH_PATH)}
    try:
        with subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                              env=environment, cwd="/") as process:
            try:
                # At most `limit` bytes are read: a program that floods its output is killed, not buffered.
                out = _bounded(process, limit, timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                return None
            return out.decode("utf-8", "replace") if process.returncode == 0 else None
    except OSError:
        return None


def _bounded(process: "subprocess.Popen", limit: int, timeout: float) -> bytes:
    """Up to `limit` bytes of the process's output, then its exit (killed when it is not over in `timeout`)."""
    import selectors
    import time

    deadline, data = time.monotonic() + timeout, b""
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        while len(data) < limit:
            left = deadline - time.monotonic()
            if left <= 0 or not selector.select(left):
                raise subprocess.TimeoutExpired(process.args, timeout)
            chunk = os.read(process.stdout.fileno(), limit - len(data))
            if not chunk:
                break
            data += chunk
    if len(data) >= limit:
        process.kill()
    process.wait(timeout=max(deadline - time.monotonic(), 0.1))
    return data
