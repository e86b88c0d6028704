"""The state folder as root finds it: read-only, full, a folder root may not change (/proc/1), or holding
a file nested deeper than the JSON parser's recursion. Every such run ends in one line naming the file
or folder and the reason, exit 4 (a person must look), with nothing half-written and no traceback."""
from __future__ import annotations

import os
import subprocess

import pytest

from test_bad_input import mounted_tmpfs
from test_bounded_input import assert_one_line_refusal

DEEP = b"[" * 100_000 + b"\n"


def files_in(folder) -> dict:
    return {p.name: p.read_bytes() for p in folder.iterdir()}


def drift_args(node, state) -> tuple:
    return ("--state-dir", str(state), "drift", "--textfile", str(node.root.parent / "cisfix.prom"))


WRITTEN = "the state folder cannot be written"


@pytest.mark.parametrize("mode, command, words", [
    (0o755, ("drift",), ("Read-only file system", WRITTEN)),  # an older cisfix's 0755 folder is tightened first
    (0o755, ("pause", "--reason", "x"), ("Read-only file system", WRITTEN)),
    (0o700, ("pause", "--reason", "x"), ("PAUSE", "Read-only file system", WRITTEN)),
    (0o700, ("unpause",), ("PAUSE", "Read-only file system", WRITTEN)),
    (0o700, ("drift",), ("drift.lock", "Read-only file system", "cannot take the run lock")),
    (0o755, ("fix",), ("Read-only file system", WRITTEN)),
    (0o700, ("fix",), ("lock", "Read-only file system", "cannot take the run lock")),
])
def test_a_read_only_state_folder_is_one_line_and_exit_4(node, cisfix, tmp_path, mode, command, words):
    state = tmp_path / "state"
    with mounted_tmpfs(state):
        assert cisfix("--state-dir", str(state), "pause", "--reason", "freeze").returncode == 0
        if command != ("unpause",):
            assert cisfix("--state-dir", str(state), "unpause").returncode == 0
        os.chmod(state, mode)
        subprocess.run(["mount", "-o", "remount,ro", str(state)], check=True)
        before, node_before = files_in(state), node.snapshot()
        args = drift_args(node, state) if command == ("drift",) else ("--state-dir", str(state), *command)
        assert_one_line_refusal(node, cisfix(*args), str(state), *words, code=4)
        assert files_in(state) == before and node.snapshot() == node_before


def test_a_full_state_folder_is_one_line_and_exit_4_with_nothing_half_written(node, cisfix, tmp_path):
    state = tmp_path / "state"
    with mounted_tmpfs(state, size="64k", options="mode=0700"):
        fd = os.open(state / "filler", os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            while os.write(fd, b"\0" * 4096):
                pass
        except OSError:  # full
            pass
        finally:
            os.close(fd)
        result = cisfix("--state-dir", str(state), "pause", "--reason", "freeze")
        assert_one_line_refusal(node, result, str(state / "PAUSE"), "No space left on device", code=4)
        assert sorted(p.name for p in state.iterdir()) == ["filler"]


def test_a_state_folder_root_may_not_change_is_one_line_and_exit_4(node, cisfix):
    result = cisfix(*drift_args(node, "/proc/1"))
    assert_one_line_refusal(node, result, "/proc/1", "Operation not permitted", "the state folder cannot be written",
                            code=4)


@pytest.mark.parametrize("name, command, words", [
    ("journal.jsonl", ("history",), ("journal.jsonl:1", "not a JSON record")),
    ("drift.json", ("drift",), ("drift.json", "not a drift state cisfix wrote")),
    ("events.jsonl", ("drift",), ("events.jsonl:1", "not a drift event")),
    ("PAUSE", ("fix",), ("PAUSE", "not a pause cisfix wrote")),
])
def test_a_state_file_nested_past_the_parser_is_refused_as_damaged(node, cisfix, tmp_path, name, command, words):
    assert cisfix("pause", "--reason", "x").returncode == 0 and cisfix("unpause").returncode == 0
    (node.state_dir / name).write_bytes(DEEP)
    os.chmod(node.state_dir / name, 0o600)
    args = drift_args(node, node.state_dir) if command == ("drift",) else command
    result = cisfix(*args)
    assert_one_line_refusal(node, result, *words, code=4)
    assert (node.state_dir / name).read_bytes() == DEEP
