"""YAML as Kubernetes tools write it (sigs.k8s.io/yaml): keys sorted, block style, lists not indented,
no line wrapping."""
from __future__ import annotations

import io
from typing import Any


def dump(data: Any) -> str:
    from ruamel.yaml import YAML

    yaml = YAML(typ="safe", pure=True)
    yaml.default_flow_style = False
    yaml.width = 4096
    yaml.indent(mapping=2, sequence=2, offset=0)
    out = io.StringIO()
    yaml.dump(data, out)
    return out.getvalue()
