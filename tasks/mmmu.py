"""MMMU: Massive Multi-discipline Multimodal Understanding (Yue et al., CVPR 2024, arXiv 2311.16502).

Data: hub `MMMU/MMMU` (30 subject configs; split `validation` by default, 900 items; `dev` 150)
or `lmms-lab/MMMU` (`-T hub_id=lmms-lab/MMMU`), or local files: Parquet/JSONL (a hub snapshot
folder, files picked by split name) or an MMMU output folder (`<Subject>/output.json` with
`all_choices`/`index2ans`; it holds no question text or images, so it serves re-scoring only).
Prompt: the STEP3-VL-10B report's template (App. C.1), images at their `<image k>` placeholders.
Two scores from the same responses, both always reported (DESIGN §7):
- `accuracy` (report protocol, VLMEvalKit): `evals.choice.match_choice`; an open question becomes
  the two options A = gold text, B = "Other Answers" (gold A, or the gold itself when it is a letter,
  as VLMEvalKit keys it).
- `accuracy_official` (MMMU repository, `tasks/mmmu_official.py`); an MCQ answer that no rule
  resolves is flagged `fallback` and counted wrong, or, with `-T official_fallback=random`, given
  the official seed-42 random letter, drawn per repeat in the official order. A truncated MCQ
  response (empty text) takes its draw too, as the official scorer parses it as "" and draws.
A row whose text names an `<image k>` it has no `image_k` for (the 2023 release's
`validation_Math_7`) keeps the placeholder as text; load warns once and results count such rows.
"""

from __future__ import annotations

import ast
import re
import string
import sys
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from evals import metrics
from evals.choice import match_choice, question_block
from model_adapters.judge import reject_unknown_options
from evals.types import GenParams, Image, Message, Part, Response, Sample, Scored, Text, UserError
from tasks import mmmu_official as official
from tasks.data import load_local_rows, load_rows, require_fields
from tasks.images import image_from_cell

# App. C.1 joins `{question}` and the instruction with a space (DESIGN §7), even after option lines.
PROMPT_TEMPLATE = (
    "{question} Your response can be freely expressed in any format, but the final answer must be "
    'presented in this format: "Final answer: [the correct option]" with the option letter only.'
)
HUB_ID = "MMMU/MMMU"
DISCIPLINES = {  # the MMMU repository's DOMAIN_CAT2SUB_CAT
    "Art and Design": ["Art", "Art_Theory", "Design", "Music"],
    "Business": ["Accounting", "Economics", "Finance", "Manage", "Marketing"],
    "Science": ["Biology", "Chemistry", "Geography", "Math", "Physics"],
    "Health and Medicine": ["Basic_Medical_Science", "Clinical_Medicine",
                            "Diagnostics_and_Laboratory_Medicine", "Pharmacy", "Public_Health"],
    "Humanities and Social Science": ["History", "Literature", "Sociology", "Psychology"],
    "Tech and Engineering": ["Agriculture", "Architecture_and_Engineering", "Computer_Science",
                             "Electronics", "Energy_and_Power", "Materials", "Mechanical_Engineering"],
}
DISCIPLINE_OF = {subject: d for d, subjects in DISCIPLINES.items() for subject in subjects}
SUBJECTS = sorted(DISCIPLINE_OF)  # the official scorer's order (CAT_SHORT2LONG, alphabetical)
SPLITS = ("validation", "dev")
MAX_IMAGES = 7
IMAGE_TAG = re.compile(r"<image (\d+)>")
OUTPUT_FILE = "output.json"  # the MMMU repository's per-subject output layout
OPEN_OTHER = "Other Answers"


