"""The regression gate (issue 7), on runs made by the real pipeline: AIME-schema fixtures scored by the
runner with replayed answers that are right or wrong as scripted, then gated through the CLI."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import cli

from evals import runner
from gates import gate
from evals.types import GenParams, RunSpec

N_BIG = 1000


def write_problems(path: Path, n: int) -> Path:
    path.write_text("".join(json.dumps({"id": f"q{i}", "problem": f"What is {i} + 0?", "answer": str(i)}) + "\n"
                            for i in range(n)))
    return path


def write_replay(path: Path, n: int, wrong: set[int] | dict[int, set[int]], k: int = 1) -> Path:
    """Answers for problems 0..n-1; `wrong` is a set of problems (every repeat wrong) or, with k > 1,
    {repeat: problems wrong in that repeat}."""
    lines = []
    for i in range(n):
        if k == 1:
            assert isinstance(wrong, set)
            lines.append({"id": f"q{i}", "response": f"\\boxed{{{i + 1 if i in wrong else i}}}"})
        else:
            assert isinstance(wrong, dict)
            lines += [{"key": f"q{i}#{r}", "response": f"\\boxed{{{i + 1 if i in wrong[r] else i}}}"}
                      for r in range(k)]
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    return path


def make_run(tmp: Path, name: str, data: Path, wrong, k: int = 1, **spec_fields) -> Path:
    """A run dir made by the runner, as `step3vl-eval run aime2025 --model replay:...` makes it."""
    replay = write_replay(tmp / f"{name}.jsonl", sum(1 for _ in data.open()), wrong, k)
    spec = RunSpec(task="aime2025", model=f"replay:{replay}", repeats=k, data=str(data),
                   params=GenParams(max_tokens=4096), out=str(tmp / name), **spec_fields)
    run_dir, _ = runner.run(spec, show_progress=False)
    return run_dir


@pytest.fixture(scope="module")
def big(tmp_path_factory) -> dict[str, Path]:
    """1,000 problems; baseline 70.0%; a true 5-point drop; a 0.3-point drop (10 fixed, 13 broken)."""
    tmp = tmp_path_factory.mktemp("big")
    data = write_problems(tmp / "aime.jsonl", N_BIG)
    base_wrong = set(range(300))
    return {
        "data": data,
        "baseline": make_run(tmp, "baseline", data, base_wrong),
        "drop5": make_run(tmp, "drop5", data, base_wrong | set(range(300, 350))),
        "drop03": make_run(tmp, "drop03", data, (base_wrong - set(range(10))) | set(range(300, 313))),
        "gain5": make_run(tmp, "gain5", data, base_wrong - set(range(50))),
    }


def gate_json(*args: str, env: dict[str, str] | None = None) -> tuple[int, dict, str]:
    proc = cli("gate", *args, "--json", env=env)
    return proc.returncode, json.loads(proc.stdout) if proc.stdout.strip() else {}, proc.stderr


def only_task(report: dict) -> dict:
    (task,) = report["tasks"]
    return task


# ---- the promises of the issue -----------------------------------------------------------------

def test_true_five_point_drop_on_1000_items_fails_the_gate(big):
    code, report, err = gate_json("--baseline", str(big["baseline"]), "--current", str(big["drop5"]))
    assert code == 1, err
    row = only_task(report)
    assert row["verdict"] == "regression" and row["test"] == "McNemar exact mid-p"
    assert row["diff"] == pytest.approx(-0.05) and row["n"] == N_BIG
    assert row["ci"][0] < -0.05 < row["ci"][1] < 0
    assert row["p"] == pytest.approx(0.5 ** 51)  # 50 losses, no gains: mid-p = P(X = 50) / 2
    assert report["result"] == "fail"


def test_point_three_drop_on_1000_items_passes(big):
    code, report, err = gate_json("--baseline", str(big["baseline"]), "--current", str(big["drop03"]))
    assert code == 0, err
    row = only_task(report)
    assert row["verdict"] == "pass" and row["diff"] == pytest.approx(-0.003)
    assert row["ci"][0] < 0 < row["ci"][1]


def test_drop_beyond_tolerance_on_20_items_is_inconclusive_and_passes(tmp_path):
    data = write_problems(tmp_path / "aime.jsonl", 20)
    base = make_run(tmp_path, "base", data, {0, 1, 2, 3, 4, 5})  # 70%
    cur = make_run(tmp_path, "cur", data, {0, 1, 2, 3, 4, 5, 6, 7})  # 60%: a 10-point drop
    proc = cli("gate", "--baseline", str(base), "--current", str(cur))
    assert proc.returncode == 0, proc.stderr
    assert "| inconclusive |" in proc.stdout and "PASS" in proc.stdout
    code, report, _ = gate_json("--baseline", str(base), "--current", str(cur))
    row = only_task(report)
    assert row["p"] == pytest.approx(0.125)  # 2 losses of 2 discordant: (1/4) / 2
    assert row["mde"] > 0.10  # 20 items cannot see a 10-point drop


def test_improvement_is_reported_and_passes(big):
    code, report, _ = gate_json("--baseline", str(big["baseline"]), "--current", str(big["gain5"]))
    assert code == 0 and only_task(report)["verdict"] == "improvement"


def test_protocol_mismatch_refuses_naming_the_field(tmp_path):
    data = write_problems(tmp_path / "aime.jsonl", 20)
    base = make_run(tmp_path, "base", data, set())
    cur = make_run(tmp_path, "cur", data, {0: set(), 1: set()}, k=2)
    proc = cli("gate", "--baseline", str(base), "--current", str(cur))
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "k (1 -> 2)" in proc.stderr and "aime2025" in proc.stderr
    allowed = cli("gate", "--baseline", str(base), "--current", str(cur), "--allow-protocol-change")
    assert allowed.returncode == 0, allowed.stderr
    assert "protocol changed (allowed): k (1 -> 2)" in allowed.stdout


@pytest.mark.parametrize("field, value", [
    ("split", "dev"), ("mode", "pacore"), ("prompt_template_hash", "0000000000000000"),
    ("scorer", {"judge": "openai/gpt-4o-mini"}), ("generation", {"max_tokens": 512}),
])
def test_each_protocol_field_of_a_baseline_file_is_guarded(big, tmp_path, field, value):
    path = tmp_path / "baseline.json"
    assert cli("gate", "--write-baseline", str(big["baseline"]), str(path)).returncode == 0
    doc = json.loads(path.read_text())
    doc["tasks"]["aime2025"]["protocol"][field] = value
    path.write_text(json.dumps(doc))
    proc = cli("gate", "--baseline", str(path), "--current", str(big["drop03"]))
    assert proc.returncode == 2 and f"aime2025: {field} (" in proc.stderr


@pytest.mark.parametrize("content, why", [
    ("{not json", "not JSON"),
    ('{"tasks": {}}', "no tasks"),
    ('{"tasks": {"aime2025": {"value": 87.5, "n": 30, "protocol": {}}}}', "points, not a fraction"),
    ('{"tasks": {"aime2025": {"value": 0.875, "protocol": {}}}}', "no n"),
    ('{"tasks": {"aime2025": {"value": 0.875, "n": 30}}}', "no protocol"),
    ('{"tasks": {"aime2025": {"value": 0.8, "n": 2, "protocol": {}, "outcomes": {"a": "yes"}}}}', "bad outcome"),
    ('[1, 2]', "not an object"),
])
def test_malformed_baseline_gives_one_line_and_exit_2(big, tmp_path, content, why):
    path = tmp_path / "baseline.json"
    path.write_text(content)
    proc = cli("gate", "--baseline", str(path), "--current", str(big["drop5"]))
    assert proc.returncode == 2, why
    assert proc.stderr.startswith("step3vl-eval: error: malformed baseline") and proc.stderr.count("\n") == 1, why
    assert proc.stdout == ""


# ---- baselines, pairing, output ----------------------------------------------------------------

def test_written_baseline_gates_exactly_like_its_run_dir(big, tmp_path):
    path = tmp_path / "baseline.json"
    wrote = cli("gate", "--write-baseline", str(big["baseline"]), str(path))
    assert wrote.returncode == 0 and "aime2025 70.00" in wrote.stdout
    from_file = gate_json("--baseline", str(path), "--current", str(big["drop5"]))
    from_dir = gate_json("--baseline", str(big["baseline"]), "--current", str(big["drop5"]))
    assert from_file[:2] == from_dir[:2]
    # a run's results.json (what a user points at first) stands for its run dir, on either side
    from_results = gate_json("--baseline", str(big["baseline"] / "results.json"),
                             "--current", str(big["drop5"] / "results.json"))
    assert from_results[:2] == from_dir[:2]


def test_summary_only_baseline_falls_back_to_an_unpaired_test(big, tmp_path):
    path = tmp_path / "baseline.json"
    cli("gate", "--write-baseline", str(big["baseline"]), str(path))
    doc = json.loads(path.read_text())
    del doc["tasks"]["aime2025"]["outcomes"]
    path.write_text(json.dumps(doc))
    code, report, _ = gate_json("--baseline", str(path), "--current", str(big["drop5"]))
    row = only_task(report)
    assert code == 1 and row["test"] == "two-proportion z (unpaired)"
    assert "unpaired: no per-sample outcomes that make the headline metric in baseline" in row["notes"]
    # pooled z = -0.05 / sqrt(0.675 * 0.325 * 2 / 1000) = -2.390
    assert row["p"] == pytest.approx(0.00842, abs=1e-4)


def test_a_headline_the_samples_do_not_make_is_compared_unpaired(big, tmp_path):
    """MMBench's CircularEval scores groups of rows: per-row scores must not be paired as if they made it."""
    grouped = tmp_path / "grouped"
    shutil.copytree(big["drop5"], grouped)
    results = json.loads((grouped / "results.json").read_text())
    results["metrics"]["accuracy"]["value"] = 0.60  # what a group-level metric could say of these rows
    (grouped / "results.json").write_text(json.dumps(results))
    code, report, _ = gate_json("--baseline", str(big["baseline"]), "--current", str(grouped))
    row = only_task(report)
    assert row["test"] == "two-proportion z (unpaired)" and row["current"] == 0.60 and code == 1
    assert "unpaired: no per-sample outcomes that make the headline metric in current" in row["notes"]


