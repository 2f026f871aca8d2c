"""Bad input: one line on stderr, exit 2, no traceback, and an existing run dir left untouched."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
from chat_server import ChatServer
from conftest import cli
from fixtures_table3 import HMMT_ROWS, fixture_rows, write_hmmt, write_mmmu_pro


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def existing_run(tmp_path: Path, aime_data: Path) -> Path:
    out = tmp_path / "runs"
    proc = cli("run", "aime2025", "--model", "mock", "-k", "2", "--data", str(aime_data), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    return out


def bad_cases(data: Path, tmp: Path) -> dict[str, list[str]]:
    no_answer = tmp / "no_answer.jsonl"
    no_answer.write_text('{"id": "a", "problem": "1+1?"}\n')
    bad_json = tmp / "bad.jsonl"
    bad_json.write_text('{"id": "a", "problem": \n')
    latin1 = tmp / "latin1.jsonl"
    latin1.write_bytes('{"id": "a", "problem": "caf\xe9", "answer": "1"}\n'.encode("latin-1"))
    unknown_key = tmp / "unknown.toml"
    unknown_key.write_text('model = "mock"\nsampels = 4\n')
    bad_toml = tmp / "bad.toml"
    bad_toml.write_text("model = \n")
    wrong_type = tmp / "wrong_type.toml"
    wrong_type.write_text('model = "mock"\nsamples = "four"\n')
    huge_line = tmp / "huge.jsonl"
    with huge_line.open("wb") as fh:
        fh.truncate(2**30)  # a 1 GB line (sparse: no disk used)
    huge_tsv = tmp / "huge.tsv"
    huge_tsv.write_text("index\tquestion\tA\tB\tanswer\tcategory\timage\n0\tq\t")
    with huge_tsv.open("ab") as fh:
        fh.truncate(2**28)
    config_dir = tmp / "config_dir.toml"
    config_dir.mkdir()
    standard, vision = fixture_rows()
    pro_no_options = write_mmmu_pro(tmp / "pro_no_options", [{k: v for k, v in r.items() if k != "options"}
                                                             for r in standard], vision)
    pro_no_image = write_mmmu_pro(tmp / "pro_no_image", standard, [{k: v for k, v in r.items() if k != "image"}
                                                                   for r in vision])
    hmmt_no_answers = write_hmmt(tmp / "hmmt.parquet", [{k: v for k, v in r.items() if k != "answer"} for r in HMMT_ROWS])
    base = ["run", "aime2025", "--data", str(data)]
    return {
        "unknown task": ["run", "nosuchtask", "--model", "mock"],
        "unknown adapter": [*base, "--model", "nosuch/model"],
        "missing data file": ["run", "aime2025", "--model", "mock", "--data", str(tmp / "missing.jsonl")],
        "data without the answer field": ["run", "aime2025", "--model", "mock", "--data", str(no_answer)],
        "data that is not JSON": ["run", "aime2025", "--model", "mock", "--data", str(bad_json)],
        "data that is not UTF-8": ["run", "aime2025", "--model", "mock", "--data", str(latin1)],
        "samples 0": [*base, "--model", "mock", "--samples", "0"],
        "negative limit": [*base, "--model", "mock", "--limit", "-1"],
        "negative temperature": [*base, "--model", "mock", "--temperature", "-1"],
        "top-p above 1": [*base, "--model", "mock", "--top-p", "1.5"],
        "top-p of nan": [*base, "--model", "mock", "--top-p", "nan"],
        "timeout 0": [*base, "--model", "mock", "--timeout", "0"],
        "negative max-retries": [*base, "--model", "mock", "--max-retries", "-1"],
        "unreachable base URL": [*base, "--model", "openai/m", "--base-url", f"http://127.0.0.1:{free_port()}/v1"],
        "missing API key for a hosted endpoint": [*base, "--model", "openai/gpt-4o", "--base-url",
                                                  "https://api.example.invalid/v1", "--api-key-env", "NO_SUCH_KEY_VAR"],
        "unknown config key": [*base, "--config", str(unknown_key)],
        "config that is not TOML": [*base, "--config", str(bad_toml)],
        "config value of the wrong type": [*base, "--config", str(wrong_type)],
        "missing config file": [*base, "--config", str(tmp / "none.toml")],
        "a 1 GB line in a data file": ["run", "aime2025", "--model", "mock", "--data", str(huge_line)],
        "an MMMU-Pro parquet without options": ["run", "mmmu_pro", "--model", "mock", "--data", str(pro_no_options)],
        "an MMMU-Pro vision parquet without the image": ["run", "mmmu_pro_vision", "--model", "mock", "--data",
                                                          str(pro_no_image)],
        "an HMMT file without answers": ["run", "hmmt2025", "--model", "mock", "--data", str(hmmt_no_answers)],
        "a 256 MB cell in a TSV": ["run", "mmbench_en", "--model", "mock", "--data", str(huge_tsv)],
        "a directory where the config file should be": [*base, "--config", str(config_dir)],
        "a directory where the data file should be (empty)": ["run", "aime2025", "--model", "mock", "--data", str(config_dir)],
        "no model": base,
        "no task": ["run", "--model", "mock"],
        "unknown flag": [*base, "--model", "mock", "--frobnicate"],
        "bad -O option": [*base, "--model", "mock", "-O", "novalue"],
        "pacore widths not numbers": [*base, "--model", "mock", "--pacore-widths", "a,b"],
        "replay file missing": [*base, "--model", f"replay:{tmp / 'preds.jsonl'}"],
        "resume a dir that is not a run": ["run", "--resume", str(tmp)],
        "score a missing run dir": ["score", str(tmp / "nope")],
    }


def test_each_bad_input_gives_one_line_and_exit_2(tmp_path: Path, aime_data: Path, existing_run: Path):
    before = snapshot(existing_run)
    for name, args in bad_cases(aime_data, tmp_path).items():
        if "--out" not in args and args[0] == "run" and "--resume" not in args:
            args = [*args, "--out", str(existing_run)]
        proc = cli(*args, env={"NO_SUCH_KEY_VAR": ""})
        assert proc.returncode == 2, f"{name}: exit {proc.returncode}\n{proc.stderr}"
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1, f"{name}: {proc.stderr}"
        assert "Traceback" not in proc.stderr and lines[0].startswith("step3vl-eval: error:"), name
    assert snapshot(existing_run) == before


def test_a_server_that_rejects_the_key_stops_before_anything_is_written(tmp_path: Path, aime_data: Path):
    with ChatServer(api_key="sk-right") as server:
        proc = cli("run", "aime2025", "--model", "openai/m", "--base-url", server.url, "--data", str(aime_data),
                   "--out", str(tmp_path / "runs"), env={"OPENAI_API_KEY": "sk-wrong"})
    assert proc.returncode == 2 and "refused the API key" in proc.stderr
    assert not (tmp_path / "runs").exists()


def test_a_run_dir_of_another_spec_is_refused(tmp_path: Path, aime_data: Path, existing_run: Path):
    (run_dir,) = list(existing_run.iterdir())
    results = json.loads((run_dir / "results.json").read_text())
    results["spec"]["task"] = "mmmu"
    (run_dir / "results.json").write_text(json.dumps(results))
    before = snapshot(existing_run)
    proc = cli("run", "aime2025", "--model", "mock", "-k", "2", "--data", str(aime_data), "--out", str(existing_run))
    assert proc.returncode == 2 and "different run" in proc.stderr
    assert snapshot(existing_run) == before


def test_a_corrupt_samples_file_is_reported_not_overwritten(tmp_path: Path, aime_data: Path, existing_run: Path):
    (run_dir,) = list(existing_run.iterdir())
    samples = run_dir / "samples.jsonl"
    lines = samples.read_text().splitlines()
    samples.write_text("\n".join([lines[0], "{garbage", *lines[1:]]) + "\n")
    before = snapshot(existing_run)
    proc = cli("run", "aime2025", "--model", "mock", "-k", "2", "--data", str(aime_data), "--out", str(existing_run))
    assert proc.returncode == 2 and "corrupt record" in proc.stderr
    assert snapshot(existing_run) == before


def test_api_key_never_reaches_a_file_run_report_or_baseline(tmp_path: Path, aime_data: Path):
    key = "sk-SECRET-7f3a9c1e-do-not-leak"
    with ChatServer(api_key=key) as server:
        proc = cli("run", "aime2025", "--model", "openai/m", "--base-url", server.url, "-k", "2",
                   "--data", str(aime_data), "--out", str(tmp_path / "runs"), env={"OPENAI_API_KEY": key})
        assert proc.returncode == 0, proc.stderr
        assert server.completions == 6  # the key was sent, and accepted
    (run_dir,) = list((tmp_path / "runs").iterdir())
    out = tmp_path / "out"
    out.mkdir()
    env = {"OPENAI_API_KEY": key}
    report = cli("report", str(run_dir), "--html", str(out / "r.html"), "--csv", str(out / "r.csv"),
                 "--md", str(out / "r.md"), env=env)
    assert report.returncode == 0, report.stderr
    baseline = cli("gate", "--write-baseline", str(run_dir), str(out / "baseline.json"), env=env)
    assert baseline.returncode == 0, baseline.stderr
    written = [p for root in (tmp_path / "runs", out) for p in root.rglob("*") if p.is_file()]
    assert len(written) >= 7
    for p in written:
        assert key.encode() not in p.read_bytes(), p
    for output in (proc, report, baseline):
        assert key not in output.stdout + output.stderr


def test_resume_refuses_what_would_change_the_measurement_and_takes_how_to_reach_the_model(
        tmp_path: Path, aime_data: Path, existing_run: Path, capsys):
    from evals.cli import main

    (run_dir,) = list(existing_run.iterdir())
    before = snapshot(existing_run)
    # only what differs from the saved settings is refused (the same task and model are not)
    cases = {"--samples": ["aime2025", "--samples", "8"], "--model, -T x": ["--model", "mock", "-T", "x=1"],
             "-O mock_text": ["-O", "mock_text=hi"], "--config": ["--config", str(tmp_path / "eval.toml")]}
    for named, extra in cases.items():
        assert main(["run", "--resume", str(run_dir), *extra]) == 2, extra
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"; {named} cannot change them" in err, err
    assert snapshot(existing_run) == before
    # how to reach the model may change; the run is the same one
    assert main(["run", "--resume", str(run_dir), "--concurrency", "2", "--timeout", "5", "--max-retries", "0",
                 "-O", "mock_delay=0", "--quiet"]) == 0
    assert json.loads((run_dir / "results.json").read_text())["spec"]["timeout"] == 5


def test_resume_never_trusts_remote_code_on_a_saved_setting_alone(tmp_path: Path, existing_run: Path, capsys):
    from evals.cli import main

    (run_dir,) = list(existing_run.iterdir())
    results = json.loads((run_dir / "results.json").read_text())
    results["spec"]["adapter_options"]["trust_remote_code"] = True  # e.g. a run dir someone else made
    (run_dir / "results.json").write_text(json.dumps(results))
    before = snapshot(existing_run)
    assert main(["run", "--resume", str(run_dir)]) == 2
    err = capsys.readouterr().err
    assert "was run with --trust-remote-code: give it again" in err and err.count("\n") == 1
    assert snapshot(existing_run) == before
