"""MMMU-Pro: a more robust MMMU (Yue et al., 2024, arXiv 2409.02813), 1,730 questions, split `test`.

Two tasks from one module: `mmmu_pro` (config `standard (10 options)`: the question text with its
`<image k>` figures and up to ten options) and `mmmu_pro_vision` (config `vision`: one screenshot
holding question and options; the model gets only the image and an instruction).
Data: hub `MMMU/MMMU_Pro`, or `--data PATH`: a folder in the hub's layout (`standard (10 options)/`,
`vision/`, Parquet files), one of those config folders, or a single Parquet / JSON lines file.
Prompts: the MMMU-Pro repository's `prompts.yaml` (`mmmu-pro/`), chain of thought by default
(`-T prompt=direct` for the direct one). Standard: the question, the options as `A. text` lines and
the instruction, one per line, each `<image k>` replaced by image k (options are shuffled, so option
images need not come in key order: each placeholder takes its own image). Vision: the screenshot, then
the instruction.
Scoring: the repository's `evaluate.py` (`mmmu_process_results`), rule for rule (`parse_answer_letter`),
and an exact letter match. Where it finds no letter the official scorer calls an unseeded
`random.choice`; here the draw is seeded per response (`fallback_letter`, recorded in results.json
with the count of such answers), or counted wrong with `-T fallback=wrong`.
Breakdowns as the official report: discipline and subject (MMMU's thirty), plus topic difficulty.
"""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path
from typing import Any

from evals import metrics
from evals.types import GenParams, Message, Part, Response, Sample, Scored, Text, UserError
from tasks.data import Row, load_local_rows, load_rows, require_fields
from tasks.images import image_from_cell
from tasks.mmmu import DISCIPLINE_OF, interleave, parse_choices
from tasks.mmmu_official import STRIP_ORDER, _last

HUB_ID = "MMMU/MMMU_Pro"
CONFIGS = {"standard": "standard (10 options)", "vision": "vision"}
SPLIT = "test"
# prompts.yaml of MMMU-Benchmark/MMMU `mmmu-pro/` (bb0b95a), by mode and setting.
INSTRUCTIONS = {
    "cot": {
        "vision": "Write out the multiple-choice question in the image and then solve it. The last line of "
                  "your response should be of the following format: 'Answer: $LETTER' (without quotes) where "
                  "LETTER is one of options. Think step by step before answering.",
        "standard": "Answer the preceding multiple choice question. The last line of your response should be "
                    "of the following format: 'Answer: $LETTER' (without quotes) where LETTER is one of "
                    "options. Think step by step before answering.",
    },
    "direct": {
        "vision": "Answer with the option letter from the given choices directly. The last line of your "
                  "response should be of the following format: 'Answer: $LETTER' (without quotes) where "
                  "LETTER is one of options.",
        "standard": "Answer with the option letter from the given choices directly.",
    },
}
REQUIRED = {"standard": ["id", "question", "options", "answer"], "vision": ["id", "image", "options", "answer"]}
ANSWER_TAG = "Answer:"
SEED = 42


