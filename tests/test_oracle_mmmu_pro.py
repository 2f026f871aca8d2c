"""Oracle tier: MMMU-Pro scoring against the MMMU-Pro repository's own `evaluate.py`, at volume.

The oracle is `mmmu-pro/evaluate.py` of MMMU-Benchmark/MMMU @ bb0b95a (../shared/oracles/mmmu-pro),
executed as released: `mmmu_process_results` on each record (its `check_files` skips the standard
file's name, as ../shared/oracles/README.md says). Its no-letter fallback calls the module's
unseeded `random.choice`: the test gives that module a `random` whose `choice` returns a marker, so
a fallback is seen as such and compared apart (ours must flag the same question `fallback`).
The project side is the product path: `MMMUPro.to_sample` on the record, then `MMMUPro.score`.

Corpus, over the 1,730 questions of the released files (options and gold from them): every released
GPT-4o reply (standard CoT and vision direct, 3,460); replies derived from them (cut at a random
point, the answer line replaced or followed by one from the official grammar); and seeded generated
replies (the official `Answer: $LETTER` format and its traps, plus tests/oracle_corpus.py's shapes).
Required: the same letter and verdict for every reply, fallbacks flagged alike (zero disagreements).
"""

from __future__ import annotations

import ast
import json
import random
import types

import pytest
from conftest import report_oracle, shared_data
from official_oracles import MMMU_COMMIT, load_module, oracle_file
from oracle_corpus import response as generic_response
from test_mmmu_pro import PARSE_CASES, TEXTS

from evals.types import Response
from tasks.mmmu_pro import INSTRUCTIONS, MMMUPro

pytestmark = pytest.mark.oracle

FILES = ("gpt-4o_standard(10 options)_cot.jsonl", "gpt-4o_vision_direct.jsonl")
DERIVED_PER_REPLY = 2  # x 3,460 released replies
GENERATED_PER_QUESTION = 8  # x 1,730 questions
SEED = 20261203
FALLBACK = "<official random.choice>"


def official_evaluate() -> types.ModuleType:
    pytest.importorskip("numpy", reason="the MMMU-Pro scorer needs numpy")
    pytest.importorskip("pandas", reason="the MMMU-Pro scorer imports pandas")
    module = load_module("mmmu_pro_official_oracle", oracle_file("mmmu-pro", "evaluate.py"))
    module.random = types.SimpleNamespace(choice=lambda seq: FALLBACK)
    return module


def released(name: str) -> list[dict]:
    path = shared_data("mmmu-pro", "outputs", name)
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def wrapped(rng: random.Random, letter: str) -> str:
    return rng.choice(["{}", "({})", "{}.", "**{}**", "$\\boxed{{{}}}$", "\\boxed{{{}}}", "{})", "[{}]", "'{}'",
                       "Option {}", "option {}", "{}:", "$${}$$", "\\text{{{}}}"]).format(letter)


def answer_line(rng: random.Random, letters: list[str], texts: dict[str, str], gold: str) -> str:
    """A last line as the official prompt asks for it, and the ways models miss it."""
    letter = gold if rng.random() < 0.5 else rng.choice(letters)
    other = rng.choice(letters)
    text = texts.get(letter, "")
    label = rng.choice(["Answer:", "Answer:", "Answer: ", "**Answer:**", "Answer :", "answer:", "ANSWER:",
                        "Final Answer:", "Answer:\n", "The Answer: ", "Answer：", ""])
    body = rng.choice(["{w}", "{w}", " {w}", "{w} {t}", "{w}. {t}", "{t}", "{w} and {o}", "{w} or {o}",
                       "The answer is {w}", "I think {w}", "{w}\nExplanation: {t}", "$LETTER", "{w}{o}",
                       "Both {w} and {o} are possible", "None", "{w}!", "{t} ({w})", "{w} ({t})"])
    return label + body.format(w=wrapped(rng, letter), o=wrapped(rng, other), t=text)


def derived(rng: random.Random, reply: str, letters: list[str], texts: dict[str, str], gold: str) -> str:
    roll = rng.random()
    if roll < 0.3:
        return reply[: rng.randint(0, len(reply))]
    if roll < 0.65:
        head = reply.rsplit("\n", 1)[0] if "\n" in reply else ""
        return (head + "\n" if head else "") + answer_line(rng, letters, texts, gold)
    return reply + rng.choice(["\n", "\n\n", " ", ""]) + answer_line(rng, letters, texts, gold)


