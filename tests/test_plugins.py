"""Plugins: a task and an adapter from an installed package (entry points) and from one file.

The test writes a tiny plugin package, installs it with pip (no network: `--no-deps
--no-build-isolation`, setuptools from this venv) into a folder of its own, and puts that folder on
PYTHONPATH of the CLI subprocesses, where `importlib.metadata` finds its entry points exactly as in
an installed environment. Then the plugin runs end to end: list, run, resume, score, report, gate.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conftest import REPO, cli

TASK_MODULE = '''
"""A demo task: the model must repeat a word."""
from evals import metrics
from evals.types import GenParams, Message, Sample, Scored, Text


class EchoTask:
    name = "{name}"
    prompt_template = "Repeat: {{word}}"
    default_params = GenParams(max_tokens=16, temperature=0.0)
    default_repeats = 1

    def __init__(self, suffix: str = ""):
        self.suffix = suffix

    def load(self, data, split, limit):
        rows = [__import__("json").loads(line) for line in open(data, encoding="utf-8") if line.strip()]
        samples = [Sample(id=r["id"], messages=[Message("user", [Text("Repeat: " + r["word"] + self.suffix)])],
                          target=r["word"] + self.suffix, metadata={{"category": r["category"]}})
                   for r in rows]
        return samples[:limit] if limit else samples

    def score(self, sample, response):
        correct = response.text.strip() == sample.target
        return Scored(response.key, sample.id, 0, response.text.strip(), "answer_format", correct,
                      1.0 if correct else 0.0)

    def aggregate(self, samples, scored):
        return {{"metrics": {{"accuracy": metrics.accuracy(scored)}},
                 "breakdowns": {{"category": metrics.group_by(scored, samples, metrics.metadata_field("category"))}}}}


class NotATask:
    name = "demo_wrong"

    def load(self, data, split, limit):
        return []
'''

ADAPTER_MODULE = '''
"""A demo adapter: answers the word after "Repeat: "; `-O wrong_every=N` spoils every N-th sample,
and the environment variable ECHO_FAIL_ODD=1 makes odd-numbered samples fail (to test resume)."""
import os

from evals.types import Response, Usage


class EchoAdapter:
    def __init__(self, name, spec):
        self.wrong_every = int(spec.adapter_options.get("wrong_every", 0))
        self.sent = []

    def generate(self, requests, on_response=None):
        out = []
        for req in requests:
            self.sent.append(req.key)
            number = int(req.sample_id.lstrip("w"))
            if os.environ.get("ECHO_FAIL_ODD") == "1" and number % 2:
                resp = Response(key=req.key, error="demo failure")
            else:
                word = req.messages[-1].text().split("Repeat: ", 1)[1]
                if self.wrong_every and number % self.wrong_every == 0:
                    word = "nope"
                resp = Response(key=req.key, text=word, finish_reason="stop", usage=Usage(3, 1))
            out.append(resp)
            if on_response:
                on_response(resp)
        return out

    def close(self):
        pass


class NoGenerate:
    def __init__(self, name, spec):
        pass

    def close(self):
        pass
'''

PYPROJECT = '''
[build-system]
requires = ["setuptools>=61"]
build-backend = "setuptools.build_meta"

[project]
name = "s3v-demo-plugin"
version = "0.1.0"

[project.entry-points."step3vl_eval.tasks"]
demo_echo = "s3v_demo_plugin.task:EchoTask"
demo_wrong = "s3v_demo_plugin.task:NotATask"
demo_broken = "s3v_demo_plugin.broken:Task"

[project.entry-points."step3vl_eval.adapters"]
echo = "s3v_demo_plugin.adapter:EchoAdapter"
nogen = "s3v_demo_plugin.adapter:NoGenerate"

[tool.setuptools]
packages = ["s3v_demo_plugin"]
'''


@pytest.fixture(scope="module")
def plugin_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The plugin package, pip-installed into its own folder; the env that puts it on the path."""
    src = tmp_path_factory.mktemp("plugin_src")
    pkg = src / "s3v_demo_plugin"
    pkg.mkdir()
    (src / "pyproject.toml").write_text(PYPROJECT)
    (pkg / "__init__.py").write_text("")
    (pkg / "task.py").write_text(TASK_MODULE.format(name="demo_echo"))
    (pkg / "adapter.py").write_text(ADAPTER_MODULE)
    (pkg / "broken.py").write_text("import s3v_module_that_does_not_exist\n")
    target = tmp_path_factory.mktemp("plugin_site")
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                           "--no-index", "--target", str(target), str(src)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert list(target.glob("s3v_demo_plugin-0.1.0.dist-info/entry_points.txt"))
    return {"PYTHONPATH": os.pathsep.join([str(REPO), str(target)])}


