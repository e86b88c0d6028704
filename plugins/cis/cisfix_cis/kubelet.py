"""How the kubelet is configured, as the kubelet itself sees it: the core's component settings
(`cisfix.settings`: its command line — the live process's, else the one systemd builds from the flag
files — over the config file that `--config` names)."""
from __future__ import annotations

from cisfix.settings import Settings
from cisfix.state import NodeState

COMPONENT = "kubelet"


def view(state: NodeState) -> Settings:
    """The kubelet's effective flags and config file (read once per NodeState)."""
    return state.settings(COMPONENT)


def without_config_file(state: NodeState) -> bool:
    """Does the kubelet run on flags alone: its command line (the live process's, else the one its flag
    files give) is known and names neither a config file (--config) nor a drop-in folder (--config-dir)?
    Such a kubelet keeps its flags' legacy defaults (kubelet `applyLegacyDefaults`)."""
    settings = view(state)
    if not (settings.running or settings.file_flags):
        return False
    names = {state.component(COMPONENT).config_flag or "config", "config-dir"}
    return not any(settings.flags.get(name) for name in names)
