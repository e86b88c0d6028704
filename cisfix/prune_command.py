"""`cisfix prune`: remove finished transactions and their backups past the retention."""
from __future__ import annotations

import argparse

from .cli_context import AddCommand, load_node, wait_option


def add_command(command: AddCommand) -> None:
    prune = command("prune", cmd_prune, "remove finished transactions and their backups past the retention")
    prune.add_argument("--dry-run", action="store_true", help="list what would be pruned, change nothing")
    wait_option(prune)


def cmd_prune(args: argparse.Namespace) -> int:
    from .engine import Session
    from .interrupted import recovery_lines
    from .journal import Journal
    from .pause import going_ahead
    from .retention import prune_node

    node = load_node(args)
    paused = going_ahead(node, "prune")
    if paused:
        print(paused)
    if args.dry_run:
        pruned = prune_node(node, Journal(node.state_dir / "journal.jsonl"), dry_run=True)
    else:
        with Session(node, args.wait) as session:
            for line in recovery_lines(node, session.recovery):  # a change: also with -q
                print(line)
            pruned = session.pruned + prune_node(node, session.journal)
    verb = "would prune" if args.dry_run else "pruned"
    for tx in pruned:
        if not args.quiet:
            print(f"{verb} {tx.txid}  {tx.state:<12} {tx.label}")
    if not args.quiet:
        print(f"{verb} {len(pruned)} transaction(s) and their backups")
    return 0