def write_words(path: Path, n: int) -> Path:
    path.write_text("".join(json.dumps({"id": f"w{i}", "word": f"word{i}", "category": "ab"[i % 2]}) + "\n"
                            for i in range(n)))
    return path


def one_line_error(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 2, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    return lines[0]


def results(run_dir: Path) -> dict:
    return json.loads((run_dir / "results.json").read_text())


def test_list_shows_where_each_task_and_adapter_comes_from(plugin_env: dict[str, str]) -> None:
    done = cli("list", env=plugin_env)
    assert done.returncode == 0, done.stderr
    lines = {line.split()[0]: line for line in done.stdout.splitlines() if line.startswith("  ")}
    assert "built-in" in lines["mmmu"] and "built-in" in lines["openai"]
    assert "entry point (package s3v-demo-plugin 0.1.0)" in lines["demo_echo"]
    assert "entry point (package s3v-demo-plugin 0.1.0)" in lines["echo"]
    assert "demo_broken" in lines  # listed without being imported: its import error only hurts its runs


def test_installed_plugin_runs_resumes_reports_and_gates(plugin_env: dict[str, str], tmp_path: Path) -> None:
    data = write_words(tmp_path / "words.jsonl", 40)
    out = tmp_path / "runs"
    base = ["run", "demo_echo", "--model", "echo/demo", "--data", str(data), "--out", str(out), "--quiet"]

    first = cli(*base, env={**plugin_env, "ECHO_FAIL_ODD": "1"})
    assert first.returncode == 1, first.stderr  # half the requests failed: rerun to retry them
    (run_dir,) = out.iterdir()
    assert results(run_dir)["counts"]["errors"] == 20

    again = cli(*base, env=plugin_env)  # the same command resumes: only the 20 failed requests are sent
    assert again.returncode == 0, again.stderr
    assert "start: 20 requests to send, 20 already done" in (run_dir / "run.log").read_text()
    res = results(run_dir)
    assert res["status"] == "complete" and res["metrics"]["accuracy"]["value"] == 1.0
    assert set(res["breakdowns"]["category"]) == {"a", "b"}

    assert cli("score", str(run_dir), env=plugin_env).returncode == 0
    html, schema = tmp_path / "r.html", tmp_path / "r.json"
    rep = cli("report", str(run_dir), "--html", str(html), "--json", str(schema), env=plugin_env)
    assert rep.returncode == 0, rep.stderr
    assert "demo_echo" in html.read_text()
    doc = json.loads(schema.read_text())
    assert (doc["schema"], doc["schema_version"]) == ("step3vl-eval/results", 1)
    (entry,) = doc["runs"]
    assert entry["task"] == "demo_echo" and entry["status"] == "complete" and entry["headline"] == "accuracy"
    assert entry["metrics"]["accuracy"] == {k: res["metrics"]["accuracy"][k] for k in ("value", "ci", "n", "method")}
    assert entry["breakdowns"]["category"]["a"]["n"] == 20 and entry["counts"]["requests"] == 40
    assert run_dir.name.endswith("-" + entry["spec_hash"]) and entry["spec"] == res["spec"]
    stdout = cli("report", str(out), "--json", "-", env=plugin_env)  # a folder of run dirs, JSON on stdout
    assert stdout.returncode == 0 and json.loads(stdout.stdout)["runs"][0]["run_id"] == run_dir.name

    worse = cli(*base, "-O", "wrong_every=2", env=plugin_env)  # every other answer spoiled: a regression
    assert worse.returncode == 0, worse.stderr
    worse_dir = next(p for p in out.iterdir() if p != run_dir)
    gate = cli("gate", "--baseline", str(run_dir), "--current", str(worse_dir), env=plugin_env)
    assert gate.returncode == 1, gate.stdout + gate.stderr
    assert "demo_echo" in gate.stdout
    same = cli("gate", "--baseline", str(run_dir), "--current", str(run_dir), env=plugin_env)
    assert same.returncode == 0, same.stdout + same.stderr


@pytest.mark.parametrize("args, expected", [
    (["run", "demo_broken", "--model", "echo/x"], "cannot import s3v_demo_plugin.broken: ModuleNotFoundError"),
    (["run", "demo_wrong", "--model", "echo/x"], "not a Task (it lacks method score(), method aggregate()"),
    (["run", "demo_echo", "--model", "nogen/x"], "not an Adapter (it lacks generate()"),
    (["run", "demo_echo", "--model", "echo/x", "-T", "colour=red"], "bad task option"),
    (["run", "no_such_task", "--model", "echo/x"], "unknown task 'no_such_task'"),
])
def test_a_broken_plugin_is_one_line_and_exit_2(plugin_env: dict[str, str], tmp_path: Path, args: list[str],
                                                 expected: str) -> None:
    data = write_words(tmp_path / "words.jsonl", 2)
    line = one_line_error(cli(*args, "--data", str(data), "--out", str(tmp_path / "runs"), env=plugin_env))
    assert expected in line
    assert not (tmp_path / "runs").exists()


def test_task_file_and_model_file_run_and_resume_from_elsewhere(tmp_path: Path) -> None:
    plugin = tmp_path / "plugin"
    plugin.mkdir()
    (plugin / "my_task.py").write_text(TASK_MODULE.format(name="file_echo"))
    (plugin / "my_adapter.py").write_text(ADAPTER_MODULE)
    data = write_words(tmp_path / "words.jsonl", 6)
    out = tmp_path / "runs"
    model = f"file:{plugin / 'my_adapter.py'}:EchoAdapter"
    done = cli("run", "--task-file", "my_task.py:EchoTask", "-T", "suffix=!", "--model", model,
               "--data", str(data), "--out", str(out), "--quiet", cwd=plugin, env={"ECHO_FAIL_ODD": "1"})
    assert done.returncode == 1, done.stderr
    (run_dir,) = out.iterdir()
    assert run_dir.name.startswith("file_echo-EchoAdapter-sere-")
    spec = results(run_dir)["spec"]
    assert spec["task"] == "file_echo" and spec["task_file"] == f"{plugin / 'my_task.py'}:EchoTask"
    # --resume from another folder: the task file is found by its absolute path
    resumed = cli("run", "--resume", str(run_dir), "--quiet", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    res = results(run_dir)
    assert res["status"] == "complete" and res["metrics"]["accuracy"]["value"] == 1.0
    first = json.loads((run_dir / "samples.jsonl").read_text().splitlines()[0])
    assert first["target"] == "word0!"
    rescored = cli("score", str(run_dir), cwd=tmp_path)
    assert rescored.returncode == 0, rescored.stderr
    assert results(run_dir)["metrics"]["accuracy"]["value"] == 1.0

    bad = one_line_error(cli("run", "--task-file", str(plugin / "my_task.py:Missing"), "--model", "mock",
                             "--data", str(data), "--out", str(out)))
    assert "has no 'Missing'" in bad
    (plugin / "syntax.py").write_text("def broken(:\n")
    bad = one_line_error(cli("run", "--task-file", str(plugin / "syntax.py:X"), "--model", "mock", "--data", str(data)))
    assert "cannot import" in bad and "SyntaxError" in bad