def test_avg_at_k_uses_the_paired_bootstrap(tmp_path):
    data = write_problems(tmp_path / "aime.jsonl", 400)
    base_wrong = {r: set(range(100 + 20 * r)) for r in range(4)}  # 100/120/140/160 of 400 wrong
    base = make_run(tmp_path, "base", data, base_wrong, k=4)
    drop = make_run(tmp_path, "drop", data, {r: w | set(range(200, 220)) for r, w in base_wrong.items()}, k=4)
    same = make_run(tmp_path, "same", data, {r: w | {300} for r, w in base_wrong.items()}, k=4)
    code, report, _ = gate_json("--baseline", str(base), "--current", str(drop))
    row = only_task(report)
    assert code == 1 and row["test"] == "paired bootstrap" and row["k"] == 4
    assert row["diff"] == pytest.approx(-0.05) and row["ci"][1] < 0
    code, report, _ = gate_json("--baseline", str(base), "--current", str(same))
    assert code == 0 and only_task(report)["verdict"] == "pass"


def test_error_records_are_left_out_of_pairing_and_counted(tmp_path):
    data = write_problems(tmp_path / "aime.jsonl", 50)
    base = make_run(tmp_path, "base", data, set())
    replay = write_replay(tmp_path / "partial.jsonl", 50, set())
    replay.write_text("".join(replay.read_text().splitlines(keepends=True)[:45]))  # 5 requests fail
    spec = RunSpec(task="aime2025", model=f"replay:{replay}", repeats=1, data=str(data),
                   params=GenParams(max_tokens=4096), out=str(tmp_path / "cur"))
    cur, _ = runner.run(spec, show_progress=False)
    code, report, _ = gate_json("--baseline", str(base), "--current", str(cur))
    row = only_task(report)
    assert code == 0 and row["n"] == 45 and row["diff"] == 0
    assert "5 error records in the current left out" in row["notes"]


