"""Static pod flag editor: hand-made tricky manifests, outcomes asserted on the text."""
from __future__ import annotations

import re
from typing import Dict, List, Optional

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cisfix.editors import yamltext
from cisfix.editors.manifest import edit_flags, read_flags
from cisfix.errors import EditError
from cisfix.plan import AddFlagItem, RemoveFlag, RemoveFlagItem, SetFlag

POD = """\
apiVersion: v1
kind: Pod
metadata:
  labels:
    component: kube-apiserver
  name: kube-apiserver
spec:
  containers:
  - command:
    - kube-apiserver
    # authentication
    - --anonymous-auth=false
    - --authorization-mode=Node,RBAC  # keep RBAC
    - --profiling=true
    image: registry.k8s.io/kube-apiserver:v1.32.0
    name: kube-apiserver
"""


def pod(flags: str, header: str = "  - command:\n    - kube-apiserver\n") -> str:
    """A kube-apiserver pod whose command holds `flags` (already indented lines)."""
    return POD.split("  - command:\n")[0] + header + flags + "    name: kube-apiserver\n"


def edit(text: str, *ops, component: Optional[str] = None) -> str:
    return edit_flags(text, list(ops), component).text


# --- locating the component's container --------------------------------------------------------------


class TestLocate:
    def test_sidecar_listed_first_is_not_edited(self) -> None:
        text = POD.replace("  containers:\n", "  containers:\n  - name: audit-shipper\n    command:\n    - /bin/ship\n    - --profiling=true\n")
        out = edit(text, SetFlag("profiling", "false"))
        assert "    - /bin/ship\n    - --profiling=true\n" in out
        assert "    - --profiling=false\n    image:" in out

    def test_hyperkube_subcommand(self) -> None:
        text = POD.replace("    - kube-apiserver\n", "    - /hyperkube\n    - apiserver\n").replace("    name: kube-apiserver\n", "    name: apiserver\n")
        assert dict(read_flags(text, None))["profiling"] == "true"
        assert "    - apiserver\n    - --a=1\n    # authentication\n" in edit(text, SetFlag("a", "1"))

    def test_component_argument_overrides_missing_label(self) -> None:
        text = POD.replace("  labels:\n    component: kube-apiserver\n", "")
        with pytest.raises(EditError, match="component"):
            read_flags(text, None)
        assert ("profiling", "true") in read_flags(text, "kube-apiserver")

    def test_matches_executable_when_name_differs(self) -> None:
        text = POD.replace("    name: kube-apiserver\n", "    name: main\n").replace("- kube-apiserver\n", "- /usr/local/bin/kube-apiserver\n")
        assert ("anonymous-auth", "false") in read_flags(text, None)

    def test_no_matching_container_names_them(self) -> None:
        with pytest.raises(EditError, match=r"no container runs etcd \(containers: kube-apiserver\)"):
            edit(POD, SetFlag("x", "1"), component="etcd")

    @pytest.mark.parametrize("text, message", [
        (POD.replace("kind: Pod", "kind: DaemonSet"), r"not a Pod \(kind: DaemonSet\)"),
        ("a: 1\n", r"not a Pod \(no kind\)"),
        (POD + "---\n" + POD, "2 YAML documents"),
        ("kind: Pod\nspec:\n  containers: []\n", "no spec.containers"),
        ("kind: Pod\nspec:\n  containers:\n  - name: x\n\t- y\n", r"invalid YAML at line 5: "),
        ("kind: Pod\nkind: Pod\n", r"invalid YAML at line 2: found duplicate key"),
        ("kind: [Pod\n", r"invalid YAML at line \d+: "),
    ])
    def test_refusals_are_edit_errors(self, text: str, message: str) -> None:
        with pytest.raises(EditError, match=message):
            edit_flags(text, [SetFlag("x", "1")], "kube-apiserver")

    def test_shell_wrapped_command_is_refused(self) -> None:
        text = pod("    - -c\n    - exec kube-apiserver --x=1\n", "  - command:\n    - /bin/sh\n")
        with pytest.raises(EditError, match="shell"):
            edit(text, SetFlag("x", "2"))

    def test_args_only_with_image_entrypoint(self) -> None:
        text = pod("    - --a=1\n", "  - args:\n")
        assert edit(text, SetFlag("b", "2")) == pod("    - --a=1\n    - --b=2\n", "  - args:\n")


