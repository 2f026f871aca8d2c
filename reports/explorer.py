"""The per-run sample explorer's data: every saved record, compacted for the page's inline script.

The page holds each run's records as gzip-compressed JSON, base64 text in a
`<script type="application/gzip">` (`packed_json`), decompressed by the browser's own
`DecompressionStream` when the run is first shown and rendered page by page by the inline script
(text goes in through `textContent`, never as HTML), so 10,000 samples stay usable: about a tenth
of the size as plain JSON on reasoning-heavy runs. Base64 holds no markup character, so no text
can close the element. Prompts are stored once per prompt digest and images once per image
digest, as small JPEG thumbnails. Long texts are cut to a head and a tail (`max_chars`) with a
marker saying how much was cut: the full text stays in samples.jsonl.
"""

from __future__ import annotations

import base64
import gzip
import json
import re
from pathlib import Path
from typing import Any

from markupsafe import Markup
from PIL import Image, UnidentifiedImageError

from reports.thumbnails import THUMB_DIR, THUMB_SIDE, thumbnail_jpeg
from reports.runs import LoadedRun

MAX_CATEGORY_VALUES = 300
MAX_OTHER_VALUES = 30
INLINE_THUMB_DIR = THUMB_DIR  # runs/<id>/images/<sha1 hex>.jpg, saved by the runner


