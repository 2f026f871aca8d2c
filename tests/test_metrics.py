"""Metrics: table-driven checks of the estimators against hand-computed values."""

import math

import pytest

from dataclasses import replace

from tasks.mathcheck import canonical, canonical_equal
from evals.metrics import accuracy, majority_correct, pass_at_k, repeat_metrics, wilson_interval
from evals.types import Response, Sample, Scored
from tasks.aime2025 import AIME2025


def s(sample: str, repeat: int, correct: bool, extracted: str | None = "x") -> Scored:
    return Scored(f"{sample}#{repeat}", sample, repeat, extracted, "answer_format", correct, float(correct))


@pytest.mark.parametrize("n,c,k,expected,why", [
    (4, 0, 1, 0.0, "nothing right"),
    (4, 4, 1, 1.0, "everything right"),
    (4, 1, 1, 0.25, "pass@1 is the mean"),
    (4, 1, 2, 0.5, "1 - C(3,2)/C(4,2) = 1 - 3/6"),
    (5, 2, 3, 1 - 1 / 10, "1 - C(3,3)/C(5,3)"),
    (64, 1, 64, 1.0, "n - c < k"),
])
def test_pass_at_k_unbiased_estimator(n, c, k, expected, why):
    assert pass_at_k(n, c, k) == pytest.approx(expected), why


def test_pass_at_k_refuses_k_above_n():
    with pytest.raises(ValueError):
        pass_at_k(2, 1, 3)


@pytest.mark.parametrize("answers,correct,expected,why", [
    (["2", "2", "3"], [True, True, False], 1.0, "majority is right"),
    (["41", "41", "42"], [False, False, True], 0.0, "majority is wrong"),
    (["7", "8"], [False, True], 0.0, "a tie goes to the first answer seen"),
    ([None, None, "5"], [False, False, True], 1.0, "unparsed answers do not vote"),
    ([None], [False], 0.0, "no answer at all"),
])
def test_majority_vote(answers, correct, expected, why):
    group = [s("p", i, c, a) for i, (a, c) in enumerate(zip(answers, correct))]
    assert majority_correct(group) == expected, why


def aime_votes(answers: list[str | None], gold: str = "70") -> list[Scored]:
    """Votes scored by the AIME task itself (extraction and check), in repeat order."""
    task, sample = AIME2025(), Sample("p", [], gold)
    return [replace(task.score(sample, Response(f"p#{i}", text=a or "no box")), repeat=i)
            for i, a in enumerate(answers)]


@pytest.mark.parametrize("answers,gold,expected,why", [
    (["\\boxed{70}", "\\boxed{070}", "\\boxed{70.}", "\\boxed{71}", "\\boxed{71}"], "70", 1.0,
     "70, 070 and 70. are one answer (3 votes) against 71 (2)"),
    (["\\boxed{71}", "\\boxed{071}", "\\boxed{71.0}", "\\boxed{70}", "\\boxed{70}"], "70", 0.0,
     "the wrong answer's forms are grouped too"),
    (["\\boxed{\\$504}", "\\boxed{504}", "\\boxed{505}", "\\boxed{505}"], "504", 1.0,
     "a 2-2 tie goes to the answer voted first: \\$504 = 504"),
    (["\\boxed{505}", "\\boxed{505}", "\\boxed{\\$504}", "\\boxed{504}"], "504", 0.0,
     "a 2-2 tie goes to the answer voted first: 505"),
    (["\\boxed{\\frac{1}{2}}", "\\boxed{0.5}", "\\boxed{3}", "\\boxed{9}", "\\boxed{10}"], "9", 0.0,
     "two wrong forms merge by math-verify: 1/2 and 0.5 outvote 3, 9, 10"),
    (["\\boxed{1/2}", "\\boxed{3}", "\\boxed{9}", "\\boxed{9.0}"], "9", 1.0, "9 and 9.0 outvote 1/2"),
    ([None, None, "\\boxed{70}"], "70", 1.0, "no box: no vote"),
    (["\\boxed m+n = 70", "\\boxed{m+n=70}", "\\boxed{69}"], "70", 1.0, "equations vote with their value"),
])
def test_majority_vote_groups_equivalent_aime_answers(answers, gold, expected, why):
    votes = aime_votes(answers, gold)
    assert majority_correct(votes, canonical, canonical_equal) == expected, why
    k = len(answers)
    assert AIME2025().aggregate({}, votes)["metrics"][f"maj@{k}"]["value"] == expected, why


def test_majority_vote_compares_distinct_forms_only(monkeypatch):
    calls: list[tuple[str, str]] = []

    def counting(a: str, b: str) -> bool:
        calls.append((a, b))
        return canonical_equal(a, b)

    votes = aime_votes(["\\boxed{71}"] * 30 + ["\\boxed{071}"] * 30 + ["\\boxed{\\frac{3}{2}}", "\\boxed{1.5}"]
                       + ["\\boxed{70}"] * 2)
    assert majority_correct(votes, canonical, counting) == 0.0  # 71 and 071: 60 votes
    # 60 votes of one form cost nothing; each new form meets the first form of each answer once.
    assert calls == [("71", "\\frac{3}{2}"), ("71", "1.5"), ("\\frac{3}{2}", "1.5")]


def test_wilson_interval_matches_the_closed_form():
    lo, hi = wilson_interval(50, 100)
    assert lo == pytest.approx(0.4038, abs=1e-4) and hi == pytest.approx(0.5962, abs=1e-4)
    assert wilson_interval(0, 0) == (0.0, 0.0)


def test_accuracy_with_repeats_is_avg_at_k_with_bootstrap_ci():
    scored = [s("a", 0, True), s("a", 1, False), s("b", 0, True), s("b", 1, True)]
    m = accuracy(scored)
    assert m["value"] == pytest.approx(0.75) and m["method"] == "bootstrap" and m["n"] == 2
    assert m["ci"][0] <= 0.75 <= m["ci"][1]


def test_single_outcomes_use_wilson():
    m = accuracy([s("a", 0, True), s("b", 0, False)])
    assert m["method"] == "wilson" and m["value"] == 0.5


def test_repeat_metrics_names_carry_k():
    out = repeat_metrics([s("a", r, r == 0, str(r)) for r in range(4)], 4)
    assert set(out) == {"avg@4", "pass@4", "maj@4"}
    assert out["avg@4"]["value"] == 0.25 and out["pass@4"]["value"] == 1.0
    assert all(m["k"] == 4 for m in out.values()) and not math.isnan(out["maj@4"]["value"])
