"""MathVista: mathematical reasoning in visual contexts (Lu et al., ICLR 2024, arXiv 2310.02255).

Data: hub `AI4Math/MathVista` (split `testmini` by default, 1,000 problems; `test`, 5,141, has no
public answers: it runs and saves predictions but reports no accuracy; figure in `decoded_image`),
or `--data PATH`: the repository's `data/` layout, a folder (or its parent) holding
`<split>.json` (`{pid: problem}`), `query.json` (`{pid: query}`) and `images/`, or a hub snapshot
(`<split>-*.parquet`, which carries `query` itself). Images are opened only when a model needs them,
so replaying predictions needs none.

Prompt: the official query of each problem (`build_query.py`: the hint for its answer type, the
question with its unit, the choices), after the figure. The report says it used these prompts.
Scoring, as the official `extract_answer.py` + `calculate_score.py` (re-implemented, proven equal
in tests/test_oracle_mathvista.py): an extraction, then `normalize_extraction` (a choice by letter
or by least edit distance to the option texts, `int(float(x))`, `round(float(x), precision)`,
`str(x)` for lists) and plain equality with the gold. The extraction comes from, in order:
- `judge`: the official extractor's own `extraction` when a replayed file has one (MathVista's
  released `output_*.json`), so a released run scores its official count without a judge;
- `official`: the official direct reads (the reply is an option text, an integer, a float);
- `answer_format`: ours: the last of `Final answer: X`, `\\boxed{X}`, `The answer is X` whose X reads
  as an answer of the problem's type, or a reply that is nothing but such an answer;
- `judge`: `--judge MODEL` with the official few-shot extraction prompt; else `none` (wrong; the
  official pipeline would have GPT-4 read it).
Metrics: accuracy; per question type, answer type, language, source, category, task, context,
grade and skill (a problem counts in each of its skills), the fields of the official scores file.
"""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path
from typing import Any

from evals import metrics
from evals.extract import extract_boxed
from model_adapters.judge import reject_unknown_options
from evals.types import GenParams, Message, Response, Sample, Scored, Text, UserError
from tasks.data import Row, _read_json, load_local_rows, load_rows, require_fields
from tasks.images import image_from_cell

HUB_ID = "AI4Math/MathVista"
SPLITS = ("testmini", "test")  # test: no public answers
PROMPT_TEMPLATE = "<image>{query}"  # the figure, then the official query of the problem, verbatim
QUESTION_TYPES = ("multi_choice", "free_form")
ANSWER_TYPES = ("text", "integer", "float", "list")
GROUPS = ("question_type", "answer_type", "language", "source", "category", "task", "context", "grade")
NO_GOLD = "no accuracy: MathVista's test split has no public answers (the predictions are in samples.jsonl)"

# The official few-shot extraction prompt (MathVista `evaluation/prompts/ext_ans.py` @ 53d5258, by
# Pan Lu et al., CC BY-SA 4.0), verbatim as the official extractor sends it (stripped): the judge must
# see what GPT-4 saw. tests/test_oracle_mathvista.py checks it against the original.
EXTRACTION_DEMO = """Please read the following example. Then extract the answer from the model response and type it at the end of the prompt.

Hint: Please answer the question requiring an integer answer and provide the final value, e.g., 1, 2, 3, at the end.
Question: Which number is missing?

Model response: The number missing in the sequence is 14.

Extracted answer: 14

Hint: Please answer the question requiring a floating-point number with one decimal place and provide the final value, e.g., 1.2, 1.3, 1.4, at the end.
Question: What is the fraction of females facing the camera?

Model response: The fraction of females facing the camera is 0.6, which means that six out of ten females in the group are facing the camera.

Extracted answer: 0.6

Hint: Please answer the question requiring a floating-point number with two decimal places and provide the final value, e.g., 1.23, 1.34, 1.45, at the end.
Question: How much money does Luca need to buy a sour apple candy and a butterscotch candy? (Unit: $)

Model response: Luca needs $1.45 to buy a sour apple candy and a butterscotch candy.

Extracted answer: 1.45

Hint: Please answer the question requiring a Python list as an answer and provide the final list, e.g., [1, 2, 3], [1.2, 1.3, 1.4], at the end.
Question: Between which two years does the line  graph saw its maximum peak?

Model response: The line graph saw its maximum peak between 2007 and 2008.

Extracted answer: [2007, 2008]

Hint: Please answer the question and provide the correct option letter, e.g., A, B, C, D, at the end.
Question: What fraction of the shape is blue?\nChoices:\n(A) 3/11\n(B) 8/11\n(C) 6/11\n(D) 3/5

Model response: The correct answer is (B) 8/11.

Extracted answer: B"""


