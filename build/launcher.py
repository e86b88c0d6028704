# Entry point of cisfix.pyz. build/pyz.py stores this file as the archive's __main__.py in place of
# shiv's two-line one (`import _bootstrap; _bootstrap.bootstrap()`), and as _cisfix_launcher.py, whose
# choose_root the archive's top-level cis_k8s_unified (build/pyz_import.py) uses.
#
# shiv extracts the bundled site-packages to <root>/cisfix.pyz_<build id>/ once and imports from
# there on every run. Its own default root is ~/.shiv, which breaks on a read-only HOME, and when
# root runs with another user's HOME (sudo -E) it would import code that user can change. So before
# handing over to shiv, pick a root that only the effective user can enter, reached through
# directories that only that user or root can modify:
#
#   1. $SHIV_ROOT when set: the operator's explicit choice; refused (exit 2) if it is not safe.
#   2. $HOME/.shiv when HOME is set, ours and writable.
#   3. /var/cache/cisfix when running as root (cron, env -i, HOME unset or read-only).
#   4. otherwise a fresh private temporary directory, removed at exit (extracts on every run).
#
# The root is created 0700, or tightened to 0700 when we own it, so whatever shiv puts inside it
# (whatever the umask) cannot be reached by another user. shiv serialises first runs with a flock
# on <root>/.cisfix.pyz_<build id>_lock and publishes an extraction with an atomic rename, so
# concurrent first runs do not race.
import os
import stat
import sys

ROOT_FALLBACK = "/var/cache/cisfix"


def _unsafe_ancestor(path):
    """Name the first directory above `path` that someone other than root or us could modify, if any."""
    trusted = (0, os.geteuid())
    for parent in path.parents:
        st = os.lstat(parent)
        if st.st_uid not in trusted:
            return f"{parent} is owned by uid {st.st_uid}"
        # A sticky directory such as /tmp is fine: others may add entries but not rename ours.
        if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH) and not st.st_mode & stat.S_ISVTX:
            return f"{parent} is writable by group or others"
    return None


def private_root(candidate):
    """Return (path, None) when `candidate` is (made) a private directory of ours, else (None, why)."""
    from pathlib import Path

    # Resolve symlinks first and hand shiv the real path, so no link can be swapped afterwards.
    path = Path(os.path.realpath(candidate))
    try:
        why = _unsafe_ancestor(path)
        if why:
            return None, why
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            pass
        st = os.lstat(path)
        if not stat.S_ISDIR(st.st_mode):
            return None, f"{path} is not a directory"
        if st.st_uid != os.geteuid():
            return None, f"{path} is owned by uid {st.st_uid}, not {os.geteuid()}"
        if stat.S_IMODE(st.st_mode) & 0o077:
            os.chmod(path, 0o700)
        if not os.access(path, os.W_OK):
            return None, f"{path} is not writable"
    except OSError as exc:  # read-only file system, missing parent, permission denied...
        return None, f"{path}: {exc.strerror or exc}"
    return str(path), None


def temporary_root():
    """A new 0700 directory (mkdtemp) for this run only, removed at exit."""
    import atexit
    import shutil
    import tempfile

    path = tempfile.mkdtemp(prefix="cisfix-")
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    # Compiling every module up front (--compile-pyc) only pays off for an extraction that is kept:
    # here it would triple the start-up time of every run. Python compiles what it imports anyway.
    os.environ.setdefault("SHIV_COMPILE_PYC", "0")
    return path


def choose_root(environ):
    explicit = environ.get("SHIV_ROOT")
    if explicit:
        root, why = private_root(explicit)
        if root is None:
            sys.exit(f"cisfix: refusing SHIV_ROOT: {why}; it must be a directory only you can write")
        return root
    home = environ.get("HOME", "")
    if os.path.isabs(home):
        root, _ = private_root(os.path.join(home, ".shiv"))
        if root:
            return root
    if os.geteuid() == 0:
        root, _ = private_root(ROOT_FALLBACK)
        if root:
            return root
    return temporary_root()


if __name__ == "__main__":  # else imported as _cisfix_launcher by the archive's cis_k8s_unified (pyz_import.py)
    # shiv's bootstrap reads the root from SHIV_ROOT (see _bootstrap.environment.Environment.root).
    os.environ["SHIV_ROOT"] = choose_root(os.environ)

    import _bootstrap  # (shiv's bootstrap, stored in the archive by shiv)

    _bootstrap.bootstrap()