def script_json(obj: Any) -> Markup:
    """JSON safe inside <script>: `<`, `>` and `&` become \\u escapes, so no text can close the tag."""
    text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
    text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return Markup(text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


def packed_json(obj: Any) -> Markup:
    """JSON, gzip-compressed (level 6: level 9 is ~2x slower for ~1% less), as base64 text."""
    raw = json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()
    return Markup(base64.b64encode(gzip.compress(raw, compresslevel=6, mtime=0)).decode("ascii"))


def unpack_json(text: str) -> Any:
    """`packed_json` undone (tests and tools read a report's data this way)."""
    return json.loads(gzip.decompress(base64.b64decode(text)))


def cut_text(text: str, limit: int) -> str:
    if limit <= 0 or len(text) <= limit:
        return text
    head = limit // 4
    tail = limit - head
    return (f"{text[:head]}\n[… {len(text) - limit:,} characters cut here; the full text is in samples.jsonl …]\n"
            f"{text[-tail:]}")


def cut_strings(value: Any, limit: int) -> Any:
    if isinstance(value, str):
        return cut_text(value, limit)
    if isinstance(value, list):
        return [cut_strings(v, limit) for v in value]
    if isinstance(value, dict):
        return {k: cut_strings(v, limit) for k, v in value.items()}
    return value


def verdict(scored: dict[str, Any]) -> str:
    if scored.get("error"):
        return "error"
    if scored.get("truncated"):
        return "truncated"
    if scored.get("correct"):
        return "correct"
    return "partial" if (scored.get("score") or 0) > 0 else "wrong"


def natural_key(text: str) -> list[Any]:
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", text)]


def is_scalar(v: Any) -> bool:
    return isinstance(v, (str, int, float, bool)) and not (isinstance(v, str) and len(v) > 200)


def category_values(records: list[dict[str, Any]], groups: set[str]) -> dict[str, list[str]]:
    """Metadata fields to filter by: the run's breakdown groups, and other scalar fields with a few values.

    A field qualifies with 2-30 distinct values and fewer than half as many values as samples
    (so per-question fields such as `question` stay out), or by being a breakdown group.
    """
    seen: dict[str, set[str]] = {}
    bad: set[str] = set()
    for r in records:
        for k, v in (r.get("metadata") or {}).items():
            if not is_scalar(v):
                bad.add(k)
            elif k not in bad:
                seen.setdefault(k, set()).add(str(v))
    n_samples = len({r.get("sample_id") for r in records})
    return {k: sorted(vs, key=natural_key) for k, vs in seen.items()
            if k not in bad and len(vs) <= MAX_CATEGORY_VALUES
            and (k in groups or 2 <= len(vs) <= min(MAX_OTHER_VALUES, n_samples / 2))}


def prompt_parts(prompt: list[dict[str, Any]], limit: int, images: dict[str, str | None]) -> list[dict[str, Any]]:
    messages = []
    for m in prompt:
        parts: list[dict[str, Any]] = []
        for p in m.get("content") or []:
            if p.get("type") == "image":
                digest = str(p.get("digest") or p.get("path"))
                images.setdefault(digest, p.get("path"))
                parts.append({"img": digest})
            else:
                parts.append({"text": cut_text(str(p.get("text", "")), limit)})
        messages.append({"role": m.get("role", ""), "parts": parts})
    return messages


def sample_view(r: dict[str, Any], prompt_id: str, cats: dict[str, list[str]], limit: int) -> dict[str, Any]:
    resp = r.get("response") or {}
    scored = r.get("scored") or {}
    usage = resp.get("usage") or {}
    meta = {k: v for k, v in (r.get("metadata") or {}).items()}
    return {
        "key": r.get("key"), "id": str(r.get("sample_id")), "repeat": r.get("repeat", 0),
        "verdict": verdict(scored), "rule": scored.get("rule", ""), "score": scored.get("score"),
        "extracted": scored.get("extracted"), "target": cut_strings(r.get("target"), limit),
        "answer": cut_text(resp.get("text") or "", limit), "reasoning": cut_text(resp.get("reasoning") or "", limit),
        "finish": resp.get("finish_reason"), "error": resp.get("error"),
        "tokens": [usage.get("prompt_tokens", 0), usage.get("completion_tokens", 0)],
        "latency": resp.get("latency"), "trace": cut_strings(resp.get("trace") or [], limit),
        "extra": cut_strings(scored.get("extra") or {}, limit), "meta": cut_strings(meta, limit),
        "cats": {k: str(meta[k]) for k in cats if k in meta}, "prompt": prompt_id,
    }


def run_view(run: LoadedRun, limit: int, images: dict[str, str | None], image_dirs: dict[str, Path]) -> dict[str, Any]:
    records = sorted(run.load_records(), key=lambda r: (natural_key(str(r.get("sample_id"))), r.get("repeat", 0)))
    cats = category_values(records, set(run.result.breakdowns or {}))
    prompts: dict[str, list[dict[str, Any]]] = {}
    samples = []
    for r in records:
        pid = str(r.get("prompt_digest") or r.get("key"))
        if pid not in prompts:
            prompts[pid] = prompt_parts(r.get("prompt") or [], limit, images)
        samples.append(sample_view(r, pid, cats, limit))
    for digest in images:
        image_dirs.setdefault(digest, run.path)
    rules = sorted({s["rule"] for s in samples if s["rule"]})
    return {"anchor": run.anchor, "run": run.result.run_id, "label": run.label, "task": run.task,
            "scripted": run.scripted, "cats": cats, "rules": rules, "prompts": prompts, "samples": samples}


def thumbnail_b64(source: Path | bytes, side: int = THUMB_SIDE) -> str:
    """A small JPEG of an image, as base64 text. Raises OSError/ValueError when unreadable."""
    return base64.b64encode(thumbnail_jpeg(source, side)).decode()


def inline_thumbnail_path(digest: str, run_dir: Path) -> Path | None:
    """Inline (base64) images are known only by digest; the runner may save `images/<hex>.jpg`."""
    if not digest.startswith("sha1:"):
        return None
    folder = run_dir / INLINE_THUMB_DIR
    for suffix in (".jpg", ".jpeg", ".png", ".webp"):
        candidate = folder / (digest.split(":", 1)[1] + suffix)
        if candidate.is_file():
            return candidate
    return None


def image_view(digest: str, path: str | None, run_dir: Path) -> dict[str, Any]:
    source = Path(path) if path else inline_thumbnail_path(digest, run_dir)
    if source is None:
        return {"src": None, "note": f"inline image {digest[:17]}…: the run saved no thumbnail of it"}
    try:
        return {"src": thumbnail_b64(source), "note": str(path or digest)}
    except (OSError, ValueError, UnidentifiedImageError, Image.DecompressionBombError) as exc:
        reason = getattr(exc, "strerror", None) or type(exc).__name__
        return {"src": None, "note": f"{path or digest}: not readable ({reason})"}


def explorer_data(runs: list[LoadedRun], max_chars: int) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """(per-run views, images by digest) of the runs a report shows."""
    images: dict[str, str | None] = {}
    image_dirs: dict[str, Path] = {}
    views = [run_view(run, max_chars, images, image_dirs) for run in runs]
    thumbs = {d: image_view(d, p, image_dirs[d]) for d, p in images.items()}
    return views, thumbs