# --- reading -----------------------------------------------------------------------------------------


class TestRead:
    def test_forms_and_order(self) -> None:
        text = pod("    - --a=1\n    - --bare\n    - --pair\n    - two\n    - --a=3\n", )
        assert read_flags(text, None) == [("a", "1"), ("bare", None), ("pair", "two"), ("a", "3")]

    def test_command_then_args(self) -> None:
        text = pod("    args:\n    - --b=2\n", "  - command:\n    - kube-apiserver\n    - --a=1\n")
        assert read_flags(text, None) == [("a", "1"), ("b", "2")]


# --- setting -----------------------------------------------------------------------------------------


class TestSet:
    def test_same_value_returns_input(self) -> None:
        result = edit_flags(POD, [SetFlag("profiling", "true")], None)
        assert result.text == POD and result.notes == ()

    def test_replace_keeps_form_comment_and_notes(self) -> None:
        result = edit_flags(POD, [SetFlag("authorization-mode", "Node")], None)
        assert result.text == POD.replace("Node,RBAC  # keep", "Node  # keep")
        assert result.notes == ("set --authorization-mode=Node (was Node,RBAC)",)

    def test_two_item_form_stays_two_items(self) -> None:
        text = pod("    - --v\n    - '2'\n")
        assert edit(text, SetFlag("v", "4")) == pod("    - --v\n    - '4'\n")

    def test_bare_becomes_equals(self) -> None:
        assert edit(pod("    - --bare\n"), SetFlag("bare", "x")) == pod("    - --bare=x\n")

    def test_value_to_bare(self) -> None:
        assert edit(pod("    - --v\n    - '2'\n"), SetFlag("v", None)) == pod("    - --v\n")
        assert edit(pod("    - --x=1\n"), SetFlag("x", None)) == pod("    - --x\n")

    def test_quoting_style_is_kept(self) -> None:
        text = pod("    - '--a=1'\n    - \"--b=2\"\n")
        assert edit(text, SetFlag("a", "x"), SetFlag("b", "y")) == pod("    - '--a=x'\n    - \"--b=y\"\n")

    def test_value_that_needs_quotes_is_quoted(self) -> None:
        assert edit(pod("    - --a=1\n"), SetFlag("a", "x #y")) == pod('    - "--a=x #y"\n')

    def test_new_flag_at_sorted_position(self) -> None:
        assert edit(POD, SetFlag("audit-log-maxage", "30")) == POD.replace(
            "    - --authorization-mode", "    - --audit-log-maxage=30\n    - --authorization-mode")
        assert edit(POD, SetFlag("aaa", "1")) == POD.replace("    # authentication\n", "    - --aaa=1\n    # authentication\n")

    def test_new_flag_after_last_when_unsorted(self) -> None:
        text = pod("    - --z=1\n    - --a=1 # first\n")
        assert edit(text, SetFlag("m", "1")) == pod("    - --z=1\n    - --a=1 # first\n    - --m=1\n")

    def test_new_flag_after_two_item_value(self) -> None:
        text = pod("    - --a\n    - x\n")
        assert edit(text, SetFlag("b", "1")) == pod("    - --a\n    - x\n    - --b=1\n")

    def test_new_flag_uses_siblings_indent_and_quotes(self) -> None:
        text = pod('      - "--a=1"\n', "  - command:\n      - kube-apiserver\n")
        assert edit(text, SetFlag("b", "2")).endswith('      - "--a=1"\n      - "--b=2"\n    name: kube-apiserver\n')

    def test_non_indented_sequence(self) -> None:
        text = "kind: Pod\nspec:\n  containers:\n  - name: kube-apiserver\n    args:\n    - --a=1\n"
        assert edit(text, SetFlag("b", "2"), component="kube-apiserver") == text + "    - --b=2\n"

    def test_yaml11_boolean_value_item_is_fine_plain(self) -> None:
        assert edit(pod("    - --a=1\n"), SetFlag("b", "on")) == pod("    - --a=1\n    - --b=on\n")


