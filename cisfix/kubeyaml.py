"""YAML as Kubernetes tools write it (sigs.k8s.io/yaml): keys sorted, block style, lists not indented,
no line wrapping; and read back by them as written.

The tools that read what this writes (kubeadm, the kubelet, kubectl: sigs.k8s.io/yaml, on go-yaml v2)
resolve plain scalars by YAML 1.1's rules, where `yes`, `on`, `n`, `~`, `0x1f`, `017`, `1:30` or
`2001-12-14` are no strings. ruamel writes YAML 1.2, where they are, and so leaves them unquoted: a string
value `"on"` would come back to kubeadm as the boolean true. Every string that a YAML 1.1 or 1.2 reader
would not read back as a string is therefore quoted, as go-yaml's own encoder quotes it.
"""
from __future__ import annotations

import io
from functools import lru_cache
from typing import Any

_STR = "tag:yaml.org,2002:str"


@lru_cache(maxsize=None)
def _resolvers() -> tuple:
    from ruamel.yaml.resolver import VersionedResolver

    return VersionedResolver(version=(1, 1)), VersionedResolver(version=(1, 2))


def is_plain_string(text: str) -> bool:
    """Whether `text`, written unquoted, is read back as that string by YAML 1.1 and 1.2 readers alike."""
    from ruamel.yaml.nodes import ScalarNode

    return all(r.resolve(ScalarNode, text, (True, False)) == _STR for r in _resolvers())


@lru_cache(maxsize=None)
def _representer() -> type:
    """ruamel's safe representer with strings quoted where needed (a subclass: registering on ruamel's
    own class would change every other safe dump of the process)."""
    from ruamel.yaml.representer import SafeRepresenter

    class KubeRepresenter(SafeRepresenter):
        def represent_str(self, data: str) -> Any:
            if not is_plain_string(data):
                return self.represent_scalar(_STR, data, style="'")
            return super().represent_str(data)

    KubeRepresenter.add_representer(str, KubeRepresenter.represent_str)
    return KubeRepresenter


def dump(data: Any) -> str:
    from ruamel.yaml import YAML

    yaml = YAML(typ="safe", pure=True)
    yaml.default_flow_style = False
    yaml.width = 4096
    yaml.indent(mapping=2, sequence=2, offset=0)
    yaml.Representer = _representer()
    out = io.StringIO()
    yaml.dump(data, out)
    return out.getvalue()
