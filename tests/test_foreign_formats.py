"""Replay of other tools' prediction files, written here in their real formats.

- VLMEvalKit: the dataset's rows (images dropped) plus `prediction`, saved by pandas as `.xlsx`
  (`to_excel(index=False)`) and `.tsv` (`to_csv(sep="\\t", index=False)`), MMBench's circular rows
  (index >= 1,000,000) included. The hand-computed MMBench results of tests/test_mmbench.py must come out.
- lmms-eval `--log_samples`: one JSON object per document with `doc_id`, `doc` (no image fields),
  `target`, `arguments`, `resps`, `filtered_resps`, the hashes and the task's metric fields, as
  `lmms_eval/evaluator.py` builds them; and the older `{"logs": [...]}` JSON.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from test_mmbench import ANSWERS, EXPECTED_CIRCULAR, EXPECTED_L2, EXPECTED_VANILLA, build_rows, write_tsv

from conftest import cli

pd = pytest.importorskip("pandas")


def vlmevalkit_frame() -> "pd.DataFrame":
    """What VLMEvalKit's inference saves for MMBench: the TSV's rows without the image, plus the prediction."""
    rows = [{k: v for k, v in row.items() if k != "image"} for row in build_rows()]
    frame = pd.DataFrame(rows)
    frame["index"] = frame["index"].astype(int)
    frame["prediction"] = [ANSWERS[str(i)] for i in frame["index"]]
    return frame


def run_replay(tmp_path: Path, preds: Path, task: str, data: Path, *extra: str) -> dict:
    out = tmp_path / f"runs-{preds.name}"
    proc = cli("run", task, "--model", f"replay:{preds}", "--data", str(data), "--out", str(out), "--quiet", *extra)
    assert proc.returncode == 0, proc.stderr
    (results,) = out.glob("*/results.json")
    return json.loads(results.read_text())


@pytest.mark.parametrize("suffix", [".xlsx", ".tsv"])
def test_vlmevalkit_mmbench_predictions_replay_with_circular_rows(tmp_path: Path, suffix: str) -> None:
    pytest.importorskip("openpyxl", reason="xlsx needs openpyxl (pip install 'step3vl-eval[vlmevalkit]')")
    data = write_tsv(tmp_path / "MMBench_DEV_EN_V11.tsv", build_rows())
    frame = vlmevalkit_frame()
    frame.loc[frame["index"] == 1, "prediction"] = "<think>a pet, so\tcat</think>\nFinal answer: A"
    preds = tmp_path / f"Step3-VL_MMBench_DEV_EN_V11{suffix}"
    if suffix == ".xlsx":
        frame.to_excel(preds, index=False)
    else:
        frame.to_csv(preds, sep="\t", index=False)
    result = run_replay(tmp_path, preds, "mmbench_en", data)
    metrics = result["metrics"]
    assert result["counts"]["requests"] == len(frame) == 15 and result["counts"]["errors"] == 0
    assert metrics["accuracy"]["value"] == pytest.approx(EXPECTED_CIRCULAR)
    assert metrics["vanilla_accuracy"]["value"] == pytest.approx(EXPECTED_VANILLA)
    assert {k: v["value"] for k, v in result["breakdowns"]["l2"].items()} == pytest.approx(EXPECTED_L2)
    (samples,) = (tmp_path / f"runs-{preds.name}").glob("*/samples.jsonl")
    first = next(json.loads(line) for line in samples.read_text().splitlines() if json.loads(line)["key"] == "1#0")
    assert first["response"]["reasoning"] == "a pet, so\tcat" and first["response"]["text"] == "Final answer: A"


def test_vlmevalkit_file_without_prediction_is_one_line(tmp_path: Path) -> None:
    data = write_tsv(tmp_path / "MMBench_DEV_EN_V11.tsv", build_rows())
    preds = tmp_path / "preds.tsv"
    vlmevalkit_frame().drop(columns=["prediction"]).to_csv(preds, sep="\t", index=False)
    proc = cli("run", "mmbench_en", "--model", f"replay:{preds}", "--data", str(data), "--out", str(tmp_path / "runs"))
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "not a VLMEvalKit prediction file" in proc.stderr


def lmms_eval_sample(doc_id: int, doc: dict, target: str, outputs: list[str], task: str, metrics: dict) -> dict:
    """One logged sample as lmms-eval's evaluator writes it (generate_until, one request per document)."""
    saved_doc = {k: v for k, v in doc.items() if "image" not in k}
    gen_kwargs = {"max_new_tokens": 16384, "temperature": 0, "do_sample": False, "until": ["\n\n"]}
    context = doc["question"]
    return {
        "doc_id": doc_id,
        "doc": saved_doc,
        "target": target,
        "arguments": [context, gen_kwargs, doc_id, task, "dev"],
        "resps": [outputs],
        "filtered_resps": [outputs[0][-1:]],  # a filter's output: not what we replay
        "doc_hash": hashlib.sha256(json.dumps(doc, default=str).encode()).hexdigest(),
        "prompt_hash": hashlib.sha256(context.encode()).hexdigest(),
        "target_hash": hashlib.sha256(target.encode()).hexdigest(),
        **metrics,
    }


