"""The fast "surely valid" of `cisfix.schemacheck` agrees with jsonschema (the reference, which writes every
message) on valid node configurations and checks, and on every one-value change of them: a document it
passes is one jsonschema passes, so skipping jsonschema for it changes nothing."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator, List, Tuple

import pytest
from jsonschema import Draft202012Validator

from cisfix.schema import _schema, load_documents
from cisfix.schemacheck import surely_valid

ROOT = Path(__file__).parent.parent
NODE_CONFIG = """\
apiVersion: cisfix/v1
kind: NodeConfig
distribution: kubeadm
version: v1.32.0
offline: false
benchmark: cis-1.12
nodeTypes: [master, worker]
proc: /proc
gate: {timeout: 120, stabilityWindow: 15, interval: 0.5, failureThreshold: 3}
retention: {days: 30, keep: 50}
drift: {flapLimit: 3, flapWindowHours: 24}
exceptions:
  - {id: '1.2.5', reason: 'accepted by the platform team, SEC-1', expires: 2031-01-31}
components:
  kube-apiserver:
    manifest: /etc/kubernetes/manifests/kube-apiserver.yaml
    process: kube-apiserver
    dependsOn: [etcd]
    health:
      url: [https://127.0.0.1:6443/livez, "https://[::1]:6443/livez"]
      caFile: /etc/kubernetes/pki/ca.crt
      certFile: /etc/kubernetes/pki/apiserver-kubelet-client.crt
      keyFile: /etc/kubernetes/pki/apiserver-kubelet-client.key
      portFlag: secure-port
  kubelet:
    config: /var/lib/kubelet/config.yaml
    flagFiles: [/var/lib/kubelet/kubeadm-flags.env]
    restart: [systemctl, restart, kubelet]
    unit: system.slice/kubelet.service
    log: /var/log/kubelet.log
    health: {url: 'http://127.0.0.1:10248/healthz', insecureSkipVerify: true, portPath: healthzPort}
    liveConfig: {url: 'https://127.0.0.1:10250/configz', kubeconfig: /etc/kubernetes/kubelet.conf}
"""
CHECKS = """\
apiVersion: cisfix/v1
kind: Check
id: ACME-4
title: The kubelet's cipher suites
benchmark: acme
level: 2
automated: true
nodeTypes: [worker]
component: kubelet
configPath: tlsCipherSuites
expect: {op: has, value: TLS_AES_128_GCM_SHA256, default: ''}
remediation: {add: TLS_AES_128_GCM_SHA256}
remediationText: add it
overrides: [4.2.12]
---
apiVersion: cisfix/v1
kind: Check
id: ACME-5
title: Audit log
component: kube-apiserver
flag: audit-log-maxage
expect: {op: gte, value: 30}
remediation: {unset: true}
"""
# Values of every type and edge, put in place of each value of a valid document in turn.
PROBES = [None, True, False, 0, 1, 1.0, 2.5, -1, 86401, float("inf"), float("nan"), "", "x", "/abs", "600",
          "owner", "mode", "eq", "a:b", "http://h:70000/", [], ["master"], ["master", "master"], [1], {},
          {"url": "http://h/"}, {"op": "mode"}]


def documents() -> List[Tuple[str, Any]]:
    docs = [("node-config", doc) for doc in load_documents(NODE_CONFIG)]
    for text in (CHECKS, (ROOT / "tests/data/checks/acme.yaml").read_text(),
                 (ROOT / "cisfix/checks.d/cisfix-node-hygiene.yaml").read_text()):
        docs += [("check", doc) for doc in load_documents(text)]
    return docs


def paths(value: Any, path: Tuple[Any, ...] = ()) -> Iterator[Tuple[Any, ...]]:
    yield path
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, child in items:
        yield from paths(child, path + (key,))


def changed(value: Any, path: Tuple[Any, ...], change) -> Any:
    """A copy of `value` with `change` applied to the container at `path[:-1]` (only the containers on
    the way are copied: the rest, round-trip scalars included, is shared)."""
    copied = dict(value) if isinstance(value, dict) else list(value)
    if len(path) == 1:
        change(copied, path[0])
    else:
        copied[path[0]] = changed(value[path[0]], path[1:], change)
    return copied


def variants(doc: Any) -> Iterator[Any]:
    """The document with one value replaced by each probe, one key removed, or one key added."""
    for path in paths(doc):
        if not path:
            yield from PROBES
            continue
        for probe in PROBES:
            yield changed(doc, path, lambda parent, key: parent.__setitem__(key, probe))
        yield changed(doc, path, lambda parent, key: parent.__delitem__(key))
        yield changed(doc, path, lambda parent, key: isinstance(parent, dict) and parent.__setitem__("unknownField", 1))


@pytest.mark.parametrize("schema, doc", documents(), ids=lambda v: v if isinstance(v, str) else "")
def test_fast_check_agrees_with_jsonschema(schema, doc):
    reference = Draft202012Validator(_schema(schema))
    assert surely_valid(doc, _schema(schema)) and reference.is_valid(doc)
    disagree = [v for v in variants(doc) if surely_valid(v, _schema(schema)) != reference.is_valid(v)]
    assert not disagree, disagree[:3]


def test_keywords_it_does_not_know_are_left_to_jsonschema():
    assert not surely_valid("x", {"type": "string", "format": "email"})
    assert not surely_valid({"a": 1}, {"patternProperties": {"^a$": {}}, "additionalProperties": False})
    assert not surely_valid(1, {"$ref": "https://example.com/schema"})
    assert surely_valid(1, {"type": "integer", "description": "an annotation only"})
