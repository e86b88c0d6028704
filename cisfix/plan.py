"""Edits as data: what a plugin or the CLI asks for, before the core applies it.

Every operation is a small frozen dataclass. Editors turn a file's text plus a list of operations into
new text; only the transaction writes it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Union


@dataclass(frozen=True)
class SetFlag:
    """`--name=value` on the component's command line (value None: a bare `--name`)."""

    name: str
    value: Optional[str]


@dataclass(frozen=True)
class RemoveFlag:
    """Remove every occurrence of `--name`."""

    name: str


@dataclass(frozen=True)
class AddFlagItem:
    """Add `item` to the comma-separated value of `--name` (setting the flag if absent)."""

    name: str
    item: str


@dataclass(frozen=True)
class RemoveFlagItem:
    """Remove `item` from the comma-separated value of `--name`."""

    name: str
    item: str


@dataclass(frozen=True)
class AddHostPathMount:
    """An operation for `EditFile` on a static pod manifest: mount a host path into the component's
    container (a `hostPath` volume plus a `volumeMount`), unless it is mounted already."""

    name: str
    host_path: str
    mount_path: str
    read_only: bool = True
    type: str = "DirectoryOrCreate"


@dataclass(frozen=True)
class SetPath:
    """Set a dotted path (`authentication.anonymous.enabled`) in a YAML mapping, creating maps."""

    path: str
    value: Any


@dataclass(frozen=True)
class UnsetPath:
    """Delete a dotted path from a YAML mapping."""

    path: str


@dataclass(frozen=True)
class SetSetting:
    """A setting known as a flag (`--read-only-port`) and/or a config-file path (`readOnlyPort`): set
    where it takes effect, as the component's layout says (value None: unset it, so the default applies)."""

    flag: Optional[str]
    path: Optional[str]
    value: Any


FlagOp = Union[SetFlag, RemoveFlag, AddFlagItem, RemoveFlagItem]
# What the static pod manifest editor (`cisfix.editors.manifest.edit_flags`) accepts.
ManifestOp = Union[FlagOp, AddHostPathMount]
PathOp = Union[SetPath, UnsetPath]
# What a change of a component's settings (`cisfix.types.Configure`) may hold.
SettingOp = Union[FlagOp, SetSetting, AddHostPathMount]


@dataclass(frozen=True)
class Edited:
    """An editor's answer: the new text (identical to the input when nothing had to change) and one
    human-readable note per change made."""

    text: str
    notes: tuple = ()

    def changed(self, original: str) -> bool:
        return self.text != original
