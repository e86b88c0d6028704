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
