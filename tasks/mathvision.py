"""MathVision (MATH-V): 3,040 competition math problems with a figure (Wang et al., NeurIPS 2024
Datasets and Benchmarks, arXiv 2402.14804), 16 subjects, 5 levels.

Data: hub `MathLLMs/MathVision` (splits `test` 3,040 and `testmini` 304; figure in `decoded_image`),
or the official GitHub layout offline: `--data` naming a JSONL/Parquet file, or a folder holding
`data/<split>.jsonl` (or `<split>.jsonl`, or hub-snapshot `data/<split>-*.parquet`). A row's `image`
path resolves against the folder that holds `images/`: the data file's folder, or its parent (the
official `data/` beside `images/`). Images are opened only when a model needs them, so replaying
predictions needs no image at all. `--data bundled`: the `testmini` split (304 problems and their
figures, MIT) shipped in the package (tasks/bundled/mathvision). Default split: `test` (the STEP3-VL-10B report most likely
scored the full test set; it does not say).

Prompt: the report's template (App. C.1), which drops the official "step by step", with the
figure at its `<image>` slot before the question; the question keeps its `<image1>`.. tags (panels
of one merged figure) as the official harness does, and multiple-choice options follow as `(A) ...`
lines, except when they are just the letters A-E (drawn in the figure), which it leaves out too.
Scoring: the official MATH-V chain and equality (`tasks/mathvision_rules.py`), against the gold
and, for multiple choice, the gold option's text. The values behind the equality come from the
engine `-T equality=` names: `official` (the default), MATH-V's own parser (latex2sympy2 1.9.1) in
a sidecar process (`tasks/latex2sympy_sidecar.py`: a side install in the user cache, made on first
use or by `step3vl-eval setup mathvision`, or the Python STEP3VL_LATEX2SYMPY_PYTHON names), or
`emulated`, the in-process emulation of it. The engine is part of the run's identity (a run scored
by another engine is another run) and results.json names it (`provenance.equality_engine`).
Metrics: accuracy, per subject and per level.
"""

from __future__ import annotations

import io
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evals import metrics
from evals.types import GenParams, Image, Message, Part, Response, Sample, Scored, Text, UserError
from tasks.data import BUNDLED, Row, bundled_dir, load_local_rows, load_rows, require_fields
from tasks.images import image_from_cell
from tasks.latex2sympy_sidecar import OriginalParser, official_parser, on_one_stack_block, shared_parser
from tasks.mathvision_rules import official_equal, official_extract, texts_to_parse

PROMPT_TEMPLATE = (  # the report's, verbatim; the figure goes at <image>
    'Please solve the problem and put your answer in one "\\boxed{{}}". If it is a multiple choice '
    'question, only one letter is allowed in the "\\boxed{{}}". <image> {question}'
)
HUB_ID = "MathLLMs/MathVision"
SPLITS = ("test", "testmini")
IMAGE_SLOT = "<image>"
REQUIRED = ["id", "question", "options", "answer", "level", "subject"]
ENGINES = ("official", "emulated")


@dataclass
class RowImage(Image):
    """An image that names its data row when it cannot be read or decoded (checked when a model reads it)."""

    source: str = ""

    def read_bytes(self) -> bytes:
        where = f"{self.source}: field 'image'"
        try:
            data = super().read_bytes()
        except UserError as exc:
            raise UserError(f"{where}: {exc}") from None
        from PIL import Image as PILImage

        try:
            with PILImage.open(io.BytesIO(data)) as img:
                img.verify()
        except Exception as exc:  # PIL raises several types for corrupt data
            reason = str(exc).split(" <_io.")[0].splitlines()[0] if str(exc) else type(exc).__name__
            raise UserError(f"{where}: {self.path or 'inline image'} is not a readable image ({reason})") from None
        return data


_warming: list[threading.Thread] = []


