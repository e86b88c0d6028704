"""YAML config editor: hand-made cases, outcomes asserted on the text."""
from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cisfix.editors.config import edit_paths, read_path
from cisfix.errors import EditError
from cisfix.plan import SetPath, UnsetPath

KUBELET = """\
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# who may talk to us
authentication:
  anonymous:
    enabled: true  # CIS 4.2.1
  webhook:
    cacheTTL: 0s
    enabled: true
readOnlyPort: 10255
staticPodPath: '/etc/kubernetes/manifests'
tlsCipherSuites: []
"""


def edit(text: str, *ops, kind: Any = None) -> str:
    return edit_paths(text, list(ops), kind).text


class TestSet:
    def test_same_value_and_type_is_noop(self) -> None:
        result = edit_paths(KUBELET, [SetPath("readOnlyPort", 10255), SetPath("authentication.anonymous.enabled", True)])
        assert result.text == KUBELET and result.notes == ()

    def test_same_text_other_type_is_a_change_quoted_like_siblings(self) -> None:
        assert edit(KUBELET, SetPath("readOnlyPort", "10255")) == KUBELET.replace("10255", "'10255'")
        assert edit("a: 1\n", SetPath("a", "1")) == 'a: "1"\n'


    def test_replace_keeps_trailing_comment(self) -> None:
        result = edit_paths(KUBELET, [SetPath("authentication.anonymous.enabled", False)])
        assert result.text == KUBELET.replace("enabled: true  # CIS", "enabled: false  # CIS")
        assert result.notes == ("set authentication.anonymous.enabled: false (was true)",)

    def test_replace_keeps_quote_style_for_strings(self) -> None:
        assert edit(KUBELET, SetPath("staticPodPath", "/x")) == KUBELET.replace("'/etc/kubernetes/manifests'", "'/x'")

    def test_quoted_string_replaced_by_bool_is_plain(self) -> None:
        text = 'a: "true"\n'
        assert edit(text, SetPath("a", False)) == "a: false\n"

    def test_yaml11_booleans_are_quoted_as_strings(self) -> None:
        assert edit("a: 1\n", SetPath("b", "on"), SetPath("c", "yes"), SetPath("d", "plain")) == 'a: 1\nb: "on"\nc: "yes"\nd: plain\n'

    def test_new_key_after_nested_content(self) -> None:
        out = edit(KUBELET, SetPath("authentication.x509.clientCAFile", "/ca.crt"))
        assert out == KUBELET.replace("    enabled: true\nreadOnly", "    enabled: true\n  x509:\n    clientCAFile: /ca.crt\nreadOnly")

    def test_new_top_level_key_goes_last(self) -> None:
        result = edit_paths(KUBELET, [SetPath("protectKernelDefaults", True)])
        assert result.text == KUBELET + "protectKernelDefaults: true\n"
        assert result.notes == ("added protectKernelDefaults: true",)

    def test_intermediate_maps_use_file_indent(self) -> None:
        text = "a:\n    b: 1\n"
        assert edit(text, SetPath("c.d.e", 1)) == text + "c:\n    d:\n        e: 1\n"
        assert edit("a: 1\n", SetPath("c.d", 1)) == "a: 1\nc:\n  d: 1\n"

    def test_flow_mappings(self) -> None:
        assert edit("a: {}\n", SetPath("a.b", 1)) == "a: {b: 1}\n"
        assert edit("a: {x: 1}\n", SetPath("a.b.c", "v")) == "a: {x: 1, b: {c: v}}\n"

    def test_lists_are_written_in_flow_style(self) -> None:
        out = edit(KUBELET, SetPath("tlsCipherSuites", ["TLS_AES_128_GCM_SHA256", "x y"]))
        assert out == KUBELET.replace("[]", '[TLS_AES_128_GCM_SHA256, x y]')

    def test_null_value_gets_a_value(self) -> None:
        assert edit("a:\nb: 1\n", SetPath("a", 5)) == "a: 5\nb: 1\n"

    def test_crlf_and_no_final_newline(self) -> None:
        text = "a:\r\n  b: 1\r\nc: 2"
        assert edit(text, SetPath("a.d", 3), SetPath("e", 4)) == "a:\r\n  b: 1\r\n  d: 3\r\nc: 2\r\ne: 4"

    def test_non_ascii_comments_kept(self) -> None:
        text = "# 配置\na: 1 # 端口\n"
        assert edit(text, SetPath("a", 2)) == "# 配置\na: 2 # 端口\n"


