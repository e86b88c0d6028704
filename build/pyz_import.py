"""The older runner's import name at the top of cisfix.pyz, for its scripts run with only the archive on
the path, as its users run them:

    PYTHONPATH=cisfix.pyz python3 their_script.py      # from cis_k8s_unified import CISUnifiedRunner

build/pyz.py stores this file as the archive's cis_k8s_unified.py. The real package lives in the
archive's site-packages/ folder, which Python cannot import from a zip as cisfix needs (it reads its data
files from disk), so this module extracts the archive as running it would — shiv's extraction, into the
root the archive's launcher chooses (a folder only you can change, see build/README.md) — puts that
site-packages first on sys.path, and hands over to the package it holds: `import cis_k8s_unified` then
gives the package, never this module. Imported by the archive's own interpreter mode too (its top comes
first on sys.path there), where the extraction already exists.
"""
import importlib
import os
import site
import sys
import zipfile


def _site_packages(archive: str) -> str:
    import _cisfix_launcher  # the archive's launcher: where it extracts (imported, its __main__ part not run)
    from _bootstrap import cache_path, extract_site_packages
    from _bootstrap.environment import Environment

    try:
        root = _cisfix_launcher.choose_root(os.environ)
    except SystemExit as refused:  # an extraction root another user could change: no code from it
        raise ImportError(str(refused.code)) from None
    with zipfile.ZipFile(archive) as opened:
        env = Environment.from_json(opened.read("environment.json").decode())
        target = cache_path(opened, root, env.build_id)
        if not (target / "site-packages").exists() or env.force_extract:
            extract_site_packages(opened, target, env.compile_pyc, env.compile_workers, env.force_extract)
    return str(target / "site-packages")


def _hand_over(name: str, archive: str) -> None:
    packages = _site_packages(archive)
    before = [p for p in sys.path if p != packages]  # the archive's interpreter mode has it already
    site.addsitedir(packages)  # as shiv's bootstrap adds it: its .pth files honoured
    added = [p for p in sys.path if p not in before and p != packages]
    sys.path[:] = [packages, *added, *before]  # ahead of the archive's top, where this module is
    del sys.modules[name]
    # The import system returns what sys.modules holds once this module has run: the package.
    sys.modules[name] = importlib.import_module(name)


_hand_over(__name__, __loader__.archive)  # type: ignore[name-defined]  (zipimport's loader: the archive)