class MMMU:
    name = "mmmu"
    prompt_template = PROMPT_TEMPLATE
    default_params = GenParams(max_tokens=65536, temperature=1.0, top_p=1.0, top_k=0)
    default_repeats = 1

    def __init__(self, official_fallback: str = "wrong", hub_id: str = HUB_ID, **judge_options: str):
        if official_fallback not in ("wrong", "random"):
            raise UserError(f"mmmu: official_fallback must be 'wrong' or 'random', not {official_fallback!r}")
        reject_unknown_options("mmmu", judge_options)
        self.official_fallback = official_fallback
        self.hub_id = hub_id
        self.judge: Any = None  # set by the runner when the run has a judge (model_adapters.judge.make_judge)

    # ---- data ----------------------------------------------------------------------------------

    def load(self, data: str | None, split: str | None, limit: int | None) -> list[Sample]:
        split = split or "validation"
        if split not in SPLITS:
            raise UserError(f"mmmu: split must be one of {', '.join(SPLITS)} (test has no answers), not {split!r}")
        samples = [self.to_sample(source, row) for source, row in self.read_rows(data, split)]
        samples = samples[:limit] if limit else samples
        warn_missing_images(samples)
        return samples

    def read_rows(self, data: str | None, split: str) -> list[tuple[str, dict[str, Any]]]:
        if data is None:
            configs: list[str | None] = list(SUBJECTS) if self.hub_id == HUB_ID else [None]
            return load_rows(None, hub_id=self.hub_id, hub_configs=configs, split=split)
        path = Path(data)
        if not path.is_dir():
            return load_local_rows(path)
        files = sorted(path.glob(f"*/{OUTPUT_FILE}"))
        if not files:
            files = sorted(p for p in path.rglob("*") if p.suffix in (".parquet", ".jsonl", ".json"))
            files = [p for p in files if split in p.name] or files
        if not files:
            raise UserError(f"no MMMU data files in {path}")
        return [row for f in files for row in load_local_rows(f)]

    def to_sample(self, source: str, row: dict[str, Any]) -> Sample:
        require_fields(row, ["id", "question_type", "answer"], source)
        sample_id = str(row["id"])
        subject = "_".join(sample_id.split("_")[1:-1])
        if subject not in DISCIPLINE_OF:
            raise UserError(f"{source}: field 'id': {sample_id!r} names no MMMU subject (<split>_<Subject>_<n>)")
        is_mcq = row["question_type"] == "multiple-choice"
        choices = parse_choices(row, source) if is_mcq else {}
        question = str(row.get("question") or "")
        prompt = PROMPT_TEMPLATE.format(question=question_block(question, choices))
        number = sample_id.rsplit("_", 1)[-1]
        parts, missing = interleave(prompt, row, source)
        return Sample(
            id=sample_id,
            messages=[Message("user", parts)],
            target=parse_answer(row["answer"]),
            choices=choices or None,
            metadata={
                "subject": subject, "discipline": DISCIPLINE_OF[subject], "question": question,
                "question_type": "multiple-choice" if is_mcq else "open",
                "subfield": row.get("subfield"), "topic_difficulty": row.get("topic_difficulty"),
                "official_order": [SUBJECTS.index(subject), int(number) if number.isdigit() else 0],
                "missing_images": missing,
            },
        )

    # ---- scoring -------------------------------------------------------------------------------

    def score(self, sample: Sample, response: Response) -> Scored:
        choices, gold_letter = report_question(sample)
        found = match_choice(response.text, choices)
        if found.letter is None and self.judge is not None:
            found = self.judge.decide(sample.metadata["question"], choices, response.text)
        correct = found.letter == gold_letter
        return Scored(key=response.key, sample_id=sample.id, repeat=0, extracted=found.letter,
                      rule=found.rule, correct=correct, score=float(correct),
                      extra={"official": official_verdict(sample, response.text)})

    def aggregate(self, samples: dict[str, Sample], scored: list[Scored]) -> dict[str, Any]:
        verdicts = self.official_verdicts(samples, scored)

        def official_value(s: Scored) -> float:
            return float(verdicts[s.key])

        report = metrics.accuracy(scored)
        report["rules"] = count_by(s.rule for s in scored)
        if self.judge is not None:
            report["judge"] = self.judge.counts()
        strict = metrics.accuracy(scored, official_value)
        strict["rules"] = count_by(official_of(s)["rule"] for s in scored)
        strict["fallback"] = {"policy": self.official_fallback, "picks": self.fallback_picks(samples, scored),
                              "keys": [s.key for s in scored if official_of(s)["rule"] == "fallback"]}
        missing = sorted(i for i, s in samples.items() if s.metadata.get("missing_images"))
        strict["missing_images"] = report["missing_images"] = {"rows": len(missing), "ids": missing}
        breakdowns: dict[str, Any] = {}
        for group in ("discipline", "subject", "question_type"):
            breakdowns[group] = metrics.group_by(scored, samples, metrics.metadata_field(group))
            breakdowns[f"{group}_official"] = metrics.group_by(
                scored, samples, metrics.metadata_field(group), official_value)
        return {"metrics": {"accuracy": report, "accuracy_official": strict}, "breakdowns": breakdowns}

    def official_verdicts(self, samples: dict[str, Sample], scored: list[Scored]) -> dict[str, bool]:
        """Per response key, right or wrong under the official protocol (random picks included)."""
        picks = self.fallback_picks(samples, scored)
        return {s.key: bool(official_of(s)["correct"])
                or official.eval_multiple_choice(samples[s.sample_id].target, picks.get(s.key))
                for s in scored}

    def fallback_picks(self, samples: dict[str, Sample], scored: list[Scored]) -> dict[str, str]:
        """The official random letters, per repeat in the official order (empty unless asked).

        The official scorer draws for every multiple-choice answer it cannot parse, a truncated
        (empty) one included: each takes its place in the seed-42 sequence."""
        if self.official_fallback != "random":
            return {}
        picks: dict[str, str] = {}
        for repeat in sorted({s.repeat for s in scored}):
            pending = [s for s in scored if s.repeat == repeat and draws_at_random(s, samples[s.sample_id])]
            pending.sort(key=lambda s: samples[s.sample_id].metadata["official_order"])
            picks.update(official.official_random_picks((s.key, list(samples[s.sample_id].choices or {}))
                                                        for s in pending))
        return picks


