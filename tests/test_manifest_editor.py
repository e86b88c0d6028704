"""Static pod flag editor: hand-made tricky manifests, outcomes asserted on the text."""
from __future__ import annotations

from importlib.resources import files

import re
from typing import Dict, List, Optional

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cisfix.editors import yamltext
from cisfix.editors.manifest import edit_flags, read_flags
from cisfix.errors import EditError
from cisfix.plan import AddFlagItem, AddHostPathMount, RemoveFlag, RemoveFlagItem, SetFlag

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


# --- hostPath mounts ---------------------------------------------------------------------------------

# kubeadm's own output, from the test kit's node
KUBEADM = files("cisfix.testing").joinpath("node/etc/kubernetes/manifests/kube-apiserver.yaml").read_text()
LAST_MOUNT = "      name: usr-share-ca-certificates\n      readOnly: true\n"
LAST_VOLUME = "    name: usr-share-ca-certificates\n"
POLICY = AddHostPathMount("audit-policy", "/etc/kubernetes/audit-policy.yaml", "/etc/kubernetes/audit-policy.yaml",
                          read_only=True, type="File")
AUDIT_LOG = AddHostPathMount("audit-log", "/var/log/kubernetes/audit", "/var/log/kubernetes/audit", read_only=False)
POLICY_MOUNT = "    - mountPath: /etc/kubernetes/audit-policy.yaml\n      name: audit-policy\n      readOnly: true\n"
POLICY_VOLUME = "  - hostPath:\n      path: /etc/kubernetes/audit-policy.yaml\n      type: File\n    name: audit-policy\n"


def mount(text: str, *ops: AddHostPathMount) -> str:
    """Edit a bare hand-made pod (no component label)."""
    return edit(text, *ops, component="kube-apiserver")


def mount_data(text: str, container: int = 0) -> tuple:
    """(spec.volumes, the container's volumeMounts) as read back."""
    spec = yamltext.parse(text).data[0]["spec"]
    return spec.get("volumes"), spec["containers"][container].get("volumeMounts")


