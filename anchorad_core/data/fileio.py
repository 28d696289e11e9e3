"""Small file helpers shared by the readers and writers: atomic writes, hashing, checks."""
from __future__ import annotations

import gzip
import hashlib
import io
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np

from ..errors import InputDataError

__all__ = [
    "atomic_write_bytes",
    "atomic_write_text",
    "atomic_path",
    "file_sha256",
    "check_gzip",
    "read_text_utf8",
    "deterministic_gzip",
]

_GZIP_MAGIC = b"\x1f\x8b"


@contextmanager
def atomic_path(target: "str | Path") -> Iterator[Path]:
    """Yield a temporary path next to ``target``; rename it onto ``target`` on success.

    Nothing is left at ``target`` (and the temporary file is removed) if the block raises,
    so readers never see a half-written file.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    # keep the full suffix (".nii.gz") so libraries that dispatch on it still work
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix="".join(target.suffixes) or ".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, target)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def atomic_write_bytes(target: "str | Path", data: bytes) -> Path:
    """Write ``data`` to ``target`` atomically (temporary file + rename)."""
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)
    return Path(target)


def atomic_write_text(target: "str | Path", text: str) -> Path:
    """Write UTF-8 ``text`` to ``target`` atomically."""
    return atomic_write_bytes(target, text.encode("utf-8"))


def deterministic_gzip(data: bytes, level: int = 6) -> bytes:
    """Gzip ``data`` with no file name and mtime 0 (same input -> same bytes)."""
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, compresslevel=level, mtime=0) as fh:
        fh.write(data)
    return buf.getvalue()


def file_sha256(path: "str | Path", chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def check_gzip(path: "str | Path") -> None:
    """Raise :class:`InputDataError` if a ``*.gz`` file is not gzip-compressed."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            head = fh.read(2)
    except OSError as exc:
        raise InputDataError(f"cannot read file ({exc.strerror or exc})", path) from None
    if not head:
        raise InputDataError("file is empty", path)
    if path.name.lower().endswith(".gz") and head != _GZIP_MAGIC:
        raise InputDataError(
            "file name ends in .gz but the file is not gzip-compressed "
            "(rename it without .gz or compress it with gzip)",
            path,
        )


def read_text_utf8(path: "str | Path", what: str = "text file") -> str:
    """Read a UTF-8 text file (BOM allowed); empty or non-UTF-8 files are an error."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise InputDataError(f"cannot read {what} ({exc.strerror or exc})", path) from None
    if path.name.lower().endswith(".gz"):
        check_gzip(path)
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise InputDataError(f"{what} is a truncated or corrupt gzip file ({exc})", path) from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputDataError(
            f"{what} is not valid UTF-8 (byte 0x{raw[exc.start]:02x} at offset {exc.start}); "
            "save it as UTF-8",
            path,
        ) from None
    if not text.strip():
        raise InputDataError(f"{what} is empty", path)
    return text


def check_finite(array: np.ndarray, path: "str | Path", what: str) -> None:
    """Raise :class:`InputDataError` if ``array`` holds NaN or infinite values."""
    if np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.complexfloating):
        bad = ~np.isfinite(array)
        n_bad = int(bad.sum())
        if n_bad:
            n_nan = int(np.isnan(array).sum())
            raise InputDataError(
                f"{what} contains {n_nan} NaN and {n_bad - n_nan} infinite value(s); "
                "fix or mask them before loading",
                path,
            )
