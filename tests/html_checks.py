"""Reading a report page as the tests do: Chromium's serialised DOM as text per element (`Dom`), the
page source through a strict XML parser (`strict`), its ids, and the folder the rendered pages and
screenshots go to (`render_dir`: $CISFIX_RENDER_DIR when set, else a temporary folder; printed)."""
from __future__ import annotations

import os
import re
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path
from typing import Dict, List

import pytest

VOID = {"meta", "br", "img", "input", "link", "hr", "source", "wbr", "area", "base", "col", "embed", "track"}


class Dom(HTMLParser):
    """The text of every element that has an id, the page's whole text, and its elements by tag: what a
    person reads, from Chromium's serialised DOM (HTML, not XML)."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.open: List[tuple] = []
        self.text_by_id: Dict[str, List[str]] = {}
        self.tags: List[tuple] = []
        self.words: List[str] = []
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append((tag, attrs))
        if tag not in VOID:
            self.open.append((tag, attrs.get("id")))
            if attrs.get("id"):
                self.text_by_id.setdefault(attrs["id"], [])

    def handle_endtag(self, tag):
        while self.open and self.open.pop()[0] != tag:
            pass

    def handle_data(self, data):
        if any(t in ("script", "style") for t, _ in self.open):
            return
        self.words.append(data)
        for _, element_id in self.open:
            if element_id:
                self.text_by_id[element_id].append(data)

    def text(self, element_id: str = "") -> str:
        words = self.text_by_id[element_id] if element_id else self.words
        return re.sub(r"\s+", " ", "".join(words))


def strict(html: str) -> ET.Element:
    """The page read by a strict XML parser (everything but the doctype): unbalanced tags, unquoted or
    repeated attributes, stray `&` or `<` all fail here. Returns the root with namespaces dropped."""
    assert html.startswith("<!DOCTYPE html>\n")
    root = ET.fromstring(html[len("<!DOCTYPE html>\n"):])
    for el in root.iter():
        el.tag = el.tag.split("}")[-1]
    return root


def ids_of(root: ET.Element) -> List[str]:
    return [el.get("id") for el in root.iter() if el.get("id") is not None]


@pytest.fixture(scope="module")
def render_dir(tmp_path_factory) -> Path:
    where = Path(os.environ["CISFIX_RENDER_DIR"]) if os.environ.get("CISFIX_RENDER_DIR") else \
        tmp_path_factory.mktemp("rendered")
    where.mkdir(parents=True, exist_ok=True)
    print(f"\nrendered pages and screenshots: {where}")
    return where