class TestFidelity:
    def test_crlf(self) -> None:
        text = POD.replace("\n", "\r\n")
        out = edit(text, SetFlag("zz", "1"), SetFlag("profiling", "false"))
        assert out == POD.replace("- --profiling=true\n", "- --profiling=false\n    - --zz=1\n").replace("\n", "\r\n")

    def test_no_final_newline_at_end_of_args(self) -> None:
        text = "kind: Pod\nspec:\n  containers:\n  - name: kube-apiserver\n    args:\n    - --a=1"
        assert edit(text, SetFlag("b", "2"), component="kube-apiserver") == text + "\n    - --b=2"
        assert edit(text, RemoveFlag("a"), component="kube-apiserver") == text.replace("\n    - --a=1", " []")

    def test_document_marker_and_comments_kept(self) -> None:
        text = "---\n# header\n" + POD + "# trailer\n"
        out = edit(text, SetFlag("profiling", "false"))
        assert out == text.replace("--profiling=true", "--profiling=false")

    def test_flow_style(self) -> None:
        text = 'kind: Pod\nspec:\n  containers:\n  - name: c\n    command: ["kube-apiserver"]\n    args: ["--z=1", "--a=2"]\n'
        out = edit(text, SetFlag("m", "3"), SetFlag("a", "4"), component="kube-apiserver")
        assert out == text.replace('["--z=1", "--a=2"]', '["--z=1", "--a=4", "--m=3"]')
        assert edit(text, RemoveFlag("z"), component="kube-apiserver") == text.replace('"--z=1", ', "")
        assert edit(text, RemoveFlag("a"), component="kube-apiserver") == text.replace(', "--a=2"', "")

    def test_flow_command_without_args(self) -> None:
        text = "kind: Pod\nspec:\n  containers:\n  - name: c\n    command: [kube-apiserver, --b=1]\n"
        assert edit(text, SetFlag("a", "x"), component="kube-apiserver") == text.replace("[kube-apiserver, --b=1]", "[kube-apiserver, --a=x, --b=1]")

    def test_empty_flow_args(self) -> None:
        text = "kind: Pod\nspec:\n  containers:\n  - name: kube-apiserver\n    args: []\n"
        assert edit(text, SetFlag("a", "1"), component="kube-apiserver") == text.replace("[]", "[--a=1]")


# --- removing and duplicates -------------------------------------------------------------------------


class TestRemove:
    def test_remove_single(self) -> None:
        result = edit_flags(POD, [RemoveFlag("profiling")], None)
        assert result.text == POD.replace("    - --profiling=true\n", "")
        assert result.notes == ("removed --profiling",)

    def test_remove_two_item_form_removes_both(self) -> None:
        assert edit(pod("    - --v\n    - '2'\n    - --a=1\n"), RemoveFlag("v")) == pod("    - --a=1\n")

    def test_remove_absent_is_noop(self) -> None:
        assert edit_flags(POD, [RemoveFlag("nope")], None) == edit_flags(POD, [], None)
        assert edit(POD, RemoveFlag("nope")) == POD

    def test_remove_all_occurrences(self) -> None:
        result = edit_flags(pod("    - --a=1\n    - --b=1\n    - --a=2\n"), [RemoveFlag("a")], None)
        assert result.text == pod("    - --b=1\n")
        assert result.notes == ("removed --a (2 occurrences)",)

    def test_removing_every_arg_leaves_empty_list(self) -> None:
        text = pod("    args:\n    - --a=1  # c\n")
        assert edit(text, RemoveFlag("a")) == pod("    args: []\n")


