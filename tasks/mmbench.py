"""MMBench: is your multi-modal model an all-around player? (Liu et al., ECCV 2024, arXiv 2307.06281).

Data: the official TSVs (`MMBench_DEV_EN_V11.tsv`, `MMBench_DEV_CN_V11.tsv`; v1.0 without `_V11`),
given as `--data FILE` or a folder holding them, split `dev`; or hub `lmms-lab/MMBench` (configs
`en`, `cn`, split `dev`), which holds v1.0 only (`-T version=v1.0`). The report's numbers are v1.1
dev, EN and CN separately (`mmbench_en`, `mmbench_cn`); its headline MMBench number is their mean.
Rows already hold the circular rotations: a question's group is `index % 1_000_000`.
Prompt: the report's template (App. C.1), the image first; CN uses our fixed Chinese rendering.
Scoring: `evals.choice.match_choice` (`Final answer: X`, then VLMEvalKit's rules), then the judge if
the run has one. `accuracy` is CircularEval (a question counts only if every pass is right);
`vanilla_accuracy` scores the first pass (the row whose index is the group id) alone.
"""

from __future__ import annotations

import csv
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from evals import metrics
from evals.choice import match_choice, question_block
from model_adapters.judge import reject_unknown_options
from evals.types import GenParams, Image, Message, Response, Sample, Scored, Text, UserError
from tasks.data import MAX_LINE_BYTES, load_local_rows, load_rows, require_fields
from tasks.images import b64_image, image_from_cell

# App. C.1 joins `{question}` and the instruction with a space (DESIGN §7), even after option lines.
PROMPT_TEMPLATES = {
    "en": '{question} Your response can be freely expressed in any format, but the final answer must be '
          'presented in this format: "Final answer: [the correct option]" with the option letter only.',
    # The report used "its Chinese translation" without printing it; this one is ours, kept fixed.
    "cn": "{question} 你的回答可以用任何形式自由表达，但最终答案必须按以下格式给出：“最终答案：[正确选项]”，只写选项字母。",
}
HUB_ID = "lmms-lab/MMBench"
VERSIONS = ("v1.1", "v1.0")
GROUP_MODULUS = 1_000_000
OPTION_LETTERS = "ABCDEFGHI"
# pandas' default `na_values`: VLMEvalKit reads the TSV with `pd.read_csv`, so a cell holding exactly
# one of these is missing there (an option dropped, a hint left out), and so it is here.
PANDAS_NA_CELLS = frozenset({
    "", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN", "<NA>",
    "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null",
})
IMAGE_REF_MAX_LEN = 64  # a shorter image cell is the index of the row whose image to reuse
REQUIRED = ["index", "question", "answer", "image", "category", "l2-category"]


def official_file(lang: str, version: str) -> str:
    return f"MMBench_DEV_{lang.upper()}{'_V11' if version == 'v1.1' else ''}.tsv"


