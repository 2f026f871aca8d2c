"""Fixtures in the hub's real schemas for the Table 3 tasks that only the hub holds (no network).

- HMMT February 2025 (`MathArena/hmmt_feb_2025`, one `train` split): `problem_idx` int64, `problem`,
  `answer` (a string: integers and LaTeX expressions), `problem_type` (a list of strings). The
  problems here are made up; the answers take the real set's forms (fractions with radicals, a power
  times a factorial, a difference of radicals, plain integers).
- MMMU-Pro (`MMMU/MMMU_Pro`): the folders `standard (10 options)/` (`id, question, options` (a Python
  list literal), `explanation, image_1..image_7` ({bytes, path} or null), `img_type, answer,
  topic_difficulty, subject`) and `vision/` (`id, image, options, answer, subject`), Parquet, split
  `test`. The column names are those of the released outputs in ../shared/data/mmmu-pro (which keep
  every standard column but the images) and of the hub's dataset card.
"""

from __future__ import annotations

import ast
import io
import json
import re
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

HMMT_ROWS = [
    {"problem_idx": 1, "problem": "Compute the area of a regular hexagon with side length $\\sqrt{3}$.",
     "answer": "\\frac{9\\sqrt{3}}{2}", "problem_type": ["Geometry"]},
    {"problem_idx": 2, "problem": "Count the ordered pairs $(\\sigma, S)$ described below.",
     "answer": "2^{25} \\cdot 26!", "problem_type": ["Combinatorics"]},
    {"problem_idx": 3, "problem": "Compute $4\\sin 15^\\circ$.", "answer": "\\sqrt{6}-\\sqrt{2}",
     "problem_type": ["Algebra", "Geometry"]},
    {"problem_idx": 4, "problem": "Compute the sum of the divisors of $9!$ that end in $1$.", "answer": "103",
     "problem_type": ["Number Theory"]},
]

PRO_SCHEMA_STANDARD = pa.schema(
    [("id", pa.string()), ("question", pa.string()), ("options", pa.string()), ("explanation", pa.string())]
    + [(f"image_{k}", pa.struct([("bytes", pa.binary()), ("path", pa.string())])) for k in range(1, 8)]
    + [("img_type", pa.string()), ("answer", pa.string()), ("topic_difficulty", pa.string()),
       ("subject", pa.string())])
PRO_SCHEMA_VISION = pa.schema([("id", pa.string()), ("image", pa.struct([("bytes", pa.binary()), ("path", pa.string())])),
                               ("options", pa.string()), ("answer", pa.string()), ("subject", pa.string())])
STANDARD_DIR, VISION_DIR = "standard (10 options)", "vision"

PRO_ROWS = [  # id, question, options, answer, subject, images named by the text
    ("test_History_1", "Which best explains the trend shown in the <image 1>?",
     ["Population decline", "Pathogens on the Silk Road", "New trade routes", "Climate change", "Migration",
      "Transport technology", "Invasions", "Famine", "Prosperity", "Religious conflict"], "B", "History"),
    # options shuffled: option A shows image 3, option C image 1 (each placeholder takes its own image)
    ("validation_Chemistry_7", "Which structure <image 4> is aromatic?",
     ["<image 3>", "<image 2>", "<image 1>", "None of these"], "C", "Chemistry"),
    ("test_Accounting_12", "Compute the net income from <image 1>.",
     ["$1,200", "$1,500", "$2,000", "$2,100", "$900", "$1,000", "$1,800", "$2,500", "$600", "$3,000"], "D",
     "Accounting"),
]


def png(color: str = "red", size: tuple[int, int] = (2, 2)) -> bytes:
    from PIL import Image as PILImage

    buf = io.BytesIO()
    PILImage.new("RGB", size, color).save(buf, "PNG")
    return buf.getvalue()


def write_hmmt(path: Path, rows: list[dict[str, Any]] | None = None) -> Path:
    """HMMT rows as the hub's Parquet (`.parquet`) or as JSON lines (any other suffix)."""
    rows = HMMT_ROWS if rows is None else rows
    if path.suffix == ".parquet":
        pq.write_table(pa.Table.from_pylist(rows), path)
    else:
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def standard_row(id_: str, question: str, options: list[str] | str, answer: str, subject: str,
                 images: dict[int, bytes] | None = None, difficulty: str = "Medium") -> dict[str, Any]:
    row: dict[str, Any] = {"id": id_, "question": question, "options": str(options), "explanation": "?",
                           "img_type": "['Diagrams']", "answer": answer, "topic_difficulty": difficulty,
                           "subject": subject}
    for k in range(1, 8):
        b = (images or {}).get(k)
        row[f"image_{k}"] = {"bytes": b, "path": f"{id_}_{k}.png"} if b else None
    return row


def vision_row(id_: str, options: list[str] | str, answer: str, subject: str, image: bytes) -> dict[str, Any]:
    return {"id": id_, "image": {"bytes": image, "path": f"{id_}.png"}, "options": str(options), "answer": answer,
            "subject": subject}


def fixture_rows() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """PRO_ROWS as (standard rows, vision rows); every `<image k>` has a distinct coloured image k."""
    colours = ["red", "green", "blue", "yellow", "white", "black", "gray"]
    standard, vision = [], []
    for id_, question, options, answer, subject in PRO_ROWS:
        named = {int(k) for text in [question, *options] for k in re.findall(r"<image (\d+)>", text)}
        standard.append(standard_row(id_, question, options, answer, subject,
                                     {k: png(colours[k - 1]) for k in named}))
        vision.append(vision_row(id_, options, answer, subject, png("white", (4, 3))))
    return standard, vision


def write_mmmu_pro(root: Path, standard: list[dict[str, Any]] | None = None,
                   vision: list[dict[str, Any]] | None = None) -> Path:
    """A folder in the hub's layout: `standard (10 options)/test-...parquet`, `vision/test-...parquet`.
    A column the rows lack is left out of the file (a damaged or foreign file)."""
    if standard is None or vision is None:
        standard, vision = fixture_rows()
    for folder, rows, schema in ((STANDARD_DIR, standard, PRO_SCHEMA_STANDARD), (VISION_DIR, vision, PRO_SCHEMA_VISION)):
        (root / folder).mkdir(parents=True, exist_ok=True)
        schema = pa.schema([f for f in schema if not rows or f.name in rows[0]])
        pq.write_table(pa.Table.from_pylist(rows, schema=schema), root / folder / "test-00000-of-00001.parquet")
    return root


def rows_from_released(records: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Hub rows rebuilt from a released MMMU-Pro output file (it keeps every column but the images):
    one tiny shared image stands for every figure, so that a replay can run over all 1,730 questions."""
    image = png()
    standard, vision = [], []
    for r in records:
        texts = [r["question"], *ast.literal_eval(r["options"])]
        named = {int(k) for t in texts for k in re.findall(r"<image (\d+)>", str(t)) if 1 <= int(k) <= 7}
        row = standard_row(r["id"], r["question"], r["options"], r["answer"], r["subject"],
                           {k: image for k in named}, r["topic_difficulty"])
        row.update(explanation=r["explanation"], img_type=r["img_type"])
        standard.append(row)
        vision.append(vision_row(r["id"], r["options"], r["answer"], r["subject"], image))
    return standard, vision
