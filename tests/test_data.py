"""Loading rows: local formats, errors naming the file and row, lazy hub images."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from evals.types import UserError
from tasks.data import load_local_rows, undecoded_images


def test_jsonl_json_and_parquet_rows_name_their_source(tmp_path: Path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "a.jsonl").write_text('{"x": 1}\n\n{"x": 2}\n')
    (tmp_path / "b.json").write_text(json.dumps([{"x": 3}]))
    pq.write_table(pa.table({"x": [4]}), tmp_path / "c.parquet")
    rows = load_local_rows(tmp_path)
    assert [r["x"] for _, r in rows] == [1, 2, 3, 4]
    assert rows[1][0].endswith("a.jsonl:3") and rows[3][0].endswith("c.parquet:1")


@pytest.mark.parametrize("content,message", [
    ('{"x": 1}\n[1, 2]\n', "a.jsonl:2: expected a JSON object"),
    ('{"x": \n', "a.jsonl:1: invalid JSON"),
])
def test_bad_rows_are_named(tmp_path: Path, content: str, message: str):
    (tmp_path / "a.jsonl").write_text(content)
    with pytest.raises(UserError, match=message):
        load_local_rows(tmp_path / "a.jsonl")


def test_a_folder_without_data_files_is_refused(tmp_path: Path):
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(UserError, match="no .jsonl"):
        load_local_rows(tmp_path)


def test_hub_image_columns_stay_undecoded():
    datasets = pytest.importorskip("datasets", reason="the hub loader needs `datasets`")
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (4, 4)).save(buf, "PNG")
    ds = datasets.Dataset.from_dict({"q": ["a"], "img": [{"bytes": buf.getvalue(), "path": None}]})
    ds = ds.cast_column("img", datasets.Image())
    row = next(iter(undecoded_images(ds)))
    assert isinstance(row["img"], dict) and row["img"]["bytes"] == buf.getvalue()
