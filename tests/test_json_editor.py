"""The byte-faithful JSON editor (`cisfix.editors.jsontext`, reached through `cisfix.editors.config`):
every kubelet config of the corpus dumped as JSON in the layouts tools write (2 and 4 spaces, tabs, one
line, CRLF), edited with the CIS kubelet settings: the result reads back as exactly the intended data and
only the lines of the edited keys change. Files shaped as EKS writes them (AL2's kubelet-config.json,
AL2023 nodeadm's config.json) are edited byte for byte; duplicate keys, big integers and bad JSON as Go's
encoding/json has them."""
from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any, List

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ruamel.yaml import YAML

from corpus import changed_lines, corpus_files

from cisfix.editors.config import edit_paths, read_path, split_path
from cisfix.editors.jsontext import is_json
from cisfix.editors.yamltext import same_data
from cisfix.errors import EditError, InputError
from cisfix.plan import SetPath, UnsetPath

KIND = "KubeletConfiguration"

CIS_EDITS = [
    SetPath("authentication.anonymous.enabled", False),
    SetPath("readOnlyPort", 0),
    SetPath("featureGates.RotateKubeletServerCertificate", True),
    SetPath("eventRecordQPS", 5),
    SetPath("streamingConnectionIdleTimeout", "4h0m0s"),
    SetPath("makeIPTablesUtilChains", True),
    SetPath("rotateCertificates", True),
    UnsetPath("address"),
]


def dump(data: Any, style: str) -> str:
    """`data` as a tool writes it: Go's json.MarshalIndent (nodeadm: 4 spaces), 2 spaces, tabs, one
    line as json.Marshal or Python write it, and 2 spaces with CRLF."""
    if style == "compact":
        return json.dumps(data, separators=(",", ":"))
    if style == "python-line":
        return json.dumps(data) + "\n"
    indent = {"indent2": 2, "indent4": 4, "tab": "\t", "crlf": 2}[style]
    text = json.dumps(data, indent=indent, separators=(",", ": ")) + "\n"
    return text.replace("\n", "\r\n") if style == "crlf" else text


STYLES = ["indent2", "indent4", "tab", "compact", "python-line", "crlf"]


def apply(data: dict, ops: List[Any]) -> dict:
    """The operations on plain data: what the edited file must read back as."""
    data = copy.deepcopy(data)
    for op in ops:
        *parents, last = split_path(op.path)
        node = data
        for part in parents:
            if part not in node:
                if isinstance(op, UnsetPath):
                    break
                node[part] = {}
            node = node[part]
        else:
            if isinstance(op, SetPath):
                node[last] = copy.deepcopy(op.value)
            else:
                node.pop(last, None)
    return data


def assert_only_edited_lines_changed(old: str, new: str, ops: List[Any]) -> None:
    """Every line that changed names a key of an edited path, or only gained or lost the comma after a
    member because a sibling was added or removed after it; every other member is byte for byte."""
    # Without the edited top-level keys the texts are the same: no other member's bytes changed.
    untouched = [UnsetPath(key) for key in {split_path(op.path)[0] for op in ops}]
    assert edit_paths(old, untouched).text == edit_paths(new, untouched).text
    if "\n" not in old.rstrip("\r\n"):
        return  # one line: the line changed, and the comparison above is the whole story
    keys = {f'"{part}"' for op in ops for part in split_path(op.path)}
    removed, added = changed_lines(old, new)
    for line in removed:
        if any(key in line for key in keys):
            continue
        bare = line.rstrip("\r\n")
        assert any(a.rstrip("\r\n") in (bare + ",", bare[:-1]) for a in added), f"unrelated line changed: {line!r}"


def kubelet_documents(path: Path) -> List[dict]:
    if path.suffix not in (".yaml", ".yml"):
        return []
    docs = list(YAML(typ="safe", pure=True).load_all(path.read_text(encoding="utf-8")))
    return [d for d in docs if isinstance(d, dict) and d.get("kind") == KIND]


@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize("path", [p for p in corpus_files("kubelet") if p.values[0] is None
                                  or kubelet_documents(p.values[0])])
