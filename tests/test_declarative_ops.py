"""The comparison ops of declarative checks, as an author reads them."""
from __future__ import annotations

import os

import pytest

from cisfix.declarative import audit_files, compare
from cisfix.node import Node
from cisfix.flags import effective
from cisfix.state import NodeState
from cisfix.types import NodeInfo


@pytest.mark.parametrize("expect, present, actual, verdict", [
    ({"op": "eq", "value": "false"}, True, "false", "PASS"),
    ({"op": "eq", "value": False}, True, "false", "PASS"),
    ({"op": "eq", "value": 0}, True, 0, "PASS"),
    ({"op": "eq", "value": 0}, True, 10255, "FAIL"),
    ({"op": "eq", "value": "false"}, False, None, "FAIL"),
    ({"op": "eq", "value": "false", "default": "true"}, False, None, "FAIL"),
    ({"op": "eq", "value": "true", "default": "true"}, False, None, "PASS"),
    ({"op": "noteq", "value": "AlwaysAllow"}, True, "Node,RBAC", "PASS"),
    ({"op": "noteq", "value": "AlwaysAllow"}, False, None, "PASS"),
    ({"op": "gte", "value": 30}, True, "30", "PASS"),
    ({"op": "gte", "value": 30}, True, "29", "FAIL"),
    ({"op": "gte", "value": 30}, True, "thirty", "FAIL"),
    ({"op": "lte", "value": 10}, True, 5, "PASS"),
    ({"op": "has", "value": "NodeRestriction"}, True, "NodeRestriction,AlwaysPullImages", "PASS"),
    ({"op": "has", "value": "NodeRestriction"}, True, "AlwaysPullImages", "FAIL"),
    ({"op": "nothas", "value": "AlwaysAdmit"}, True, "NodeRestriction", "PASS"),
    ({"op": "nothas", "value": "AlwaysAdmit"}, True, "NodeRestriction, AlwaysAdmit", "FAIL"),
    ({"op": "present"}, True, None, "PASS"),
    ({"op": "present"}, False, None, "FAIL"),
    ({"op": "absent"}, False, None, "PASS"),
    ({"op": "regex", "value": "^TLS_ECDHE_"}, True, "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", "PASS"),
    ({"op": "regex", "value": "^TLS_ECDHE_"}, True, "TLS_RSA_WITH_RC4_128_SHA", "FAIL"),
])
def test_compare(expect, present, actual, verdict):
    assert compare(expect, present, actual).status == verdict


@pytest.fixture
def state(tmp_path):
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/passwd").write_text("root:x:0:0::/root:/bin/sh\netcd:x:998:997::/var/lib/etcd:/bin/false\n")
    (tmp_path / "etc/group").write_text("root:x:0:\netcd:x:997:\n")
    for name, mode in (("a.key", 0o600), ("b.key", 0o640), ("c.crt", 0o644)):
        (tmp_path / "etc" / name).write_text("x")
        os.chmod(tmp_path / "etc" / name, mode)
    return NodeState(Node(str(tmp_path)), NodeInfo())


def test_mode_allows_no_bits_beyond_the_given_octal(state):
    assert audit_files(state, "/etc/a.key", {"op": "mode", "value": "600"}).status == "PASS"
    assert audit_files(state, "/etc/c.crt", {"op": "mode", "value": "600"}).status == "FAIL"
    assert audit_files(state, "/etc/a.key", {"op": "mode", "value": "644"}).status == "PASS"


def test_globs_fail_on_any_file_and_name_each_offender(state):
    result = audit_files(state, "/etc/*.key", {"op": "mode", "value": "600"})
    assert result.status == "FAIL" and [e.file for e in result.evidence] == ["/etc/b.key"]


def test_owner_uses_the_nodes_own_user_names(state):
    assert audit_files(state, "/etc/a.key", {"op": "owner", "owner": "root:root"}).status == "PASS"
    assert audit_files(state, "/etc/a.key", {"op": "owner", "owner": "etcd:etcd"}).status == "FAIL"
    assert audit_files(state, "/etc/a.key", {"op": "owner", "owner": "nobody-here:root"}).status == "FAIL"
    os.chown(state.node.host("/etc/a.key"), 998, 997)
    assert audit_files(state, "/etc/a.key", {"op": "owner", "owner": "etcd:etcd"}).actual == "etcd:etcd"


def test_a_finding_shows_what_its_check_is_about(state):
    owner = audit_files(state, "/etc/c.crt", {"op": "owner", "owner": "etcd:etcd"})
    assert (owner.expected, owner.actual, owner.evidence[0].detail) == ("owner etcd:etcd", "root:root",
                                                                        "owner root:root")
    mode = audit_files(state, "/etc/c.crt", {"op": "mode", "value": "600"})
    assert (mode.expected, mode.actual, mode.evidence[0].detail) == ("mode 600", "644", "mode 644")
    both = audit_files(state, "/etc/c.crt", {"op": "mode", "value": "600", "owner": "root:root"})
    assert (both.actual, both.evidence[0].detail) == ("644 root:root", "mode 644, owner root:root")


def test_a_file_two_patterns_match_is_counted_and_listed_once(state):
    result = audit_files(state, ["/etc/*.key", "/etc/b.key", "/etc/*.crt"], {"op": "mode", "value": "600"})
    assert result.actual == "2 of 3 files differ"
    assert [e.file for e in result.evidence] == ["/etc/b.key", "/etc/c.crt"]


def test_missing_file_is_a_warning_and_absent_passes(state):
    assert audit_files(state, "/etc/none", {"op": "mode", "value": "600"}).status == "WARN"
    assert audit_files(state, "/etc/*.bak", {"op": "absent"}).status == "PASS"
    assert audit_files(state, "/etc/*.key", {"op": "absent"}).status == "FAIL"


@pytest.mark.parametrize("argv, flags", [
    (("--a=1", "--b", "2", "--c", "--d="), [("a", "1"), ("b", "2"), ("c", None), ("d", "")]),
    (("-v=2", "--x", "--y"), [("v", "2"), ("x", None), ("y", None)]),
])
def test_parse_argv(argv, flags):
    assert effective(argv) == dict(flags)
