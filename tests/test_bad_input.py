"""Bad input: one line naming the file and the reason, a non-zero exit, and nothing changed on disk."""
from __future__ import annotations

import contextlib
import shutil
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


def test_set_value_that_is_not_a_scalar(node, refused):
    refused(("edit", KUBELET_CONFIG, "--set", "a=[1, 2]"), 2, "scalar")


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