def test_every_corpus_kubelet_config_as_json_takes_the_cis_edits(path: Path, style: str) -> None:
    for data in kubelet_documents(path):
        text = dump(data, style)
        assert is_json(text)
        result = edit_paths(text, CIS_EDITS, KIND)
        assert same_data(json.loads(result.text), apply(data, CIS_EDITS))
        assert_only_edited_lines_changed(text, result.text, CIS_EDITS)
        assert edit_paths(result.text, CIS_EDITS, KIND).text == result.text  # nothing left to change
        if style == "crlf":
            assert "\n" not in result.text.replace("\r\n", "")


# An AL2023 node as nodeadm writes it: json.MarshalIndent with 4 spaces, no final newline
# (nodeadm/internal/kubelet/config.go writes the marshalled bytes as they are).
AL2023 = """{
    "kind": "KubeletConfiguration",
    "apiVersion": "kubelet.config.k8s.io/v1beta1",
    "address": "0.0.0.0",
    "authentication": {
        "anonymous": {
            "enabled": true
        },
        "webhook": {
            "cacheTTL": "2m0s",
            "enabled": true
        },
        "x509": {
            "clientCAFile": "/etc/kubernetes/pki/ca.crt"
        }
    },
    "authorization": {
        "mode": "Webhook"
    },
    "clusterDomain": "cluster.local",
    "readOnlyPort": 10255,
    "featureGates": {},
    "clusterDNS": [
        "10.100.0.10"
    ],
    "evictionHard": {
        "memory.available": "100Mi"
    },
    "maxPods": 58
}"""


def test_al2023_config_json_is_edited_byte_for_byte() -> None:
    result = edit_paths(AL2023, [SetPath("authentication.anonymous.enabled", False), SetPath("readOnlyPort", 0),
                                 SetPath("featureGates.RotateKubeletServerCertificate", True),
                                 SetPath("evictionHard.\"nodefs.available\"", "10%")], KIND)
    expected = (AL2023.replace('"enabled": true\n        },\n        "webhook"', '"enabled": false\n        },\n        "webhook"')
                .replace('"readOnlyPort": 10255', '"readOnlyPort": 0')
                .replace('"featureGates": {}', '"featureGates": {\n        "RotateKubeletServerCertificate": true\n    }')
                .replace('"memory.available": "100Mi"\n', '"memory.available": "100Mi",\n        "nodefs.available": "10%"\n'))
    assert result.text == expected
    assert result.notes == ("set authentication.anonymous.enabled: false (was true)", "set readOnlyPort: 0 (was 10255)",
                            "added featureGates.RotateKubeletServerCertificate: true",
                            'added evictionHard."nodefs.available": 10%')


# AL2's kubelet-config.json (templates/al2/runtime/kubelet-config.json): 2 spaces, a final newline.
AL2 = """{
  "kind": "KubeletConfiguration",
  "apiVersion": "kubelet.config.k8s.io/v1beta1",
  "address": "0.0.0.0",
  "authentication": {
    "anonymous": {
      "enabled": false
    },
    "webhook": {
      "cacheTTL": "2m0s",
      "enabled": true
    }
  },
  "clusterDomain": "cluster.local",
  "hairpinMode": "hairpin-veth",
  "cgroupDriver": "cgroupfs",
  "featureGates": {
    "RotateKubeletServerCertificate": true
  },
  "serverTLSBootstrap": true
}
"""


def test_al2_kubelet_config_json_gets_new_keys_in_its_own_layout_and_loses_one_cleanly() -> None:
    result = edit_paths(AL2, [SetPath("eventRecordQPS", 0), SetPath("tlsCipherSuites", ["TLS_A", "TLS_B"]),
                              SetPath("authorization.mode", "Webhook"), UnsetPath("serverTLSBootstrap")], KIND)
    assert result.text == AL2.replace('''  },
  "serverTLSBootstrap": true
}''', '''  },
  "eventRecordQPS": 0,
  "tlsCipherSuites": [
    "TLS_A",
    "TLS_B"
  ],
  "authorization": {
    "mode": "Webhook"
  }
}''')