def test_a_limited_current_run_is_paired_on_the_samples_it_shares(big, tmp_path):
    limited = make_run(tmp_path, "limited", big["data"], set(range(350)), limit=400)  # CI: --limit 400
    code, report, _ = gate_json("--baseline", str(big["baseline"]), "--current", str(limited))
    row = only_task(report)
    assert code == 1 and row["n"] == 400 and row["verdict"] == "regression"
    assert (row["baseline"], row["current"]) == (pytest.approx(0.25), pytest.approx(0.125))  # on q0..q399
    assert any(note.startswith("compared on the 400 samples both runs answered") for note in row["notes"])


def test_folder_of_run_dirs_and_task_filter(big, tmp_path):
    runs = big["drop5"].parent  # the --out folder of a CI job
    code, report, _ = gate_json("--baseline", str(big["baseline"].parent), "--current", str(runs))
    assert code == 1 and only_task(report)["task"] == "aime2025"
    proc = cli("gate", "--baseline", str(big["baseline"]), "--current", str(runs), "--tasks", "mmmu")
    assert proc.returncode == 2 and "task mmmu is not in the baseline" in proc.stderr


def test_markdown_goes_to_the_github_step_summary(big, tmp_path):
    summary = tmp_path / "summary.md"
    summary.write_text("earlier step\n")
    proc = cli("gate", "--baseline", str(big["baseline"]), "--current", str(big["drop5"]),
               env={"GITHUB_STEP_SUMMARY": str(summary)})
    assert proc.returncode == 1
    text = summary.read_text()
    assert text.startswith("earlier step\n") and "| aime2025 | 1 | 70.00 | 65.00 | -5.00 |" in text
    assert "**regression**" in proc.stdout and "FAIL" in proc.stdout


