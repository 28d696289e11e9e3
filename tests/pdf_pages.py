"""Read a PDF report back with poppler: page count, the text of each page, each page as pixels.

``pdfinfo``, ``pdftotext`` and ``pdftoppm`` come with poppler-utils
(``scripts/install_system_deps.sh`` installs it); tests that read reports carry
:data:`needs_poppler`.
"""
from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest

needs_poppler = pytest.mark.skipif(
    any(shutil.which(tool) is None for tool in ("pdfinfo", "pdftotext", "pdftoppm")),
    reason="poppler-utils (pdfinfo, pdftotext, pdftoppm) not installed")


def page_count(path: Path) -> int:
    """Number of pages (``pdfinfo``)."""
    out = subprocess.run(["pdfinfo", str(path)], capture_output=True, text=True, check=True).stdout
    return int(next(line.split()[-1] for line in out.splitlines() if line.startswith("Pages:")))


def text(path: Path) -> str:
    """The whole text in reading layout (``pdftotext -layout``); pages are separated by form feeds."""
    return subprocess.run(["pdftotext", "-layout", str(path), "-"], capture_output=True, text=True,
                          check=True).stdout


def page_texts(path: Path) -> list[str]:
    """The text of each page, in order (one entry per page)."""
    pages = text(path).split("\f")
    return pages[:-1] if pages and not pages[-1].strip() else pages


def page_images(path: Path, dpi: int = 24) -> list[np.ndarray]:
    """Each page rendered in grey levels (``pdftoppm -gray``), as a ``(height, width)`` uint8 array."""
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(["pdftoppm", "-gray", "-r", str(dpi), str(path), str(Path(tmp) / "p")], check=True,
                       capture_output=True)
        return [_read_pgm(p) for p in sorted(Path(tmp).glob("p-*.pgm"), key=lambda p: int(p.stem.split("-")[-1]))]


def _read_pgm(path: Path) -> np.ndarray:
    """A binary (P5) 8-bit PGM file as an array."""
    data = path.read_bytes()
    fields: list[bytes] = []
    pos = 0
    while len(fields) < 4:  # magic, width, height, maxval; '#' comments skipped
        while data[pos:pos + 1].isspace():
            pos += 1
        if data[pos:pos + 1] == b"#":
            pos = data.index(b"\n", pos) + 1
            continue
        end = pos
        while not data[end:end + 1].isspace():
            end += 1
        fields.append(data[pos:end])
        pos = end
    assert fields[0] == b"P5" and int(fields[3]) < 256, fields
    width, height = int(fields[1]), int(fields[2])
    return np.frombuffer(data[pos + 1:pos + 1 + width * height], dtype=np.uint8).reshape(height, width)


def check_report(path: Path, subject_id: str, min_pages: int = 1) -> list[str]:
    """Assert ``path`` is a real AnchorAD report of ``subject_id`` and return its page texts.

    At least ``min_pages`` pages, each rendered with ink on it, carrying the subject id with its
    page number and the research-use-only footer; the first page states both rules.
    """
    from anchorad_core.report import RESEARCH_USE_ONLY

    n = page_count(path)
    assert n >= min_pages, (n, min_pages)
    pages = page_texts(path)
    assert len(pages) == n
    images = page_images(path)
    assert len(images) == n
    for number, (page, image) in enumerate(zip(pages, images), start=1):
        flat = " ".join(page.split())
        assert f"{subject_id} · page {number}" in flat, (number, flat[:200])
        assert RESEARCH_USE_ONLY.split(".")[0] in flat, number
        assert image.min() < 128 and image.mean() > 128, (number, image.min(), image.mean())  # ink on white
    first = " ".join(pages[0].split())
    assert "Missing-modality rule:" in first and "Aggregation rule:" in first
    return pages