def test_lmms_eval_mmbench_sample_log_replays_with_circular_rows(tmp_path: Path) -> None:
    data = write_tsv(tmp_path / "MMBench_DEV_EN_V11.tsv", build_rows())
    lines = []
    for doc_id, row in enumerate(build_rows()):
        doc = {**{k: row[k] for k in ("index", "question", "hint", "A", "B", "C", "D", "answer", "category",
                                      "source", "comment", "split")}, "L2-category": row["l2-category"],
               "image": "<PIL.Image>"}
        doc["index"] = int(doc["index"])
        prediction = ANSWERS[row["index"]]
        details = {k: doc[k] for k in ("index", "question", "answer", "hint", "source", "split", "category",
                                       "L2-category")}
        metrics = {"gpt_eval_score": {**details, "prediction": prediction},
                   "submission": {**details, "prediction": prediction}}
        lines.append(lmms_eval_sample(doc_id, doc, row["answer"], [prediction], "mmbench_en_dev", metrics))
    preds = tmp_path / "20260101_000000_samples_mmbench_en_dev.jsonl"
    preds.write_text("".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines))
    result = run_replay(tmp_path, preds, "mmbench_en", data)
    assert result["counts"]["requests"] == 15 and result["counts"]["errors"] == 0
    assert result["metrics"]["accuracy"]["value"] == pytest.approx(EXPECTED_CIRCULAR)
    assert result["metrics"]["vanilla_accuracy"]["value"] == pytest.approx(EXPECTED_VANILLA)


MATHVISION_OUTPUTS = {  # id -> two repeats (gold: 1 -> 4, 2 -> B, 3 -> 7)
    "1": ["The area is \\boxed{4}", "\\boxed{5}"],
    "2": ["\\boxed{B}", "<think>red is the second</think>\\boxed{B}"],
    "3": ["I count \\boxed{7}", "\\boxed{7}"],
}


def mathvision_log(data: Path) -> list[dict]:
    rows = [json.loads(line) for line in data.read_text().splitlines()]
    return [lmms_eval_sample(i, {**row, "decoded_image": None}, row["answer"], MATHVISION_OUTPUTS[row["id"]],
                             "mathvision_testmini", {"mathvision_standard_eval": {"response": MATHVISION_OUTPUTS[row["id"]]}})
            for i, row in enumerate(rows)]


@pytest.mark.parametrize("layout", ["jsonl", "logs_json"])
def test_lmms_eval_sample_log_with_repeats_replays_per_repeat(tmp_path: Path, mathvision_images: Path,
                                                              layout: str) -> None:
    log = mathvision_log(mathvision_images)
    if layout == "jsonl":
        preds = tmp_path / "samples_mathvision_testmini.jsonl"
        preds.write_text("".join(json.dumps(line) + "\n" for line in log))
    else:  # older lmms-eval: one JSON per task with the samples under "logs"
        preds = tmp_path / "mathvision_testmini.json"
        preds.write_text(json.dumps({"args": {}, "model_configs": {}, "logs": log}))
    result = run_replay(tmp_path, preds, "mathvision", mathvision_images, "-k", "2")
    assert result["counts"]["requests"] == 6 and result["counts"]["errors"] == 0
    assert result["metrics"]["accuracy"]["value"] == pytest.approx((0.5 + 1 + 1) / 3)


def test_lmms_eval_loglikelihood_log_is_refused_in_one_line(tmp_path: Path, mathvision_images: Path) -> None:
    preds = tmp_path / "samples_mmbench_ppl.jsonl"
    preds.write_text(json.dumps({"doc_id": 0, "doc": {"id": "1"}, "target": "A", "resps": [[[-1.5, False]]],
                                 "filtered_resps": [[-1.5, False]]}) + "\n")
    proc = cli("run", "mathvision", "--model", f"replay:{preds}", "--data", str(mathvision_images),
               "--out", str(tmp_path / "runs"))
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "loglikelihood" in proc.stderr
