"""Bad input: one line naming the file and the reason, a non-zero exit, and nothing changed on disk."""
from __future__ import annotations

import contextlib
import os
import shutil
import socket
import stat
import subprocess

import pytest

from conftest import APISERVER, KUBELET_CONFIG


def assert_refused(node, result, expected_code, *words):
    before = node.snapshot()
    assert result.returncode == expected_code, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for word in words:
        assert word in lines[0], lines[0]
    assert node.snapshot() == before
    strays = [p for p in node.root.rglob(".*cisfix-*")]
    assert strays == []


@pytest.fixture
def refused(node, cisfix):
    """Run an edit that must be refused; check the line, the exit code and the untouched tree."""
    def check(args, code, *words):
        before = node.snapshot()
        result = cisfix(*args)
        assert_refused(node, result, code, *words)
        assert node.snapshot() == before
        return result
    return check


def test_tabs_in_yaml(node, refused):
    node.write(APISERVER, b"apiVersion: v1\nkind: Pod\nspec:\n\tcontainers: []\n")
    refused(("edit", APISERVER, "--flag", "profiling=false"), 2, str(node.path(APISERVER)), "YAML")


def test_broken_indentation(node, refused):
    node.write(APISERVER, b"apiVersion: v1\nkind: Pod\nspec:\n  containers:\n  - name: a\n   image: b\n")
    refused(("edit", APISERVER, "--flag", "profiling=false"), 2, str(node.path(APISERVER)), "line")


def test_flags_on_a_file_that_is_not_a_pod(node, refused):
    refused(("edit", KUBELET_CONFIG, "--flag", "profiling=false"), 2, str(node.path(KUBELET_CONFIG)), "Pod")


def test_pod_without_containers(node, refused):
    node.write(APISERVER, b"apiVersion: v1\nkind: Pod\nmetadata:\n  name: x\nspec:\n  containers: []\n")
    refused(("edit", APISERVER, "--flag", "profiling=false"), 2, str(node.path(APISERVER)), "container")


def test_pod_without_a_container_for_the_component(node, refused):
    node.write(APISERVER, b"apiVersion: v1\nkind: Pod\nspec:\n  containers:\n  - name: nginx\n"
                          b"    command:\n    - nginx\n")
    refused(("edit", APISERVER, "--flag", "profiling=false"), 2, str(node.path(APISERVER)), "kube-apiserver")


def test_missing_file(node, refused):
    refused(("edit", "/etc/kubernetes/manifests/nope.yaml", "--flag", "a=b"), 2, "nope.yaml", "no such file")


def test_directory(node, refused):
    refused(("edit", "/etc/kubernetes/manifests", "--flag", "a=b"), 2, "manifests", "directory")


def test_unknown_option(node, refused):
    refused(("edit", APISERVER, "--bogus"), 2, "--bogus")


def test_no_operation_given(node, refused):
    refused(("edit", APISERVER), 2, "nothing to do")


def test_set_value_that_is_not_valid_yaml(node, refused):
    refused(("edit", KUBELET_CONFIG, "--set", "a=[1, 2"), 2, "--set a", "not valid YAML")


def test_set_path_with_an_unclosed_quote(node, refused):
    refused(("edit", KUBELET_CONFIG, "--set", 'evictionHard."memory.available=1Gi'), 2, "unclosed double quote")


def test_relative_path_with_a_root(node, refused):
    refused(("edit", "etc/kubernetes/manifests/kube-apiserver.yaml", "--flag", "a=b"), 2, "absolute")


def test_not_utf8(node, refused):
    node.write(APISERVER, b"apiVersion: v1\nkind: Pod # \xff\n")
    refused(("edit", APISERVER, "--flag", "a=b"), 2, "UTF-8")


@contextlib.contextmanager
def mounted_tmpfs(where, size="1m", options=""):
    where.mkdir(parents=True, exist_ok=True)
    opts = f"size={size}" + (f",{options}" if options else "")
    mount = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(where)], capture_output=True, text=True)
    if mount.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({mount.stderr.strip()}); needs root in a mount-capable sandbox")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def test_read_only_file_system(node, cisfix, tmp_path):
    manifests = node.path("/etc/kubernetes/manifests")
    saved = tmp_path / "saved"
    shutil.copytree(manifests, saved)
    with mounted_tmpfs(manifests):
        shutil.copytree(saved, manifests, dirs_exist_ok=True)
        subprocess.run(["mount", "-o", "remount,ro", str(manifests)], check=True)
        result = cisfix("edit", APISERVER, "--flag", "profiling=false")
        assert_refused(node, result, 2, str(manifests), "read-only file system")
        assert node.journal_records() == []


def test_read_only_directory(node, cisfix):
    manifests = node.path("/etc/kubernetes/manifests")
    # Root ignores permission bits, so an immutable directory is the read-only directory root meets.
    if subprocess.run(["chattr", "+i", str(manifests)], capture_output=True).returncode != 0:
        pytest.skip("chattr +i is not supported on this file system")
    try:
        result = cisfix("edit", APISERVER, "--flag", "profiling=false")
        assert_refused(node, result, 2, str(manifests), "not writable")
    finally:
        subprocess.run(["chattr", "-i", str(manifests)], check=True)