def test_gate_without_inputs_is_a_usage_error():
    proc = cli("gate", "--current", "runs")
    assert proc.returncode == 2 and "--baseline" in proc.stderr


# ---- the statistics, by hand -------------------------------------------------------------------

@pytest.mark.parametrize("losses, discordant, expected, why", [
    (0, 0, 0.5, "no discordant pair: no evidence either way"),
    (4, 4, 1 / 32, "all four one way: P(X=4)/2"),
    (2, 4, 0.5, "an even split: 5/16 + 3/16"),
    (3, 10, 0.9453125 - 0.1171875 / 2, "P(X>3) + P(X=3)/2 = (1 - 176/1024) + (120/1024)/2"),
])
def test_binomial_mid_p(losses, discordant, expected, why):
    assert gate.binomial_mid_p(losses, discordant) == pytest.approx(expected), why


def test_newcombe_interval_matches_the_published_example():
    # Newcombe (1998), Stat Med 17:873, example (a): 56/70 - 48/80, method 10: +0.0524 to +0.3339.
    lo, hi = gate.newcombe_interval(56 / 70, 70, 48 / 80, 80)
    assert (round(lo, 4), round(hi, 4)) == (0.0524, 0.3339)


@pytest.mark.parametrize("diff, p_drop, p_gain, expected", [
    (-0.05, 0.001, 0.999, "regression"),
    (-0.05, 0.20, 0.80, "inconclusive"),
    (-0.005, 0.001, 0.999, "pass"),  # significant but within tolerance
    (0.05, 0.999, 0.001, "improvement"),
    (0.05, 0.80, 0.20, "inconclusive"),
    (0.0, 0.5, 0.5, "pass"),
])
def test_verdict_needs_both_tolerance_and_significance(diff, p_drop, p_gain, expected):
    assert gate.verdict(diff, p_drop, p_gain, tolerance=1.0, alpha=0.05) == expected


def test_mde_is_floored_at_one_flipped_response():
    z = 1.6448536269514722 + 0.8416212335729143
    assert gate.minimum_detectable_effect(0.0, 1000, 1, 0.05) == pytest.approx(z / 1000)
    assert math.isclose(gate.minimum_detectable_effect(0.01, 1000, 1, 0.05), z * 0.01)


def test_mmbench_runs_are_paired_by_question(tmp_path):
    """CircularEval counts questions, not rows: the task saves one outcome per question, and the gate
    pairs two MMBench runs on those (McNemar), as it pairs per-sample outcomes elsewhere."""
    from test_mmbench import ANSWERS, build_rows, write_tsv

    tsv = write_tsv(tmp_path / "MMBench_DEV_EN_V11.tsv", build_rows())
    worse = {**ANSWERS, "1": "Final answer: B"}  # question 1 now fails its first pass
    runs = []
    for name, answers in (("base", ANSWERS), ("worse", worse)):
        replay = tmp_path / f"{name}.jsonl"
        replay.write_text("".join(json.dumps({"id": i, "response": t}) + "\n" for i, t in answers.items()))
        spec = RunSpec(task="mmbench_en", model=f"replay:{replay}", data=str(tsv), out=str(tmp_path / name))
        runs.append(runner.run(spec, show_progress=False)[0])
    saved = json.loads((runs[0] / "results.json").read_text())["metrics"]["accuracy"]["outcomes"]
    assert saved == {"1": 1.0, "2": 0.0, "3": 0.0, "4": 1.0, "5": 0.0}
    code, report, _ = gate_json("--baseline", str(runs[0]), "--current", str(runs[1]))
    row = only_task(report)
    assert row["test"].startswith("McNemar") and row["n"] == 5
    assert row["verdict"] == "inconclusive" and code == 0  # one question of five: 20 points, not significant


