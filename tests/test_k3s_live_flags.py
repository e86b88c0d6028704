"""k3s's live flags come from the `Running <component> ...` lines the running k3s logged: the newest since
it started, read from the end of a log of any size, and only from a log no one but root could write."""
from __future__ import annotations

import os

import pytest

from cisfix.layouts.k3s.liveflags import TAIL, running_lines
from k3s_lab_fixtures import k3s_lab, make_k3s_lab  # noqa: F401 (fixtures)

OLD, NEW = "2026-12-02T10:00:00Z", "2026-12-02T11:00:00Z"
STARTED = 1796207400.0  # 2026-12-02T10:30:00Z: the running k3s started between the two lines


def line(when: str, message: str) -> str:
    quoted = message.replace("\\", "\\\\").replace('"', '\\"')
    return f'time="{when}" level=info msg="{quoted}"'


def test_the_newest_line_since_the_process_started_is_its_command_line():
    log = [line(OLD, "Running kube-apiserver --profiling=true"), line(NEW, "Running kube-scheduler --v=2"),
           line(NEW, "Running kube-apiserver --profiling=false --audit-log-maxage=30")]
    assert running_lines(log, "kube-apiserver", STARTED) == (3, ["--profiling=false", "--audit-log-maxage=30"])


def test_a_line_from_before_the_process_started_is_not_its_command_line():
    assert running_lines([line(OLD, "Running kube-apiserver --profiling=true")], "kube-apiserver", STARTED) is None


def test_journald_prefixes_and_escaped_quotes_are_read_as_k3s_wrote_them():
    text = 'Dec 02 11:00:00 node k3s[42]: ' + line(NEW, 'Running kubelet --node-labels="a=b" --v=2')
    assert running_lines([text], "kubelet", STARTED) == (1, ['--node-labels="a=b"', "--v=2"])


def test_a_line_that_only_mentions_the_component_is_not_its_command_line():
    log = [line(NEW, "Waiting for Running kube-apiserver to be ready"), 'msg="Running kube-apiserver --x"']
    assert running_lines(log, "kube-apiserver", STARTED) is None


def test_a_log_far_larger_than_a_node_file_is_read_from_its_end(tmp_path):
    from cisfix.node import Node
    from cisfix.layouts.k3s.liveflags import read_node_tail

    log = tmp_path / "var/log/k3s.log"
    log.parent.mkdir(parents=True)
    with open(log, "w") as f:
        f.write("x" * 100 + "\n")
        for _ in range(3 * TAIL // 1000):
            f.write(line(OLD, "noise " + "n" * 900) + "\n")
        f.write(line(NEW, "Running kube-apiserver --profiling=false") + "\n")
    os.chmod(log, 0o640)
    data = read_node_tail(Node(str(tmp_path)), "/var/log/k3s.log")
    assert len(data) <= TAIL
    assert running_lines(data.decode().splitlines(), "kube-apiserver", STARTED)[1] == ["--profiling=false"]


@pytest.mark.skipif(os.geteuid() != 0, reason="trust is enforced for root only")
def test_a_log_another_user_could_write_is_refused(tmp_path):
    from cisfix.errors import InputError
    from cisfix.node import Node
    from cisfix.layouts.k3s.liveflags import read_node_tail

    log = tmp_path / "var/log/k3s.log"
    log.parent.mkdir(parents=True)
    log.write_text(line(NEW, "Running kube-apiserver --profiling=false") + "\n")
    os.chmod(log, 0o666)
    with pytest.raises(InputError, match="k3s's live flags are not read"):
        read_node_tail(Node(str(tmp_path)), "/var/log/k3s.log")


def test_a_value_with_a_space_makes_the_running_line_unreadable_not_a_verdict(k3s_lab):
    """k3s logs the arguments joined by spaces: this item's value would read as `--profiling=false` while the
    API server runs with profiling on (and an audit log named `a --profiling=false`)."""
    import json
    import subprocess
    import sys

    dropin = k3s_lab.write_dropin("50-spaced.yaml", 'kube-apiserver-arg+: ["audit-log-path=/var/log/a --profiling=false"]\n')
    assert k3s_lab.restart().returncode == 0
    assert "--profiling=false" in k3s_lab.running("kube-apiserver")[-1]  # the line holds the forged word
    done = subprocess.run([sys.executable, "-m", "cisfix", "--root", str(k3s_lab.root), "audit", "--check", "1.2.15",
                           "--format", "json"], capture_output=True, text=True, timeout=120)
    [result] = [r for r in json.loads(done.stdout)["results"] if r["id"] == "1.2.15"]
    assert result["status"] == "ERROR" and result["reason"].startswith(f"{dropin}:1: a value with a space"), result
