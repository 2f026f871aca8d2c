"""Peak memory of loading and iterating an MMBench-size TSV (base64 images), against the file's size.

    python benchmarks/tsv_memory.py [--rows 4300] [--image-kb 24]

Writes an official-layout MMBench TSV (`index`, `question`, `hint`, `A`..`D`, `answer`,
`category`, `l2-category`, `split`, `image`): `rows / 4` questions with 4 circular passes, each row
holding its own copy of its question's image as the official files do (real JPEGs, each made
distinct by a few trailing bytes). Then, in a fresh interpreter, `tasks.mmbench.MMBench().load`
reads it and every sample is visited as a run visits it: its prompt digest and the request body
the OpenAI adapter would send (the image as a data URL). The figure is the peak RSS of that
process over the file's size; the interpreter with the package imported is given apart.
"""

from __future__ import annotations

import argparse
import base64
import csv
import io
import json
import random
import resource
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CATEGORIES = [("image_scene", "coarse_perception"), ("ocr", "fine-grained_perception (instance-level)"),
              ("nature_relation", "relation_reasoning"), ("image_emotion", "coarse_perception")]


def base_jpegs(count: int, kb: int) -> list[bytes]:
    """`count` noise JPEGs of about `kb` KB each (noise does not compress: size tracks the area)."""
    from PIL import Image

    rng = random.Random(0)
    side = int((kb * 1024 / 0.65) ** 0.5)  # ~0.65 bytes per pixel of noise at quality 75
    images = []
    for _ in range(count):
        pixels = bytes(rng.getrandbits(8) for _ in range(side * side * 3))
        buf = io.BytesIO()
        Image.frombytes("RGB", (side, side), pixels).save(buf, "JPEG", quality=75)
        images.append(buf.getvalue())
    return images


def write_tsv(path: Path, rows: int, image_kb: int) -> Path:
    bases = base_jpegs(8, image_kb)
    fields = ["index", "question", "hint", "A", "B", "C", "D", "answer", "category", "l2-category", "split",
              "image"]
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh, delimiter="\t", lineterminator="\n")
        writer.writerow(fields)
        questions = rows // 4
        for n in range(questions * 4):
            group, rotation = n % questions, n // questions
            jpeg = bases[group % len(bases)] + group.to_bytes(4, "big")  # bytes after EOI are ignored
            l3, l2 = CATEGORIES[group % len(CATEGORIES)]
            options = [f"option {c} of question {group}" for c in "ABCD"]
            options = options[rotation:] + options[:rotation]
            writer.writerow([rotation * 1_000_000 + group, f"Which option fits image {group}?", "", *options,
                             "ABCD"[(4 - rotation) % 4], l3, l2, "dev", base64.b64encode(jpeg).decode()])
    return path


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def visit(path: Path) -> dict[str, Any]:
    """Load the TSV with the task's loader and visit every sample as a run does."""
    from evals.types import messages_digest
    from model_adapters.openai import ImageLiterals, encode_body, to_openai_message
    from tasks.mmbench import MMBench

    imported = peak_rss_mb()
    samples = MMBench().load(str(path), None, None)
    loaded = peak_rss_mb()
    literals = ImageLiterals()  # the adapter's cache of encoded images
    for s in samples:
        messages_digest(s.messages)
        images: list = []
        encode_body({"messages": [to_openai_message(m, "\x00image\x00", images) for m in s.messages]},
                    "\x00image\x00", images, literals)
    return {"rows": len(samples), "imported_mb": imported, "loaded_mb": loaded, "peak_mb": peak_rss_mb()}


def tsv_figures(path: Path) -> dict[str, Any]:
    out = subprocess.run([sys.executable, __file__, "visit", str(path)], capture_output=True, text=True, cwd=ROOT,
                         check=True)
    found = json.loads(out.stdout.strip().splitlines()[-1])
    size_mb = path.stat().st_size / 2**20
    return {**found, "file_mb": size_mb, "ratio": found["peak_mb"] / size_mb,
            "ratio_above_interpreter": (found["peak_mb"] - found["imported_mb"]) / size_mb}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("what", nargs="?", default="all")
    p.add_argument("path", nargs="?")
    p.add_argument("--rows", type=int, default=4300)
    p.add_argument("--image-kb", type=int, default=24)
    args = p.parse_args()
    if args.what == "visit":
        print(json.dumps(visit(Path(args.path))))
        return 0
    import tempfile

    with tempfile.TemporaryDirectory(prefix="bench-tsv-") as work:
        path = write_tsv(Path(work) / "MMBench_DEV_EN_V11.tsv", args.rows, args.image_kb)
        print(json.dumps(tsv_figures(path), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
