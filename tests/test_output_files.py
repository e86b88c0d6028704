"""Files root writes where it is told (`audit --output`, drift's textfile) are written like Ansible's
atomic_move: the folder must be one only root can change, the name is never followed, only a regular
file is replaced, and a reader sees the old file or the new one. The attacks of a local user who can
write near the file are replayed as a real one (`useradd`); each ends in one line, exit 2, nothing
written."""
from __future__ import annotations

import contextlib
import os
import stat
import subprocess
import sys

import pytest

from conftest import APISERVER, KUBELET_CONFIG, run_cisfix
from hostile import as_mallory, her_dir, mallory, shared_dir  # noqa: F401 (fixtures)
from prometheus import parse_prometheus
from test_bad_input import mounted_tmpfs
from test_trust import one_line, shared_node  # noqa: F401 (fixture)

TEXTFILE_DIR = "/var/lib/node_exporter/textfile"
MANIFESTS = "/etc/kubernetes/manifests"


def paused(node):
    """A node whose drift run exits 0 (it stands aside), so the textfile alone decides the exit code."""
    assert run_cisfix(node, "pause", "--reason", "output file tests").returncode == 0
    return node


def listing(folder):
    return sorted(os.listdir(folder))


def fingerprint(path):
    st = os.lstat(path)
    return path.read_bytes(), stat.S_IMODE(st.st_mode), st.st_uid


def test_her_link_in_the_textfile_folder_she_owns_is_refused_and_root_file_kept(shared_node, mallory):
    node = paused(shared_node)
    folder = node.path(TEXTFILE_DIR)
    folder.mkdir(parents=True)
    os.chown(folder, *mallory)  # the node_exporter user's folder, say
    victim = node.path(APISERVER)
    before = fingerprint(victim)
    linked = as_mallory(mallory, "import os,sys; os.symlink(sys.argv[1], sys.argv[2])", str(victim),
                        str(folder / "cisfix.prom"))
    assert linked.returncode == 0, linked.stderr

    result = run_cisfix(node, "drift")
    assert result.returncode == 2, result.stdout + result.stderr
    line = one_line(result)
    assert str(folder) in line and f"owned by uid {mallory[0]}, not root" in line
    assert fingerprint(victim) == before
    assert os.path.islink(folder / "cisfix.prom") and listing(folder) == ["cisfix.prom"]


def test_a_textfile_folder_she_links_to_the_manifests_folder_is_refused(shared_node, mallory):
    node = paused(shared_node)
    exporter = node.path("/var/lib/node_exporter")
    exporter.mkdir(parents=True)
    os.chown(exporter, *mallory)
    manifests = node.path(MANIFESTS)
    before = listing(manifests)
    linked = as_mallory(mallory, "import os,sys; os.symlink(sys.argv[1], sys.argv[2])", str(manifests),
                        str(exporter / "textfile"))
    assert linked.returncode == 0, linked.stderr

    for command in (["drift"], ["audit", "--format", "prometheus", "--output", str(node.path(TEXTFILE_DIR)) + "/x.prom"]):
        result = run_cisfix(node, *command)
        assert result.returncode == 2, result.stdout + result.stderr
        line = one_line(result)
        assert str(exporter) in line and f"owned by uid {mallory[0]}" in line
        assert listing(manifests) == before


@pytest.mark.parametrize("command", ["drift", "audit"])
def test_a_textfile_path_that_resolves_into_the_static_pod_folder_is_refused(node, command):
    """Even through a link only root could have made: the kubelet runs every file there as a pod."""
    paused(node)
    node.path("/var/lib/node_exporter").mkdir(parents=True)
    os.symlink(node.path(MANIFESTS), node.path(TEXTFILE_DIR))
    before = {name: node.read(f"{MANIFESTS}/{name}") for name in listing(node.path(MANIFESTS))}
    target = str(node.path(TEXTFILE_DIR) / "cisfix.prom")
    args = ["drift"] if command == "drift" else ["audit", "--format", "prometheus", "--output", target]

    result = run_cisfix(node, *args)
    assert result.returncode == 2, result.stdout + result.stderr
    line = one_line(result)
    assert str(node.path(MANIFESTS)) in line and "static pod folder" in line
    assert {name: node.read(f"{MANIFESTS}/{name}") for name in listing(node.path(MANIFESTS))} == before