def extraction_prompt(query: str, response: str) -> str:
    """What the official extractor sends GPT-4: the demo, the problem's query, the bare reply."""
    return f"{EXTRACTION_DEMO}\n\n{query}\n\n{response}\n\nExtracted answer: "


class MathVista:
    name = "mathvista"
    prompt_template = PROMPT_TEMPLATE
    default_params = GenParams(max_tokens=65536, temperature=1.0, top_p=1.0, top_k=0)
    default_repeats = 1
    hub_id = HUB_ID

    def __init__(self, **judge_options: str):
        reject_unknown_options("mathvista", judge_options)
        self.judge: Any = None  # set by the runner when the run has a judge (model_adapters.judge.make_judge)
        self.has_gold = True

    # ---- data ----------------------------------------------------------------------------------

    def load(self, data: str | None, split: str | None, limit: int | None) -> list[Sample]:
        split = split or "testmini"
        if split not in SPLITS:
            raise UserError(f"mathvista: split must be one of {', '.join(SPLITS)}, not {split!r}")
        if data is None:
            rows, base_dir = load_rows(None, hub_id=HUB_ID, hub_configs=[None], split=split), None
            queries: dict[str, str] = {}
        else:
            rows, base_dir, queries = read_local(Path(data), split)
        samples = [to_sample(source, row, queries, base_dir, split) for source, row in rows]
        samples = samples[:limit] if limit else samples
        self.has_gold = any(s.target is not None for s in samples)
        return samples

    # ---- scoring -------------------------------------------------------------------------------

    def score(self, sample: Sample, response: Response) -> Scored:
        released = response.meta.get("extraction")
        ours, rule = rules_extract(response.text, sample)
        extra: dict[str, Any] = {}
        if isinstance(released, str):  # a replayed official file: its extractor already read it
            extra = {"extraction_from": "replayed file", "rules": {"extracted": ours, "rule": rule}}
            if ours is not None:
                extra["rules"]["agrees"] = normalized(ours, sample) == normalized(released, sample)
            extraction, rule = released, "judge"
        elif ours is None and self.judge is not None and response.text.strip():
            extraction = self.judge_extract(sample, response.text)
            rule = "judge" if extraction else "none"
        else:
            extraction = ours
        prediction = normalized(extraction, sample) if extraction is not None else None
        correct = sample.target is not None and prediction is not None and prediction == sample.target
        return Scored(key=response.key, sample_id=sample.id, repeat=0, extracted=extraction, rule=rule,
                      correct=correct, score=float(correct), extra={"prediction": prediction, **extra})

    def judge_extract(self, sample: Sample, text: str) -> str | None:
        query = next(m.text() for m in reversed(sample.messages) if m.role == "user")
        reply = self.judge.reply(extraction_prompt(query, text))
        self.judge.count("decided" if reply and reply.strip() else "undecided")
        return reply.strip() if reply and reply.strip() else None

    def summary_extras(self) -> dict[str, Any]:
        return {} if self.has_gold else {"no_gold": NO_GOLD}

    def aggregate(self, samples: dict[str, Sample], scored: list[Scored]) -> dict[str, Any]:
        found: dict[str, Any] = {}
        read = [s.extra["rules"] for s in scored if "agrees" in s.extra.get("rules", {})]
        if read:  # replayed official extractions: how often our rules read the same answer
            found["rules_agreement"] = metrics.mean_metric([float(r["agrees"]) for r in read], binary=True)
            found["rules_agreement"]["of"] = len(scored)
        if not self.has_gold:
            return {"metrics": found, "breakdowns": {}}
        found["accuracy"] = metrics.accuracy(scored)
        if self.judge is not None:
            found["accuracy"]["judge"] = self.judge.counts()
        k = max((len(g) for g in metrics.by_sample(scored).values()), default=1)
        if k > 1:
            found.update(metrics.repeat_metrics(scored, k))
        breakdowns = {group: metrics.group_by(scored, samples, metrics.metadata_field(group)) for group in GROUPS}
        breakdowns["skills"] = by_skill(samples, scored)
        return {"metrics": found, "breakdowns": breakdowns}


