"""Small JPEG thumbnails of prompt images, for the per-sample explorer of a report.

Images kept inline (base64 in MMBench's TSV, bytes in hub Parquet) cannot be found again from a
saved run, so the runner writes one thumbnail per distinct image to `runs/<id>/images/<sha1>.jpg`
(about 5 KB each). Reports stay a pure function of the run dir.
"""

from __future__ import annotations

import io
from pathlib import Path

from evals.types import Image, Message

THUMB_SIDE = 160
THUMB_DIR = "images"


def thumbnail_jpeg(source: Path | bytes, side: int = THUMB_SIDE) -> bytes:
    """A small JPEG of an image. Raises OSError/ValueError when the image is unreadable."""
    from PIL import Image as PILImage

    with PILImage.open(io.BytesIO(source) if isinstance(source, bytes) else source) as im:
        im.draft("RGB", (side * 2, side * 2))  # JPEG: decode at a reduced scale, much faster
        im.thumbnail((side, side))
        small = im
        if small.mode in ("RGBA", "LA", "P"):
            rgba = small.convert("RGBA")
            small = PILImage.new("RGB", rgba.size, "white")
            small.paste(rgba, mask=rgba.getchannel("A"))
        elif small.mode != "RGB":
            small = small.convert("RGB")
        out = io.BytesIO()
        small.save(out, "JPEG", quality=70)
    return out.getvalue()


def save_inline_thumbnails(run_dir: Path, messages: list[Message], seen: set[str]) -> None:
    """Write a thumbnail for each inline image not saved yet; an unreadable image is skipped."""
    for m in messages:
        for part in m.content:
            if not isinstance(part, Image) or part.b64 is None:
                continue
            digest = part.digest()
            if digest in seen:
                continue
            seen.add(digest)
            target = run_dir / THUMB_DIR / f"{digest.split(':', 1)[1]}.jpg"
            if target.exists():
                continue
            try:
                data = thumbnail_jpeg(part.read_bytes())
                target.parent.mkdir(exist_ok=True)
                target.write_bytes(data)
            except Exception:  # a thumbnail is a nicety: a bad image is the model's error to report
                continue