def generated(rng: random.Random, letters: list[str], texts: dict[str, str], gold: str) -> str:
    roll = rng.random()
    if roll < 0.4:
        return generic_response(rng, texts, gold)
    lines = [generic_response(rng, texts, gold) if rng.random() < 0.5 else "Let me think step by step."]
    lines += [answer_line(rng, letters, texts, gold) for _ in range(rng.choice([1, 1, 2]))]
    return rng.choice(["\n", "\n\n", " "]).join(lines) + rng.choice(["", ".", "\n", " ", "'", "!"])


def corpus(records: dict[str, list[dict]]) -> list[tuple[dict, str, str]]:
    """(record, reply, origin) for every reply the test scores both ways."""
    rng = random.Random(SEED)
    out = [(r, r["response"], "released") for rows in records.values() for r in rows]
    for rows in records.values():
        for r in rows:
            options = ast.literal_eval(r["options"])
            if not all(isinstance(o, str) for o in options):
                continue  # validation_Accounting_29 nests its options in a list: the official text rule
                # would crash on it (`list.lower`), so only its released replies are compared
            letters = [chr(ord("A") + i) for i in range(len(options))]
            texts = dict(zip(letters, options))
            out += [(r, derived(rng, r["response"], letters, texts, r["answer"]), "derived")
                    for _ in range(DERIVED_PER_REPLY)]
    for r in records[FILES[0]]:
        options = ast.literal_eval(r["options"])
        if not all(isinstance(o, str) for o in options):
            continue
        letters = [chr(ord("A") + i) for i in range(len(options))]
        texts = dict(zip(letters, options))
        out += [(r, generated(rng, letters, texts, r["answer"]), "generated") for _ in range(GENERATED_PER_QUESTION)]
    return out


def test_mmmu_pro_scoring_agrees_with_the_official_evaluate_on_every_reply():
    official = official_evaluate()
    records = {name: released(name) for name in FILES}
    task = MMMUPro("standard")
    samples = {r["id"]: task.to_sample(f"released:{i}", r) for i, r in enumerate(records[FILES[0]])}
    replies = corpus(records)
    disagreements, fallbacks, by_origin = [], 0, {}
    for n, (record, reply, origin) in enumerate(replies):
        theirs = official.mmmu_process_results({**record, "response": reply})
        scored = task.score(samples[record["id"]], Response(key=f"{record['id']}#{n}", text=reply, finish_reason="stop"))
        by_origin[origin] = by_origin.get(origin, 0) + 1
        if theirs["pred_indexs"] == FALLBACK:
            fallbacks += 1
            if scored.rule != "fallback":
                disagreements.append((record["id"], reply, theirs["pred_indexs"], scored.extracted))
        elif (scored.rule, scored.extracted, scored.correct) != ("official", theirs["pred_indexs"], theirs["if_right"]):
            disagreements.append((record["id"], reply, theirs["pred_indexs"], scored.extracted))
    generated_total = by_origin["derived"] + by_origin["generated"]
    report_oracle(f"oracle mmmu-pro ({MMMU_COMMIT}, mmmu-pro/evaluate.py): released {by_origin['released']} / "
                  f"generated {generated_total} replies, {fallbacks} official random fallbacks compared apart, "
                  f"{len(disagreements)} disagreements")
    assert generated_total >= 20_000 and fallbacks > 100
    assert not disagreements, disagreements[:5]


def test_the_official_parser_draws_at_random_on_0_standard_and_48_vision_released_replies():
    """The data README says 42 for the vision file; the official parser itself finds no letter in 48."""
    official = official_evaluate()
    drawn = {name: [r["id"] for r in released(name) if official.mmmu_process_results(dict(r))["pred_indexs"] == FALLBACK]
             for name in FILES}
    assert {name: len(ids) for name, ids in drawn.items()} == {FILES[0]: 0, FILES[1]: 48}
    assert "validation_Accounting_29" in drawn[FILES[1]]  # `Answer: B` where the nested options give only A


def test_the_parse_table_is_the_official_parse():
    official = official_evaluate()
    options = str(list(TEXTS.values()))
    for text, expected, why in PARSE_CASES:
        theirs = official.mmmu_process_results({"id": "t", "options": options, "answer": "B", "response": text})
        assert theirs["pred_indexs"] == (expected or FALLBACK), why


def test_prompts_are_the_official_prompts_yaml():
    yaml = pytest.importorskip("yaml", reason="reading prompts.yaml needs PyYAML")
    assert yaml.safe_load(oracle_file("mmmu-pro", "prompts.yaml").read_text()) == INSTRUCTIONS
