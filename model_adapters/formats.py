"""Other tools' prediction files, for replay (`--model replay:FILE`): VLMEvalKit and lmms-eval.

- **VLMEvalKit** (`{model}_{dataset}.xlsx` or `.tsv`, the dataset's columns plus `prediction`):
  one row per dataset row, keyed by `index` (MMBench: the rotated copies of a question are rows of
  their own, index >= 1,000,000, as in the official TSVs), or by `id` where the file has that column
  (MMMU). An empty cell is an empty answer (scored wrong), not a missing one.
- **lmms-eval** `--log_samples` (`samples_{task}.jsonl`, one object per document, or an older
  `{"logs": [...]}` JSON): `doc_id`, `target`, `resps` (per request, the list of raw outputs: one per
  repeat), `filtered_resps` (after the task's filters), plus its own metric fields. Releases before
  0.7 also log `doc` (the dataset row without its images): the row is identified by `doc["id"]`,
  else `doc["index"]` (MMBench). 0.7.3 (the current release) drops `doc` and `arguments` and keeps
  `resps` only where they differ from `filtered_resps` (which it flattens for one request): a row is
  then known by `doc_id` alone, its position in the split, so its id is `POSITION` + doc_id and the
  replay adapter maps it onto the sample at that position, checking `target` against the gold.
  The raw `resps` are replayed where present, since the point is to score them with this project's
  protocol; else `filtered_resps`, marked as such (`answers`): lmms-eval's filtered text (with a
  regex filter, the answer it extracted; `[invalid]` when its regex found none), not the model's
  raw output. With several repeats, output k answers key `<id>#<k>`.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from evals.types import UserError

VLMEVALKIT_SUFFIXES = (".xlsx", ".tsv")
LMMS_EVAL_ANSWERS = ("resps", "filtered_resps")  # the raw outputs first
POSITION = "doc_id="  # the id of a row known only by its position in the split (lmms-eval 0.7.3)
FILTERED = "filtered_resps"


def foreign_records(path: Path) -> list[tuple[str, Any]] | None:
    """(id or key, prediction text) pairs when `path` is another tool's file, else None."""
    if path.suffix in VLMEVALKIT_SUFFIXES:
        return vlmevalkit_records(path)
    if path.suffix in (".jsonl", ".json"):
        rows = lmms_eval_rows(path)
        if rows is not None:
            return [pair for n, row in rows for pair in lmms_eval_pairs(path, n, row)]
    return None


# ---- VLMEvalKit -----------------------------------------------------------------------------

def vlmevalkit_records(path: Path) -> list[tuple[str, Any]]:
    header, rows = read_xlsx(path) if path.suffix == ".xlsx" else read_tsv(path)
    columns = [str(c).strip() if c is not None else "" for c in header]
    if "prediction" not in columns or ("index" not in columns and "id" not in columns):
        raise UserError(f"{path}: not a VLMEvalKit prediction file (it needs the columns 'index' and "
                        f"'prediction'; found {', '.join(c for c in columns if c)[:200]})")
    key_col = columns.index("id") if "id" in columns else columns.index("index")
    pred_col = columns.index("prediction")
    out = []
    for n, row in enumerate(rows, 2):
        cells = list(row) + [None] * (len(columns) - len(row))
        ident = cell_text(cells[key_col])
        if not ident:
            raise UserError(f"{path}: row {n} has no {columns[key_col]!r}")
        out.append((ident, cell_text(cells[pred_col])))
    return out


def cell_text(value: Any) -> str:
    """A cell as text: `1000001.0` (a number a spreadsheet kept as float) -> `1000001`."""
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip() if not isinstance(value, str) else value.strip()


def read_tsv(path: Path) -> tuple[list[Any], list[list[Any]]]:
    csv.field_size_limit(2**31 - 1)  # base64 images and long reasoning live in single cells
    try:
        with open(path, encoding="utf-8", newline="") as fh:
            rows = list(csv.reader(fh, delimiter="\t"))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise UserError(f"cannot read {path}: {exc}") from None
    if not rows:
        raise UserError(f"{path}: empty file")
    return rows[0], rows[1:]