# ---- family-wise control (issue 17) --------------------------------------------------------------

ALPHA = 0.05
DRAWS = 4000


def binomial_error(rate: float, draws: int) -> float:
    """Three standard errors of a simulated rejection rate."""
    return 3 * math.sqrt(rate * (1 - rate) / draws)


def test_holm_adjusts_by_hand():
    # sorted 0.005, 0.01, 0.03, 0.04 -> x4, x3, x2, x1 = 0.02, 0.03, 0.06, 0.04 -> running max 0.02, 0.03, 0.06, 0.06
    adjusted = gate.holm_adjust([0.01, 0.04, 0.03, 0.005])
    assert adjusted.tolist() == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert gate.holm_adjust([[0.5, 0.9]]).tolist() == [[1.0, 1.0]]  # 0.5 x 2 capped at 1; never below it


def test_vectorised_mid_p_is_the_gates_mcnemar_p():
    from gates.power import mid_p_many

    rng = np.random.default_rng(3)
    pairs = [(rng.random(200) < 0.7, rng.random(200) < 0.66) for _ in range(20)]
    losses = [int((b & ~c).sum()) for b, c in pairs]
    discordant = [int((b != c).sum()) for b, c in pairs]
    expected = [gate.mcnemar_test(b.astype(float).tolist(), c.astype(float).tolist()).p_drop for b, c in pairs]
    assert mid_p_many(losses, discordant).tolist() == pytest.approx(expected, rel=1e-9)


def simulated_family(n_tasks: int, draws: int, drop_in_first: float = 0.0, seed: int = 11
                     ) -> tuple[np.ndarray, np.ndarray]:
    """`draws` CI gate calls over `n_tasks` k=1 tasks of different sizes: both runs drawn from the same
    per-question rates (Beta-distributed: most questions nearly always right or wrong, as real ones are),
    the first task's current run lowered by `drop_in_first`. Returns (diff, p_drop), each draws x tasks."""
    from gates.power import lowered, mid_p_many

    rng = np.random.default_rng(seed)
    diffs, ps = [], []
    for t, n in enumerate((900, 300, 500, 120, 1164)[:n_tasks]):
        rates = rng.beta(3.0, 1.0, size=n)
        cur_rates = lowered(rates, drop_in_first) if t == 0 else rates
        b = rng.random((draws, n)) < rates
        c = rng.random((draws, n)) < cur_rates
        losses, gains = (b & ~c).sum(axis=1), (c & ~b).sum(axis=1)
        diffs.append((gains - losses) / n)
        ps.append(mid_p_many(losses, losses + gains))
    return np.stack(diffs, axis=1), np.stack(ps, axis=1)


@pytest.mark.parametrize("n_tasks", [4, 5])
def test_null_ci_runs_over_several_tasks_fail_at_most_alpha_of_the_time(n_tasks):
    """No task changed: with Holm the gate fails at most alpha of the calls (tolerance 0, the strictest
    setting: a tolerance only removes failures); without a correction about 1 - (1 - alpha)^tasks do."""
    diff, p_drop = simulated_family(n_tasks, DRAWS)
    failed_holm = gate.regressions(diff, p_drop, 0.0, ALPHA, "holm").any(axis=1).mean()
    failed_none = gate.regressions(diff, p_drop, 0.0, ALPHA, "none").any(axis=1).mean()
    assert failed_holm <= ALPHA + binomial_error(ALPHA, DRAWS), failed_holm
    assert failed_none > 2.5 * ALPHA, failed_none  # the problem the correction solves
    single = gate.regressions(diff, p_drop, 0.0, ALPHA, "none").mean(axis=0)  # each task alone is calibrated
    assert (single <= ALPHA + binomial_error(ALPHA, DRAWS)).all(), single