@pytest.mark.parametrize("text, path, expected", [
    ('{"a": 1, "b": 2}', "a", '{"b": 2}'),
    ('{"a": 1, "b": 2}', "b", '{"a": 1}'),
    ('{"a":1,"b":2,"c":3}', "b", '{"a":1,"c":3}'),
    ('{\n\t"a": 1,\n\t"b": 2\n}\n', "b", '{\n\t"a": 1\n}\n'),
    ('{\n  "a": {\n    "x": 1\n  },\n  "b": 2\n}\n', "a.x", '{\n  "a": {},\n  "b": 2\n}\n'),
])
def test_unset_removes_the_member_and_leaves_the_commas_right(text: str, path: str, expected: str) -> None:
    assert edit_paths(text, [UnsetPath(path)]).text == expected


def test_tabs_and_empty_objects_take_the_files_unit() -> None:
    text = '{\r\n\t"kind": "KubeletConfiguration",\r\n\t"featureGates": {}\r\n}\r\n'
    result = edit_paths(text, [SetPath("featureGates.A", True), SetPath("authentication.anonymous.enabled", False)])
    assert result.text == ('{\r\n\t"kind": "KubeletConfiguration",\r\n\t"featureGates": {\r\n\t\t"A": true\r\n\t},\r\n'
                           '\t"authentication": {\r\n\t\t"anonymous": {\r\n\t\t\t"enabled": false\r\n\t\t}\r\n\t}\r\n}\r\n')


def test_values_are_typed_as_json() -> None:
    result = edit_paths('{"a": "x"}', [SetPath("a", 1.5), SetPath("b", None), SetPath("c", {"k": [True, "s"]}),
                                       SetPath("d", "on"), SetPath("e", 12345678901234567890)])
    assert result.text == '{"a": 1.5, "b": null, "c": {"k": [true, "s"]}, "d": "on", "e": 12345678901234567890}'


def test_duplicate_keys_read_and_edit_the_last_as_go_does() -> None:
    text = '{"readOnlyPort": 0, "x": 1, "readOnlyPort": 10255}'
    assert read_path(text, "readOnlyPort") == (True, 10255)
    assert edit_paths(text, [SetPath("readOnlyPort", 0)]).text == '{"readOnlyPort": 0, "x": 1, "readOnlyPort": 0}'
    # a removal removes every occurrence: the one before it would decide otherwise
    assert edit_paths(text, [UnsetPath("readOnlyPort")]).text == '{"x": 1}'


def test_big_integers_and_tabs_read_as_go_reads_them(tmp_path: Path) -> None:
    from cisfix.node import Node
    from cisfix.state import NodeState
    from cisfix.types import NodeInfo

    (tmp_path / "config.json").write_text('{\n\t"podPidsLimit": 9223372036854775807,\n\t"a": 1,\n\t"a": 2\n}\n')
    data = NodeState(Node(str(tmp_path)), NodeInfo()).yaml("/config.json")
    assert data == {"podPidsLimit": 9223372036854775807, "a": 2}


@pytest.mark.parametrize("text, line, reason", [
    ('{\n  "a": 1,\n}\n', 3, "expected a double-quoted key"),
    ('{\n  "a": NaN\n}', 2, "unexpected 'N'"),
    ('{\n  "a": 1\n}\n{}', 4, "data after the document's end"),
    ('{\n  "a": [1,\n', 3, "unexpected end of text"),
    ('{\n  "a": "tab\there"\n}', 2, "Invalid control character"),
])
def test_bad_json_is_one_line_naming_the_file_and_line(tmp_path: Path, text: str, line: int, reason: str) -> None:
    from cisfix.node import Node
    from cisfix.state import NodeState
    from cisfix.types import NodeInfo

    with pytest.raises(EditError, match=f"invalid JSON at line {line}: {reason}"):
        edit_paths(text, [SetPath("a", 2)])
    (tmp_path / "kubelet.json").write_text(text)
    with pytest.raises(InputError) as caught:
        NodeState(Node(str(tmp_path)), NodeInfo()).yaml("/kubelet.json")
    assert str(caught.value).endswith(f"/kubelet.json:{line}: invalid JSON: {reason}")
    assert "\n" not in str(caught.value)