class TestUnset:
    def test_removes_key_and_nested_lines(self) -> None:
        result = edit_paths(KUBELET, [UnsetPath("authentication.webhook")])
        assert result.text == KUBELET.replace("  webhook:\n    cacheTTL: 0s\n    enabled: true\n", "")
        assert result.notes == ("removed authentication.webhook",)

    def test_emptied_mapping_becomes_braces(self) -> None:
        assert edit(KUBELET, UnsetPath("authentication.anonymous.enabled")) == KUBELET.replace(
            "  anonymous:\n    enabled: true  # CIS 4.2.1\n", "  anonymous: {}\n")

    def test_absent_is_noop(self) -> None:
        assert edit(KUBELET, UnsetPath("nope.deeper"), UnsetPath("x")) == KUBELET

    def test_flow_entry(self) -> None:
        assert edit("a: {x: 1, y: 2}\n", UnsetPath("a.x")) == "a: {y: 2}\n"

    def test_last_line_without_newline(self) -> None:
        assert edit("a: 1\nb: 2", UnsetPath("b")) == "a: 1"


EVICTION = """\
kind: KubeletConfiguration
evictionHard:
  imagefs.available: 15%   # kubelet default
  memory.available: 100Mi
  nodefs.available: 10%
tlsCipherSuites:
- TLS_AES_128_GCM_SHA256
"""


class TestFlowValuesAndQuotedKeys:
    def test_quoted_segment_addresses_a_key_with_dots(self) -> None:
        assert edit(EVICTION, SetPath('evictionHard."memory.available"', "200Mi")) == EVICTION.replace(
            "memory.available: 100Mi", "memory.available: 200Mi")

    def test_quoted_segment_adds_a_key_with_dots_not_a_nested_map(self) -> None:
        out = edit(EVICTION, SetPath('evictionHard."nodefs.inodesFree"', "5%"))
        assert out == EVICTION.replace("  nodefs.available: 10%\n", "  nodefs.available: 10%\n  nodefs.inodesFree: 5%\n")
        assert read_path(out, 'evictionHard."nodefs.inodesFree"') == (True, "5%")

    def test_unset_with_a_quoted_segment(self) -> None:
        assert edit(EVICTION, UnsetPath('evictionHard."memory.available"')) == EVICTION.replace(
            "  memory.available: 100Mi\n", "")

    def test_a_list_replaces_a_block_list_on_the_key_line(self) -> None:
        out = edit(EVICTION, SetPath("tlsCipherSuites", ["TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384"]))
        assert out.endswith("tlsCipherSuites: [TLS_AES_128_GCM_SHA256, TLS_AES_256_GCM_SHA384]\n")
        assert out.startswith(EVICTION.split("tlsCipherSuites")[0])  # the lines above are untouched

    def test_a_mapping_replaces_a_block_mapping_and_keeps_the_rest(self) -> None:
        out = edit(EVICTION, SetPath("evictionHard", {"memory.available": "100Mi"}))
        assert out == "kind: KubeletConfiguration\nevictionHard: {memory.available: 100Mi}\n" + \
            EVICTION.split("10%\n", 1)[1]

    def test_a_new_mapping_is_written_in_flow_style(self) -> None:
        out = edit(EVICTION, SetPath("evictionSoft", {"memory.available": "300Mi", "nodefs.available": "15%"}))
        assert out == EVICTION + "evictionSoft: {memory.available: 300Mi, nodefs.available: 15%}\n"