def parse_choices(row: dict[str, Any], source: str) -> dict[str, str]:
    """Options as {letter: text}: the hub's stringified list, a list, or MMMU output `index2ans`."""
    if isinstance(row.get("index2ans"), dict):
        return {str(k): str(v) for k, v in row["index2ans"].items()}
    require_fields(row, ["options"], source)
    options = row["options"]
    if isinstance(options, str):
        try:
            options = ast.literal_eval(options)
        except (ValueError, SyntaxError):
            options = None
    if not isinstance(options, list) or not options:
        raise UserError(f"{source}: field 'options' is not a non-empty list of options")
    return {chr(ord("A") + i): str(text) for i, text in enumerate(options)}


def parse_answer(answer: Any) -> str | list[str]:
    """The gold: a letter, a text, or a list of acceptable texts (the hub stringifies such lists)."""
    if isinstance(answer, list):
        return [str(a) for a in answer]
    text = str(answer)
    if text.startswith("[") and text.endswith("]"):
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            return text
        if isinstance(value, list):
            return [str(a) for a in value]
    return text


def interleave(prompt: str, row: dict[str, Any], source: str) -> tuple[list[Part], list[int]]:
    """Text and images in order, and the image numbers the text names but the row lacks.

    Each `<image k>` becomes image_k (every time it occurs, as VLMEvalKit does); images the text
    never names go first. A placeholder without its image stays as text (the 2023 release's
    `validation_Math_7` names one in an option). Rows without image columns (MMMU output files)
    keep the placeholders as text."""
    if not any(f"image_{k}" in row for k in range(1, MAX_IMAGES + 1)):
        return [Text(prompt)], []
    base_dir = Path(source.rsplit(":", 1)[0]).parent
    images: dict[int, Image] = {}
    for k in range(1, MAX_IMAGES + 1):
        if row.get(f"image_{k}") is not None:
            images[k] = image_from_cell(row[f"image_{k}"], f"{source}: field 'image_{k}'", base_dir)
    named = [int(k) for k in IMAGE_TAG.findall(prompt)]
    missing = sorted({k for k in named if k not in images})
    parts: list[Part] = [img for k, img in images.items() if k not in named]
    pieces = IMAGE_TAG.split(prompt)  # text, k, text, k, ..., text
    for i, piece in enumerate(pieces):
        if i % 2 and int(piece) in images:
            parts.append(images[int(piece)])
            continue
        text = f"<image {piece}>" if i % 2 else piece
        if text and parts and isinstance(parts[-1], Text):  # a kept placeholder joins its neighbours
            parts[-1] = Text(parts[-1].text + text)
        elif text:
            parts.append(Text(text))
    return parts, missing


def warn_missing_images(samples: list[Sample]) -> None:
    """One line on stderr for all rows that name an image they lack (counted in results too)."""
    missing = [(s.id, k) for s in samples for k in s.metadata["missing_images"]]
    if missing:
        first_id, first_k = missing[0]
        rows = len({i for i, _ in missing})
        print(f"step3vl-eval: warning: mmmu: {rows} row(s) name an <image k> they have no image_k for "
              f"(first: {first_id}, <image {first_k}>); kept as text", file=sys.stderr)


def report_question(sample: Sample) -> tuple[dict[str, str], str]:
    """(choices, gold letter) of the report protocol; open questions as VLMEvalKit's MMMU_preproc."""
    if sample.choices:
        return sample.choices, str(sample.target)
    gold = str(sample.target)
    return {"A": gold, "B": OPEN_OTHER}, gold if len(gold) == 1 and gold in string.ascii_uppercase else "A"


def official_verdict(sample: Sample, text: str) -> dict[str, Any]:
    if sample.choices:
        letter = official.parse_multiple_choice(text, list(sample.choices), sample.choices)
        return {"pred": letter, "rule": "official" if letter else "fallback", "gold": sample.target,
                "correct": official.eval_multiple_choice(sample.target, letter)}
    preds = official.parse_open(text)
    return {"pred": preds, "rule": "official", "gold": sample.target,
            "correct": official.eval_open(sample.target, preds)}


def draws_at_random(scored: Scored, sample: Sample) -> bool:
    """The official scorer would draw a random letter: unparsed, or truncated (it parses "")."""
    return official_of(scored)["rule"] == "fallback" or (scored.truncated and bool(sample.choices))


def official_of(scored: Scored) -> dict[str, Any]:
    """The official protocol's verdict; a truncated response (scored by the runner) has none."""
    return scored.extra.get("official") or {"pred": None, "rule": scored.rule, "gold": None, "correct": False}


def count_by(values: Iterable[str]) -> dict[str, int]:
    return dict(Counter(values))