def test_a_document_of_another_kind_is_refused_and_one_without_kind_is_edited() -> None:
    with pytest.raises(EditError, match="kind is Pod, not KubeletConfiguration"):
        edit_paths('{"kind": "Pod"}', [SetPath("a", 1)], KIND)
    assert edit_paths('{"logging": {}}', [SetPath("a", 1)], KIND).text == '{"logging": {}, "a": 1}'


def test_a_path_through_a_scalar_or_list_is_refused() -> None:
    with pytest.raises(EditError, match="a is a scalar, not a mapping"):
        edit_paths('{"a": 1}', [SetPath("a.b", 1)])
    with pytest.raises(EditError, match="a is a list, not a mapping"):
        edit_paths('{"a": [1]}', [SetPath("a.b", 1)])
    with pytest.raises(EditError, match="can only be replaced with a mapping"):
        edit_paths('{"a": {"b": 1}}', [SetPath("a", 1)])


def test_deep_nesting_is_linear_and_needs_no_stack() -> None:
    deep = '{"a": ' + "[" * 50000 + "]" * 50000 + ', "b": 1}'
    with pytest.raises(EditError):  # the data cannot be built by the stdlib this deep: said, not crashed
        edit_paths(deep, [SetPath("b", 2)])
    wide = "{" + ", ".join(f'"k{i}": {i}' for i in range(50000)) + "}"
    assert edit_paths(wide, [SetPath("k49999", 0)]).text.endswith('"k49999": 0}')


KEYS = st.sampled_from(["a", "b", "c", "kind", "x.y"])
SCALARS = st.one_of(st.booleans(), st.integers(), st.floats(allow_nan=False, allow_infinity=False),
                    st.text(max_size=5), st.none())
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                       st.dictionaries(KEYS, inner, max_size=3)), max_leaves=8)
DOCS = st.dictionaries(KEYS, VALUES, max_size=5)


def _quoted(parts: List[str]) -> str:
    return ".".join(f'"{p}"' if "." in p else p for p in parts)


OPS = st.lists(st.one_of(
    st.builds(lambda parts, value: SetPath(_quoted(parts), value), st.lists(KEYS, min_size=1, max_size=3), VALUES),
    st.builds(lambda parts: UnsetPath(_quoted(parts)), st.lists(KEYS, min_size=1, max_size=3))), min_size=1, max_size=4)


def _through_non_mapping(data: dict, ops: List[Any]) -> bool:
    """Would an operation go through a value that is no mapping (which the editor refuses)?"""
    for op in ops:
        node = data
        for part in split_path(op.path)[:-1]:
            if part not in node:
                break
            node = node[part]
            if not isinstance(node, dict):
                return True
        else:
            if isinstance(op, SetPath) and isinstance(node, dict):
                old = node.get(split_path(op.path)[-1])
                if isinstance(old, (dict, list)) and not isinstance(op.value, type(old)):
                    return True
        data = apply(data, [op])
    return False


@settings(max_examples=300, deadline=None)
@given(data=DOCS, ops=OPS, style=st.sampled_from(STYLES))
def test_any_document_any_edits_read_back_as_intended(data: dict, ops: List[Any], style: str) -> None:
    text = dump(data, style)
    if _through_non_mapping(data, ops):
        with pytest.raises(EditError):
            edit_paths(text, ops)
        return
    result = edit_paths(text, ops)
    assert same_data(json.loads(result.text), apply(data, ops))
    # again: the same data (an unset then set key may move to the end)
    if not _through_non_mapping(apply(data, ops), ops):
        again = json.loads(edit_paths(result.text, ops).text)
        assert json.dumps(again, sort_keys=True) == json.dumps(json.loads(result.text), sort_keys=True)
    if result.text != text:
        assert result.text.endswith("\n") == text.endswith("\n")