class TestHostPathMount:
    def test_kubeadm_file_and_directory_mounts_add_exactly_these_lines(self) -> None:
        assert KUBEADM.count(LAST_MOUNT) == 1 and KUBEADM.endswith(LAST_VOLUME + "status: {}\n")
        result = edit_flags(KUBEADM, [POLICY, AUDIT_LOG], None)
        log_mount = "    - mountPath: /var/log/kubernetes/audit\n      name: audit-log\n"  # read-write: no readOnly
        log_volume = "  - hostPath:\n      path: /var/log/kubernetes/audit\n      type: DirectoryOrCreate\n    name: audit-log\n"
        assert result.text == (KUBEADM.replace(LAST_MOUNT, LAST_MOUNT + POLICY_MOUNT + log_mount)
                               .replace(LAST_VOLUME + "status", LAST_VOLUME + POLICY_VOLUME + log_volume + "status"))
        assert result.notes == ("mounted /etc/kubernetes/audit-policy.yaml (hostPath volume audit-policy)",
                                "mounted /var/log/kubernetes/audit (hostPath volume audit-log)")

    def test_second_application_is_a_noop(self) -> None:
        once = edit_flags(KUBEADM, [POLICY, AUDIT_LOG], None).text
        again = edit_flags(once, [POLICY, AUDIT_LOG, POLICY], None)
        assert again.text == once and again.notes == ()
        assert edit(KUBEADM, POLICY, POLICY) == edit(KUBEADM, POLICY)

    def test_mounted_through_a_parent_directory_is_a_noop(self) -> None:
        inside = AddHostPathMount("enc", "/etc/kubernetes/pki/enc.yaml", "/etc/kubernetes/pki/enc.yaml", type="File")
        assert edit(KUBEADM, inside) == KUBEADM
        assert edit(KUBEADM, AddHostPathMount("pki", "/etc/kubernetes/pki/", "/etc/kubernetes/pki//")) == KUBEADM

    def test_parent_mounted_from_elsewhere_gets_a_mount_on_top(self) -> None:
        op = AddHostPathMount("enc", "/srv/enc.yaml", "/etc/kubernetes/pki/enc.yaml", type="File")
        volumes, mounts = mount_data(edit(KUBEADM, op))
        assert mounts[-1] == {"mountPath": "/etc/kubernetes/pki/enc.yaml", "name": "enc", "readOnly": True}
        assert volumes[-1] == {"hostPath": {"path": "/srv/enc.yaml", "type": "File"}, "name": "enc"}

    def test_name_taken_by_another_volume(self) -> None:
        with pytest.raises(EditError, match=r"volume name k8s-certs is taken by a different volume \(hostPath /etc/kubernetes/pki\)"):
            edit(KUBEADM, AddHostPathMount("k8s-certs", "/var/log/audit", "/var/log/audit"))

    def test_path_mounted_from_another_host_path(self) -> None:
        with pytest.raises(EditError, match="/etc/kubernetes/pki is already mounted in container kube-apiserver "
                                            "from hostPath /etc/kubernetes/pki, not /srv/pki"):
            edit(KUBEADM, AddHostPathMount("srv-pki", "/srv/pki", "/etc/kubernetes/pki"))

    def test_read_only_mount_where_writing_is_needed(self) -> None:
        with pytest.raises(EditError, match="mounted read-only .* must be writable"):
            edit(KUBEADM, AddHostPathMount("k8s-certs", "/etc/kubernetes/pki", "/etc/kubernetes/pki", read_only=False))

    def test_volume_with_the_same_host_path_is_reused(self) -> None:
        result = edit_flags(KUBEADM, [AddHostPathMount("pki", "/etc/kubernetes/pki", "/pki")], None)
        assert result.text == KUBEADM.replace(LAST_MOUNT, LAST_MOUNT + "    - mountPath: /pki\n      name: k8s-certs\n      readOnly: true\n")
        assert result.notes == ("mounted /pki (hostPath volume k8s-certs)",)

    def test_name_of_an_undefined_volume_is_refused(self) -> None:
        text = KUBEADM.replace("      name: ca-certs\n", "      name: ghost\n")
        with pytest.raises(EditError, match="volume name ghost is used by the mount at /etc/ssl/certs but not defined"):
            edit(text, AddHostPathMount("ghost", "/x", "/x"))

    @pytest.mark.parametrize("op, message", [
        (AddHostPathMount("Audit_Log", "/a", "/a"), "bad volume name"),
        (AddHostPathMount("a", "var/log", "/a"), "host path must be absolute"),
        (AddHostPathMount("a", "/a", "a"), "mount path must be absolute"),
        (AddHostPathMount("a", "/a", "/a", type="Dir"), "unknown hostPath type 'Dir'"),
    ])
    def test_invalid_operations(self, op: AddHostPathMount, message: str) -> None:
        with pytest.raises(EditError, match=message):
            edit(KUBEADM, op)

    def test_both_lists_created_when_absent(self) -> None:
        result = edit_flags(POD, [POLICY], None)
        assert result.text == POD + "    volumeMounts:\n" + POLICY_MOUNT + "  volumes:\n" + POLICY_VOLUME
        assert mount_data(result.text) == (
            [{"hostPath": {"path": "/etc/kubernetes/audit-policy.yaml", "type": "File"}, "name": "audit-policy"}],
            [{"mountPath": "/etc/kubernetes/audit-policy.yaml", "name": "audit-policy", "readOnly": True}])

    def test_lists_created_in_the_files_indentation(self) -> None:
        text = "kind: Pod\nspec:\n    containers:\n      - name: kube-apiserver\n        command:\n          - kube-apiserver\n"
        assert mount(text, POLICY) == text + (
            "        volumeMounts:\n"
            "          - mountPath: /etc/kubernetes/audit-policy.yaml\n            name: audit-policy\n            readOnly: true\n"
            "    volumes:\n"
            "      - hostPath:\n            path: /etc/kubernetes/audit-policy.yaml\n            type: File\n"
            "        name: audit-policy\n")

    def test_null_lists_are_filled(self) -> None:
        text = "kind: Pod\nspec:\n  containers:\n  - name: kube-apiserver\n    volumeMounts:\n    image: x\n  volumes:\n"
        assert mount(text, POLICY) == text.replace("volumeMounts:\n", "volumeMounts:\n" + POLICY_MOUNT) + POLICY_VOLUME

    def test_siblings_key_order_quotes_and_indentation(self) -> None:
        text = ("kind: Pod\nspec:\n  containers:\n  - name: kube-apiserver\n    volumeMounts:\n"
                "      - name: 'a'\n        mountPath: '/a'\n  volumes:\n"
                "    - name: a\n      hostPath:\n          path: \"/a\"\n")
        assert mount(text, AUDIT_LOG) == text.replace("'/a'\n", "'/a'\n"
                                                     "      - name: 'audit-log'\n        mountPath: '/var/log/kubernetes/audit'\n") + (
            '    - name: audit-log\n      hostPath:\n          path: "/var/log/kubernetes/audit"\n          type: DirectoryOrCreate\n')

    def test_flow_lists(self) -> None:
        text = ("kind: Pod\nspec:\n  containers:\n  - name: kube-apiserver\n    volumeMounts: [{mountPath: /a, name: a}]\n"
                "  volumes: [{name: a, hostPath: {path: /a}}]\n")
        assert mount(text, AUDIT_LOG) == text.replace(
            "name: a}]", "name: a}, {mountPath: /var/log/kubernetes/audit, name: audit-log}]").replace(
            "{path: /a}}]", "{path: /a}}, {name: audit-log, hostPath: {path: /var/log/kubernetes/audit, type: DirectoryOrCreate}}]")
        empty = "kind: Pod\nspec:\n  containers:\n  - name: kube-apiserver\n    volumeMounts: []\n  volumes: []\n"
        assert mount(empty, POLICY) == empty.replace("volumeMounts: []", (
            "volumeMounts: [{mountPath: /etc/kubernetes/audit-policy.yaml, name: audit-policy, readOnly: true}]")).replace(
            "volumes: []", "volumes: [{hostPath: {path: /etc/kubernetes/audit-policy.yaml, type: File}, name: audit-policy}]")

    def test_block_lists_of_flow_mappings(self) -> None:
        text = ("kind: Pod\nspec:\n  containers:\n  - name: kube-apiserver\n    volumeMounts:\n    - {mountPath: \"/a\", name: a}\n"
                "  volumes:\n  - hostPath: {path: /a}\n    name: a\n")
        assert mount(text, POLICY) == text.replace("name: a}\n", "name: a}\n"
                                                  '    - {mountPath: "/etc/kubernetes/audit-policy.yaml", name: audit-policy, readOnly: true}\n') + (
            "  - hostPath: {path: /etc/kubernetes/audit-policy.yaml, type: File}\n    name: audit-policy\n")

    def test_crlf_and_no_final_newline(self) -> None:
        crlf = POD.replace("\n", "\r\n")
        expected = POD + "    volumeMounts:\n" + POLICY_MOUNT + "  volumes:\n" + POLICY_VOLUME
        assert edit(crlf, POLICY) == expected.replace("\n", "\r\n")
        assert edit(POD[:-1], POLICY) == expected[:-1]

    def test_with_flag_operations_in_one_edit(self) -> None:
        flag = SetFlag("audit-policy-file", "/etc/kubernetes/audit-policy.yaml")
        result = edit_flags(POD, [flag, POLICY, RemoveFlag("profiling")], None)
        assert dict(read_flags(result.text, None))["audit-policy-file"] == "/etc/kubernetes/audit-policy.yaml"
        assert "profiling" not in dict(read_flags(result.text, None))
        assert mount_data(result.text)[1] == [{"mountPath": "/etc/kubernetes/audit-policy.yaml", "name": "audit-policy", "readOnly": True}]
        assert len(result.notes) == 3

    def test_sidecar_first_gets_no_mount(self) -> None:
        text = POD.replace("  containers:\n", "  containers:\n  - name: shipper\n    image: s\n")
        assert mount_data(edit(text, POLICY), 1)[1] is not None
        assert mount_data(edit(text, POLICY), 0)[1] is None

    def test_self_check_catches_a_bad_mount_splice(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(yamltext, "splice", lambda text, edits: text.replace("readOnly: true", "readOnly: false", 1))
        with pytest.raises(EditError, match="internal: splice self-check failed"):
            edit(KUBEADM, POLICY)


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
