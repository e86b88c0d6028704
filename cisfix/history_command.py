"""`cisfix history`: the journal's transactions, their state, files, hashes and backups."""
from __future__ import annotations

import argparse
import json

from .cli_context import AddCommand, format_option, load_node


def add_command(command: AddCommand) -> None:
    history = command("history", cmd_history, "list transactions, their state, files, hashes and backups")
    format_option(history)


def cmd_history(args: argparse.Namespace) -> int:
    from .journal import Journal
    import time

    node = load_node(args)
    txs = Journal(node.state_dir / "journal.jsonl").transactions()
    entries = []
    for tx in txs.values():
        files = [{"path": f["path"],
                  "backup": str(node.state_dir / f["backup"]) if f["backup"] else None,
                  "sha256_before": f["before"] and f["before"]["sha256"],
                  "sha256_after": f["after"]["sha256"]} for f in tx.files]
        entries.append({"txid": tx.txid, "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(tx.time)),
                        "state": tx.state, "label": tx.label, "files": files})
    if args.format == "json":
        print(json.dumps(entries, indent=2))
        return 0
    if not entries and not args.quiet:
        print("no transactions")
    for e in entries:
        print(f"{e['txid']}  {e['time']}  {e['state']:<15}  {e['label']}")
        for f in e["files"]:
            print(f"    {node.display(f['path'])}  backup {f['backup'] or '-'}")
    return 0
