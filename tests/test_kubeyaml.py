"""cisfix.kubeyaml.dump writes what kubeadm and the kubelet read back as written: they read YAML 1.1
(sigs.k8s.io/yaml on go-yaml v2), where `yes`, `off`, `~` or `017` are no strings."""
from __future__ import annotations

import pytest
from ruamel.yaml import YAML

from cisfix.kubeyaml import dump

# Every kind of plain scalar YAML 1.1 resolves to something else than a string.
TOKENS = ["yes", "Yes", "YES", "no", "No", "NO", "y", "Y", "n", "N", "on", "On", "ON", "off", "Off", "OFF",
          "true", "True", "FALSE", "~", "null", "Null", "NULL", "", "0", "123", "-7", "+12", "0x1f", "017",
          "0b101", "1_000", "1:30", "1.5", "1.5e3", "6.8523015e+5", ".inf", "-.Inf", ".nan", "2001-12-14",
          "2001-12-14t21:59:43.10-05:00", "=", "<<"]


def yaml11(text: str):
    reader = YAML(typ="safe", pure=True)
    reader.version = (1, 1)
    return reader.load(text)


@pytest.mark.parametrize("token", TOKENS)
def test_a_string_that_yaml_1_1_would_read_as_another_type_is_quoted(token):
    data = {"value": token, "list": [token], token or "empty": "key"}
    text = dump(data)
    assert yaml11(text) == data, text
    assert YAML(typ="safe", pure=True).load(text) == data  # and YAML 1.2 reads the same


def test_plain_strings_and_other_types_are_written_as_before():
    text = dump({"mode": "Webhook", "path": "/etc/kubernetes/pki/ca.crt", "enabled": False, "port": 10250,
                 "nothing": None, "flags": ["--profiling=false"]})
    assert text == ("enabled: false\nflags:\n- --profiling=false\nmode: Webhook\nnothing: null\n"
                    "path: /etc/kubernetes/pki/ca.crt\nport: 10250\n")
