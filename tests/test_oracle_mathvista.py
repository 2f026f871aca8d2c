"""Oracle tier: MathVista's scoring against the repository's own code, at volume.

The oracle is lupantech/MathVista @ 53d5258 (../shared/oracles/mathvista), executed as released:
`normalize_extracted_answer` and `safe_equal` of `calculate_score.py` (its `utilities` import, which the
repository no longer ships, gets a stand-in), and of `extract_answer.py` the deterministic part,
everything before the GPT-4 call, plus `create_test_prompt` (the judge's prompt), with stand-ins for
the OpenAI client and the repository's `models` package. The project side is the product path:
`MathVista.score` on a response that carries the extraction (as a replayed official file does).

Corpus, from the real material (../shared/data/mathvista): for each of the 1,000 testmini problems,
the four released extractions and the released responses (cut to 300 characters), and seeded
extractions built from the problem (letters in and out of range, bracketed and lower-case letters,
option texts as given, re-cased, padded, one edit away, numbers near the gold in many spellings,
precision edges, lists, units, words); each float problem also with the hub's float precision.
Required: the same prediction and the same verdict for every extraction (zero disagreements).
"""

from __future__ import annotations

import json
import random
import sys
import types
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from conftest import REPO, report_oracle, shared_data
from official_oracles import load_module, oracle_file

from evals.types import Response, Sample
from tasks.mathvista import MathVista, direct_read, extraction_prompt, normalize_extraction

pytestmark = pytest.mark.oracle

MATHVISTA_COMMIT = "lupantech/MathVista @ 53d525874bdde205128e6b160b7357a88277d479"
SEED = 20261202
GENERATED_PER_PROBLEM = 48
GPT_CALLED = "<the official extractor would call GPT-4 here>"


@contextmanager
def stand_ins(**modules: types.ModuleType) -> Iterator[None]:
    """Modules the official files import but this environment lacks, only while they load."""
    saved = {name: sys.modules.get(name) for name in modules}
    sys.modules.update(modules)
    try:
        yield
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module


def package(name: str, **attrs: object) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__path__ = []  # type: ignore[attr-defined]
    module.__dict__.update(attrs)
    return module


@pytest.fixture(scope="module")
def official() -> types.SimpleNamespace:
    for name in ("pandas", "Levenshtein", "rich", "tqdm", "datasets"):
        pytest.importorskip(name, reason=f"the official calculate_score.py imports {name} (the dev extra)")
    calculate = oracle_file("mathvista", "calculate_score.py")
    extract = oracle_file("mathvista", "extract_answer.py")
    prompts = oracle_file("mathvista", "prompts", "ext_ans.py")
    utilities = package("utilities", read_json=None, save_json=None)
    with stand_ins(utilities=utilities):
        score = load_module("mathvista_calculate_score_oracle", calculate)
    ext_ans = types.ModuleType("evaluation.prompts.ext_ans")
    with stand_ins(**{"evaluation": package("evaluation"), "evaluation.prompts": package("evaluation.prompts"),
                      "evaluation.prompts.ext_ans": ext_ans, "openai": package("openai", AzureOpenAI=None),
                      "models": package("models", gpt=None), "models.gpt": package("models.gpt"),
                      "utilities": utilities}):
        exec(compile(prompts.read_text(), str(prompts), "exec"), ext_ans.__dict__)
        extractor = load_module("mathvista_extract_answer_oracle", extract)
    return types.SimpleNamespace(score=score, extract=extractor, demo_prompt=ext_ans.demo_prompt)


class NoGPT:
    def get_response(self, user_prompt: str) -> str:
        return GPT_CALLED


# ---- the corpus --------------------------------------------------------------------------------

def one_edit(rng: random.Random, text: str) -> str:
    at = rng.randrange(len(text) + 1)
    kind = rng.choice(["insert", "delete", "substitute"]) if text else "insert"
    char = rng.choice("abcxyz019 .°π")
    if kind == "insert":
        return text[:at] + char + text[at:]
    at = min(at, len(text) - 1)
    return text[:at] + (char if kind == "substitute" else "") + text[at + 1:]


def numbers_near(rng: random.Random, gold: str) -> list[str]:
    try:
        value = float(gold)
    except ValueError:
        value = rng.uniform(-100, 100)
    near = [value, value + 0.05, value - 0.05, value + 0.005, value * 10, -value, round(value) + 0.5,
            value + rng.uniform(-1, 1)]
    spelled = [gold, f" {gold} ", f"{gold}.", f"{gold}0", f"+{gold}", f"{gold}e0", f"{gold} cm", f"${gold}",
               f"{value:,.2f}", f"{value:.10f}", f"{value:e}", str(int(value)) if abs(value) < 1e15 else gold]
    return spelled + [rng.choice(["{}", "{:.1f}", "{:.2f}", "{:.3f}", "{:.0f}"]).format(v) for v in near]


FIXED = ["", " ", "N/A", "None", "inf", "-inf", "nan", "1e400", "-0.0", "0", ".5", "5.", "1_000", "٣", "１２",
         "0x10", "1/2", "[1, 2]", "[1,2]", "(1, 2)", "True", "答案是3", "The answer is 3.", "\\frac{1}{2}"]


