"""The node configuration file `<root>/etc/cisfix/config.yaml`: how a node deviates from kubeadm's layout.

    apiVersion: cisfix/v1
    kind: NodeConfig
    proc: /proc                      # host path of the proc file system (default <root>/proc)
    components:
      kube-apiserver:
        manifest: /srv/manifests/kube-apiserver.yaml
        process: kube-apiserver      # executable name in /proc/<pid>/cmdline
      kubelet:
        config: /var/lib/kubelet/config.yaml
        restart: [systemctl, restart, kubelet]

The schema is `cisfix/schemas/node-config.schema.json`; an invalid file is an input error naming its line.
"""
from __future__ import annotations

import copy
from pathlib import Path

from . import sources
from .errors import InputError
from .node import Node
from .nodefile import decode_text, refuse_yaml_aliases
from .schema import DocumentError, load_documents, validate
from .trust import read_trusted
from .yamlvalues import plain

CONFIG_PATH = "/etc/cisfix/config.yaml"


def load_node_config(node: Node) -> dict:
    path = node.host(node.resolve(CONFIG_PATH))
    try:  # it names commands root runs (`restart`): only root may have written it
        data = read_trusted(path, InputError, "; refusing the node configuration")
    except FileNotFoundError:
        return {}
    # Parsed and validated once per run, however many times a run asks (see `cisfix.sources`); each
    # caller gets its own copy, so none can change what the next one reads.
    return copy.deepcopy(sources.parsed(path, data, None, "node-config", lambda data: _parse(data, path)))


def _parse(data: bytes, path: Path) -> dict:
    text = decode_text(data, path)
    refuse_yaml_aliases(text, path)
    try:
        docs = load_documents(text)
    except DocumentError as exc:
        raise InputError(f"{path}:{exc.line}", exc.message)
    if len(docs) != 1:
        raise InputError(path, f"expected one YAML document, found {len(docs)}")
    problems = validate(docs[0], "node-config")
    if problems:
        line, message = problems[0]
        raise InputError(f"{path}:{line}", message)
    return plain(docs[0])
