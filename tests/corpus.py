"""The shared corpus of real node files (../shared/corpus from the repository root)."""
from __future__ import annotations

import difflib
from pathlib import Path
from typing import Callable, List, Tuple

import pytest

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"


def corpus_files(folder: str, named: Callable[[str], bool] = lambda name: True) -> list:
    """Files of one corpus folder (whose node name passes `named`) as pytest params; one skipped param
    when the corpus is absent."""
    if not (CORPUS / folder).is_dir():
        return [pytest.param(None, marks=pytest.mark.skip(reason=f"corpus not found at {CORPUS / folder}"))]
    return [pytest.param(p, id=p.name) for p in sorted((CORPUS / folder).iterdir())
            if p.is_file() and "__" in p.name and named(node_name(p))]


def corpus_file(folder: str, name: str) -> bytes:
    """One corpus file's bytes; the test is skipped, saying why, when the corpus is absent."""
    path = CORPUS / folder / name
    if not path.is_file():
        pytest.skip(f"corpus file not found at {path}")
    return path.read_bytes()


def read(path: Path) -> str:
    """The file's text with its line endings intact."""
    with open(path, encoding="utf-8", newline="") as f:
        return f.read()


def node_name(path: Path) -> str:
    """The name the file has on a node: corpus names are `<source>__<real-name>`."""
    return path.name.split("__", 1)[1]


def changed_lines(old: str, new: str) -> Tuple[List[str], List[str]]:
    """(removed lines, added lines) between two texts, line endings kept. A missing final newline
    must stay missing; it is then added to both sides so the last line only counts if it changed."""
    assert old.endswith("\n") == new.endswith("\n"), "final newline changed"
    if not old.endswith("\n"):
        nl = "\r\n" if "\r\n" in old else "\n"
        old, new = old + nl, new + nl
    removed, added = [], []
    for line in difflib.ndiff(old.splitlines(True), new.splitlines(True)):
        if line.startswith("- "):
            removed.append(line[2:])
        elif line.startswith("+ "):
            added.append(line[2:])
    return removed, added