class TestRefusals:
    @pytest.mark.parametrize("op, message", [
        (SetPath("readOnlyPort.x", 1), "readOnlyPort is a scalar, not a mapping"),
        (SetPath("tlsCipherSuites.x", 1), "tlsCipherSuites is a list, not a mapping"),
        (SetPath("authentication", False), "authentication is a mapping; it can only be replaced with a mapping"),
        (SetPath("tlsCipherSuites", "A"), "tlsCipherSuites is a list; it can only be replaced with a list"),
        (SetPath('a."b', 1), "unclosed double quote"),
        (SetPath('a."b"c', 1), "quoted key must be followed"),
        (SetPath('a.b"c"', 1), "quote a whole key"),
        (UnsetPath("readOnlyPort.x"), "not a mapping"),
        (SetPath("a..b", 1), "bad path"),
    ])
    def test_bad_paths(self, op, message: str) -> None:
        with pytest.raises(EditError, match=message):
            edit(KUBELET, op)

    @pytest.mark.parametrize("text, message", [
        ('KUBELET_KUBEADM_ARGS="--cgroup-driver=systemd"\n', "not a YAML mapping"),
        ("- a\n", "not a YAML mapping"),
        ("", "empty file"),
        ("a: 1\na: 2\n", "invalid YAML at line 2: found duplicate key"),
        ("a:\n\tb: 1\n", "invalid YAML at line 2: "),
    ])
    def test_bad_documents(self, text: str, message: str) -> None:
        with pytest.raises(EditError, match=message):
            edit(text, SetPath("a", 1))


class TestDocuments:
    MULTI = "kind: ClusterConfiguration\n---\nkind: InitConfiguration\n---\nkind: KubeletConfiguration\nreadOnlyPort: 10255\n"

    def test_several_documents_need_a_kind(self) -> None:
        message = r"3 documents \(ClusterConfiguration, InitConfiguration, KubeletConfiguration\); choose one with --kind"
        with pytest.raises(EditError, match=message):
            edit(self.MULTI, SetPath("readOnlyPort", 0))

    def test_kind_selects_the_document(self) -> None:
        out = edit(self.MULTI, SetPath("readOnlyPort", 0), kind="KubeletConfiguration")
        assert out == self.MULTI.replace("10255", "0")
        assert read_path(out, "readOnlyPort", "KubeletConfiguration") == (True, 0)

    def test_unknown_kind(self) -> None:
        with pytest.raises(EditError, match="0 documents with kind: Nope"):
            edit(self.MULTI, SetPath("a", 1), kind="Nope")

    def test_start_marker_kept(self) -> None:
        assert edit("---\na: 1\n", SetPath("b", 2)) == "---\na: 1\nb: 2\n"


def test_read_path() -> None:
    assert read_path(KUBELET, "authentication.anonymous.enabled") == (True, True)
    assert read_path(KUBELET, "authentication.nope") == (False, None)
    assert read_path(KUBELET, "readOnlyPort.deeper") == (False, None)


SCALARS = st.one_of(st.booleans(), st.integers(), st.none(), st.text(alphabet="aoynf01:# '\"-.{}[],", max_size=8))
KEYS = st.from_regex(r"\A[a-zA-Z][a-zA-Z0-9]{0,6}\Z")


@settings(max_examples=200, deadline=None)
@given(path=st.lists(KEYS, min_size=1, max_size=3), value=SCALARS)
def test_set_then_read(path: list, value: Any) -> None:
    dotted = "authentication." + ".".join(path)
    try:
        out = edit(KUBELET, SetPath(dotted, value))
    except EditError as exc:
        assert "not a mapping" in str(exc) or "cannot be replaced" in str(exc)
        return
    assert read_path(out, dotted) == (True, value)
    assert type(read_path(out, dotted)[1]) is type(value)
