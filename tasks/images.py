"""Image cells of benchmark rows -> `Image` parts, checked cheaply at load and decoded lazily.

A cell can be base64 text (MMBench TSV), `{"bytes": ..., "path": ...}` (hub Parquet), a PIL image
(hub rows through `datasets`), or a file path (local JSONL, relative to the data file's folder).
Base64 is checked at load on its first 4 KB (valid alphabet, and a known image header when one is
recognisable); the rest is decoded only when a model needs the image.
"""

from __future__ import annotations

import base64
import binascii
import io
from pathlib import Path
from typing import Any

from evals.types import Image, UserError

B64_CHECK_CHARS = 4096
MAGIC = (
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"GIF8", "image/gif"),
    (b"BM", "image/bmp"),
    (b"RIFF", "image/webp"),
)
SUFFIX_MIME = {".png": "image/png", ".gif": "image/gif", ".bmp": "image/bmp", ".webp": "image/webp"}


def sniff_mime(head: bytes) -> str | None:
    return next((mime for magic, mime in MAGIC if head.startswith(magic)), None)


def b64_image(text: str, where: str) -> Image:
    """An Image from base64 text, after checking its start; `where` is `file:row: field 'x'`."""
    data = "".join(text.split())
    head = data[: B64_CHECK_CHARS - B64_CHECK_CHARS % 4]
    try:
        decoded = base64.b64decode(head, validate=True)
    except (binascii.Error, ValueError):
        raise UserError(f"{where}: image is not valid base64") from None
    if not decoded:
        raise UserError(f"{where}: image is empty")
    return Image(b64=data, mime=sniff_mime(decoded) or "image/jpeg")


def bytes_image(raw: bytes) -> Image:
    return Image(b64=base64.b64encode(raw).decode(), mime=sniff_mime(raw[:16]) or "image/jpeg")


def path_image(path: str, base_dir: Path | None) -> Image:
    p = Path(path)
    if not p.is_absolute() and base_dir is not None:
        p = base_dir / p
    return Image(path=str(p), mime=SUFFIX_MIME.get(p.suffix.lower(), "image/jpeg"))


def pil_image(img: Any) -> Image:
    buf = io.BytesIO()
    img.save(buf, format=img.format or "PNG")
    return bytes_image(buf.getvalue())


def image_from_cell(value: Any, where: str, base_dir: Path | None = None) -> Image:
    """Any supported image cell -> Image; a cell of another kind is a UserError naming `where`."""
    if isinstance(value, dict):
        if value.get("bytes"):
            raw = value["bytes"]
            return bytes_image(raw) if isinstance(raw, bytes) else b64_image(str(raw), where)
        if value.get("path"):
            return path_image(str(value["path"]), base_dir)
        raise UserError(f"{where}: image cell has neither bytes nor a path")
    if isinstance(value, bytes):
        return bytes_image(value)
    if isinstance(value, str) and value.strip():
        return path_image(value, base_dir)
    if hasattr(value, "save") and hasattr(value, "size"):
        return pil_image(value)
    raise UserError(f"{where}: unsupported image value ({type(value).__name__})")
