"""Step3-VL on the hf adapter, through the model's own remote code (../shared/step3vl/build.py).

The `tiny_step3vl` fixture builds a tiny random-weight STEP3-VL-10B from the real remote code
(`Step3VL10BForCausalLM`, `Step3VLProcessor`, its vision encoder) in both tensor layouts. Random
weights produce junk: tests assert on structure, token counts and errors. Where a test needs a
reply that stops on its own with `...</think>answer`, `script_step3vl_reply` re-weights the same
model (same code, other weight values) so that it gives a known reply.
"""

from __future__ import annotations

import base64
import dataclasses
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from conftest import REPO, cli
from evals.types import GenParams, Image, Message, Request, RunSpec, Text, UserError

pytestmark = pytest.mark.hf
torch = pytest.importorskip("torch", reason="the hf extra is not installed (pip install 'step3vl-eval[hf]')")
pytest.importorskip("transformers", reason="the hf extra is not installed (pip install 'step3vl-eval[hf]')")

from model_adapters import hf  # noqa: E402
from model_adapters.hf import HFAdapter  # noqa: E402

torch.set_num_threads(1)  # tiny matrices; a second OpenMP thread only spins on the shared CPU
ONE_THREAD = {"OMP_NUM_THREADS": "1"}

# What Step3VLProcessor puts in the prompt per image (its hard-coded sizes): a 728 px global view is
# <im_start> + 169 <im_patch> + <im_end>; each 504 px crop is <patch_start> + 81 + <patch_end>, with
# a <patch_newline> between rows of crops. The chat template's own placeholder is one <im_patch>.
GLOBAL_VIEW = 169 + 2
CROP = 81 + 2
REPLY = "Think.</think>\\boxed{4}"  # distinct tokens in the tiny tokenizer (script_step3vl_reply needs that)


@pytest.fixture(scope="module")
def hub(tiny_step3vl: Path) -> Path:
    return tiny_step3vl / "tiny-hub"


@pytest.fixture(scope="module")
def internal(tiny_step3vl: Path) -> Path:
    return tiny_step3vl / "tiny-internal"


@pytest.fixture(scope="module")
def step3(hub: Path) -> HFAdapter:
    return adapter(hub)