def test_output_to_dev_full_is_refused_and_it_stays_a_device(node):
    result = run_cisfix(node, "audit", "--output", "/dev/full")
    assert result.returncode == 2, result.stdout + result.stderr
    assert one_line(result).startswith("cisfix: error: /dev/full: is a character device")
    assert stat.S_ISCHR(os.lstat("/dev/full").st_mode)


@pytest.mark.parametrize("kind", ["symbolic link", "FIFO", "directory"])
def test_output_that_is_not_a_regular_file_is_refused_never_followed(node, tmp_path, kind):
    target = tmp_path / "report"
    root_file = tmp_path / "root-only"
    root_file.write_bytes(b"root's own\n")
    os.chmod(root_file, 0o600)
    {"symbolic link": lambda: os.symlink(root_file, target), "FIFO": lambda: os.mkfifo(target),
     "directory": lambda: target.mkdir()}[kind]()
    kind_of = stat.S_IFMT(os.lstat(target).st_mode)

    result = run_cisfix(node, "audit", "--format", "json", "--output", str(target))
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"{target}: is a {kind}" in one_line(result)
    assert stat.S_IFMT(os.lstat(target).st_mode) == kind_of
    assert fingerprint(root_file) == (b"root's own\n", 0o600, 0)
    assert listing(tmp_path) == ["node", "report", "root-only"]


def test_output_into_missing_folders_below_trusted_ones_creates_them_0755(node, tmp_path):
    target = tmp_path / "reports" / "cis" / "node.json"
    result = subprocess.run([sys.executable, "-m", "cisfix", "--root", str(node.root), "audit", "--format", "json",
                             "--output", str(target)], capture_output=True, text=True, umask=0o077)
    assert result.returncode in (0, 1) and result.stderr == "", result.stderr
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in (target.parent.parent, target.parent, target)}
    assert modes == {"reports": 0o755, "cis": 0o755, "node.json": 0o644}
    assert target.read_text().startswith("{")


def test_output_into_a_missing_folder_below_hers_is_refused(node, her_dir, mallory):
    result = run_cisfix(node, "audit", "--output", str(her_dir / "new" / "report.txt"))
    assert result.returncode == 2, result.stdout + result.stderr
    line = one_line(result)
    assert str(her_dir) in line and f"owned by uid {mallory[0]}" in line
    assert listing(her_dir) == []


@pytest.mark.parametrize("hers", ["file", "link"])
def test_her_entry_in_a_shared_sticky_folder_is_not_replaced(node, shared_dir, mallory, hers):
    """In a folder like /tmp she cannot replace root's files, but what she put there stays hers."""
    sticky = shared_dir / "tmp"
    sticky.mkdir()
    os.chmod(sticky, 0o1777)
    target = sticky / "report.txt"
    code = "import os,sys; " + ("open(sys.argv[1], 'w').write('hers\\n')" if hers == "file"
                                else "os.symlink('/etc/shadow', sys.argv[1])")
    assert as_mallory(mallory, code, str(target)).returncode == 0

    result = run_cisfix(node, "audit", "--output", str(target))
    assert result.returncode == 2, result.stdout + result.stderr
    assert str(target) in one_line(result)
    assert os.lstat(target).st_uid == mallory[0] and listing(sticky) == ["report.txt"]
    if hers == "file":
        assert target.read_text() == "hers\n"


@pytest.mark.parametrize("problem", ["No space left on device", "Read-only file system"])
def test_a_write_error_is_one_line_and_leaves_the_old_file_and_no_temp_file(node, tmp_path, problem):
    with mounted_tmpfs(tmp_path / "reports", size="64k") as folder:
        target = folder / "node.json"
        target.write_text("{}\n")
        os.chmod(target, 0o644)
        if problem == "Read-only file system":
            subprocess.run(["mount", "-o", "remount,ro", str(folder)], check=True)
        else:
            with contextlib.suppress(OSError), open(folder / ".filler", "wb", buffering=0) as filler:
                while True:  # less room than the report needs
                    filler.write(b"x" * 1024)
        before = listing(folder)

        result = run_cisfix(node, "audit", "--format", "json", "--output", str(target))
        assert result.returncode == 2, result.stdout + result.stderr
        line = one_line(result)
        assert str(target) in line and problem in line
        assert target.read_text() == "{}\n" and listing(folder) == before


