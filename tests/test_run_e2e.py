"""End to end through the CLI against a real HTTP server on 127.0.0.1 (issue: foundation)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from chat_server import ChatServer, Reply
from conftest import cli, shared_data

from evals.runner import request_seed

# Per problem: four scripted replies (one per repeat), and what each one means.
SCRIPT = {
    "p1": [Reply("\\boxed{2}"), Reply("Final: \\boxed{2}"), Reply("\\boxed{3}"), Reply("two, I think")],
    "p2": [
        Reply(None, reasoning_content="long thought cut off", finish_reason="length"),  # truncated
        Reply("\\boxed{41}"), Reply("\\boxed{41}"),
        Reply("\\boxed{42}", reasoning_content="6*7 is 42"),  # reasoning in its own field
    ],
    "p3": [Reply("<think>leading zero</think>\\boxed{070}"), Reply("\\boxed{7}"), Reply("\\boxed{7}"),
           Reply("\\boxed{7}")],
    "p4": [Reply("\\boxed{6}")] * 4,
}
# Hand-computed: correct counts 2, 1, 1, 0 of 4 -> avg@4 = (0.5 + 0.25 + 0.25 + 0) / 4 = 0.25;
# pass@4 = 1, 1, 1, 0 -> 0.75; maj@4: p1 "2" (right), p2 "41" (wrong), p3 "7" (wrong), p4 -> 0.25.
EXPECTED = {"avg@4": 0.25, "pass@4": 0.75, "maj@4": 0.25}
PROBLEMS = {"p1": ("What is $1+1$?", "2"), "p2": ("What is $6 \\times 7$?", "42"),
            "p3": ("Seventy?", "70"), "p4": ("Five?", "5")}


def write_problems(path: Path) -> Path:
    path.write_text("".join(json.dumps({"id": i, "problem": q, "answer": a}) + "\n" for i, (q, a) in PROBLEMS.items()))
    return path


def seed_responder(script: dict[str, list[Reply]], seed: int = 0):
    by_seed = {request_seed(seed, pid, r): reply for pid, replies in script.items() for r, reply in enumerate(replies)}

    def respond(body: dict) -> Reply:
        return by_seed[body["seed"]]

    return respond


def results(run_root: Path) -> tuple[Path, dict]:
    (run_dir,) = [p for p in run_root.iterdir() if p.is_dir()]
    return run_dir, json.loads((run_dir / "results.json").read_text())


def test_aime_run_reports_hand_computed_avg_pass_maj(tmp_path: Path):
    data = write_problems(tmp_path / "aime.jsonl")
    with ChatServer(responder=seed_responder(SCRIPT)) as server:
        proc = cli("run", "aime2025", "--model", "openai/test-model", "--base-url", server.url,
                   "--samples", "4", "--data", str(data), "--out", str(tmp_path / "runs"))
        assert proc.returncode == 0, proc.stderr
        assert len(server.received) == 16
    run_dir, res = results(tmp_path / "runs")
    for name, value in EXPECTED.items():
        assert res["metrics"][name]["value"] == pytest.approx(value), name
    assert res["metrics"]["accuracy"]["value"] == pytest.approx(0.25)
    assert res["counts"] == {**res["counts"], "requests": 16, "errors": 0, "truncated": 1, "unparsed": 1}
    assert res["status"] == "complete"
    assert res["spec"]["params"]["temperature"] == 1.0 and res["spec"]["params"]["max_tokens"] == 65536
    prov = res["provenance"]
    assert prov["dataset_fingerprint"] and prov["prompt_template_hash"] and "packages" in prov
    records = [json.loads(line) for line in (run_dir / "samples.jsonl").read_text().splitlines()]
    by_key = {r["key"]: r for r in records}
    assert by_key["p2#3"]["response"]["reasoning"] == "6*7 is 42"
    assert by_key["p3#0"]["response"]["reasoning"] == "leading zero"
    assert by_key["p2#0"]["scored"]["rule"] == "truncated" and not by_key["p2#0"]["scored"]["correct"]
    assert "avg@4" in proc.stdout  # the summary table


def test_requests_carry_the_reports_sampling_settings_and_distinct_seeds(tmp_path: Path):
    data = write_problems(tmp_path / "aime.jsonl")
    with ChatServer(responder=seed_responder(SCRIPT)) as server:
        proc = cli("run", "aime2025", "--model", "openai/test-model", "--base-url", server.url, "-k", "4",
                   "--data", str(data), "--out", str(tmp_path / "runs"), "--max-tokens", "1000")
        assert proc.returncode == 0, proc.stderr
        bodies = server.received
    assert {b["temperature"] for b in bodies} == {1.0} and {b["top_p"] for b in bodies} == {1.0}
    assert {b["max_tokens"] for b in bodies} == {1000}
    assert all("top_k" not in b for b in bodies)  # disabled: not sent
    assert len({b["seed"] for b in bodies}) == 16
    assert "Please reason step by step" in bodies[0]["messages"][0]["content"]


def test_score_reproduces_results_without_a_model(tmp_path: Path):
    data = write_problems(tmp_path / "aime.jsonl")
    with ChatServer(responder=seed_responder(SCRIPT)) as server:
        assert cli("run", "aime2025", "--model", "openai/test-model", "--base-url", server.url, "-k", "4",
                   "--data", str(data), "--out", str(tmp_path / "runs")).returncode == 0
    run_dir, before = results(tmp_path / "runs")
    proc = cli("score", str(run_dir))  # the server is gone: scoring needs no model
    assert proc.returncode == 0, proc.stderr
    after = json.loads((run_dir / "results.json").read_text())
    assert after["metrics"] == before["metrics"] and after["counts"] == before["counts"]


def test_same_command_again_resumes_and_sends_nothing(tmp_path: Path):
    data = write_problems(tmp_path / "aime.jsonl")
    args = ["run", "aime2025", "--model", "openai/test-model", "-k", "4", "--data", str(data),
            "--out", str(tmp_path / "runs")]
    with ChatServer(responder=seed_responder(SCRIPT)) as server:
        assert cli(*args, "--base-url", server.url).returncode == 0
        first = len(server.received)
        assert cli(*args, "--base-url", server.url).returncode == 0
        assert len(server.received) == first  # nothing sent twice
    assert len(list((tmp_path / "runs").iterdir())) == 1


def test_real_aime2025_data_runs_end_to_end(tmp_path: Path):
    data = shared_data("aime2025")
    answers = {}
    for f in sorted(data.glob("*.jsonl")):
        for line in f.read_text().splitlines():
            row = json.loads(line)
            answers[row["id"]] = row["answer"]
    ids = list(answers)
    script = {pid: [Reply(f"\\boxed{{{answers[pid] if i % 3 == 0 else 1000}}}")] for i, pid in enumerate(ids)}
    with ChatServer(responder=seed_responder(script)) as server:
        proc = cli("run", "aime2025", "--model", "openai/test-model", "--base-url", server.url, "-k", "1",
                   "--data", str(data), "--out", str(tmp_path / "runs"))
        assert proc.returncode == 0, proc.stderr
    _, res = results(tmp_path / "runs")
    assert res["provenance"]["n_samples"] == 30
    assert res["metrics"]["avg@1"]["value"] == pytest.approx(10 / 30)


def test_several_base_urls_share_the_load(tmp_path: Path):
    data = write_problems(tmp_path / "aime.jsonl")
    with ChatServer(responder=seed_responder(SCRIPT), latency=0.05) as a, \
            ChatServer(responder=seed_responder(SCRIPT), latency=0.05) as b:
        proc = cli("run", "aime2025", "--model", "openai/test-model", "--base-url", a.url, "--base-url", b.url,
                   "-k", "4", "--data", str(data), "--out", str(tmp_path / "runs"), "--concurrency", "4")
        assert proc.returncode == 0, proc.stderr
        assert a.completions + b.completions == 16
        assert a.completions >= 4 and b.completions >= 4  # least-in-flight first: both get work
    _, res = results(tmp_path / "runs")
    assert res["metrics"]["avg@4"]["value"] == pytest.approx(EXPECTED["avg@4"])


def test_config_file_sets_options_and_flags_override_it(tmp_path: Path):
    data = write_problems(tmp_path / "aime.jsonl")
    with ChatServer(responder=seed_responder(SCRIPT)) as server:
        config = tmp_path / "eval.toml"
        config.write_text(f'tasks = ["aime2025"]\nmodel = "openai/test-model"\nbase_url = ["{server.url}"]\n'
                          f'samples = 4\nmax_tokens = 2000\ndata = "{data}"\nout = "{tmp_path / "runs"}"\n')
        proc = cli("run", "--config", str(config), "--max-tokens", "3000")
        assert proc.returncode == 0, proc.stderr
        assert {b["max_tokens"] for b in server.received} == {3000} and len(server.received) == 16
    _, res = results(tmp_path / "runs")
    assert res["spec"]["repeats"] == 4 and res["spec"]["params"]["max_tokens"] == 3000


def test_a_scorer_that_crashes_keeps_the_answer_and_counts_it(tmp_path: Path, monkeypatch):
    from evals import runner
    from evals.types import RunSpec
    from tasks.aime2025 import AIME2025

    data = write_problems(tmp_path / "aime.jsonl")

    def broken(self, sample, response):
        if sample.id == "p2":
            raise RecursionError("a scorer bug")
        return original(self, sample, response)

    original = AIME2025.score
    monkeypatch.setattr(AIME2025, "score", broken)
    spec = RunSpec(task="aime2025", model="mock", data=str(data), out=str(tmp_path / "runs"),
                   adapter_options={"mock_text": "\\boxed{2}"})
    run_dir, result = runner.run(spec, show_progress=False)
    assert result.counts["scoring_errors"] == 1 and result.counts["requests"] == 4
    records = {json.loads(x)["sample_id"]: json.loads(x) for x in (run_dir / "samples.jsonl").read_text().splitlines()}
    assert records["p2"]["response"]["text"] == "\\boxed{2}"  # the answer is kept for a later re-score
    assert "RecursionError" in records["p2"]["scored"]["extra"]["scoring_error"]
    monkeypatch.setattr(AIME2025, "score", original)  # the bug fixed: `score` re-scores it
    assert runner.rescore(run_dir).counts["scoring_errors"] == 0


def mathvision_copy(folder: Path, n: int = 3) -> Path:
    """The first n bundled MathVision testmini rows with their figures, in a folder of their own."""
    from tasks.data import BUNDLED_ROOT

    source = BUNDLED_ROOT / "mathvision"
    rows = [json.loads(line) for line in (source / "data" / "testmini.jsonl").read_text().splitlines()[:n]]
    (folder / "data").mkdir(parents=True)
    (folder / "images").mkdir()
    (folder / "data" / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    for r in rows:
        shutil.copy(source / r["image"], folder / r["image"])
    return folder


def test_the_dataset_fingerprint_does_not_depend_on_where_the_images_are(tmp_path: Path, capsys):
    """The same data in another place (the bundled data under another checkout or venv) is the same
    data: its fingerprint is that of the files relative to their folder, not of absolute paths."""
    from evals import runner
    from evals.cli import main

    fingerprints = []
    for where in ("a", "b"):
        data = mathvision_copy(tmp_path / where)
        assert main(["run", "mathvision", "--data", str(data), "--model", "mock", "--out", str(tmp_path / f"runs-{where}"),
                     "--quiet"]) == 0
        run_dir, result = results(tmp_path / f"runs-{where}")
        fingerprints.append(result["provenance"]["dataset_fingerprint"])
    assert fingerprints[0] == fingerprints[1]
    # a run dir made before (absolute paths in its fingerprint) still resumes
    samples = runner.load_samples(runner.get_task("mathvision", {}, None), runner.resume_spec(run_dir))
    legacy = runner.dataset_fingerprint(samples, portable=False)
    assert legacy != fingerprints[1]
    result["provenance"]["dataset_fingerprint"] = legacy
    (run_dir / "results.json").write_text(json.dumps(result))
    assert main(["run", "--resume", str(run_dir), "--quiet"]) == 0
    result["provenance"]["dataset_fingerprint"] = "0123456789abcdef"  # other data: refused as before
    (run_dir / "results.json").write_text(json.dumps(result))
    assert main(["run", "--resume", str(run_dir), "--quiet"]) == 2
    assert "the data changed" in capsys.readouterr().err