def by_skill(samples: dict[str, Sample], scored: list[Scored]) -> dict[str, dict[str, Any]]:
    """Accuracy per skill; a problem has one or more skills and counts in each (as officially)."""
    buckets: dict[str, list[Scored]] = defaultdict(list)
    for s in scored:
        for skill in samples[s.sample_id].metadata.get("skills") or []:
            buckets[str(skill)].append(s)
    return {skill: metrics.accuracy(items) for skill, items in sorted(buckets.items())}


# ---- loading ---------------------------------------------------------------------------------

def read_local(path: Path, split: str) -> tuple[list[Row], Path, dict[str, str]]:
    """Rows of one split, the folder image paths resolve against, and the official queries."""
    if not path.exists():
        raise UserError(f"data path does not exist: {path}")
    if path.is_file() and path.suffix == ".parquet":
        return load_local_rows(path), path.parent, {}
    if path.is_file():
        return json_rows(path), path.parent, read_queries(path)
    for folder in (path, path / "data"):
        if (folder / f"{split}.json").is_file():
            return read_local(folder / f"{split}.json", split)
        parquet = sorted(folder.glob(f"{split}-*.parquet"))
        if parquet:
            return [row for f in parquet for row in load_local_rows(f)], folder, {}
    raise UserError(f"mathvista: no {split}.json or {split}-*.parquet in {path} or {path / 'data'} "
                    "(the repository's data/ folder, or a hub snapshot)")


def json_rows(path: Path) -> list[Row]:
    """`{pid: problem}` (the repository's layout) or a list of problems."""
    data = _read_json(path)
    if isinstance(data, dict) and all(isinstance(v, dict) for v in data.values()):
        return [(f"{path}:{pid}", {"pid": pid, **row}) for pid, row in data.items()]
    if isinstance(data, list) and all(isinstance(r, dict) for r in data):
        return [(f"{path}:{i + 1}", r) for i, r in enumerate(data)]
    raise UserError(f"{path}: expected a JSON object of problems by pid (MathVista's layout) or a list")


def read_queries(data_file: Path) -> dict[str, str]:
    path = data_file.parent / "query.json"
    if not path.is_file():
        raise UserError(f"mathvista: no query.json beside {data_file} (the official prompts, "
                        "{pid: query}, from the repository's data/ folder)")
    queries = _read_json(path)
    if not isinstance(queries, dict) or not all(isinstance(q, str) for q in queries.values()):
        raise UserError(f"{path}: expected a JSON object {{pid: query text}}")
    return queries