def read_xlsx(path: Path) -> tuple[list[Any], list[list[Any]]]:
    try:
        import openpyxl
    except ImportError:
        raise UserError("reading .xlsx predictions needs openpyxl: pip install 'step3vl-eval[vlmevalkit]' "
                        "(or convert the file to .tsv)") from None
    try:
        book = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except Exception as exc:  # openpyxl raises many kinds for a damaged or foreign file
        raise UserError(f"cannot read {path} as an Excel workbook: {type(exc).__name__}: {exc}") from None
    try:
        rows = [list(r) for r in book.worksheets[0].iter_rows(values_only=True)]
    finally:
        book.close()
    if not rows:
        raise UserError(f"{path}: empty workbook")
    return rows[0], [r for r in rows[1:] if any(c is not None for c in r)]


# ---- lmms-eval ------------------------------------------------------------------------------

def lmms_eval_rows(path: Path) -> list[tuple[int, dict[str, Any]]] | None:
    """The logged samples, or None when the file is not an lmms-eval sample log."""
    if path.suffix == ".jsonl" and not first_line_is_lmms_eval(path):
        return None  # decided on the first record, without reading a large file twice
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read predictions {path}: {exc}") from None
    if path.suffix == ".json":
        try:
            data = json.loads(text)
        except ValueError:
            return None  # replay's own reader reports it
        logs = data.get("logs") if isinstance(data, dict) else None
        if isinstance(logs, list) and logs and all(is_lmms_eval(r) for r in logs):
            return list(enumerate(logs, 1))
        return None
    rows = []
    for n, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                row = json.loads(line)
            except ValueError:
                raise UserError(f"{path}:{n}: invalid JSON in an lmms-eval sample log") from None
            if not is_lmms_eval(row):
                raise UserError(f"{path}:{n}: not an lmms-eval sample (it needs 'doc_id' and 'resps' or "
                                "'filtered_resps')")
            rows.append((n, row))
    return rows


def first_line_is_lmms_eval(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            for line in fh:
                if line.strip():
                    return is_lmms_eval(json.loads(line))
    except (OSError, ValueError):
        return False  # replay's own reader reports it
    return False


def is_lmms_eval(row: Any) -> bool:
    return isinstance(row, dict) and "doc_id" in row and any(f in row for f in LMMS_EVAL_ANSWERS)


def lmms_eval_pairs(path: Path, n: int, row: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(id or key, {"response", "answers", "target"}) per output of one logged document."""
    doc = row.get("doc") if isinstance(row.get("doc"), dict) else None
    if doc is not None:
        ident = cell_text(next((doc[f] for f in ("id", "index") if doc.get(f) not in (None, "")), row["doc_id"]))
    else:
        ident = f"{POSITION}{cell_text(row['doc_id'])}"
    answers = next(f for f in LMMS_EVAL_ANSWERS if f in row)
    outputs = generation_outputs(row[answers])
    if outputs is None:
        raise UserError(f"{path}:{n}: '{answers}' holds no generated text (a loglikelihood task cannot be replayed)")
    extra = {"answers": answers, "target": cell_text(row.get("target")) if doc is None else None}
    if len(outputs) == 1:
        return [(ident, {"response": outputs[0], **extra})]
    return [(f"{ident}#{k}", {"response": text, **extra}) for k, text in enumerate(outputs)]


def generation_outputs(resps: Any) -> list[str] | None:
    """`[[out_0, out_1, ...]]` (one request per document, one output per repeat) -> the outputs;
    0.7.3's flattened `filtered_resps` of one request: `"out"` or `[out_0, ...]`."""
    if isinstance(resps, str):
        return [resps]
    if isinstance(resps, list) and len(resps) == 1 and isinstance(resps[0], list):
        resps = resps[0]
    if isinstance(resps, list) and resps and all(isinstance(r, str) for r in resps):
        return resps
    return None
