"""Errors that end a command, each carrying the exit code the CLI returns for it."""
from __future__ import annotations

from . import status


class CisfixError(Exception):
    """A failure reported to the user as one line; nothing on disk was changed."""

    exit_code = status.EXIT_INPUT


class InputError(CisfixError):
    """Bad input: the message names the file and the reason."""

    def __init__(self, path: object, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason


class EditError(ValueError):
    """An editor cannot make the requested change; the caller adds the file name."""


class LockHeld(CisfixError):
    exit_code = status.EXIT_LOCKED
