"""How etcd is configured, as etcd itself sees it: its flags, or, when it runs with `--config-file`
(RKE2 and k3s start it so), that YAML file — etcd then ignores its other flags. The file's keys are the
flags' names, except that the TLS settings are nested under `client-transport-security` and
`peer-transport-security` (etcd's etcd.conf.yml.sample; kube-bench's rke2-cis-1.8 etcd checks read them
there): they are given here under their flag names (`cert-file`, `peer-cert-file`, ...)."""
from __future__ import annotations

from typing import Any, Dict, Optional

from cisfix.state import NodeState

COMPONENT = "etcd"
_TLS = {"client-transport-security": "", "peer-transport-security": "peer-"}


def settings(state: NodeState, flags: Dict[str, Optional[str]]) -> Dict[str, Optional[str]]:
    """etcd's effective settings by flag name, from its command line `flags`."""
    path = flags.get("config-file")
    data = state.yaml(path) if path else None
    if not isinstance(data, dict):
        return flags
    found: Dict[str, Optional[str]] = {"config-file": path}
    for key, value in data.items():
        if not isinstance(value, (dict, list)):
            found[str(key)] = _text(value)
    for section, prefix in _TLS.items():  # the nested TLS settings win over top-level keys of the same name
        nested = data.get(section)
        if isinstance(nested, dict):
            found.update({prefix + str(k): _text(v) for k, v in nested.items() if not isinstance(v, (dict, list))})
    return found


def _text(value: Any) -> Optional[str]:
    """A YAML value as etcd's flag would spell it (true, not True)."""
    if value is None:
        return None
    return str(value).lower() if isinstance(value, bool) else str(value)