class TestDuplicates:
    def test_set_keeps_last_occurrence(self) -> None:
        text = pod("    - --a=1\n    - --b=1\n    - --a=2 # last\n")
        result = edit_flags(text, [SetFlag("a", "3")], None)
        assert result.text == pod("    - --b=1\n    - --a=3 # last\n")
        assert result.notes == ("set --a=3 (was 2)", "removed 1 duplicate of --a")

    def test_set_to_effective_value_only_dedupes(self) -> None:
        text = pod("    - --a=1\n    - --a=1\n    - --a=2\n")
        result = edit_flags(text, [SetFlag("a", "2")], None)
        assert result.text == pod("    - --a=2\n")
        assert result.notes == ("removed 2 duplicates of --a",)


# --- comma-separated values --------------------------------------------------------------------------


class TestItems:
    def test_add_item(self) -> None:
        result = edit_flags(POD, [AddFlagItem("authorization-mode", "Webhook")], None)
        assert result.text == POD.replace("Node,RBAC", "Node,RBAC,Webhook")
        assert result.notes == ("added Webhook to --authorization-mode",)

    def test_add_item_to_absent_flag_sets_it(self) -> None:
        result = edit_flags(POD, [AddFlagItem("enable-admission-plugins", "AlwaysPullImages")], None)
        assert "    - --enable-admission-plugins=AlwaysPullImages\n    - --profiling" in result.text
        assert result.notes == ("added --enable-admission-plugins=AlwaysPullImages",)

    def test_add_present_item_is_noop(self) -> None:
        assert edit(POD, AddFlagItem("authorization-mode", "RBAC")) == POD

    def test_add_item_to_empty_value(self) -> None:
        assert edit(pod("    - --runtime-config=\n"), AddFlagItem("runtime-config", "a=b")) == pod("    - --runtime-config=a=b\n")

    def test_remove_item(self) -> None:
        result = edit_flags(POD, [RemoveFlagItem("authorization-mode", "Node")], None)
        assert result.text == POD.replace("Node,RBAC", "RBAC")
        assert result.notes == ("removed Node from --authorization-mode",)

    def test_remove_absent_item_or_flag_is_noop(self) -> None:
        assert edit(POD, RemoveFlagItem("authorization-mode", "ABAC"), RemoveFlagItem("nope", "x")) == POD

    def test_removing_last_item_is_refused(self) -> None:
        with pytest.raises(EditError, match="RemoveFlag"):
            edit(POD, RemoveFlagItem("profiling", "true"))


def test_self_check_catches_a_bad_splice(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(yamltext, "splice", lambda text, edits: text.replace("Node,RBAC", "Node"))
    with pytest.raises(EditError, match="internal: splice self-check failed"):
        edit(POD, SetFlag("profiling", "false"))


# --- properties --------------------------------------------------------------------------------------

NAMES = st.from_regex(r"\A[a-z][a-z0-9-]{0,12}\Z")
VALUES = st.one_of(st.none(), st.text(alphabet="ab:# ,'\"=-/{}[]&*!%@`|>", max_size=8))


@settings(max_examples=150, deadline=None)
@given(name=NAMES, value=VALUES, crlf=st.booleans())
def test_set_then_read(name: str, value: Optional[str], crlf: bool) -> None:
    text = POD.replace("\n", "\r\n") if crlf else POD
    out = edit(text, SetFlag(name, value))
    assert dict(read_flags(out, None))[name] == value
    bare_lf = re.search(r"(?<!\r)\n", out) is not None
    assert (not bare_lf) if crlf else ("\r" not in out)


OPS = st.lists(st.tuples(st.sampled_from(["anonymous-auth", "profiling", "x", "y-z"]), VALUES, st.booleans()), max_size=8)


@settings(max_examples=150, deadline=None)
@given(ops=OPS)
def test_set_remove_sequences_match_a_model(ops: List) -> None:
    model: Dict[str, Optional[str]] = dict(read_flags(POD, None))
    plan = []
    for name, value, remove in ops:
        if remove:
            plan.append(RemoveFlag(name))
            model.pop(name, None)
        else:
            plan.append(SetFlag(name, value))
            model[name] = value
    flags = read_flags(edit_flags(POD, plan, None).text, None)
    assert dict(flags) == model and len(flags) == len(model)
