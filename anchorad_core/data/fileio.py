"""Small file helpers shared by the readers and writers: atomic writes, hashing, checks."""
from __future__ import annotations

import gzip
import io
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..errors import InputDataError
from ..io_utils import atomic_path, atomic_write_bytes, atomic_write_text
from ..io_utils import sha256_file as file_sha256

if TYPE_CHECKING:
    from nibabel.spatialimages import SpatialImage

__all__ = [
    "atomic_write_bytes",
    "atomic_write_text",
    "atomic_path",
    "file_sha256",
    "check_gzip",
    "read_text_utf8",
    "deterministic_gzip",
    "load_spatial_image",
]

_GZIP_MAGIC = b"\x1f\x8b"


def deterministic_gzip(data: bytes, level: int = 6) -> bytes:
    """Gzip ``data`` with no file name and mtime 0 (same input -> same bytes)."""
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, compresslevel=level, mtime=0) as fh:
        fh.write(data)
    return buf.getvalue()


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


def load_spatial_image(path: "str | Path") -> "SpatialImage":
    """``nibabel.load`` of an image on a voxel grid (NIfTI): data, affine and shape.

    ``nibabel.load`` is typed as returning any file-based image; this says (and checks) that
    the file is a spatial image. Raises what ``nibabel.load`` raises for a bad file, and
    ``nibabel.filebasedimages.ImageFileError`` for an image without a voxel grid.
    """
    import nibabel as nib
    from nibabel.filebasedimages import ImageFileError
    from nibabel.spatialimages import SpatialImage

    img = nib.load(str(path))
    if not isinstance(img, SpatialImage):
        raise ImageFileError(f"{path}: not an image on a voxel grid ({type(img).__name__})")
    return img