class MMBench:
    default_params = GenParams(max_tokens=65536, temperature=1.0, top_p=1.0, top_k=0)
    default_repeats = 1
    hub_id = HUB_ID

    def __init__(self, lang: str = "en", version: str = "v1.1", **judge_options: str):
        if lang not in PROMPT_TEMPLATES or version not in VERSIONS:
            raise UserError(f"mmbench: lang must be en or cn and version v1.1 or v1.0 (got {lang!r}, {version!r})")
        reject_unknown_options(f"mmbench_{lang}", judge_options)
        self.name = f"mmbench_{lang}"
        self.lang, self.version = lang, version
        self.prompt_template = PROMPT_TEMPLATES[lang]
        self.judge: Any = None  # set by the runner when the run has a judge (model_adapters.judge.make_judge)

    # ---- data ----------------------------------------------------------------------------------

    def load(self, data: str | None, split: str | None, limit: int | None) -> list[Sample]:
        rows = [(source, normalize_row(row)) for source, row in self.read_rows(data, split or "dev")]
        for source, row in rows:
            require_fields(row, REQUIRED, source)
        images = resolve_images(rows)
        samples = [self.to_sample(source, row, images[source]) for source, row in rows]
        return first_groups(samples, limit) if limit else samples

    def read_rows(self, data: str | None, split: str) -> list[tuple[str, dict[str, Any]]]:
        if data is None:
            if self.version != "v1.0":
                raise UserError(f"MMBench {self.version} is only in the official TSV "
                                f"({official_file(self.lang, self.version)}): pass --data PATH, or "
                                f"-T version=v1.0 for the hub copy ({HUB_ID}, v1.0)")
            return load_rows(None, hub_id=HUB_ID, hub_configs=[self.lang], split=split)
        path = Path(data)
        if path.is_dir():
            path = path / official_file(self.lang, self.version)
            if not path.exists():
                raise UserError(f"{data}: no {path.name} in this folder (pass the TSV file itself)")
        return read_tsv(path) if path.suffix == ".tsv" else load_local_rows(path)

    def to_sample(self, source: str, row: dict[str, Any], image: Image) -> Sample:
        choices = {k: str(row[k]) for k in OPTION_LETTERS if not is_blank(row.get(k))}
        answer = str(row["answer"]).strip()
        if answer not in choices:
            raise UserError(f"{source}: field 'answer': {answer!r} is not one of the options {', '.join(choices)}")
        try:
            index = int(row["index"])
        except (TypeError, ValueError):
            raise UserError(f"{source}: field 'index': {row['index']!r} is not an integer") from None
        question = str(row["question"])
        hint = None if is_blank(row.get("hint")) else str(row["hint"])
        prompt = self.prompt_template.format(question=question_block(question, choices, hint))
        return Sample(
            id=str(index), messages=[Message("user", [image, Text(prompt)])], target=answer, choices=choices,
            metadata={"group": str(index % GROUP_MODULUS), "circular_pass": index // GROUP_MODULUS,
                      "l2": str(row["l2-category"]), "l3": str(row["category"]), "question": question,
                      "lang": self.lang, "version": self.version},
        )

    # ---- scoring -------------------------------------------------------------------------------

    def score(self, sample: Sample, response: Response) -> Scored:
        choices = sample.choices or {}
        found = match_choice(response.text, choices)
        if found.letter is None and self.judge is not None:
            found = self.judge.decide(sample.metadata["question"], choices, response.text)
        correct = found.letter == sample.target
        return Scored(key=response.key, sample_id=sample.id, repeat=0, extracted=found.letter,
                      rule=found.rule, correct=correct, score=float(correct))

    def aggregate(self, samples: dict[str, Sample], scored: list[Scored]) -> dict[str, Any]:
        hits, incomplete = circular_hits(samples, scored)
        first = [s for s in scored if samples[s.sample_id].metadata["circular_pass"] == 0]
        circular = circular_metric(list(hits.values()))
        circular.update(incomplete_groups=incomplete, rules=dict(Counter(s.rule for s in scored)),
                        outcomes=dict(sorted(hits.items())))  # per question: lets the gate pair two runs
        if self.judge is not None:
            circular["judge"] = self.judge.counts()
        heads = first_passes(samples)
        breakdowns: dict[str, Any] = {}
        for level in ("l2", "l3"):
            by_level: dict[str, list[float]] = defaultdict(list)
            for group, hit in hits.items():
                by_level[str(heads[group].metadata[level])].append(hit)
            breakdowns[level] = {cat: circular_metric(v) for cat, v in sorted(by_level.items())}
            breakdowns[f"{level}_vanilla"] = metrics.group_by(first, samples, metrics.metadata_field(level))
        return {"metrics": {"accuracy": circular, "vanilla_accuracy": metrics.accuracy(first)},
                "breakdowns": breakdowns}


def is_blank(value: Any) -> bool:
    """A missing cell as VLMEvalKit's pandas reading sees it: None, a float NaN, or a text pandas
    reads as missing (`NA`, `None`, `N/A`, `null`, `nan` (the hub copy's empty cells), ...)."""
    return value is None or (isinstance(value, float) and value != value) or str(value) in PANDAS_NA_CELLS