def to_sample(source: str, row: dict[str, Any], queries: dict[str, str], base_dir: Path | None,
              split: str) -> Sample:
    require_fields(row, ["pid", "question_type", "answer_type", "metadata"], source)
    pid = str(row["pid"])
    qtype, atype = row["question_type"], row["answer_type"]
    if qtype not in QUESTION_TYPES or atype not in ANSWER_TYPES:
        raise UserError(f"{source}: question_type {qtype!r} / answer_type {atype!r} is not a MathVista type "
                        f"({'/'.join(QUESTION_TYPES)}, {'/'.join(ANSWER_TYPES)})")
    options = row.get("choices")
    if qtype == "multi_choice" and (not isinstance(options, list) or not options):
        raise UserError(f"{source}: field 'choices': a multiple-choice problem needs a non-empty list")
    query = row.get("query") or queries.get(pid)
    if not isinstance(query, str) or not query:
        raise UserError(f"{source}: no query for pid {pid!r} (in query.json or the row's 'query')")
    answer = row.get("answer")
    if answer in (None, "") and split != "test":
        raise UserError(f"{source}: missing field 'answer'")
    cell = row.get("decoded_image") if row.get("decoded_image") is not None else row.get("image")
    if cell is None or cell == "":
        raise UserError(f"{source}: missing field 'image' (or 'decoded_image')")
    image = image_from_cell(cell, f"{source}: field 'image'", base_dir)
    meta = row["metadata"] if isinstance(row["metadata"], dict) else {}
    return Sample(
        id=pid,
        messages=[Message("user", [image, Text(query)])],
        target=None if answer in (None, "") else str(answer),
        choices={chr(ord("A") + i): str(t) for i, t in enumerate(options)} if qtype == "multi_choice" else None,
        metadata={"question_type": qtype, "answer_type": atype, "precision": row.get("precision"),
                  "unit": row.get("unit"), **{k: meta.get(k) for k in (*GROUPS[2:], "skills")}},
    )


# ---- the official normalisation and comparison ---------------------------------------------------

def normalized(extraction: str, sample: Sample) -> str | None:
    m = sample.metadata
    return normalize_extraction(extraction, list((sample.choices or {}).values()), m["question_type"],
                                m["answer_type"], m.get("precision"))


def normalize_extraction(extraction: Any, choices: list[str], question_type: str, answer_type: str,
                         precision: Any) -> str | None:
    """The official `normalize_extracted_answer` (with empty extractions kept, its default)."""
    if question_type == "multi_choice":
        text = extraction.strip() if isinstance(extraction, str) else str(extraction)
        bracketed = re.search(r"\(([a-zA-Z])\)", text)  # "(b) text" -> "B"
        if bracketed:
            text = bracketed.group(1).upper()
        letters = [chr(ord("A") + i) for i in range(len(choices))]
        return choices[letters.index(text)] if text in letters else nearest(text, choices)
    try:
        if answer_type == "integer":
            return str(int(float(extraction)))
        if answer_type == "float":
            return str(round(float(extraction), int(precision)))
        if answer_type == "list":
            return str(extraction)
    except (TypeError, ValueError, OverflowError):
        return None
    return None