@pytest.fixture(scope="module")
def scripted_hub(hub: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tiny_vlm import script_step3vl_reply

    return script_step3vl_reply(hub, tmp_path_factory.mktemp("scripted") / "tiny-hub", REPLY)


@pytest.fixture(scope="module")
def scripted_internal(internal: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tiny_vlm import script_step3vl_reply

    return script_step3vl_reply(internal, tmp_path_factory.mktemp("scripted") / "tiny-internal", REPLY)


def adapter(model_dir: Path, **options) -> HFAdapter:
    options.setdefault("trust_remote_code", True)
    return HFAdapter(str(model_dir), RunSpec(task="t", model=f"hf/{model_dir}", adapter_options=options))


def png(color: str, size: tuple[int, int] = (80, 60)) -> Image:
    from PIL import Image as PILImage

    buf = io.BytesIO()
    PILImage.new("RGB", size, color).save(buf, "PNG")
    return Image(b64=base64.b64encode(buf.getvalue()).decode(), mime="image/png")


def request(key: str, parts: list, max_tokens: int = 6, temperature: float = 0.0, seed: int = 0) -> Request:
    return Request(key, key.split("#")[0], 0, [Message("user", parts)],
                   GenParams(max_tokens=max_tokens, temperature=temperature, seed=seed))


# ---- images: decided from what the model is, counted in the prompt -------------------------------


def test_processor_without_an_image_processor_attribute_takes_images(step3: HFAdapter) -> None:
    assert not hasattr(step3.processor, "image_processor")  # Step3VLProcessor.attributes == ["tokenizer"]
    assert step3.takes_images and step3.no_images_reason is None
    assert hf.call_takes_images(step3.processor) and hf.has_vision_settings(hf.read_raw_config(
        step3.transformers, str(step3.name), step3.name))  # it would take images without its profile too


def test_prompt_tokens_count_the_global_view_and_the_crops(step3: HFAdapter) -> None:
    text, small, large, two = step3.generate([
        request("t#0", [Text("Describe.")]),
        request("s#0", [png("red"), Text("Describe.")]),
        request("l#0", [png("blue", (1024, 768)), Text("Describe.")]),
        request("m#0", [Text("Describe."), png("red"), png("green", (60, 80))]),
    ])
    assert [r.error for r in (text, small, large, two)] == [None] * 4
    base = text.usage.prompt_tokens
    assert small.usage.prompt_tokens - base == GLOBAL_VIEW  # 80x60: no crops
    # 1024x768: 4 crops of 504 px in 2 rows (one <patch_newline>) plus the global view
    assert large.usage.prompt_tokens - base == 4 * CROP + 1 + GLOBAL_VIEW == 504
    assert two.usage.prompt_tokens - base == 2 * GLOBAL_VIEW  # both images' tokens


# ---- batch 1, <think>, dtypes ----------------------------------------------------------------------


def test_runs_one_request_at_a_time_and_says_so_once(hub: Path, capsys) -> None:
    model = adapter(hub, batch_size=8)
    assert capsys.readouterr().err.count("cannot batch: running one request at a time") == 1
    assert model.batch_size == 1
    widths: list[int] = []
    model.model.model.language_model.register_forward_pre_hook(
        lambda _module, _args, kwargs: widths.append(kwargs["inputs_embeds"].shape[0]), with_kwargs=True)
    responses = model.generate([request(f"r{i}#0", [png("red"), Text(f"q{i}")]) for i in range(3)])
    assert [r.error for r in responses] == [None] * 3 and set(widths) == {1}
    # random weights never close </think>: a cut reply is all reasoning, no answer
    assert all(r.finish_reason == "length" and r.reasoning and r.text == "" for r in responses)


def test_a_forced_batch_fails_in_the_remote_code_and_every_request_still_answers(step3: HFAdapter, capsys,
                                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(step3, "batch_size", 3)  # as if the adapter did not know: get_input_embeddings squeezes dim 0
    monkeypatch.setattr(step3, "split_noted", False)
    responses = step3.generate([request(f"r{i}#0", [png("red"), Text(f"q{i}")]) for i in range(3)])
    assert [r.error for r in responses] == [None] * 3
    assert "retrying it in smaller batches" in capsys.readouterr().err


def test_generation_prompt_opens_think_and_the_reply_splits_at_its_end(scripted_hub: Path) -> None:
    model = adapter(scripted_hub)
    item = model._prepare(0, request("x#0", [png("red"), Text("What is 2+2?")]))
    assert item.prompt.endswith("<|im_start|>assistant\n<think>\n")
    greedy, sampled = model.generate([request("g#0", [png("red"), Text("What is 2+2?")], max_tokens=40),
                                      request("s#0", [Text("2+2?")], max_tokens=40, temperature=1.0, seed=3)])
    n_reply = len(model.tokenizer.encode(REPLY, add_special_tokens=False))
    for r in (greedy, sampled):
        assert (r.reasoning, r.text, r.finish_reason, r.error) == ("Think.", "\\boxed{4}", "stop", None)
        assert r.usage.completion_tokens == n_reply + 1  # the reply and <|im_end|>


@pytest.mark.parametrize("dtype", ["bfloat16", "float32"])
def test_dtype_reaches_the_weights_and_images_run(internal: Path, dtype: str) -> None:
    model = adapter(internal, dtype=dtype)
    assert model.model.dtype == getattr(torch, dtype) == model.input_dtype
    [r] = model.generate([request("a#0", [png("red", (1024, 768)), Text("q")], max_tokens=3)])
    assert r.error is None and r.usage.completion_tokens == 3


# ---- loading guards, on both tensor layouts --------------------------------------------------------


def test_without_the_flag_it_is_refused(hub: Path) -> None:
    with pytest.raises(UserError, match="pass --trust-remote-code") as err:
        adapter(hub, trust_remote_code=False)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("layout", ["tiny-hub", "tiny-internal"])
def test_both_layouts_load_with_every_weight_from_the_checkpoint(tiny_step3vl: Path, layout: str) -> None:
    from safetensors.torch import load_file

    model = adapter(tiny_step3vl / layout)  # output_loading_info: a missing/unexpected key would raise
    saved = load_file(str(tiny_step3vl / layout / "model.safetensors"))
    projector = saved.get("vit_large_projector.weight", saved.get("model.vit_large_projector.weight"))
    loaded = model.model.model.vit_large_projector.weight
    assert torch.equal(loaded.cpu(), projector.to(loaded.dtype))  # bf16 on a GPU: the checkpoint's values, cast


def with_mapping(monkeypatch: pytest.MonkeyPatch, mapping: dict[str, str] | None) -> None:
    profile = hf.REMOTE_CODE_PROFILES["step_robotics"]
    monkeypatch.setitem(hf.REMOTE_CODE_PROFILES, "step_robotics", dataclasses.replace(profile, key_mapping=mapping))


def test_without_the_key_mapping_the_hub_layout_stops_instead_of_running_random_weights(
        hub: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with_mapping(monkeypatch, None)
    with pytest.raises(UserError, match="missing keys.*unexpected keys.*newly initialised weights"):
        adapter(hub)


def test_model_card_mapping_on_the_internal_layout_stops_on_the_projector(
        internal: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with_mapping(monkeypatch, {  # the model card's rule lacks vit_large_projector in the lookahead
        r"^vision_model": "model.vision_model",
        r"^model(?!\.(language_model|vision_model))": "model.language_model",
        r"^vit_large_projector": "model.vit_large_projector",
    })
    with pytest.raises(UserError, match=r"missing keys \(e\.g\. model\.vit_large_projector"):
        adapter(internal)


def test_checkpoint_missing_a_tensor_stops_the_run(hub: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    broken = shutil.copytree(hub, tmp_path / "broken")
    weights = load_file(str(broken / "model.safetensors"))
    del weights["vit_large_projector.weight"]
    save_file(weights, str(broken / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(UserError, match=r"1 missing keys \(e\.g\. model\.vit_large_projector\.weight\)"):
        adapter(broken)


# ---- every task through the CLI ------------------------------------------------------------------


def write_aime(path: Path) -> Path:
    rows = [{"id": "a1", "problem": "What is $2+2$?", "answer": "4"}, {"id": "a2", "problem": "What is $3+4$?", "answer": "7"}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def png_bytes(color: str, size: tuple[int, int]) -> bytes:
    from PIL import Image as PILImage

    buf = io.BytesIO()
    PILImage.new("RGB", size, color).save(buf, "PNG")
    return buf.getvalue()


def write_mmmu(folder: Path) -> Path:
    from test_mmmu import hub_row, write_parquet

    folder.mkdir()
    return write_parquet(folder / "validation-00000-of-00001.parquet", [
        hub_row("validation_Math_1", "Compare <image 1> with <image 2>. Which is larger?", "['the first', 'the second']",
                "A", images={1: png_bytes("red", (90, 60)), 2: png_bytes("blue", (60, 90))}),
        hub_row("validation_Art_2", "Which colour is <image 1>?", "['red', 'green', 'blue']", "A",
                images={1: png_bytes("red", (64, 64))}),
    ])


def write_mmbench(path: Path) -> Path:
    from test_mmbench import build_rows, write_tsv

    return write_tsv(path, build_rows())


def run_dirs(out: Path) -> dict[str, Path]:
    return {json.loads((d / "results.json").read_text())["spec"]["task"]: d for d in out.iterdir()}


def records(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "samples.jsonl").read_text().splitlines()]


def template_tokens(model_dir: Path, prompt: list[dict]) -> tuple[int, int]:
    """(tokens of the rendered prompt with one placeholder per image, images): no processor involved."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    conversation = [{"role": m["role"], "content": [{"type": p["type"], "text": p.get("text", "")} for p in m["content"]]}
                    for m in prompt]
    text = tok.apply_chat_template(conversation, add_generation_prompt=True, tokenize=False)
    images = sum(p["type"] == "image" for m in prompt for p in m["content"])
    return len(tok(text)["input_ids"]), images


def assert_complete(run_dir: Path, n: int) -> list[dict]:
    result = json.loads((run_dir / "results.json").read_text())
    assert result["status"] == "complete" and result["counts"]["errors"] == 0, result["counts"]
    recs = records(run_dir)
    assert len(recs) == n and all(r["response"]["error"] is None for r in recs)
    return recs


@pytest.mark.slow
def test_cli_every_task_on_the_hub_layout(hub: Path, mathvision_images: Path, tmp_path: Path) -> None:
    data = {"aime2025": write_aime(tmp_path / "aime.jsonl"), "mathvision": mathvision_images,
            "mmmu": write_mmmu(tmp_path / "mmmu"), "mmbench_en": write_mmbench(tmp_path / "MMBench_DEV_EN_V11.tsv")}
    proc = cli("run", *data, "--model", f"hf/{hub}", "--trust-remote-code", "--dtype", "float32",
               *[a for task, path in data.items() for a in ("--data", f"{task}={path}")],
               "--limit", "1", "-k", "1", "--max-tokens", "4", "--out", str(tmp_path / "runs"), "--quiet",
               env=ONE_THREAD, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = run_dirs(tmp_path / "runs")
    assert sorted(runs) == sorted(data)
    assert_complete(runs["aime2025"], 1)
    for task, n in (("mathvision", 1), ("mmmu", 1), ("mmbench_en", 4)):  # MMBench: one question, 4 circular passes
        for rec in assert_complete(runs[task], n):
            text_tokens, images = template_tokens(hub, rec["prompt"])
            assert images >= 1
            # every image became its global view in the prompt the model saw (none of these crop)
            assert rec["response"]["usage"]["prompt_tokens"] == text_tokens + images * (GLOBAL_VIEW - 1)
    [two] = records(runs["mmmu"])
    assert template_tokens(hub, two["prompt"])[1] == 2  # both interleaved images counted above
    # 4 tokens each, or fewer where the random model emitted its stop token (it did on a GPU's numerics)
    usage = [(r["response"]["usage"]["completion_tokens"], r["response"]["finish_reason"])
             for t in runs for r in records(runs[t])]
    assert all(n == 4 if finish == "length" else finish == "stop" and 1 <= n <= 4 for n, finish in usage), usage


@pytest.mark.slow
def test_cli_pacore_on_mathvision_and_mmmu_internal_layout_bfloat16(
        scripted_internal: Path, mathvision_images: Path, tmp_path: Path) -> None:
    mmmu = write_mmmu(tmp_path / "mmmu")
    proc = cli("run", "mathvision", "mmmu", "--model", f"hf/{scripted_internal}", "--trust-remote-code",
               "--dtype", "bfloat16", "--mode", "pacore", "--pacore-widths", "2", "--data",
               f"mathvision={mathvision_images}", "--data", f"mmmu={mmmu}", "--limit", "1", "-k", "1",
               "--max-tokens", "16", "--out", str(tmp_path / "runs"), "--quiet", env=ONE_THREAD, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = run_dirs(tmp_path / "runs")
    for task in ("mathvision", "mmmu"):
        for rec in assert_complete(runs[task], 1):
            response = rec["response"]
            assert (response["reasoning"], response["text"], response["finish_reason"]) == ("Think.", "\\boxed{4}", "stop")
            first, synthesis = rec["response"]["trace"][0], rec["response"]["trace"][1]
            assert len(first["replies"]) == 2 and len(synthesis["replies"]) == 1
            text_tokens, images = template_tokens(scripted_internal, rec["prompt"])
            assert all(r["usage"]["prompt_tokens"] == text_tokens + images * (GLOBAL_VIEW - 1) for r in first["replies"])
            # the synthesis prompt keeps the images: more than the compacted replies' text alone
            assert synthesis["replies"][0]["usage"]["prompt_tokens"] > images * GLOBAL_VIEW + text_tokens
    mathvision = {r["sample_id"]: r for r in records(runs["mathvision"])}
    assert mathvision["1"]["scored"]["correct"]  # its answer is 4


def pacore_command(model: Path, data: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "evals.cli", "run", "mathvision", "--model", f"hf/{model}", "--trust-remote-code",
            "--mode", "pacore", "--pacore-widths", "2,2", "--data", str(data), "-k", "1", "--max-tokens", "16",
            "--out", str(out), "--quiet"]


def call_lines(calls: Path) -> list[dict]:
    """The whole lines of calls.jsonl (one being written, or torn by SIGKILL, is left out)."""
    parsed = []
    for line in calls.read_text().splitlines() if calls.exists() else []:
        try:
            parsed.append(json.loads(line))
        except ValueError:
            pass
    return parsed


@pytest.mark.slow
def test_cli_pacore_killed_mid_round_resumes_without_regenerating_finished_calls(
        scripted_hub: Path, mathvision_images: Path, tmp_path: Path) -> None:
    out = tmp_path / "runs"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", **ONE_THREAD}
    proc = subprocess.Popen(pacore_command(scripted_hub, mathvision_images, out), cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    round0 = 3 * 2  # problems x width
    calls, deadline = None, time.time() + 180
    while time.time() < deadline and proc.poll() is None:
        found = list(out.glob("*/calls.jsonl"))
        if found and len(call_lines(found[0])) >= 2:
            calls = found[0]
            break
        time.sleep(0.01)
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert calls is not None, f"no round-0 call finished (exit {proc.returncode}): {proc.stderr.read()[-2000:]}"
    before = call_lines(calls)
    assert 2 <= len(before) < round0 and {c["round"] for c in before} == {0}  # killed inside round 0
    assert not (calls.parent / "samples.jsonl").read_text().strip()

    again = subprocess.run(pacore_command(scripted_hub, mathvision_images, out), cwd=REPO, env=env,
                           capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    after = call_lines(calls)
    generated = Counter(c["cache_key"] for c in after)
    assert max(generated.values()) == 1  # no finished sub-call generated twice
    assert Counter(c["round"] for c in after) == {0: round0, 1: 3 * 2, 2: 3}
    recs = assert_complete(calls.parent, 3)
    cached = sum(r["cached"] for rec in recs for r in rec["response"]["trace"][0]["replies"])
    assert cached == len(before)
