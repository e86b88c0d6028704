"""Root trusts nothing another user can write: the attacks of an unprivileged local user, replayed as a
real one (`useradd`), end with nothing restored, no code of hers run and nothing written outside the root."""
from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time

import pytest

from cisfix.errors import InputError
from cisfix.journal import seal
from cisfix.node import Node
from cisfix.plugins import Plugins
from cisfix.testing import build_node
from conftest import APISERVER, KUBELET_CONFIG, run_cisfix
from hostile import as_mallory, her_dir, mallory, shared_dir  # noqa: F401 (fixtures)

EVIL_KUBELET = b"authentication:\n  anonymous:\n    enabled: true\nauthorization:\n  mode: AlwaysAllow\n"


@pytest.fixture
def shared_node(shared_dir):
    """A node she can reach (every folder on the way is 0755)."""
    return build_node(shared_dir / "node")


def one_line(result) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    return lines[0]


FORGE = r"""
import hashlib, json, os, sys
state, planted, kubelet_sha, record = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
with open(planted, "wb") as f:
    f.write(bytes.fromhex(sys.argv[5]))
if os.path.exists(state + "/journal.jsonl"):
    os.rename(state + "/journal.jsonl", state + "/journal.old")
with open(state + "/journal.jsonl", "w") as f:
    f.write(json.dumps(record, sort_keys=True) + "\n")
"""


def forged_begin(backup: str, kubelet_now: bytes) -> dict:
    """A begin record, checksum and all, that would have root "restore" her kubelet config."""
    import hashlib

    sha = lambda data: hashlib.sha256(data).hexdigest()  # noqa: E731
    entry = {"path": KUBELET_CONFIG, "backup": backup,
             "before": {"sha256": sha(EVIL_KUBELET), "mode": "0600", "uid": 0, "gid": 0},
             "after": {"sha256": sha(kubelet_now), "mode": "0600", "uid": 0, "gid": 0}}
    return seal({"type": "begin", "time": time.time(), "txid": "20261130T000000Z-abcdef", "label": "edit",
                 "pid": 1, "files": [entry]})


@pytest.mark.parametrize("backup", ["absolute", "relative"])
def test_forged_journal_in_a_world_writable_state_folder_restores_nothing(shared_node, her_dir, mallory, backup):
    node = shared_node
    assert run_cisfix(node, "recover").returncode == 0  # the state folder exists, nothing else yet
    os.chmod(node.state_dir, 0o777)  # a careless admin, or an older cisfix
    kubelet = node.read(KUBELET_CONFIG)
    planted = her_dir / "config.yaml"
    if backup == "relative":  # her file where cisfix would look for the backup
        name = "backups/20261130T000000Z-abcdef" + KUBELET_CONFIG
        as_mallory(mallory, "import os,sys; os.makedirs(os.path.dirname(sys.argv[1]))",
                   str(node.state_dir / name))
        planted = node.state_dir / name
    record = forged_begin(str(planted) if backup == "absolute" else name, kubelet)
    forged = as_mallory(mallory, FORGE, str(node.state_dir), str(planted), "-", json.dumps(record), EVIL_KUBELET.hex())
    assert forged.returncode == 0, forged.stderr

    for command in ("recover", "history"):
        result = run_cisfix(node, command)
        assert result.returncode == 4, result.stdout + result.stderr
        line = one_line(result)
        assert str(node.state_dir) in line and "writable by group or others" in line
    assert node.read(KUBELET_CONFIG) == kubelet


def test_state_folder_is_created_private_whatever_the_umask(shared_node, shared_dir, mallory):
    state = shared_dir / "a" / "b" / "c"
    result = subprocess.run([sys.executable, "-m", "cisfix", "--root", str(shared_node.root), "--state-dir", str(state),
                             "edit", APISERVER, "--flag", "profiling=false"], capture_output=True, text=True, umask=0)
    assert result.returncode == 0, result.stderr
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in (state.parent.parent, state.parent, state)}
    assert modes == {"a": 0o755, "b": 0o755, "c": 0o700}
    assert stat.S_IMODE((state / "journal.jsonl").stat().st_mode) == 0o600
    tried = as_mallory(mallory, "import sys; open(sys.argv[1], 'w')", str(state / "journal.jsonl"))
    assert tried.returncode != 0 and "Permission denied" in tried.stderr


def test_an_existing_open_state_folder_is_tightened(node):
    assert run_cisfix(node, "edit", APISERVER, "--flag", "profiling=false").returncode == 0
    os.chmod(node.state_dir, 0o755)
    assert run_cisfix(node, "edit", APISERVER, "--flag", "audit-log-maxage=30").returncode == 0
    assert stat.S_IMODE(node.state_dir.stat().st_mode) == 0o700