def nearest(text: str, choices: list[str]) -> str:
    """The first choice at the least edit distance (the official `get_most_similar`)."""
    distances = [edit_distance(text, choice) for choice in choices]
    return choices[distances.index(min(distances))]


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance over code points (insert, delete, substitute: 1 each)."""
    start = 0  # a shared prefix or suffix costs nothing
    while start < min(len(a), len(b)) and a[start] == b[start]:
        start += 1
    end = 0
    while end < min(len(a), len(b)) - start and a[-1 - end] == b[-1 - end]:
        end += 1
    a, b = a[start:len(a) - end], b[start:len(b) - end]
    if len(a) < len(b):
        a, b = b, a
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


# ---- extraction rules ------------------------------------------------------------------------

FINAL_ANSWER = re.compile(r"final\s+answer\s*(?:is)?[\s*_]*[:：][ \t*_]*(.*)", re.IGNORECASE)
ANSWER_IS = re.compile(r"\banswer\s+(?:is|would be|should be)\b[ \t:：*_]*(.*)", re.IGNORECASE)
BOX = re.compile(r"\\(?:boxed|fbox)(?![A-Za-z])")
SENTENCE_END = re.compile(r"\.(?:\s|$)|;|,\s(?!\d)")
NUMBER = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)"
LEADING_NUMBER = re.compile(rf"({NUMBER})(?![\d.]*[A-Za-z0-9/^])")
LETTER = re.compile(r"^(?:\(([A-Za-z])\)|(?:option|choice)?\s*([A-Z])(?:[.:),]|\s*$))", re.IGNORECASE)


def rules_extract(text: str, sample: Sample) -> tuple[str | None, str]:
    """(extraction, rule) by the official direct reads, then ours; (None, "none") when none reads it."""
    if text == "":  # officially "", which a multiple-choice problem reads as its shortest option
        return None, "none"
    direct = direct_read(text, sample)
    if direct is not None:
        return direct, "official"
    found = last_answer_phrase(text)
    answer = read_answer(found if found is not None else text, sample, bare=found is None)
    return (answer, "answer_format") if answer is not None else (None, "none")


def direct_read(text: str, sample: Sample) -> str | None:
    """The official reads before its GPT-4 call: an option text as is, `int(text)`, `float(text)`."""
    if sample.metadata["question_type"] == "multi_choice" and text in (sample.choices or {}).values():
        return text
    try:
        if sample.metadata["answer_type"] == "integer":
            return str(int(text))
        if sample.metadata["answer_type"] == "float":
            return str(float(text))
    except (ValueError, OverflowError):
        return None
    return None


def last_answer_phrase(text: str) -> str | None:
    """The text after the last `Final answer:`, `\\boxed`, or `answer is` (whichever comes last)."""
    found: list[tuple[int, str]] = []
    finals = list(FINAL_ANSWER.finditer(text))
    if finals:
        m = finals[-1]
        rest = m.group(1).strip() or next((ln.strip() for ln in text[m.end():].splitlines() if ln.strip()), "")
        found.append((m.start(), rest))
    said = list(ANSWER_IS.finditer(text))
    if said:
        found.append((said[-1].start(), said[-1].group(1)))
    boxes = list(BOX.finditer(text))
    boxed = extract_boxed(text) if boxes else None
    if boxed is not None:
        found.append((boxes[-1].start(), boxed))
    return max(found)[1] if found else None


def clean(candidate: str) -> str:
    """Markup that never changes an answer: bold, math delimiters, `\\text{}`, quotes, a final period."""
    s = re.sub(r"\\(?:text|textbf|mathrm|mathbf)\s*\{([^{}]*)\}", r"\1", candidate)
    s = re.sub(r"\\[()\[\]]|\$|\*\*|__|`", "", s).replace("\\%", "%").strip()
    s = s.strip("\"'“”").strip()
    return s[:-1].rstrip() if s.endswith(".") else s


def read_answer(candidate: str, sample: Sample, bare: bool) -> str | None:
    """The candidate as an answer of the problem's type, or None. `bare`: the candidate is the whole
    reply, so only an answer and nothing else counts (no first sentence, no leading number)."""
    s = clean(candidate)
    if not bare:
        first = SENTENCE_END.search(s)
        s = clean(s[: first.start()]) if first else s
    if not s or "\n" in s:
        return None
    kind = sample.metadata["answer_type"]
    if sample.metadata["question_type"] == "multi_choice":
        return read_choice(s, sample.choices or {}, bare)
    if kind == "list":
        items = [i.strip() for i in s.strip("[]()").split(",")]
        numeric = all(re.fullmatch(NUMBER, i) for i in items)
        return "[" + ", ".join(items) + "]" if numeric and (len(items) > 1 or s.startswith("[")) else None
    s = s.split("=")[-1].strip()
    s = re.sub(r"(?<=\d),(?=\d{3}\b)", "", s)
    unit = str(sample.metadata.get("unit") or "")
    if unit and s.endswith(unit):
        s = s[: -len(unit)].strip()
    s = re.sub(r"\s*(?:%|\^\s*\{?\\circ\}?|°|degrees?)$", "", s)
    if re.fullmatch(NUMBER, s):
        return s
    lead = None if bare else LEADING_NUMBER.match(s)
    return lead.group(1) if lead else None


def read_choice(s: str, choices: dict[str, str], bare: bool) -> str | None:
    """An option letter (`B`, `(B)`, `B.`, `(B) 8/11`, `option B`) or an option's exact text."""
    for text in choices.values():
        if s.casefold() == text.strip().casefold():
            return text
    m = LETTER.match(s)
    if not m:
        return None
    letter = (m.group(1) or m.group(2)).upper()
    rest = s[m.end():].strip()
    if letter not in choices or (bare and rest and rest.casefold() != choices[letter].strip().casefold()):
        return None
    return letter