def warm_parser_in_background() -> None:
    """Import latex2sympy while the first requests are in flight. Imported by the first answer that
    needs it instead (0.3-0.5 s; seconds on a busy machine), it stalled a live run mid-way: answers
    are scored in the thread that runs the HTTP client's event loop. Scoring waits for the import
    (`warmed`): a scoring pool forked while it holds the import lock would deadlock."""
    from tasks.mathvision_rules import import_parser

    thread = threading.Thread(target=import_parser, name="warm-latex2sympy", daemon=True)
    thread.start()
    _warming.append(thread)


def warmed() -> None:
    while _warming:
        _warming.pop().join()


class MathVision:
    name = "mathvision"
    prompt_template = PROMPT_TEMPLATE
    default_params = GenParams(max_tokens=65536, temperature=1.0, top_p=1.0, top_k=0)
    default_repeats = 1
    hub_id = HUB_ID

    def __init__(self, equality: str = "official"):
        if equality not in ENGINES:
            raise UserError(f"mathvision: -T equality must be one of {', '.join(ENGINES)}, not {equality!r}")
        self.equality = equality
        # (python, side install) of the original parser once checked; plain strings, so the task
        # pickles into a scoring pool, each process starting its own sidecar
        self.original: tuple[str, str | None] | None = None

    def measured_options(self) -> dict[str, str]:
        """Options that change the verdicts even when left at their default: in the run's identity."""
        return {"equality": self.equality}

    def parser(self) -> OriginalParser | None:
        """The original parser's sidecar for the official engine (installed and checked on first
        use), None for the emulation."""
        if self.equality == "emulated":
            return None
        if self.original is None:
            parser = official_parser()
            self.original = (parser.python, parser.path)
        return shared_parser(*self.original)

    # ---- data ----------------------------------------------------------------------------------

    def load(self, data: str | None, split: str | None, limit: int | None) -> list[Sample]:
        if data == BUNDLED:
            if split not in (None, "testmini"):
                raise UserError(f"mathvision: the bundled data is the testmini split (304 problems), not {split!r}; "
                                "for test use the hub (no --data) or --data PATH")
            split, data = "testmini", str(bundled_dir(self.name))
        split = split or "test"
        if split not in SPLITS:
            raise UserError(f"mathvision: split must be one of {', '.join(SPLITS)}, not {split!r}")
        if data is None:
            rows, base_dir = load_rows(None, hub_id=HUB_ID, hub_configs=[None], split=split), None
        else:
            rows, base_dir = read_local(Path(data), split)
        samples = [to_sample(source, row, base_dir) for source, row in rows]
        if self.equality == "official":
            self.parser()  # installed or refused before any run dir exists
        else:
            warm_parser_in_background()
        return samples[:limit] if limit else samples

    # ---- scoring -------------------------------------------------------------------------------

    def score(self, sample: Sample, response: Response) -> Scored:
        warmed()
        answer, rule = official_extract(response.text)
        gold_text = (sample.choices or {}).get(sample.target, "")
        parser = self.parser()
        correct = on_one_stack_block(lambda: official_equal(sample.target, answer, parser)
                                     or official_equal(gold_text, answer, parser))
        return Scored(key=response.key, sample_id=sample.id, repeat=0, extracted=answer or None,
                      rule=rule, correct=correct, score=float(correct))

    def prefetch(self, pairs: list[tuple[Sample, str]]) -> None:
        """Parse what scoring (sample, extracted answer) pairs will need in one batch per sidecar
        round trip instead of one per text (a speed-up only: `score` gives the same verdicts without it)."""
        parser = self.parser()
        if parser is not None:
            golds = [(s.target, (s.choices or {}).get(s.target, "")) for s, _ in pairs]
            parser.printed_many([t for (gold, text), (_, answer) in zip(golds, pairs)
                                 for g in (gold, text) for t in texts_to_parse(g, answer)])

    def summary_extras(self) -> dict[str, Any]:
        """Recorded in results.json: the engine that gave the values behind every verdict."""
        return {"equality_engine": self.engine_label()}

    def engine_label(self) -> str:
        if self.equality == "emulated":
            return "emulated: the project's emulation of latex2sympy2 1.9.1 (-T equality=emulated)"
        parser = self.parser()
        assert parser is not None
        return f"official: latex2sympy2 1.9.1, MATH-V's parser ({parser.describe()})"

    def aggregate(self, samples: dict[str, Sample], scored: list[Scored]) -> dict[str, Any]:
        k = max((len(g) for g in metrics.by_sample(scored).values()), default=1)
        found: dict[str, Any] = {"accuracy": metrics.accuracy(scored)}
        if k > 1:
            found.update(metrics.repeat_metrics(scored, k))
        breakdowns = {group: metrics.group_by(scored, samples, metrics.metadata_field(group))
                      for group in ("subject", "level")}
        return {"metrics": found, "breakdowns": breakdowns}