@pytest.mark.parametrize("where", ["/var/lib/cisfix", "/var/lib", "/var/log"])
def test_a_symlink_out_of_the_root_is_refused_and_nothing_is_written_there(node, tmp_path, where):
    outside = tmp_path / "outside"
    outside.mkdir()
    link = node.path(where)
    if link.exists():
        os.rename(link, tmp_path / "moved")
        if where != "/var/lib/cisfix":
            os.rename(tmp_path / "moved", outside / "real")  # the node's own files, now outside it
            outside = outside / "real"
    link.parent.mkdir(parents=True, exist_ok=True)
    before = sorted(p.name for p in outside.rglob("*"))
    os.symlink(outside, link)
    original = node.read(APISERVER)
    result = run_cisfix(node, "edit", APISERVER, "--flag", "profiling=false")
    assert result.returncode == 2, result.stdout + result.stderr
    line = one_line(result)
    assert "leads outside --root" in line
    assert sorted(p.name for p in outside.rglob("*")) == before
    assert node.read(APISERVER) == original


def test_her_symlink_for_the_state_folder_is_refused(shared_node, her_dir, mallory):
    node = shared_node
    os.chmod(node.path("/var/lib"), 0o777)
    made = as_mallory(mallory, "import os,sys; os.symlink(sys.argv[1], sys.argv[2])", str(her_dir), str(node.state_dir))
    assert made.returncode == 0, made.stderr
    original = node.read(APISERVER)
    result = run_cisfix(node, "edit", APISERVER, "--flag", "profiling=false")
    assert result.returncode in (2, 4), result.stderr
    one_line(result)
    assert list(her_dir.iterdir()) == [] and node.read(APISERVER) == original


def test_a_group_writable_parent_of_the_state_folder_is_refused(node):
    os.chmod(node.path("/var/lib"), 0o775)
    result = run_cisfix(node, "edit", APISERVER, "--flag", "profiling=false")
    assert result.returncode == 4
    line = one_line(result)
    assert str(node.path("/var/lib")) in line and "writable by group or others (mode 0775)" in line
    assert not node.state_dir.exists()


SWAPPER = r"""
import os, sys, time
her_dir, root_owned, evil = sys.argv[1], sys.argv[2], sys.argv[3]
target, staged = os.path.join(her_dir, "x.py"), os.path.join(her_dir, ".x.py")
deadline = time.monotonic() + float(sys.argv[4])
while time.monotonic() < deadline:   # between a root-owned file and her own, as fast as she can
    os.symlink(root_owned, staged); os.rename(staged, target)
    with open(staged, "w") as f:
        f.write(evil)
    os.rename(staged, target)
"""

EVIL_PLUGIN = """
import os
open({marker!r} + "-uid" + str(os.getuid()), "w").close()
"""


def test_a_swapped_checks_d_target_never_runs_her_code(shared_node, shared_dir, her_dir, mallory):
    checks = shared_dir / "checks.d"
    checks.mkdir()
    harmless = shared_dir / "harmless.py"
    harmless.write_text("# a root-owned plugin module\n")
    marker = shared_dir / "pwned"
    os.symlink(her_dir / "x.py", checks / "evil.py")
    swapper = as_mallory(mallory, SWAPPER, str(her_dir), str(harmless), EVIL_PLUGIN.format(marker=str(marker)),
                         "120", background=True)
    try:
        refused = 0
        for _ in range(40):
            with pytest.raises(InputError) as caught:
                Plugins(Node(str(shared_node.root)), [str(checks)])
            assert str(her_dir) in str(caught.value) and "owned by uid" in str(caught.value)
            refused += 1
    finally:
        swapper.kill()
        swapper.wait()
    assert refused == 40
    assert not list(shared_dir.glob("pwned*")), "her code ran"


def test_a_checks_d_link_to_a_root_owned_file_in_a_root_owned_folder_loads(node, tmp_path):
    checks, modules = tmp_path / "checks.d", tmp_path / "modules"
    checks.mkdir()
    modules.mkdir()
    (modules / "mine.py").write_text("LOADED = True\n")
    os.symlink(modules / "mine.py", checks / "mine.py")
    plugins = Plugins(Node(str(node.root)), [str(checks)])
    assert any(p.source == str(checks / "mine.py") for p in plugins.plugins())


def test_a_node_configuration_she_can_write_is_refused(node, mallory):
    """It names the commands root runs to restart components."""
    config = node.path("/etc/cisfix/config.yaml")
    os.chown(config, *mallory)
    for command in (("audit",), ("edit", APISERVER, "--flag", "profiling=false")):
        result = run_cisfix(node, *command)
        assert result.returncode == 2
        line = one_line(result)
        assert str(config) in line and "owned by uid" in line
    assert b"profiling" not in node.read(APISERVER)


def test_a_dangling_checks_d_link_is_one_line(node, tmp_path):
    checks = tmp_path / "checks.d"
    checks.mkdir()
    os.symlink(tmp_path / "gone.py", checks / "gone.py")
    with pytest.raises(InputError, match="no such file"):
        Plugins(Node(str(node.root)), [str(checks)])


def test_her_file_in_a_root_owned_checks_d_is_refused(node, tmp_path, mallory):
    checks = tmp_path / "checks.d"
    checks.mkdir()
    (checks / "hers.yaml").write_text("")
    os.chown(checks / "hers.yaml", *mallory)
    with pytest.raises(InputError, match="owned by uid"):
        Plugins(Node(str(node.root)), [str(checks)])