def normalize_row(row: dict[str, Any]) -> dict[str, Any]:
    """The hub copy spells the L2 column `L2-category`."""
    if "l2-category" not in row and "L2-category" in row:
        row = {**row, "l2-category": row["L2-category"]}
    return row


def read_tsv(path: Path) -> list[tuple[str, dict[str, Any]]]:
    """Rows of an official TSV as (`file:line`, row); empty cells are empty strings."""
    csv.field_size_limit(MAX_LINE_BYTES)  # an image cell is well under 1 MB; a 1 GB cell is damage
    try:
        with path.open(encoding="utf-8", newline="") as fh:
            reader = csv.DictReader(fh, delimiter="\t")
            return [(f"{path}:{reader.line_num}", row) for row in reader]
    except FileNotFoundError:
        raise UserError(f"data path does not exist: {path}") from None
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise UserError(f"{path}: not a readable TSV ({exc})") from None
    except MemoryError:
        raise UserError(f"{path}: a line too large to read") from None


def resolve_images(rows: list[tuple[str, dict[str, Any]]]) -> dict[str, Image]:
    """Each row's image by source; a short text cell is the index of the row whose image it reuses.

    An image reused by many rows is checked and held once."""
    by_index = {str(row["index"]).strip(): (source, row["image"]) for source, row in rows}
    held: dict[str, Image] = {}
    images: dict[str, Image] = {}
    for source, row in rows:
        owner, cell = source, row["image"]
        if isinstance(cell, str) and not cell.strip():
            raise UserError(f"{source}: field 'image' is empty")
        if is_image_reference(cell):
            target = by_index.get(cell.strip())
            if target is None or is_image_reference(target[1]):
                raise UserError(f"{source}: field 'image': {cell.strip()!r} names no row with an image")
            owner, cell = target
        if owner not in held:
            where = f"{owner}: field 'image'"
            held[owner] = b64_image(cell, where) if isinstance(cell, str) else image_from_cell(cell, where)
        images[source] = held[owner]
    return images


def is_image_reference(cell: Any) -> bool:
    return isinstance(cell, str) and len(cell.strip()) <= IMAGE_REF_MAX_LEN


def first_groups(samples: list[Sample], limit: int) -> list[Sample]:
    """`--limit N` keeps the first N questions with all their circular passes."""
    keep: list[str] = []
    for s in samples:
        if s.metadata["group"] not in keep and len(keep) < limit:
            keep.append(s.metadata["group"])
    return [s for s in samples if s.metadata["group"] in keep]


def circular_hits(samples: dict[str, Sample], scored: list[Scored]) -> tuple[dict[str, float], int]:
    """Per question (group): the share of repeats in which every circular pass is right.

    A group with a pass that has no scored answer (its request failed) is left out and counted."""
    passes: dict[str, int] = Counter(s.metadata["group"] for s in samples.values())
    found: dict[tuple[str, int], list[bool]] = defaultdict(list)
    for s in scored:
        found[(samples[s.sample_id].metadata["group"], s.repeat)].append(s.correct)
    per_group: dict[str, list[float]] = defaultdict(list)
    incomplete: set[str] = set()
    for (group, _), results in found.items():
        if len(results) < passes[group]:
            incomplete.add(group)
        per_group[group].append(float(all(results)))
    hits = {g: sum(v) / len(v) for g, v in per_group.items() if g not in incomplete}
    return hits, len(incomplete)


def circular_metric(values: list[float]) -> dict[str, Any]:
    m = metrics.mean_metric(values, binary=all(v in (0.0, 1.0) for v in values))
    m["questions"] = len(values)
    return m


def first_passes(samples: dict[str, Sample]) -> dict[str, Sample]:
    """Each question's first pass (the lowest circular pass present), which carries its labels."""
    heads: dict[str, Sample] = {}
    for s in samples.values():
        group = s.metadata["group"]
        if group not in heads or s.metadata["circular_pass"] < heads[group].metadata["circular_pass"]:
            heads[group] = s
    return heads
