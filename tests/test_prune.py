"""Retention: finished transactions past the retention are pruned with their backups, the journal stays
bounded, and nothing recovery or a rollback still needs is ever pruned."""
from __future__ import annotations

import json
import time

from cisfix.engine import Session
from cisfix.atomic import sha256
from cisfix.node import Node
from cisfix.retention import DAY, Retention, prune
from cisfix.transaction import FileChange, apply_changes, rollback_committed
from conftest import APISERVER, run_cisfix

FILES = ("/etc/kubernetes/one.conf", "/etc/kubernetes/two.conf")


def commit(session, path, content):
    """One committed transaction writing `content` to `path`."""
    host = session.node.host(path)
    old = host.read_bytes() if host.exists() else None
    return apply_changes(session.node, session.journal, session.log,
                         [FileChange(path, content, sha256(old) if old is not None else None)], f"write {path}")


def configure(node, text):
    """Add to the node's configuration (the test node's says `offline: true`)."""
    config = node.path("/etc/cisfix/config.yaml")
    config.write_text(config.read_text() + text)


def test_the_journal_stays_bounded_after_500_committed_transactions(node):
    configure(node, "retention:\n  days: 0\n  keep: 50\n")
    sizes = []
    for i in range(500):
        with Session(Node(str(node.root))) as session:
            commit(session, FILES[i % 2], f"generation {i}\n".encode())
        if i % 100 == 99:
            sizes.append(session.journal.path.stat().st_size)
    with Session(Node(str(node.root))) as session:  # the next run prunes the 500th's predecessors
        txs = session.journal.transactions()
    assert len(txs) == 50 and all(tx.state == "committed" for tx in txs.values())
    backups = sorted(p.name for p in (node.state_dir / "backups").iterdir())
    assert backups == sorted(t for t, tx in txs.items() if tx.files[0]["backup"])
    assert max(sizes) <= min(sizes) * 1.1, sizes  # bounded, not growing with the count
    assert node.read(FILES[1]) == b"generation 499\n"


def test_defaults_keep_30_days_and_at_least_the_last_50(node):
    with Session(Node(str(node.root))) as session:
        txids = [commit(session, f"/etc/kubernetes/file{i}.conf" if i < 59 else FILES[0], b"x%d\n" % i)
                 for i in range(60)]
        journal, backups = session.journal, node.state_dir / "backups"
        assert prune(journal, backups, Retention(), now=time.time() + 29 * DAY) == []
        # file0..file58 were each changed once: the last change of a file is kept whatever its age.
        assert prune(journal, backups, Retention(), now=time.time() + 31 * DAY) == []
        for i in range(20):  # now file0..file19 have a newer change each
            commit(session, f"/etc/kubernetes/file{i}.conf", b"y%d\n" % i)
        pruned = prune(journal, backups, Retention(), now=time.time() + 31 * DAY)
    assert [tx.txid for tx in pruned] == txids[:20]
    assert len(journal.transactions()) == 60
    assert not any((backups / t).exists() for t in txids[:20])


def test_the_last_fix_of_every_check_is_kept_so_drift_still_enforces_it(node):
    """`cisfix drift` enforces what cisfix fixed, read from the journal: pruning must not forget it,
    however many later transactions changed the same file."""
    from cisfix.drift import committed_fixes
    from cisfix.journal import fix_label

    with Session(Node(str(node.root))) as session:
        first = apply_changes(session.node, session.journal, session.log,
                              [FileChange(FILES[0], b"fixed\n", sha256(node.read(FILES[0]))
                                          if node.path(FILES[0]).exists() else None)], fix_label(["1.2.15"]))
        for i in range(60):
            commit(session, FILES[0], b"later %d\n" % i)
        pruned = prune(session.journal, node.state_dir / "backups", Retention(), now=time.time() + 31 * DAY)
        assert len(pruned) == 10 and first not in [tx.txid for tx in pruned]
        fixed, _ = committed_fixes(session.journal)
    assert fixed["1.2.15"].txid == first


def test_never_unfinished_never_a_failed_rollback(node):
    from cisfix.journal import Journal

    assert run_cisfix(node, "edit", APISERVER, "--flag", "profiling=false").returncode == 0
    assert run_cisfix(node, "edit", APISERVER, "--flag", "audit-log-maxage=30",
                      env={"CISFIX_FAULT": "before-commit"}).returncode == -9
    journal, backups = Journal(node.state_dir / "journal.jsonl"), node.state_dir / "backups"
    (_, unfinished) = journal.transactions()
    pruned = prune(journal, backups, Retention(days=0, keep=1), now=time.time() + 1)
    assert unfinished not in [tx.txid for tx in pruned]
    assert journal.get(unfinished).state == "open" and (backups / unfinished).is_dir()

    with Session(Node(str(node.root))) as session:  # recovers the unfinished one first
        failed = commit(session, FILES[0], b"mine\n")
        node.write(FILES[0], b"someone else's\n")
        assert not rollback_committed(session.node, session.journal, session.log, session.journal.get(failed)).ok
        commit(session, FILES[1], b"later\n")
        prune(session.journal, backups, Retention(days=0, keep=1), now=time.time() + 1)
    assert journal.get(failed).state == "rollback-failed"


def test_prune_command_dry_run_then_for_real(node, cisfix):
    configure(node, "retention:\n  days: 0\n  keep: 1\n")
    for flag in ("profiling=false", "audit-log-maxage=30", "audit-log-maxage=31"):
        assert cisfix("edit", APISERVER, "--flag", flag).returncode == 0
    # Each run pruned at its start what was past the retention then.
    first, last = [tx["txid"] for tx in json.loads(cisfix("history", "--format", "json").stdout)]
    before = (node.state_dir / "journal.jsonl").read_bytes()
    dry = cisfix("prune", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert f"would prune {first}" in dry.stdout and "would prune 1 transaction(s)" in dry.stdout
    assert (node.state_dir / "journal.jsonl").read_bytes() == before
    real = cisfix("prune")
    assert real.returncode == 0 and "pruned 1 transaction(s)" in real.stdout
    assert [tx["txid"] for tx in json.loads(cisfix("history", "--format", "json").stdout)] == [last]
    assert sorted(p.name for p in (node.state_dir / "backups").iterdir()) == [last]
    assert cisfix("rollback", "--last").returncode == 0  # the last change of a file can still be undone


def test_orphan_backup_folders_are_removed(node, cisfix):
    assert cisfix("edit", APISERVER, "--flag", "profiling=false").returncode == 0
    orphan = node.state_dir / "backups" / "20200101T000000Z-000000"
    orphan.mkdir()
    (orphan / "left").write_text("from a crash between compaction and removal\n")
    assert cisfix("prune").returncode == 0
    assert not orphan.exists()
