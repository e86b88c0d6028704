"""The release archive cisfix.pyz: pure Python, reproducible, and runnable wherever it is copied.

Builds with build/build.sh into temporary directories (a few seconds each once build/.cache holds
the build venv and the pinned wheels; the first build downloads them). build/smoke.sh covers every
installed CPython and the `edit` flow; this file checks the archive itself with the interpreter that
runs the tests.
"""
from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from pyz_fixtures import REPO, build

COMPILED_SUFFIXES = (".so", ".pyd", ".dll", ".dylib")


@pytest.fixture
def python_bin(tmp_path) -> Path:
    """A directory whose `python3` is the interpreter running the tests, for the shebang runs."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python3").symlink_to(sys.executable)
    return bin_dir


def run(args, env, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in args], env=env, capture_output=True, text=True, timeout=120,
                          **kwargs)


def head_commit() -> str:
    return subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True,
                          check=True).stdout.strip()


def test_archive_holds_no_compiled_code_and_is_small(pyz):
    with zipfile.ZipFile(pyz) as archive:
        names = archive.namelist()
        compiled = [n for n in names if n.endswith(COMPILED_SUFFIXES) or archive.read(n)[:4] == b"\x7fELF"]
    assert compiled == []
    assert "site-packages/ruamel/yaml/main.py" in names and "site-packages/jsonschema/validators.py" in names
    assert pyz.stat().st_size < 2 * 1024 * 1024


def test_checksum_file_verifies_with_sha256sum(pyz):
    assert run(["sha256sum", "-c", "cisfix.pyz.sha256"], os.environ, cwd=pyz.parent).returncode == 0


@pytest.mark.slow
def test_two_builds_of_one_commit_are_byte_identical(pyz, tmp_path):
    again = build(tmp_path / "dist")
    assert again.read_bytes() == pyz.read_bytes()
    assert (tmp_path / "dist/cisfix.pyz.sha256").read_text() == (pyz.parent / "cisfix.pyz.sha256").read_text()


def test_version_names_the_commit_without_loading_yaml_or_jsonschema(pyz, tmp_path):
    env = dict(os.environ, SHIV_ROOT=str(tmp_path / "root"))
    result = run([sys.executable, "-X", "importtime", pyz, "--version"], env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("cisfix ") and f"(commit {head_commit()[:12]}" in result.stdout
    imported = {line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines() if "|" in line}
    assert not {m for m in imported if m.startswith(("ruamel", "jsonschema"))}


def test_runs_with_home_unset(pyz, python_bin):
    env = {k: v for k, v in os.environ.items() if k not in ("HOME", "SHIV_ROOT")}
    env["PATH"] = f"{python_bin}:{env.get('PATH', '/usr/bin:/bin')}"
    result = run([pyz, "--version"], env)
    assert result.returncode == 0, result.stderr
    assert f"(commit {head_commit()[:12]}" in result.stdout


def test_runs_under_env_i_like_cron(pyz, python_bin):
    result = run(["env", "-i", f"PATH={python_bin}:/usr/bin:/bin", pyz, "--version"], os.environ)
    assert result.returncode == 0, result.stderr
    assert f"(commit {head_commit()[:12]}" in result.stdout


def test_refuses_an_extraction_root_others_can_write(pyz, tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)  # world-writable, not sticky: anyone could swap the root for their own
    result = run([sys.executable, pyz, "--version"], dict(os.environ, SHIV_ROOT=str(shared / "root")))
    assert result.returncode != 0
    assert "refusing SHIV_ROOT" in result.stderr
    assert not (shared / "root").exists()


def test_the_older_runners_import_works_from_the_archive(pyz, tmp_path):
    """`from cis_k8s_unified import CISUnifiedRunner` with only the archive on the path (shiv's
    interpreter mode runs the script inside it), changing a copy of the test kit's node."""
    from cisfix.testing import build_node

    node = build_node(tmp_path / "node")
    script = (f"from cis_k8s_unified import CISUnifiedRunner\n"
              f"r = CISUnifiedRunner(root={str(node.root)!r}).update_manifest_safely("
              f"'/etc/kubernetes/manifests/kube-apiserver.yaml', '--profiling=', 'false')\n"
              f"print(r['status'], r['changes_made'], r['backup_path'] != r['backup_dir'])\n")
    env = dict(os.environ, SHIV_INTERPRETER="1", SHIV_ROOT=str(tmp_path / "extracted"))
    result = run([sys.executable, pyz, "-c", script], env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "FIXED 1 True\n"
    assert b"--profiling=false" in node.read("/etc/kubernetes/manifests/kube-apiserver.yaml")


def test_the_older_runners_import_works_with_the_archive_on_pythonpath(pyz, tmp_path):
    """`PYTHONPATH=cisfix.pyz python3 script.py`, as the older runner's users run their scripts, with an
    interpreter that has no cisfix of its own: the package comes from the archive's extraction."""
    env = dict(os.environ, PYTHONPATH=str(pyz), SHIV_ROOT=str(tmp_path / "extracted"))
    script = ("import cis_k8s_unified, cisfix\nfrom cis_k8s_unified import CISUnifiedRunner\n"
              "print(CISUnifiedRunner is cisfix.Runner, cis_k8s_unified.__file__)\n")
    base_python = os.path.realpath(sys.executable)  # the venv's interpreter without the venv
    result = run([base_python, "-c", script], env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    same, where = result.stdout.split()
    assert same == "True" and where.startswith(str(tmp_path / "extracted" / "cisfix.pyz_"))
    assert run([base_python, "-c", "import cisfix"], dict(env, PYTHONPATH=""), cwd=tmp_path).returncode != 0


def test_the_html_reports_templates_are_read_from_the_archive(pyz, tmp_path):
    """cisfix/templates/ ships in the archive (package data) and is found by importlib.resources there."""
    env = dict(os.environ, SHIV_INTERPRETER="1", SHIV_ROOT=str(tmp_path / "extracted"))
    script = ("from cisfix.htmlreport import render_fleet, render_node\n"
              "import cisfix, sys\n"
              "page = render_node({'node': {'name': 'cp-1'}}) + render_fleet([{}])\n"
              "sys.stdout.write(cisfix.__file__ + '\\n' + page)\n")
    result = run([sys.executable, pyz, "-c", script], env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    where, page = result.stdout.split("\n", 1)
    assert where.startswith(str(tmp_path / "extracted"))
    assert page.count("<style>\n/* One page an auditor reads") == 2
    assert page.count('window.addEventListener("beforeprint"') == 2
    assert "CIS benchmark report: cp-1" in page