def test_holm_keeps_power_against_a_drop_in_one_task():
    """A 6-point drop in the 900-question task among four unchanged ones: caught in most calls, at least
    as often as Bonferroni (alpha / 5) would, and never at the price of a false alarm elsewhere beyond alpha."""
    diff, p_drop = simulated_family(5, DRAWS, drop_in_first=0.06)
    holm = gate.regressions(diff, p_drop, 1.0, ALPHA, "holm")
    bonferroni = (np.round(100 * diff[:, 0], 9) < -1.0) & (p_drop[:, 0] < ALPHA / 5)
    uncorrected = gate.regressions(diff, p_drop, 1.0, ALPHA, "none")[:, 0]
    caught = holm[:, 0].mean()
    assert caught >= bonferroni.mean() and caught <= uncorrected.mean()
    assert caught > 0.70, caught
    assert holm[:, 1:].any(axis=1).mean() <= ALPHA + binomial_error(ALPHA, DRAWS)


def test_apply_correction_redoes_verdicts_with_adjusted_p():
    def row(task: str, diff: float, p_drop: float) -> gate.Comparison:
        return gate.Comparison(task, 1, 0.7, 0.7 + diff, diff, [0, 0], "McNemar exact mid-p", p_drop, 0.01, 500,
                               gate.verdict(diff, p_drop, 1 - p_drop, 1.0, ALPHA), [], p_drop, 1 - p_drop, p_drop)

    rows = [row("a", -0.03, 0.02), row("b", 0.0, 0.5), row("c", 0.0, 0.5), row("d", -0.05, 0.001)]
    assert [r.verdict for r in rows] == ["regression", "pass", "pass", "regression"]
    gate.apply_correction(rows, "holm", 1.0, ALPHA)
    assert [r.verdict for r in rows] == ["inconclusive", "pass", "pass", "regression"]
    assert rows[0].p_adjusted == pytest.approx(0.06) and rows[3].p_adjusted == pytest.approx(0.004)
    assert rows[0].p == 0.02  # the raw p stays beside it
    gate.apply_correction(rows, "none", 1.0, ALPHA)
    assert rows[0].verdict == "regression"


def test_markdown_shows_raw_and_adjusted_p(big):
    proc = cli("gate", "--baseline", str(big["baseline"]), "--current", str(big["drop5"]))
    assert "| p | p (Holm) |" in proc.stdout
    proc = cli("gate", "--baseline", str(big["baseline"]), "--current", str(big["drop5"]), "--correction", "none")
    assert "| p | p (None) |" in proc.stdout and proc.returncode == 1
    assert cli("gate", "--baseline", "x", "--current", "y", "--correction", "bonf").returncode == 2


def replayed_mathvision(out: Path, model: str) -> Path:
    bundled = Path(__file__).resolve().parents[1] / "tasks" / "bundled" / "mathvision"
    run_dir, _ = runner.run(RunSpec(task="mathvision", model=f"replay:{bundled / 'outputs' / f'{model}.jsonl'}",
                                    data="bundled", out=str(out)), show_progress=False)
    return run_dir


def test_the_table_shows_the_one_sided_bound_that_matches_the_test(tmp_path):
    """Gemini-Pro-CoT's released MathVision answers against the random baseline's: a one-sided
    regression (p 0.041) whose two-sided 95% CI includes 0; the table shows the one-sided bound, below 0."""
    base = replayed_mathvision(tmp_path / "runs", "Gemini-Pro-CoT")
    chance = replayed_mathvision(tmp_path / "runs", "Random-Chance")
    code, report, _ = gate_json("--baseline", str(base), "--current", str(chance))
    row = only_task(report)
    assert code == 1 and row["verdict"] == "regression" and row["p"] == pytest.approx(0.0408, abs=1e-4)
    assert row["ci"][0] < 0 < row["ci"][1]  # the two-sided CI the table used to show
    assert row["bound_side"] == "upper" and row["bound"] < 0
    table = cli("gate", "--baseline", str(base), "--current", str(chance)).stdout
    assert "| Δ | one-sided 95% bound of Δ |" in table and "| -4.61 | ≤ -0.28 | McNemar exact mid-p |" in table


def two_by_two(n: int, losses: int, gains: int) -> tuple[list[float], list[float]]:
    both = (n - losses - gains) // 2
    rest = n - both - losses - gains
    return ([1.0] * (both + losses) + [0.0] * (gains + rest), [1.0] * both + [0.0] * losses + [1.0] * gains + [0.0] * rest)


