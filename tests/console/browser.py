"""Headless Chromium for the console's tests: the page after its scripts ran, and a screenshot.

Debian's ``chromium`` package (``.ci/install-test-deps`` installs it). Each
run gets its own profile directory and talks to nothing but the page's own
server. ``png_pixels`` reads Chromium's screenshots (8-bit RGB/RGBA, not
interlaced) so a test can look for the colours the graph was drawn in.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
import zlib
from pathlib import Path

FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--hide-scrollbars", "--window-size=1400,1000")


def chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    raise AssertionError("Chromium is not installed: run .ci/install-test-deps (Debian package 'chromium')")


def run(url: str, *, profile: Path, extra: tuple[str, ...], budget_ms: int = 10_000) -> subprocess.CompletedProcess[str]:
    command = [chromium(), *FLAGS, f"--user-data-dir={profile}", f"--virtual-time-budget={budget_ms}", *extra, url]
    done = subprocess.run(command, capture_output=True, text=True, timeout=180, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, f"chromium failed ({done.returncode}):\n{done.stderr[-3000:]}"
    return done


def dump_dom(url: str, *, profile: Path) -> str:
    return run(url, profile=profile, extra=("--dump-dom",)).stdout


def screenshot(url: str, *, profile: Path, out: Path) -> Path:
    run(url, profile=profile, extra=(f"--screenshot={out}",))
    assert out.exists(), f"chromium wrote no screenshot to {out}"
    return out


def _unfilter(raw: bytes, *, width: int, height: int, bpp: int) -> list[bytearray]:
    stride = width * bpp
    rows: list[bytearray] = []
    prior = bytearray(stride)
    pos = 0
    for _ in range(height):
        kind, line = raw[pos], bytearray(raw[pos + 1: pos + 1 + stride])
        pos += 1 + stride
        for i in range(stride):
            left = line[i - bpp] if i >= bpp else 0
            up, up_left = prior[i], (prior[i - bpp] if i >= bpp else 0)
            if kind == 1:
                line[i] = (line[i] + left) & 0xFF
            elif kind == 2:
                line[i] = (line[i] + up) & 0xFF
            elif kind == 3:
                line[i] = (line[i] + (left + up) // 2) & 0xFF
            elif kind == 4:
                p = left + up - up_left
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - up_left)
                line[i] = (line[i] + (left if pa <= pb and pa <= pc else up if pb <= pc else up_left)) & 0xFF
        rows.append(line)
        prior = line
    return rows


def png_pixels(path: Path) -> tuple[int, int, list[list[tuple[int, int, int]]]]:
    """Width, height and RGB rows of an 8-bit, non-interlaced RGB or RGBA PNG."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    pos, idat, header = 8, b"", b""
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos: pos + 8])
        body = data[pos + 8: pos + 8 + length]
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", header)
    assert depth == 8 and colour in (2, 6) and interlace == 0, f"unexpected PNG format in {path}"
    bpp = 3 if colour == 2 else 4
    rows = _unfilter(zlib.decompress(idat), width=width, height=height, bpp=bpp)
    return width, height, [[(r[i], r[i + 1], r[i + 2]) for i in range(0, len(r), bpp)] for r in rows]


def count_near(pixels: list[list[tuple[int, int, int]]], colour: str, *, box: tuple[int, int, int, int],
               tolerance: int = 40) -> int:
    """Pixels within ``tolerance`` (per channel) of ``#rrggbb`` inside box (x0, y0, x1, y1)."""
    want = tuple(int(colour[i: i + 2], 16) for i in (1, 3, 5))
    x0, y0, x1, y1 = box
    return sum(
        1 for row in pixels[y0:y1] for px in row[x0:x1] if all(abs(a - b) <= tolerance for a, b in zip(px, want, strict=True))
    )
