"""Unattended runs tell the truth: accepted risks (exceptions with an expiry) in the node configuration,
what `fix` prints (one line per change or check needing a person, counts, a closing line), `-q`, and
`--diff` with mode changes and without secret material."""
from __future__ import annotations

import datetime
import json
import re

from conftest import KUBELET_CONFIG

CONFIG = "/etc/cisfix/config.yaml"
# What a fresh test-kit node still fails after `fix` (no safe automatic fix).
NEEDS_A_PERSON = ["1.2.1", "1.2.5", "1.3.1", "4.2.9", "4.2.13", "4.2.14"]
CLOSING = re.compile(r"^(fixed|would fix) (\d+)( · failed \d+)? · needs a person (\d+) · excepted (\d+) · exit (\d)$")


def with_exceptions(node, ids, expires):
    entries = "".join(f"  - {{id: '{i}', reason: 'accepted by the platform team, ticket SEC-{n}', "
                      f"expires: {expires}}}\n" for n, i in enumerate(ids))
    node.write(CONFIG, node.read(CONFIG) + b"exceptions:\n" + entries.encode())


def closing(result):
    match = CLOSING.match(result.stdout.strip().splitlines()[-1])
    assert match, result.stdout[-1500:]
    return match


def test_fix_without_exceptions_exits_1_and_says_why(node, cisfix):
    result = cisfix("fix")
    assert result.returncode == 1, result.stderr
    match = closing(result)
    assert match.group(4) == str(len(NEEDS_A_PERSON)) and match.group(5) == "0" and match.group(6) == "1"
    assert int(match.group(2)) > 10
    lines = result.stdout.splitlines()
    assert not any(line.startswith("ALREADY_COMPLIANT") for line in lines)  # a count instead
    assert any(re.fullmatch(r"\d+ compliant", line) for line in lines)
    assert any(re.fullmatch(r"\d+ manual or not applicable", line) for line in lines)
    people = [line.split()[3] for line in lines if line.startswith("NEEDS A PERSON")]
    assert people == NEEDS_A_PERSON
    why = [line for line in lines if line.startswith("exit 1: ")]
    assert len(why) == 1 and all(i in why[0] for i in NEEDS_A_PERSON)


def test_quiet_prints_the_changes_and_one_line_why(node, cisfix):
    result = cisfix("-q", "fix")
    assert result.returncode == 1
    lines = result.stdout.strip().splitlines()
    assert lines[-1].startswith("exit 1: 6 check(s) still fail and need a person: 1.2.1, 1.2.5")
    assert all(line.split()[0] == "FIXED" for line in lines[:-1]) and len(lines) > 10
    again = cisfix("-q", "fix")  # nothing left to change: only the reason
    assert again.returncode == 1 and again.stdout.strip().splitlines() == [lines[-1]]


def test_excepted_checks_do_not_count_until_they_expire(node, cisfix):
    future = datetime.date.today() + datetime.timedelta(days=30)
    with_exceptions(node, NEEDS_A_PERSON, future.isoformat())
    result = cisfix("fix")
    assert result.returncode == 0, result.stdout[-1500:] + result.stderr
    match = closing(result)
    assert (match.group(4), match.group(5), match.group(6)) == ("0", "6", "0")
    assert cisfix("-q", "fix").stdout == ""  # compliant apart from accepted risks: silent, exit 0

    audit = cisfix("audit", "--format", "json")
    assert audit.returncode == 0
    results = {r["id"]: r for r in json.loads(audit.stdout)["results"]}
    for i in NEEDS_A_PERSON:
        assert results[i]["status"] == "EXCEPTED"
        assert results[i]["reason"].startswith(f"excepted until {future}: accepted by the platform team")
    bench = json.loads(cisfix("audit", "--format", "kube-bench").stdout)
    statuses = {t["test_number"]: t["status"] for c in bench["Controls"] for g in c["tests"] for t in g["results"]}
    assert all(statuses[i] == "WARN" for i in NEEDS_A_PERSON if i in statuses)


def test_an_expired_exception_fails_again_with_a_note(node, cisfix):
    with_exceptions(node, ["1.2.5"], (datetime.date.today() - datetime.timedelta(days=1)).isoformat())
    audit = cisfix("audit", "--check", "1.2.5", "--format", "json")
    assert audit.returncode == 1
    [result] = json.loads(audit.stdout)["results"]
    assert result["status"] == "FAIL" and result["reason"].startswith("exception expired on ")


def test_an_exception_without_a_valid_date_is_bad_configuration(node, cisfix):
    with_exceptions(node, ["1.2.5"], "'someday'")
    result = cisfix("fix")
    assert result.returncode == 2 and "someday" in result.stderr and "not a date" in result.stderr


def test_diff_shows_mode_changes_and_never_the_generated_key(node, cisfix):
    for args in (("fix", "--dry-run", "--diff"), ("fix", "--diff")):
        result = cisfix(*args)
        assert result.returncode == 1, result.stderr
        out = result.stdout
        assert f"--- a{node.path(KUBELET_CONFIG)}" in out and "mode 0644 → 0600" in out  # 4.1.9
        assert "secret: <32 random bytes, generated when applied>" in out
    written = node.read("/etc/kubernetes/encryption-config.yaml").decode()
    key = re.search(r"secret: (\S+)", written).group(1)
    assert len(key) == 44 and key not in out  # the real key was written, and printed nowhere
    assert key not in json.dumps(node.journal_records())