def test_a_significant_change_always_has_a_bound_beyond_zero():
    """Paired tests: the bound is the interval's end, not the exact test inverted, yet it never
    contradicts a significant verdict (near alpha it may exclude 0 when the test does not: said, below)."""
    for n in (20, 60, 304):
        for losses in range(0, min(n, 40)):
            for gains in range(0, min(n - losses, 40) + 1, 3):
                est = gate.mcnemar_test(*two_by_two(n, losses, gains))
                if est.p_drop < 0.05:
                    assert est.bounds[1] < 0, (n, losses, gains)
                if est.p_gain < 0.05:
                    assert est.bounds[0] > 0, (n, losses, gains)
    rng = np.random.default_rng(1)
    for shift in (0.0, 0.03, 0.06, 0.1):
        base = rng.random(200)
        est = gate.paired_bootstrap_test(list(base), list(base - shift + rng.normal(0, 0.2, 200)))
        assert (est.p_drop < 0.05) == (est.bounds[1] < 0) or abs(est.p_drop - 0.05) < 2e-3


def test_a_bound_below_zero_beside_an_inconclusive_verdict_is_explained():
    base, cur = two_by_two(30, 10, 4)  # mid-p 0.059; Newcombe's one-sided bound just below 0
    outcomes = lambda xs: {f"q{i}": x for i, x in enumerate(xs)}  # noqa: E731
    side = lambda xs: gate.TaskRun("aime2025", sum(xs) / 30, 30, 1, "wilson", [0, 1], {}, None, outcomes(xs))  # noqa: E731
    (c,) = gate.apply_correction([gate.compare_task(side(base), side(cur), 1.0, 0.05)], "holm", 1.0, 0.05)
    assert c.verdict == "inconclusive" and c.bound < 0 and 0.05 < c.p < 0.065
    assert ("the one-sided bound excludes 0, but the test's p (0.0592) is not below alpha: the verdict follows the test"
            in gate.markdown_report([c], 1.0, 0.05))
    # Unpaired (summary-only sides), near 0: the pooled z test is significant, Newcombe's bound just reaches 0
    summary = lambda right: gate.TaskRun("aime2025", right / 30, 30, 1, "wilson", [0, 1], {}, None, None)  # noqa: E731
    (c,) = gate.apply_correction([gate.compare_task(summary(3), summary(0), 1.0, 0.05)], "holm", 1.0, 0.05)
    assert c.verdict == "regression" and c.bound >= 0 and c.test == "two-proportion z (unpaired)"
    assert ("the test's p (0.0378) is below alpha, but the one-sided bound, from another approximation, reaches 0: "
            "the verdict follows the test" in gate.markdown_report([c], 1.0, 0.05))


# ---- power planning (issue 17) -------------------------------------------------------------------

PLAN_SIMS = 800


def plan_json(*args: str) -> dict:
    proc = cli("gate", "--plan", *args, "--json")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def caught_share(rates: np.ndarray, n: int, k: int, drop: float, seed: int = 5) -> float:
    """Simulated CI runs at this size, gated by the gate's own tests (McNemar / the 10,000-resample
    bootstrap) and verdict: the share that says `regression`."""
    from gates.power import lowered

    rng = np.random.default_rng(seed)
    cur_rates = lowered(rates, drop)
    caught = 0
    for _ in range(PLAN_SIMS):
        idx = np.arange(n) if n == len(rates) else rng.integers(0, len(rates), n)
        b = (rng.binomial(k, rates[idx]) / k).tolist()
        c = (rng.binomial(k, cur_rates[idx]) / k).tolist()
        est = gate.mcnemar_test(b, c) if k == 1 else gate.paired_bootstrap_test(b, c)
        caught += gate.verdict(est.diff, est.p_drop, est.p_gain, 1.0, ALPHA) == "regression"
    return caught / PLAN_SIMS