def test_drift_textfile_is_0644_and_a_collector_never_sees_half_of_it(shared_node, mallory):
    node = paused(shared_node)
    textfile = node.path(TEXTFILE_DIR) / "cisfix.prom"
    collect = "import sys; sys.stdout.write(open(sys.argv[1]).read())"  # node_exporter runs as another user

    assert run_cisfix(node, "drift").returncode == 0
    assert stat.S_IMODE(textfile.stat().st_mode) == 0o644 and textfile.stat().st_uid == 0
    assert stat.S_IMODE(textfile.parent.stat().st_mode) == 0o755
    first = as_mallory(mallory, collect, str(textfile))
    assert first.returncode == 0 and parse_prometheus(first.stdout)

    # Killed halfway through writing the next one: the collector still reads the last whole file, and
    # the half-written temp file is a dotfile, which the collector (it reads *.prom) never opens.
    killed = run_cisfix(node, "drift", env={"CISFIX_FAULT": "mid-write"})
    assert killed.returncode == -9, killed.stderr
    second = as_mallory(mallory, collect, str(textfile))
    assert second.stdout == first.stdout
    assert [name for name in listing(textfile.parent) if not name.startswith(".")] == ["cisfix.prom"]

    assert run_cisfix(node, "drift").returncode == 0
    assert parse_prometheus(as_mallory(mallory, collect, str(textfile)).stdout)


def test_a_refused_textfile_leaves_a_failing_drift_run_its_own_exit_code(node):
    """Exit 1 says what the node needs; the refusal is the one line on stderr."""
    folder = node.path(TEXTFILE_DIR)
    folder.mkdir(parents=True)
    os.chmod(folder, 0o775)
    result = run_cisfix(node, "drift")
    assert result.returncode == 1 and result.stdout.startswith("NOT ENFORCED "), result.stdout + result.stderr
    line = one_line(result)
    assert str(folder) in line and "writable by group or others (mode 0775)" in line
    assert listing(folder) == []


@pytest.mark.parametrize("planted", ["hard link", "symbolic link", "her file", "her folder"])
def test_the_change_log_is_never_appended_through_what_another_user_planted(shared_node, mallory, planted):
    """/var/log may be writable by a log group (Ubuntu: root:syslog 0775): what the change log's name
    holds is checked once opened, and a change goes ahead without its log line, saying so once."""
    node = shared_node
    victim = node.path(KUBELET_CONFIG)
    before = fingerprint(victim)
    log = node.path("/var/log/cisfix.log")
    log.parent.mkdir(parents=True, exist_ok=True)
    if planted == "hard link":  # made by root here: protected_hardlinks would stop her making it herself
        os.link(victim, log)
    elif planted == "symbolic link":
        os.chown(log.parent, 0, mallory[1])
        os.chmod(log.parent, 0o775)
        made = as_mallory(mallory, "import os,sys; os.symlink(sys.argv[1], sys.argv[2])", str(victim), str(log))
        assert made.returncode == 0, made.stderr
    elif planted == "her file":
        log.write_bytes(b"")
        os.chown(log, *mallory)
    else:  # she may delete what root logs there
        os.chown(log.parent, *mallory)

    result = run_cisfix(node, "edit", APISERVER, "--flag", "profiling=false")
    assert result.returncode == 0, result.stdout + result.stderr
    warnings = [line for line in result.stderr.splitlines() if "not appending" in line]
    assert len(warnings) == 1 and str(log) in warnings[0], result.stderr
    assert fingerprint(victim) == before
    assert b"--profiling=false" in node.path(APISERVER).read_bytes()


@pytest.mark.parametrize("target, why", [
    ("/var/lib/cisfix/journal.jsonl", "is cisfix's state folder (its journal and backups)"),
    ("/var/lib/cisfix/backups/x", "is cisfix's state folder (its journal and backups)"),
    (KUBELET_CONFIG, "is kubelet's settings file, which cisfix changes only inside a transaction"),
])
@pytest.mark.parametrize("command", ["audit", "drift"])
def test_an_output_never_replaces_the_journal_or_a_file_cisfix_manages(node, target, why, command):
    """A slip of the operator's (`--output` pointed at the journal) would leave a transaction that can no
    longer be rolled back, or a kubelet that reads a report as its configuration."""
    assert run_cisfix(node, "edit", APISERVER, "--flag", "profiling=false").returncode == 0  # a journal
    if command == "drift":
        paused(node)  # so that the textfile alone decides its exit code
    before = node.snapshot()
    option = "--output" if command == "audit" else "--textfile"
    result = run_cisfix(node, command, option, str(node.path(target)))
    assert result.returncode == 2, result.stdout + result.stderr
    assert why in result.stderr.strip().splitlines()[-1]
    assert node.snapshot() == before