def test_disk_full_while_writing_the_temp_file(node, cisfix, tmp_path):
    manifests = node.path("/etc/kubernetes/manifests")
    original = node.read(APISERVER)
    saved = {n: d for n, d in node.snapshot().items() if n.startswith("/etc/kubernetes/manifests/")}
    with mounted_tmpfs(manifests, size="64k"):
        for name, data in saved.items():
            node.write(name, data)
        filler = manifests / ".filler"
        with contextlib.suppress(OSError), open(filler, "wb", buffering=0) as f:
            while True:  # leave less room than the new manifest needs
                f.write(b"x" * 1024)
        result = cisfix("--state-dir", str(tmp_path / "state"), "edit", APISERVER, "--flag", "profiling=false")
        assert result.returncode == 3, result.stderr
        assert str(node.path(APISERVER)) in result.stdout + result.stderr
        assert "No space left on device" in result.stdout + result.stderr
        assert node.read(APISERVER) == original
        assert sorted(p.name for p in manifests.iterdir()) == [".filler", *sorted(p.rsplit("/", 1)[1] for p in saved)]


def test_file_changed_by_someone_else_after_it_was_read(node, monkeypatch):
    from cisfix import engine
    from cisfix.engine import run_changes
    from cisfix.types import EditFile
    from cisfix.errors import InputError
    from cisfix.node import Node
    from cisfix.plan import SetFlag

    real_plan = engine.plan_changes
    meddled = node.read(APISERVER) + b"# someone else\n"

    def plan_then_meddle(*args):
        planned = real_plan(*args)
        node.write(APISERVER, meddled)
        return planned

    monkeypatch.setattr(engine, "plan_changes", plan_then_meddle)
    with pytest.raises(InputError, match="changed since it was read"):
        run_changes(Node(str(node.root)), [EditFile(APISERVER, (SetFlag("profiling", "false"),))])
    assert node.read(APISERVER) == meddled


# ---- hostile or odd node files: one line, exit 2, never blocking, never more than linear time ----

def _make_fifo(path):
    path.unlink()
    os.mkfifo(path)


def _make_socket(path):
    path.unlink()
    listener = socket.socket(socket.AF_UNIX)
    cwd = os.getcwd()
    os.chdir(path.parent)  # a relative name: the full path is longer than sun_path allows
    try:
        listener.bind(path.name)
    finally:
        os.chdir(cwd)
    return listener


@pytest.mark.parametrize("kind,make", [("FIFO", _make_fifo), ("socket", _make_socket)])
@pytest.mark.parametrize("command", [("edit", APISERVER, "--flag", "profiling=false"), ("audit", "--format", "json"), ("fix",),
                                     ("fix", "--dry-run")])
def test_a_manifest_that_is_not_a_regular_file_is_refused_without_blocking(node, cisfix, kind, make, command):
    held = make(node.path(APISERVER))
    try:
        result = cisfix(*command, timeout=60)  # a blocked open would hang here
    finally:
        if held:
            held.close()
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert f"{node.path(APISERVER)}: is a {kind}, not a regular file" in result.stdout + result.stderr
    if command[0] != "audit":
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert not node.state_dir.exists()  # refused before the lock (which lives there) was taken


def test_a_device_as_a_node_file_is_refused(node, cisfix):
    node.path(APISERVER).unlink()
    try:
        os.mknod(node.path(APISERVER), stat.S_IFCHR | 0o600, os.makedev(1, 5))  # like /dev/zero: never ends
    except PermissionError as exc:
        pytest.skip(f"cannot create a device node here ({exc.strerror}); needs root with CAP_MKNOD")
    result = cisfix("edit", APISERVER, "--flag", "profiling=false", timeout=60)
    assert_refused(node, result, 2, "is a character device, not a regular file")


def test_a_node_file_over_one_mib_is_refused(node, cisfix):
    text = node.read(APISERVER) + b"# padding\n" * 110_000
    node.write(APISERVER, text)
    for command in (("edit", APISERVER, "--flag", "profiling=false"), ("fix",)):
        result = cisfix(*command, timeout=60)
        assert_refused(node, result, 2, str(node.path(APISERVER)), "more than the 1048576 a node file may have")
    audit = cisfix("audit", "--check", "1.2.15", "--format", "json", timeout=60)
    assert audit.returncode == 2 and "1048576" in audit.stdout


def alias_bomb(levels: int = 9) -> bytes:
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, levels):
        prev, name = chr(96 + i), chr(97 + i)
        lines.append(f"{name}: &{name} [" + ",".join([f"*{prev}"] * 9) + "]")
    return ("\n".join(lines) + "\n").encode()


@pytest.mark.parametrize("path", [APISERVER, KUBELET_CONFIG])
def test_yaml_aliases_in_node_files_are_refused(node, cisfix, path):
    node.write(path, node.read(path) + alias_bomb())
    for command in (("edit", path, "--set", "readOnlyPort=0") if path == KUBELET_CONFIG else
                    ("edit", path, "--flag", "profiling=false"), ("fix",)):
        result = cisfix(*command, timeout=60)
        assert_refused(node, result, 2, f"{node.path(path)}:", "anchors and aliases are not accepted")
    audit = cisfix("audit", "--format", "json", timeout=60)
    assert audit.returncode == 2 and "anchors and aliases" in audit.stdout


def test_alias_check_cost_grows_linearly():
    """Not a speed target: a nine-level bomb must be refused by scanning, not by expanding 9**9 items."""
    from cisfix.errors import InputError
    from cisfix.nodefile import refuse_yaml_aliases

    with pytest.raises(InputError, match=r"bomb.yaml:1: YAML anchors"):
        refuse_yaml_aliases(alias_bomb(9).decode(), "bomb.yaml")


def test_a_nul_byte_is_one_line(node, cisfix):
    node.write(APISERVER, node.read(APISERVER).replace(b"kind: Pod", b"kind: Po\0d", 1))
    result = cisfix("edit", APISERVER, "--flag", "profiling=false")
    assert_refused(node, result, 2, f"{node.path(APISERVER)}:", "NUL byte")
    audit = cisfix("audit", "--check", "1.2.15")
    assert audit.returncode == 2 and "NUL byte" in audit.stdout