def extractions_for(rng: random.Random, problem: dict) -> list[str]:
    choices = problem["choices"] or []
    out = list(FIXED)
    for i, text in enumerate(choices):
        letter = chr(ord("A") + i)
        out += [letter, letter.lower(), f"({letter})", f"({letter.lower()}) {text}", f" {letter} ", f"{letter}.",
                f"{letter}) {text}", text, text.upper(), f" {text} ", one_edit(rng, text), f"the {text}"]
    out += [chr(ord("A") + len(choices)), "Z", "(Z)", "(A) (B)", "AB"]
    out += numbers_near(rng, str(problem["answer"]))
    if problem["answer_type"] == "list":
        out += [problem["answer"], problem["answer"].replace(" ", ""), problem["answer"].strip("[]")]
    rng.shuffle(out)
    return out[:GENERATED_PER_PROBLEM]


def corpus() -> list[tuple[dict, str, str]]:
    """(problem, extraction, where it comes from) for every extraction of the corpus."""
    root = shared_data("mathvista")
    problems = json.loads((root / "testmini.json").read_text())
    rng = random.Random(SEED)
    items: list[tuple[dict, str, str]] = []
    for output in sorted((root / "outputs").glob("output_*.json")):
        for pid, record in json.loads(output.read_text()).items():
            items.append((problems[pid], record["extraction"], "released extraction"))
            items.append((problems[pid], record["response"][:300], "released response"))
    for problem in problems.values():
        items += [(problem, e, "generated") for e in extractions_for(rng, problem)]
    # The hub stores precision as float64: the float problems again, as hub rows.
    items += [({**p, "precision": float(p["precision"])}, e, "generated, hub precision")
              for p, e, _ in list(items) if p["answer_type"] == "float"]
    return items


def as_sample(problem: dict) -> Sample:
    choices = {chr(ord("A") + i): c for i, c in enumerate(problem["choices"] or [])}
    return Sample(id=problem["pid"], messages=[], target=problem["answer"], choices=choices or None,
                  metadata={"question_type": problem["question_type"], "answer_type": problem["answer_type"],
                            "precision": problem["precision"], "unit": problem["unit"]})


# ---- the tests -------------------------------------------------------------------------------------

def test_normalisation_and_verdict_agree_with_calculate_score_on_every_extraction(official):
    items = corpus()
    task = MathVista()
    disagreements = []
    kinds: dict[str, int] = {}
    for problem, extraction, kind in items:
        args = (problem["choices"], problem["question_type"], problem["answer_type"], problem["precision"])
        theirs = official.score.normalize_extracted_answer(extraction, *args)
        verdict = official.score.safe_equal(theirs, problem["answer"])
        scored = task.score(as_sample(problem), Response("x#0", "", meta={"extraction": extraction}))
        ours = normalize_extraction(extraction, *args)
        if ours != theirs or scored.correct != verdict or scored.extra["prediction"] != theirs:
            disagreements.append((problem["pid"], extraction, ours, theirs))
        kinds[kind] = kinds.get(kind, 0) + 1
    report_oracle(f"oracle mathvista ({MATHVISTA_COMMIT}): {len(items)} extractions "
                  f"({', '.join(f'{n} {k}' for k, n in sorted(kinds.items()))}), {len(disagreements)} disagreements")
    assert len(items) >= 20_000 and kinds["generated"] >= 20_000
    assert not disagreements, disagreements[:10]


def test_direct_reads_are_the_official_reads_before_gpt(official):
    """On every response of the corpus, the official `extract_answer` (its GPT-4 call stubbed) reads
    the same answer as our direct reads, or calls GPT-4 exactly where we read nothing."""
    differing = []
    for problem, text, _ in corpus():
        if text == "":  # officially "": we score an empty reply wrong instead (tests/test_mathvista.py)
            continue
        theirs = official.extract.extract_answer(NoGPT(), text, {**problem, "query": ""})
        ours = direct_read(text, as_sample(problem))
        if (theirs if theirs != GPT_CALLED else None) != ours:
            differing.append((problem["pid"], text, ours, theirs))
    assert not differing, differing[:10]


def test_judge_prompt_is_the_official_extraction_prompt(official):
    root = shared_data("mathvista")
    queries = json.loads((root / "query.json").read_text())
    released = json.loads((root / "outputs" / "output_bard.json").read_text())
    for pid, record in list(released.items())[:200]:
        expected = official.extract.create_test_prompt(official.demo_prompt, queries[pid], record["response"])
        assert extraction_prompt(queries[pid], record["response"]) == expected, pid


def test_the_product_does_not_need_levenshtein():
    source = (REPO / "tasks" / "mathvista.py").read_text()
    assert not any(f"{verb} {name}" in source for verb in ("import", "from") for name in ("Levenshtein", "rapidfuzz"))
    assert Path(REPO / "pyproject.toml").read_text().count("levenshtein") == 1  # the dev extra only