# ---- loading ---------------------------------------------------------------------------------

def read_local(path: Path, split: str) -> tuple[list[Row], Path]:
    """Rows of one split and the folder that relative image paths resolve against."""
    if not path.exists():
        raise UserError(f"data path does not exist: {path}")
    if path.is_file():
        return load_local_rows(path), images_root(path)
    for folder in (path / "data", path):
        files = [folder / f"{split}.jsonl"] if (folder / f"{split}.jsonl").is_file() else []
        files = files or sorted(folder.glob(f"{split}-*.parquet"))
        if files:
            return [row for f in files for row in load_local_rows(f)], images_root(files[0])
    raise UserError(f"no {split}.jsonl or {split}-*.parquet in {path} or {path / 'data'}")


def images_root(data_file: Path) -> Path:
    folder = data_file.parent
    return folder.parent if not (folder / "images").is_dir() and (folder.parent / "images").is_dir() else folder


def to_sample(source: str, row: dict[str, Any], base_dir: Path | None) -> Sample:
    require_fields(row, REQUIRED, source)
    options = row["options"]
    if not isinstance(options, list):
        raise UserError(f"{source}: field 'options': expected a list (empty or the option texts), "
                        f"got {type(options).__name__}")
    choices = {chr(ord("A") + i): str(text) for i, text in enumerate(options)}
    answer = str(row["answer"])  # kept as is: the official equality strips only where it says so
    if choices and answer not in choices:
        raise UserError(f"{source}: field 'answer': {answer!r} is not one of the option letters {''.join(choices)}")
    return Sample(
        id=str(row["id"]),
        messages=[Message("user", prompt_parts(str(row["question"]), choices, row_image(row, source, base_dir)))],
        target=answer,
        choices=choices or None,
        metadata={"subject": str(row["subject"]), "level": str(row["level"]),
                  "question_type": "multiple-choice" if choices else "free-form"},
    )


def row_image(row: dict[str, Any], source: str, base_dir: Path | None) -> RowImage:
    cell = row.get("decoded_image") if row.get("decoded_image") is not None else row.get("image")
    if cell is None or cell == "":
        raise UserError(f"{source}: missing field 'image' (or 'decoded_image')")
    image = image_from_cell(cell, f"{source}: field 'image'", base_dir)
    return RowImage(path=image.path, b64=image.b64, mime=image.mime, source=source)


def question_text(question: str, choices: dict[str, str]) -> str:
    """The question and, unless they are just the letters drawn in the figure, `(A) ...` option lines."""
    if not choices or all(letter == text.strip() for letter, text in choices.items()):
        return question
    return question + "\n" + "\n".join(f"({letter}) {text}" for letter, text in choices.items())


def prompt_parts(question: str, choices: dict[str, str], image: Image) -> list[Part]:
    """The report's template with the figure at its `<image>` slot, before the question.

    The question keeps its `<image1>`.. tags as text: they name panels of the one merged figure
    (some questions name seven, some options are just `<image3>`), as in the official harness."""
    before, after = PROMPT_TEMPLATE.format(question=question_text(question, choices)).split(IMAGE_SLOT, 1)
    return [Text(before), image, Text(after)]