@pytest.mark.slow
def test_plan_for_repeats_on_a_replayed_aime_baseline_is_confirmed_by_simulation(tmp_path):
    wrong_of_8 = [0] * 12 + [1] * 6 + [2] * 4 + [4] * 3 + [6] * 3 + [8] * 2  # per problem; accuracy 75%
    data = write_problems(tmp_path / "aime.jsonl", 30)
    baseline = make_run(tmp_path, "base", data, {r: {i for i, w in enumerate(wrong_of_8) if r < w} for r in range(8)},
                        k=8)
    (row,) = plan_json("--baseline", str(baseline), "--detect", "3")["tasks"]
    assert (row["n"], row["k"], row["accuracy"]) == (30, 8, pytest.approx(0.75))
    rates = np.array([(8 - w) / 8 for w in wrong_of_8])
    k_planned = row["repeats_needed"]
    assert 8 < k_planned < 1024
    assert caught_share(rates, 30, k_planned, 0.03) == pytest.approx(0.80, abs=0.05)


@pytest.mark.slow
def test_plan_for_questions_on_a_replayed_k1_baseline_is_confirmed_by_simulation(tmp_path):
    data = write_problems(tmp_path / "aime.jsonl", 200)
    baseline = make_run(tmp_path, "base", data, set(range(50)))  # 75%, k = 1
    report = plan_json("--baseline", str(baseline), "--detect", "6")
    (row,) = report["tasks"]
    assert row["k"] == 1 and "per-question consistency unknown" in row["notes"][0]
    n_planned = row["questions_needed"]
    assert 200 < n_planned < 5000
    assert caught_share(np.full(200, 0.75), n_planned, 1, 0.06) == pytest.approx(0.80, abs=0.05)
    md = cli("gate", "--plan", "--baseline", str(baseline), "--detect", "6")
    assert md.returncode == 0 and f"| aime2025 | 200 | 1 | 75.00 |" in md.stdout and f"{n_planned:,} (k=1)" in md.stdout


def test_plan_refuses_a_drop_within_the_tolerance(big):
    proc = cli("gate", "--plan", "--baseline", str(big["baseline"]), "--detect", "0.5")
    assert proc.returncode == 2 and "must exceed --tolerance" in proc.stderr and proc.stderr.count("\n") == 1


def test_plan_skips_a_task_below_the_drop_and_plans_the_others(tmp_path):
    """The demo's baseline (the mock's AIME at 0%, a replayed MathVision at ~10%): the AIME row says why
    it has no plan instead of the whole call failing; a plan of only such tasks is still refused."""
    runs = tmp_path / "runs"
    make_run(tmp_path, "runs", write_problems(tmp_path / "aime.jsonl", 30), set(range(30)))
    bundled = Path(__file__).resolve().parents[1] / "tasks" / "bundled" / "mathvision"
    runner.run(RunSpec(task="mathvision", model=f"replay:{bundled / 'outputs' / 'Qwen-VL-Plus.jsonl'}",
                       data="bundled", params=GenParams(max_tokens=4096), out=str(runs)), show_progress=False)
    md = cli("gate", "--plan", "--baseline", str(runs), "--detect", "3")
    assert md.returncode == 0, md.stderr
    assert "| aime2025 | 30 | 1 | 0.00 | — | — | — | — |" in md.stdout
    assert "- aime2025: cannot plant a 3.00-point drop in an accuracy of 0.00 points" in md.stdout
    assert "| mathvision | 304 | 1 | 10.53 |" in md.stdout and " (k=1) |" in md.stdout
    only = cli("gate", "--plan", "--baseline", str(runs), "--detect", "3", "--tasks", "aime2025")
    assert only.returncode == 2 and "aime2025: cannot plant" in only.stderr and only.stderr.count("\n") == 1


def test_a_baseline_task_missing_from_the_current_runs_is_said(big, tmp_path):
    """A CI job whose run of one task went missing: the others are gated, the missing one is named on
    stderr; with --tasks naming it, the gate refuses."""
    path = tmp_path / "baseline.json"
    assert cli("gate", "--write-baseline", str(big["baseline"]), str(path)).returncode == 0
    doc = json.loads(path.read_text())
    doc["tasks"]["mathvision"] = doc["tasks"]["aime2025"]
    path.write_text(json.dumps(doc))
    code, report, err = gate_json("--baseline", str(path), "--current", str(big["drop03"]))
    assert code == 0 and [t["task"] for t in report["tasks"]] == ["aime2025"]
    assert "not compared, in the baseline but not in the current runs: mathvision" in err
    named = cli("gate", "--baseline", str(path), "--current", str(big["drop03"]), "--tasks", "aime2025", "mathvision")
    assert named.returncode == 2 and "task mathvision is not in the current" in named.stderr
