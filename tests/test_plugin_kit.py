"""The plugin author's kit: every hook documented, and the example plugin installs and runs."""
from __future__ import annotations

import inspect
import os
import subprocess
import sys
from pathlib import Path

import pytest

import cisfix
from cisfix import hookspecs

REPO = Path(__file__).resolve().parents[1]
GUIDE = REPO / "plugins" / "README.md"
HOOKS = [(name, fn) for name, fn in vars(hookspecs).items() if name.startswith("cisfix_") and callable(fn)]


@pytest.mark.parametrize("name, hook", HOOKS, ids=[n for n, _ in HOOKS])
def test_every_hook_is_documented_with_signature_and_example(name, hook):
    params = ", ".join(inspect.signature(hook).parameters)
    assert f"### `{name}({params})`" in GUIDE.read_text(), f"{name} is missing from plugins/README.md"
    doc = inspect.getdoc(hook) or ""
    assert "Example::" in doc and len(doc.splitlines()) > 5, f"{name} needs a docstring with an example"


def test_every_exported_name_exists():
    for name in cisfix.__all__:
        assert getattr(cisfix, name) is not None


def test_example_plugin_installs_is_discovered_and_passes_its_tests(tmp_path):
    site = tmp_path / "site"
    install = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site),
                              str(REPO / "plugins" / "example")], capture_output=True, text=True)
    assert install.returncode == 0, install.stderr
    env = {**os.environ, "PYTHONPATH": str(site)}
    listed = subprocess.run([sys.executable, "-m", "cisfix", "plugins"], capture_output=True, text=True, env=env)
    assert "example" in listed.stdout and "entry point of cisfix-example" in listed.stdout
    tests = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                            str(REPO / "plugins" / "example" / "tests")], capture_output=True, text=True, env=env)
    assert tests.returncode == 0, tests.stdout + tests.stderr
    assert "3 passed" in tests.stdout
