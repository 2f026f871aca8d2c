"""AIME 2025: the 30 problems of the 2025 American Invitational Mathematics Examination (I and II).

Dataset: hub `opencompass/AIME2025` (configs `AIME2025-I`, `AIME2025-II`, split `test`, fields
`question`, `answer`), or a local JSONL/Parquet file (or a folder of them) with `problem` or
`question` and `answer`, or `--data bundled`: the answer key shipped in the package, without the
problem statements (not freely licensed; tasks/bundled/aime2025/README.md), for replay and mock only. The STEP3-VL-10B report (arXiv 2601.09668, Table 3) scores avg@64 at
temperature 1.0; it gives no prompt, so we use a step-by-step instruction with a boxed answer.
Answers are integers 0-999. The answer is the last `\\boxed{}` (`evals.extract.extract_boxed`),
compared with the gold by `tasks.mathcheck.math_equal` (canonical integers, else math-verify, gold
first); maj@k groups votes with that same check. docs/tasks.md measures it against math-verify.
"""

from __future__ import annotations

from typing import Any

from evals import metrics
from evals.extract import extract_boxed
from tasks.mathcheck import canonical, canonical_equal, math_equal
from evals.types import GenParams, Message, Response, Sample, Scored, Text
from tasks.data import BUNDLED, bundled_dir, load_local_rows, load_rows, require_fields

PROMPT_TEMPLATE = (
    "{problem}\n\nPlease reason step by step, and put your final answer within \\boxed{{}}."
)
HUB_ID = "opencompass/AIME2025"
HUB_CONFIGS = ["AIME2025-I", "AIME2025-II"]
NOT_BUNDLED = "AIME 2025 problem {id}: the statement is not bundled with step3vl-eval (answer key only)."


class AIME2025:
    name = "aime2025"
    prompt_template = PROMPT_TEMPLATE
    default_params = GenParams(max_tokens=65536, temperature=1.0, top_p=1.0, top_k=0)
    default_repeats = 64
    hub_id = HUB_ID

    def load(self, data: str | None, split: str | None, limit: int | None) -> list[Sample]:
        if data == BUNDLED:
            rows = [(source, {**row, "problem": NOT_BUNDLED.format(id=row.get("id"))})
                    for source, row in load_local_rows(bundled_dir(self.name) / "answers.jsonl")]
        else:
            rows = load_rows(data, hub_id=HUB_ID, hub_configs=HUB_CONFIGS, split=split or "test")
        samples = []
        for i, (source, row) in enumerate(rows):
            if "problem" not in row and "question" in row:
                row = {**row, "problem": row["question"]}
            require_fields(row, ["problem", "answer"], source)
            sample_id = str(row.get("id") or f"{i}")
            samples.append(self.to_sample(sample_id, row))
        return samples[:limit] if limit else samples

    def to_sample(self, sample_id: str, row: dict[str, Any]) -> Sample:
        prompt = PROMPT_TEMPLATE.format(problem=str(row["problem"]).strip())
        return Sample(id=sample_id, messages=[Message("user", [Text(prompt)])], target=str(row["answer"]).strip())

    def score(self, sample: Sample, response: Response) -> Scored:
        answer, rule = extract_boxed(response.text), "answer_format"
        if answer is None and response.meta.get("filtered_answer"):  # replayed: all another tool's filter left
            answer, rule = response.meta["filtered_answer"], "filtered"
        correct = answer is not None and math_equal(sample.target, answer)
        return Scored(
            key=response.key,
            sample_id=sample.id,
            repeat=0,
            extracted=answer,
            rule=rule if answer is not None else "none",
            correct=correct,
            score=1.0 if correct else 0.0,
        )

    def aggregate(self, samples: dict[str, Sample], scored: list[Scored]) -> dict[str, Any]:
        k = max((len(g) for g in metrics.by_sample(scored).values()), default=1)
        found = metrics.repeat_metrics(scored, k, canonical, canonical_equal)
        return {"metrics": {"accuracy": found[f"avg@{k}"], **found}, "breakdowns": {}}