def test_a_key_duplicated_thousands_of_times_is_removed_in_one_pass() -> None:
    """One parse for the removal, not one per occurrence: 20,000 duplicates (400 KB) took hours."""
    text = '{\n  "kind": "KubeletConfiguration",\n' + "".join('  "eventRecordQPS": 5,\n' for _ in range(20000)) + '  "x": 1\n}\n'
    result = edit_paths(text, [UnsetPath("eventRecordQPS")], KIND)
    assert result.text == '{\n  "kind": "KubeletConfiguration",\n  "x": 1\n}\n'
    assert result.notes == ("removed eventRecordQPS",)


@settings(max_examples=300, deadline=None)
@given(keys=st.lists(st.sampled_from(["a", "b", "c"]), min_size=1, max_size=6), one_line=st.booleans())
def test_removing_every_occurrence_at_once_is_removing_them_one_by_one(keys: List[str], one_line: bool) -> None:
    from cisfix.editors import jsontext

    sep = ", " if one_line else ",\n  "
    text = "{" + ("" if one_line else "\n  ") + sep.join(f'"{k}": {i}' for i, k in enumerate(keys)) + ("}" if one_line else "\n}")
    indices = [i for i, k in enumerate(keys) if k == "a"]
    expected = text
    for index in reversed(indices):
        expected = jsontext.remove_member(expected, jsontext.parse(expected).root, index)
    assert jsontext.remove_members(text, jsontext.parse(text).root, indices) == expected
    json.loads(expected)


def test_a_repeated_object_is_merged_as_go_decodes_it_and_a_removal_reaches_every_occurrence() -> None:
    """encoding/json decodes a repeated object into the struct or map it filled already (golang/go#24415):
    the kubelet keeps the first `featureGates`' gates that the second does not name."""
    text = '{"featureGates": {"RotateKubeletServerCertificate": false, "A": true}, "x": 1, "featureGates": {"B": true}}'
    assert read_path(text, "featureGates") == (True, {"RotateKubeletServerCertificate": False, "A": True, "B": True})
    assert read_path(text, "featureGates.RotateKubeletServerCertificate") == (True, False)
    assert edit_paths(text, [SetPath("featureGates.RotateKubeletServerCertificate", True)]).text == (
        '{"featureGates": {"RotateKubeletServerCertificate": false, "A": true}, "x": 1, '
        '"featureGates": {"B": true, "RotateKubeletServerCertificate": true}}')
    assert edit_paths(text, [UnsetPath("featureGates.RotateKubeletServerCertificate")]).text == (
        '{"featureGates": {"A": true}, "x": 1, "featureGates": {"B": true}}')
    assert read_path('{"a": {"b": 1}, "a": 2}', "a") == (True, 2)  # anything else: the last occurrence


def test_the_line_of_a_key_is_found_under_any_occurrence_of_its_parents() -> None:
    from cisfix.editors.jsontext import key_line

    text = '{\n"featureGates": {"RotateKubeletServerCertificate": false},\n"featureGates": {"B": true}\n}'
    assert key_line(text, ["featureGates", "RotateKubeletServerCertificate"]) == 2
    assert key_line(text, ["featureGates", "B"]) == key_line(text, ["featureGates"]) == 3
    assert key_line(text, ["featureGates", "C"]) is None


def test_a_file_with_a_byte_order_mark_stays_json_with_its_mark() -> None:
    """Read and edited as JSON (the YAML editor added `authentication: {anonymous: {enabled: false}}`, YAML's
    flow style, to the JSON file); its mark, layout and every other byte kept."""
    text = '\ufeff{\r\n    "kind": "KubeletConfiguration",\r\n    "readOnlyPort": 10255\r\n}\r\n'
    assert is_json(text)
    assert read_path(text, "readOnlyPort") == (True, 10255)
    edited = edit_paths(text, [SetPath("authentication.anonymous.enabled", False), SetPath("readOnlyPort", 0)], KIND).text
    assert edited == ('\ufeff{\r\n    "kind": "KubeletConfiguration",\r\n    "readOnlyPort": 0,\r\n    "authentication": {\r\n'
                      '        "anonymous": {\r\n            "enabled": false\r\n        }\r\n    }\r\n}\r\n')
    json.loads(edited[1:])
