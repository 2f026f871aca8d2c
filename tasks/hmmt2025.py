"""HMMT February 2025: the 30 answer problems of the Harvard-MIT Mathematics Tournament, February 2025.

Dataset: hub `MathArena/hmmt_feb_2025` (split `train`, fields `problem_idx`, `problem`, `answer`,
`problem_type`), or `--data PATH`: a JSON lines / JSON / Parquet file (or a folder of them) with
`problem` and `answer`. The STEP3-VL-10B report (arXiv 2601.09668, Table 3, "HMMT25") gives no
split, prompt or repeat count; we take AIME 2025's: avg@64 at temperature 1.0, the same step-by-step
prompt with a boxed answer. Unlike AIME's integers, some answers are expressions (`\\frac{9\\sqrt{3}}{2}`,
`2^{25} \\cdot 26!`, `\\sqrt{6}-\\sqrt{2}`): they are compared by AIME's rules (`tasks/aime2025.py`:
the last `\\boxed{}`, `tasks.mathcheck.math_equal`, math-verify for anything not an integer).
Breakdown: per problem type (a problem can have several, kept as `Algebra, Geometry`; it counts in each).
"""

from __future__ import annotations

from typing import Any

from evals import metrics
from evals.types import Sample, Scored
from tasks.aime2025 import AIME2025
from tasks.data import load_rows, require_fields

HUB_ID = "MathArena/hmmt_feb_2025"
HUB_SPLIT = "train"  # MathArena publishes each competition as one `train` split
TYPE_JOIN = ", "  # a problem's types as one text: reports filter and sort by plain values


class HMMT2025(AIME2025):
    name = "hmmt2025"
    hub_id = HUB_ID

    def load(self, data: str | None, split: str | None, limit: int | None) -> list[Sample]:
        rows = load_rows(data, hub_id=HUB_ID, hub_configs=[None], split=split or HUB_SPLIT)
        samples = []
        for i, (source, row) in enumerate(rows):
            require_fields(row, ["problem", "answer"], source)
            number = row.get("problem_idx", row.get("id"))
            sample = self.to_sample(str(number if number is not None else i + 1), row)
            sample.metadata["problem_type"] = TYPE_JOIN.join(problem_types(row.get("problem_type"))) or None
            samples.append(sample)
        return samples[:limit] if limit else samples

    def aggregate(self, samples: dict[str, Sample], scored: list[Scored]) -> dict[str, Any]:
        result = super().aggregate(samples, scored)
        by_type: dict[str, list[Scored]] = {}
        for s in scored:
            for kind in (samples[s.sample_id].metadata.get("problem_type") or "").split(TYPE_JOIN):
                by_type.setdefault(kind, []).append(s)
        by_type.pop("", None)
        if by_type:
            result["breakdowns"]["problem_type"] = {k: metrics.accuracy(v) for k, v in sorted(by_type.items())}
        return result


def problem_types(value: Any) -> list[str]:
    """The hub's list of types; a plain string (a hand-made file) is one type."""
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    return [str(v) for v in value]