class MMMUPro:
    default_params = GenParams(max_tokens=65536, temperature=1.0, top_p=1.0, top_k=0)
    default_repeats = 1
    hub_id = HUB_ID

    def __init__(self, setting: str = "standard", prompt: str = "cot", fallback: str = "random"):
        if setting not in CONFIGS:
            raise UserError(f"mmmu_pro: setting must be one of {', '.join(CONFIGS)}, not {setting!r}")
        if prompt not in INSTRUCTIONS:
            raise UserError(f"mmmu_pro: prompt must be 'cot' or 'direct', not {prompt!r}")
        if fallback not in ("random", "wrong"):
            raise UserError(f"mmmu_pro: fallback must be 'random' or 'wrong', not {fallback!r}")
        self.setting, self.prompt, self.fallback = setting, prompt, fallback
        self.name = "mmmu_pro" if setting == "standard" else "mmmu_pro_vision"
        self.prompt_template = INSTRUCTIONS[prompt][setting]

    # ---- data ----------------------------------------------------------------------------------

    def load(self, data: str | None, split: str | None, limit: int | None) -> list[Sample]:
        if (split or SPLIT) != SPLIT:
            raise UserError(f"{self.name}: MMMU-Pro has one split, {SPLIT!r}, not {split!r}")
        samples = [self.to_sample(source, row) for source, row in self.read_rows(data)]
        return samples[:limit] if limit else samples

    def read_rows(self, data: str | None) -> list[Row]:
        config = CONFIGS[self.setting]
        if data is None:
            return load_rows(None, hub_id=HUB_ID, hub_configs=[config], split=SPLIT)
        path = Path(data)
        if path.is_dir() and (path / config).is_dir():
            return load_local_rows(path / config)
        if path.is_dir() and any((path / c).is_dir() for c in CONFIGS.values()):
            raise UserError(f"{path}: no {config!r} folder for {self.name} (the hub's layout has one per config)")
        return load_local_rows(path)

    def to_sample(self, source: str, row: dict[str, Any]) -> Sample:
        require_fields(row, REQUIRED[self.setting], source)
        choices = parse_choices(row, source)
        sample_id = str(row["id"])
        subject = str(row.get("subject") or "_".join(sample_id.split("_")[1:-1]))
        instruction = self.prompt_template
        if self.setting == "vision":
            image = image_from_cell(row["image"], f"{source}: field 'image'", Path(source.rsplit(":", 1)[0]).parent)
            parts: list[Part] = [image, Text(instruction)]
        else:
            options = "\n".join(f"{letter}. {text}" for letter, text in choices.items())
            parts, _ = interleave(f"{row['question']}\n{options}\n{instruction}", row, source)
        return Sample(
            id=sample_id,
            messages=[Message("user", parts)],
            target=str(row["answer"]).strip(),
            choices=choices,
            metadata={"subject": subject, "discipline": DISCIPLINE_OF.get(subject),
                      "topic_difficulty": row.get("topic_difficulty"), "question": row.get("question")},
        )

    # ---- scoring -------------------------------------------------------------------------------

    def score(self, sample: Sample, response: Response) -> Scored:
        choices = sample.choices or {}
        letter = parse_answer_letter(response.text, list(choices), choices)
        rule = "official" if letter is not None else "fallback"
        if letter is None and self.fallback == "random":
            letter = fallback_letter(response.key, list(choices))
        correct = letter is not None and letter == sample.target
        return Scored(key=response.key, sample_id=sample.id, repeat=0, extracted=letter, rule=rule,
                      correct=correct, score=float(correct))

    def aggregate(self, samples: dict[str, Sample], scored: list[Scored]) -> dict[str, Any]:
        accuracy = metrics.accuracy(scored)
        accuracy["rules"] = dict(Counter(s.rule for s in scored))
        drawn = [s for s in scored if s.rule == "fallback"]
        accuracy["fallback"] = {
            "policy": self.fallback,
            "seed": SEED if self.fallback == "random" else None,
            "draw": f"random.Random('{SEED}:' + key).choice(letters)" if self.fallback == "random" else "counted wrong",
            "count": len(drawn), "right": sum(s.correct for s in drawn), "keys": [s.key for s in drawn],
        }
        breakdowns = {group: metrics.group_by(scored, samples, metrics.metadata_field(group))
                      for group in ("discipline", "subject", "topic_difficulty")}
        return {"metrics": {"accuracy": accuracy}, "breakdowns": {k: v for k, v in breakdowns.items() if v}}


def parse_answer_letter(response: str, letters: list[str], texts: dict[str, str]) -> str | None:
    """The letter `evaluate.py`'s `parse_multi_choice_response` finds, or None where it draws at random.

    In order: after the last `Answer:`, the one letter that occurs (any other count reads on); then,
    on the response stripped of `, . ! ? ; : '` at both ends (in that order) and padded with spaces,
    the letters found as `(X)`; else as `X ` (the letter then a space, even inside a word: `DNA `
    counts for A); else as `X.`; else, only when the response has more than five words, the options
    whose text it contains (case-insensitive). Several candidates: the one whose `(X)` (bracketed),
    ` X ` (letters, even those found as `X ` or `X.`) or text (texts) occurs last; where none occurs,
    or on a tie, the first in letter order."""
    tail_at = response.rfind(ANSWER_TAG)
    if tail_at != -1:
        tail = response[tail_at + len(ANSWER_TAG):].strip()
        named = [c for c in letters if c in tail]
        if len(named) == 1:
            return named[0]
    for char in STRIP_ORDER:
        response = response.strip(char)
    padded = f" {response} "
    candidates = [c for c in letters if f"({c})" in padded]
    if candidates:
        return _last(candidates, lambda c: padded.rfind(f"({c})"))
    candidates = [c for c in letters if f"{c} " in padded] or [c for c in letters if f"{c}." in padded]
    if candidates:
        return _last(candidates, lambda c: padded.rfind(f" {c} "))
    if len(padded.split()) > 5:
        lowered = padded.lower()
        candidates = [c for c in letters if texts[c].lower() in lowered]
        if candidates:
            return _last(candidates, lambda c: lowered.rfind(texts[c].lower()))
    return None


def fallback_letter(key: str, letters: list[str]) -> str | None:
    """The seeded stand-in for the official unseeded draw: one generator per response key, so the
    letter does not depend on the order responses finish in, on resume or on re-scoring."""
    return random.Random(f"{SEED}:{key}").choice(letters) if letters else None
