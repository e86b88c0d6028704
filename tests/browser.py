"""Look at a page as a person would: Debian's headless Chromium renders a local HTML file once, giving
its DOM after scripts ran (`--dump-dom`), a PNG screenshot, every console message and every network
request the page made. `.ci/run` installs chromium; elsewhere the tests skip when it is absent.

Console: this Chromium (156) logs every console message and uncaught error of the page as an
`INFO:CONSOLE` line on stderr with `--enable-logging=stderr`, whatever its level, so a report page, which
logs nothing, must produce none. Network: the browser's only route out is a proxy on 127.0.0.1 that this
module runs and that records every request line; host names resolve to nothing, so nothing leaves the
machine. Chromium itself still calls its update and sign-in services through that proxy whatever the
flags say: those few hosts (BROWSER_OWN) are set aside, everything else counts as the page's request.
"""
from __future__ import annotations

import os
import re
import socket
import struct
import subprocess
import tempfile
import threading
import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional, Tuple

import pytest

CHROMIUM = "/usr/bin/chromium"
# What Chromium 156 asks of its own services at start-up even with background networking disabled.
BROWSER_OWN = ("update.googleapis.com", "accounts.google.com", "clients2.google.com", "redirector.gvt1.com",
               "optimizationguide-pa.googleapis.com", "content-autofill.googleapis.com")
REFUSED = b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
CONSOLE = re.compile(r":CONSOLE[:(]\d+\)?\] (.*)")
QUIET = ["--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
         "--disable-default-apps", "--disable-domain-reliability", "--disable-client-side-phishing-detection",
         "--no-pings", "--disable-breakpad", "--disable-features=NetworkTimeServiceQuerying,OptimizationHints,"
         "MediaRouter,Translate"]


def chromium() -> str:
    """The browser's path; a test without it skips, except in CI (`CI` set), where it fails."""
    if os.access(CHROMIUM, os.X_OK):
        return CHROMIUM
    message = f"{CHROMIUM} is absent: apt-get install -y chromium (.ci/run does)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@dataclass
class Rendered:
    dom: str
    console: List[str]
    requests: List[str]  # the page's, request lines as the proxy saw them
    png: Optional[Path]
    browser_own: List[str] = field(default_factory=list)


class Proxy:
    """A listener that takes the place of the network: it records each request's first line and refuses
    it at once (a browser left waiting for an answer takes seconds to exit)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.lines: List[str] = []
        self.thread = threading.Thread(target=self.serve, daemon=True)

    def serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(2)
                try:
                    self.lines.append(conn.recv(4096).split(b"\r\n", 1)[0].decode("latin-1"))
                    conn.sendall(REFUSED)
                except OSError as err:
                    self.lines.append(f"(unread: {err})")

    def __enter__(self) -> "Proxy":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.sock.shutdown(socket.SHUT_RDWR)  # wakes the accept(); close() alone would not
        self.sock.close()
        self.thread.join(timeout=5)


def host_of(request_line: str) -> str:
    target = request_line.split(" ")[1] if " " in request_line else request_line
    return re.sub(r"^[a-z]+://", "", target).split("/")[0].split(":")[0]


def render(page: Path, png: Optional[Path] = None, size: Tuple[int, int] = (1280, 900), timeout: float = 60,
           fragment: str = "") -> Rendered:
    """One Chromium run over `page` (at `#fragment` if given): its DOM after load and scripts, a screenshot
    of the first screen of `size` when `png` is given, its console messages and its network requests."""
    with tempfile.TemporaryDirectory(prefix="cisfix-chromium-") as profile, Proxy() as proxy:
        argv = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0", *QUIET,
                f"--proxy-server=http://127.0.0.1:{proxy.port}", "--proxy-bypass-list=<-loopback>",
                "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
                f"--window-size={size[0]},{size[1]}", "--dump-dom"]
        if png:
            argv.append(f"--screenshot={png}")
        url = page.resolve().as_uri() + (f"#{fragment}" if fragment else "")
        done = subprocess.run(argv + [url], capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"chromium exited {done.returncode}: {done.stderr[-2000:]}"
    console = [m.group(1) for m in map(CONSOLE.search, done.stderr.splitlines()) if m]
    own = [line for line in proxy.lines if host_of(line) in BROWSER_OWN]
    return Rendered(dom=done.stdout, console=console, png=png if png and png.exists() else None,
                    requests=[line for line in proxy.lines if line not in own], browser_own=own)


def printed_pages(page: Path, pdf: Path, timeout: float = 60) -> int:
    """Print `page` to `pdf` as Chromium's print dialog would (print media); the number of pages."""
    with tempfile.TemporaryDirectory(prefix="cisfix-chromium-") as profile:
        done = subprocess.run([chromium(), "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={profile}",
                               *QUIET, "--no-pdf-header-footer", f"--print-to-pdf={pdf}", page.resolve().as_uri()],
                              capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0 and pdf.exists(), f"chromium exited {done.returncode}: {done.stderr[-2000:]}"
    return len(re.findall(rb"/Type\s*/Page(?![a-z])", pdf.read_bytes()))


def png_rows(path: Path, limit: Optional[int] = None) -> Tuple[int, int, List[bytes]]:
    """Width, height and the first `limit` rows (all by default) of an 8-bit RGB or RGBA PNG, as bytes of
    3 or 4 per pixel: enough of a decoder for Chromium's screenshots, stdlib only."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    pos, idat, header = 8, [], b""
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        chunk = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            header = chunk
        elif kind == b"IDAT":
            idat.append(chunk)
        pos += 12 + length
    width, height, depth, color, _, _, interlace = struct.unpack(">IIBBBBB", header)
    assert depth == 8 and color in (2, 6) and interlace == 0, f"{path}: unsupported PNG ({depth=}, {color=})"
    bpp = 3 if color == 2 else 4
    raw = zlib.decompress(b"".join(idat))
    stride = width * bpp
    rows: List[bytes] = []
    prev = bytearray(stride)
    for y in range(min(height, limit or height)):
        kind, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            left = line[i - bpp] if i >= bpp else 0
            up, corner = prev[i], prev[i - bpp] if i >= bpp else 0
            if kind == 1:
                line[i] = (line[i] + left) & 0xFF
            elif kind == 2:
                line[i] = (line[i] + up) & 0xFF
            elif kind == 3:
                line[i] = (line[i] + (left + up) // 2) & 0xFF
            elif kind == 4:
                p = left + up - corner
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
                line[i] = (line[i] + (left if pa <= pb and pa <= pc else up if pb <= pc else corner)) & 0xFF
        rows.append(bytes(line))
        prev = line
    return width, height, rows


def ink(path: Path, rows: int) -> float:
    """The share of pixels in the top `rows` rows that differ from the most common colour (the page's
    background): 0 for a blank screen."""
    width, _, lines = png_rows(path, rows)
    bpp = len(lines[0]) // width
    pixels = [line[i:i + bpp] for line in lines for i in range(0, len(line), bpp)]
    background, count = Counter(pixels).most_common(1)[0]
    return 1 - count / len(pixels)
