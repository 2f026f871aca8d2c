"""Oracle tier: the MMMU official protocol against the MMMU repository's own scorer, at volume.

The oracle is `eval_utils.py` of MMMU-Benchmark/MMMU @ bb0b95a (../shared/oracles/mmmu), executed
as released: `parse_multi_choice_response`, `parse_open_response`, `eval_multi_choice`,
`eval_open`, and its seed-42 random fallback (re-seeded per run, as each official run is one
process). The project side is the product path: `MMMU.to_sample`, `evals.scoring.score_response`
(which records truncations) and `MMMU.official_verdicts` with `official_fallback=random`.

Corpus: the 900 validation items (answer key ../shared/data/mmmu/answer_dict_val.json, options from
the released outputs' `index2ans` / `all_choices`); run 0 is every released LLaVA-1.5-13B response,
runs 1..N are seeded generated responses (tests/oracle_corpus.py), some truncated. Required: the
same parse, the same verdict and the same random letter for every response (zero disagreements).
"""

from __future__ import annotations

import ast
import json
import random

import pytest
from conftest import shared_data, report_oracle
from official_oracles import MMMU_COMMIT, fresh_mmmu_eval_utils, oracle_file
from oracle_corpus import response

from evals.scoring import score_response
from evals.types import Response, Sample, Scored
from tasks import mmmu_official
from tasks.mmmu import MMMU, SUBJECTS

pytestmark = pytest.mark.oracle

GENERATED_RUNS = 23  # x 900 items = 20,700 generated responses
TRUNCATED_SHARE = 0.015
SEED = 20260412


def official_order() -> list[str]:
    """Subjects as the official scorer walks them (`CAT_SHORT2LONG.values()` of its data_utils.py,
    read as the literal it is: that module also imports yaml, which nothing else here needs)."""
    tree = ast.parse(oracle_file("mmmu", "data_utils.py").read_text())
    (mapping,) = [node.value for node in tree.body if isinstance(node, ast.Assign)
                  and [getattr(t, "id", None) for t in node.targets] == ["CAT_SHORT2LONG"]]
    return list(ast.literal_eval(mapping).values())


def corpus_items() -> list[dict]:
    """The released output items (options, responses) with the official answer key's gold."""
    key = json.loads(shared_data("mmmu", "answer_dict_val.json").read_text())
    outputs = shared_data("mmmu", "llava1.5_13b_outputs")
    items = []
    for subject in official_order():
        for item in json.loads((outputs / subject / "output.json").read_text()):
            gold = key[item["id"]]
            assert gold["question_type"] == item["question_type"]
            items.append({**item, "answer": gold["ground_truth"]})
    return items


def released_run(items: list[dict]) -> list[Response]:
    return [Response(f"{i['id']}#0", i["response"], finish_reason="stop") for i in items]


def runs(items: list[dict]) -> list[list[Response]]:
    """Run 0: the released responses; then generated runs, in the items' (official) order."""
    rng = random.Random(SEED)
    out = [released_run(items)]
    for run in range(1, GENERATED_RUNS + 1):
        responses = []
        for item in items:
            key = f"{item['id']}#{run}"
            if rng.random() < TRUNCATED_SHARE:
                responses.append(Response(key, "", finish_reason="length"))  # cut off before the answer
                continue
            is_mcq = item["question_type"] == "multiple-choice"
            gold = item["answer"] if isinstance(item["answer"], str) else rng.choice(item["answer"])
            text = response(rng, item.get("index2ans") or {}, gold, open_question=not is_mcq)
            responses.append(Response(key, text, finish_reason=rng.choice(["stop"] * 9 + ["length"])))
        out.append(responses)
    return out


def oracle_run(items: list[dict], responses: list[Response]) -> list[tuple[object, bool]]:
    """(parsed prediction, verdict) per response, by a freshly imported official scorer."""
    official = fresh_mmmu_eval_utils()
    results = []
    for item, resp in zip(items, responses):
        if item["question_type"] == "multiple-choice":
            pred = official.parse_multi_choice_response(resp.text, item["all_choices"], item["index2ans"])
            results.append((pred, official.eval_multi_choice(item["answer"], pred)))
        else:
            preds = official.parse_open_response(resp.text)
            results.append((preds, official.eval_open(item["answer"], preds)))
    return results


def our_prediction(scored: Scored, sample: Sample, picks: dict[str, str], text: str) -> object:
    if sample.choices:
        return picks.get(scored.key) or scored.extra.get("official", {}).get("pred")
    if scored.truncated:  # the product scores no truncated text; our parser on it, for the comparison
        return mmmu_official.parse_open(text)
    return scored.extra["official"]["pred"]


def same_prediction(ours: object, theirs: object) -> bool:
    return set(ours) == set(theirs) if isinstance(theirs, list) else ours == theirs


def test_mmmu_official_protocol_agrees_with_the_official_scorer_on_every_response():
    items = corpus_items()
    assert len(items) == 900 and SUBJECTS == sorted({i["id"].split("_", 1)[1].rsplit("_", 1)[0] for i in items})
    task = MMMU(official_fallback="random")
    samples = {i["id"]: task.to_sample(f"corpus:{i['id']}", i) for i in items}
    all_runs = runs(items)
    scored = [score_response(task, samples[i["id"]], resp, run)
              for run, responses in enumerate(all_runs) for i, resp in zip(items, responses)]
    verdicts = task.official_verdicts(samples, scored)
    picks = task.fallback_picks(samples, scored)
    by_key = {s.key: s for s in scored}

    disagreements: list[tuple[str, str, object, object]] = []
    draws = truncated = 0
    for run, responses in enumerate(all_runs):
        for item, resp, (pred, correct) in zip(items, responses, oracle_run(items, responses)):
            mine = by_key[resp.key]
            ours = our_prediction(mine, samples[item["id"]], picks, resp.text)
            if not same_prediction(ours, pred) or verdicts[resp.key] != correct:
                disagreements.append((resp.key, resp.text[:200], ours, pred))
            draws += resp.key in picks
            truncated += mine.truncated
    generated = GENERATED_RUNS * len(items)
    report_oracle(f"oracle mmmu-official ({MMMU_COMMIT}): released {len(items)} / generated {generated} "
          f"({truncated} truncated, {draws} random draws), {len(disagreements)} disagreements")
    assert draws > 100 and truncated > 100  # the random fallback sequence is exercised, truncations included
    assert not disagreements, disagreements[:10]


def test_released_responses_reproduce_the_official_330():
    items = corpus_items()
    results = oracle_run(items, released_run(items))
    assert sum(correct for _, correct in results) == 330  # ../shared/data/README.md
