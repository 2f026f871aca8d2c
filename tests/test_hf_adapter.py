"""The hf adapter on real tiny models (tests/tiny_vlm.py): batching, sampling, limits, bad input.

Step3-VL, on its own remote code, is tested in tests/test_step3vl.py.

Random weights produce junk text: the tests assert on structure, token counts and determinism.
"""

from __future__ import annotations

import base64
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, cli
from evals.types import GenParams, Image, Message, Request, Response, RunSpec, Text, UserError

pytestmark = pytest.mark.hf
torch = pytest.importorskip("torch", reason="the hf extra is not installed (pip install 'step3vl-eval[hf]')")
pytest.importorskip("transformers", reason="the hf extra is not installed (pip install 'step3vl-eval[hf]')")

from model_adapters import hf  # noqa: E402
from model_adapters.hf import HFAdapter  # noqa: E402

# Tiny matrices gain nothing from a second thread, and on a shared 2-core machine OpenMP threads
# spin against the other processes (a step can take 20x longer).
torch.set_num_threads(1)
ONE_THREAD = {"OMP_NUM_THREADS": "1"}


def transformers_version() -> str:
    import transformers

    return transformers.__version__


def png(color: str, size: tuple[int, int] = (64, 48)) -> Image:
    from PIL import Image as PILImage

    buf = io.BytesIO()
    PILImage.new("RGB", size, color).save(buf, "PNG")
    return Image(b64=base64.b64encode(buf.getvalue()).decode(), mime="image/png")


def request(key: str, parts: list, max_tokens: int = 8, temperature: float = 0.0, seed: int | None = 0,
            **params) -> Request:
    gen = GenParams(max_tokens=max_tokens, temperature=temperature, seed=seed, **params)
    return Request(key, key.split("#")[0], 0, [Message("user", parts)], gen)


def mixed_requests(max_tokens: int = 8) -> list[Request]:
    """Image and text-only prompts of different lengths, two images in one, in no length order."""
    return [
        request("a#0", [png("red"), Text("What is shown?")], max_tokens),
        request("b#0", [Text("Count to ten, please, one number a line. " * 3)], max_tokens),
        request("c#0", [Text("Compare"), png("blue", (96, 64)), Text("with"), png("green")], max_tokens),
        request("d#0", [Text("Hi")], max_tokens),
        request("e#0", [png("white", (120, 90)), Text("Find the area of the triangle.")], max_tokens),
        request("f#0", [Text("Solve x + 1 = 2.")], max_tokens),
        request("g#0", [png("black"), Text("Which option is correct? A. 1 B. 2")], max_tokens),
    ]


def adapter(model_dir: Path, **options) -> HFAdapter:
    return HFAdapter(str(model_dir), RunSpec(task="t", model=f"hf/{model_dir}", adapter_options=options))


@pytest.fixture(scope="module")
def qwen(tiny_qwen_vl: Path) -> HFAdapter:
    return adapter(tiny_qwen_vl, batch_size=4)


def outputs(responses: list[Response]) -> list[tuple]:
    return [(r.key, r.reasoning, r.text, r.finish_reason, r.usage.prompt_tokens, r.usage.completion_tokens)
            for r in responses]


# ---- batching -------------------------------------------------------------------------------


def test_batched_greedy_output_equals_unbatched(tiny_qwen_vl: Path, qwen: HFAdapter) -> None:
    requests = mixed_requests()
    one_at_a_time = adapter(tiny_qwen_vl, batch_size=1).generate(requests)
    batched = qwen.generate(requests)
    assert all(r.error is None for r in batched), [r.error for r in batched]
    assert outputs(batched) == outputs(one_at_a_time)


def test_mixed_image_and_text_batches_answer_in_request_order_and_report_each(qwen: HFAdapter) -> None:
    requests = mixed_requests()
    seen: list[str] = []
    responses = qwen.generate(requests, on_response=lambda r: seen.append(r.key))
    assert [r.key for r in responses] == [r.key for r in requests]
    assert sorted(seen) == sorted(r.key for r in requests)
    assert all(r.latency > 0 and r.usage.completion_tokens > 0 for r in responses)


def test_batches_group_requests_of_similar_length() -> None:
    items = [hf.Prepared(i, request(f"k{i}#0", [Text("x")]), "p" * n) for i, n in enumerate([50, 3, 40, 4, 45, 5])]
    batches = hf.plan_batches(items, 3)
    assert [[len(it.prompt) for it in b] for b in batches] == [[3, 4, 5], [40, 45, 50]]


def image_token_mask_function(token_type_ids):  # or-mask shaped like Gemma3's image blocks
    def inner(batch_idx, head_idx, q_idx, kv_idx):
        return (token_type_ids[batch_idx, q_idx] == 1) & (token_type_ids[batch_idx, kv_idx] == 1)

    return inner


@pytest.mark.skipif(not transformers_version().startswith("4."), reason="transformers 5 builds masks without vmap")
@pytest.mark.parametrize("case", ["prefill", "decode", "sliding", "chunked", "image_or_mask"])
def test_broadcast_padding_mask_equals_the_transformers_mask(case: str) -> None:
    from transformers import masking_utils as mu

    hf.install_broadcast_padding_mask(__import__("transformers"))
    padding = torch.tensor([[0, 0, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1, 1], [0, 1, 1, 1, 1, 1, 1]], dtype=torch.bool)
    types = torch.tensor([[0, 0, 1, 1, 0, 0, 0], [0, 1, 1, 0, 0, 0, 0], [0, 0, 0, 1, 1, 1, 0]])
    mask_function, cache_position, kv_length = {
        "prefill": (mu.causal_mask_function, torch.arange(7), 7),
        "decode": (mu.causal_mask_function, torch.tensor([6]), 7),
        "sliding": (mu.sliding_window_causal_mask_function(3), torch.arange(7), 7),
        "chunked": (mu.chunked_causal_mask_function(2, torch.tensor([2, 0, 1])), torch.arange(7), 7),
        "image_or_mask": (mu.or_masks(mu.causal_mask_function, image_token_mask_function(types)), torch.arange(7), 7),
    }[case]
    args = dict(batch_size=3, cache_position=cache_position, kv_length=kv_length, mask_function=mask_function,
                attention_mask=padding, allow_is_causal_skip=False)
    ours = mu.ALL_MASK_ATTENTION_FUNCTIONS["sdpa"](**args)
    assert getattr(mu.ALL_MASK_ATTENTION_FUNCTIONS["sdpa"], "broadcasts", False)
    assert torch.equal(ours, mu.sdpa_mask_recent_torch(**args))


def test_prompt_tokens_count_the_expanded_image_tokens(qwen: HFAdapter) -> None:
    with_image, text_only = qwen.generate([
        request("i#0", [png("red", (56, 56)), Text("Describe.")]),
        request("t#0", [Text("Describe.")]),
    ])
    # 56x56 pixels -> 4x4 patches of 14 -> 2x2 merged tokens, plus <|vision_start|> and <|vision_end|>
    assert with_image.usage.prompt_tokens - text_only.usage.prompt_tokens == 4 + 2


# ---- limits and stops -----------------------------------------------------------------------


def test_max_tokens_is_respected_per_request_and_cut_reports_length(qwen: HFAdapter) -> None:
    requests = [request("short#0", [png("red"), Text("Go")], max_tokens=3),
                request("long#0", [Text("Go on")], max_tokens=11),
                request("mid#0", [Text("Go")], max_tokens=6)]
    responses = qwen.generate(requests)
    cut = [r for r in responses if r.finish_reason == "length"]
    assert cut, "random weights almost never stop within 3 tokens"
    for r, limit in zip(responses, [3, 11, 6]):
        assert r.usage.completion_tokens <= limit
        if r.finish_reason == "length":
            assert r.usage.completion_tokens == limit and r.truncated
            # the template opens no <think> here, yet a cut reply has no answer: it is all reasoning
            assert r.text == "" and r.reasoning


@pytest.fixture(scope="module")
def always_stops(tiny_qwen_vl: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model with a zeroed output layer: all logits tie, greedy picks token 0 (<|endoftext|>)."""
    from safetensors.torch import load_file, save_file

    out = tmp_path_factory.mktemp("always_stops")
    shutil.copytree(tiny_qwen_vl, out, dirs_exist_ok=True)
    weights = load_file(str(out / "model.safetensors"))
    weights["lm_head.weight"] = torch.zeros_like(weights["lm_head.weight"])
    save_file(weights, str(out / "model.safetensors"), metadata={"format": "pt"})
    return out


def test_stop_token_ends_generation_with_finish_stop(always_stops: Path) -> None:
    [r] = adapter(always_stops).generate([request("s#0", [png("red"), Text("Stop")], max_tokens=20)])
    assert (r.finish_reason, r.usage.completion_tokens, r.text, r.reasoning) == ("stop", 1, "", "")


def test_answer_is_split_from_thinking_at_the_last_think_end(qwen: HFAdapter) -> None:
    tok = qwen.tokenizer
    ids = tok.encode("first</think>more thought</think>The answer is 4", add_special_tokens=False)
    item = hf.Prepared(0, request("x#0", [Text("q")], max_tokens=100), "prompt")
    r = qwen._response(item, 7, ids + [tok.convert_tokens_to_ids("<|im_end|>")], 0.5)
    assert (r.reasoning, r.text, r.finish_reason) == ("first</think>more thought", "The answer is 4", "stop")
    assert (r.usage.prompt_tokens, r.usage.completion_tokens) == (7, len(ids) + 1)


# ---- sampling -------------------------------------------------------------------------------


def sampled(key: str, seed: int, **params) -> Request:
    return request(key, [png("red"), Text("Tell a story.")], max_tokens=12, temperature=1.0, seed=seed, **params)


def test_sampled_repeats_differ_and_a_seed_reproduces_whatever_the_batch(tiny_qwen_vl: Path, qwen: HFAdapter) -> None:
    first = qwen.generate([sampled("s#0", 1), sampled("s#1", 2), sampled("s#2", 3), request("other#0", [Text("x")])])
    again = adapter(tiny_qwen_vl, batch_size=1).generate([sampled("s#2", 3), sampled("s#0", 1)])
    texts = [r.reasoning for r in first[:3]]
    assert len(set(texts)) == 3, "repeats with distinct seeds must differ"
    assert [r.reasoning for r in again] == [texts[2], texts[0]]


def test_top_k_one_and_tiny_top_p_sample_the_greedy_token(qwen: HFAdapter) -> None:
    greedy, top_k, top_p = qwen.generate([
        request("g#0", [png("red"), Text("Tell a story.")], max_tokens=12),
        sampled("k#0", 7, top_k=1),
        sampled("p#0", 7, top_p=1e-9),
    ])
    assert greedy.reasoning == top_k.reasoning == top_p.reasoning


def test_text_only_model_answers_text_and_refuses_images_per_request(tmp_path: Path) -> None:
    from tiny_vlm import build_tiny_text_lm

    model = adapter(build_tiny_text_lm(tmp_path / "text_lm"), batch_size=4)
    text, with_image = model.generate([request("t#0", [Text("Solve x + 1 = 2.")]),
                                       request("i#0", [png("red"), Text("What is shown?")])])
    assert text.error is None and text.usage.completion_tokens > 0
    assert not model.takes_images and not hf.call_takes_images(model.processor)  # its processor is its tokenizer
    assert with_image.error == f"{tmp_path / 'text_lm'} takes no images (its processor takes no images: a text-only model)"


class ProcessorTakingImages:
    def __call__(self, text=None, images=None, **kwargs): ...


class TokenizerLike:
    def __call__(self, text, text_pair=None, **kwargs): ...


STEP3 = hf.REMOTE_CODE_PROFILES["step_robotics"]


@pytest.mark.parametrize("processor, config, profile, reason", [
    (ProcessorTakingImages(), {"model_type": "qwen2_5_vl", "vision_config": {}}, None, None),
    (ProcessorTakingImages(), {"model_type": "llava", "image_token_index": 32000}, None, None),
    (TokenizerLike(), {"model_type": "qwen2"}, None, "its processor takes no images: a text-only model"),
    (TokenizerLike(), {"model_type": "odd", "vision_config": {}}, None, "its processor takes no images: a text-only model"),
    (ProcessorTakingImages(), {"model_type": "qwen2"}, None, "its config describes no vision part: a text-only model"),
    (TokenizerLike(), {"model_type": "step_robotics"}, STEP3, None),  # the profile knows this model
])
def test_whether_a_model_takes_images_comes_from_what_it_is(processor, config, profile, reason) -> None:
    assert hf.no_images_reason(processor, config, profile) == reason


# ---- bad input ------------------------------------------------------------------------------


def test_unreadable_image_fails_that_request_only(qwen: HFAdapter, tmp_path: Path, capsys) -> None:
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"not a png")
    responses = qwen.generate([
        request("ok#0", [png("red"), Text("a")]),
        request("missing#0", [Image(path=str(tmp_path / "nope.png")), Text("b")]),
        request("corrupt#0", [Image(path=str(corrupt)), Text("c")]),
        request("ok2#0", [Text("d")]),
    ])
    errors = {r.key: r.error for r in responses}
    assert errors["ok#0"] is None and errors["ok2#0"] is None
    assert "nope.png" in errors["missing#0"] and "corrupt.png" in errors["corrupt#0"]
    assert capsys.readouterr().err.count("retrying it in smaller batches") == 1  # said once


@pytest.mark.parametrize("name, options, message", [
    ("/does/not/exist", {}, "model directory /does/not/exist does not exist"),
    ("some/where/deep", {}, "does not exist"),
    ("", {}, "needs a model"),
])
def test_bad_model_location_is_a_one_line_user_error(name: str, options: dict, message: str) -> None:
    with pytest.raises(UserError, match=message) as err:
        HFAdapter(name, RunSpec(task="t", model=f"hf/{name}", adapter_options=options))
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("options, message", [
    ({"dtype": "float8"}, "unknown dtype"),
    ({"batch_size": 0}, "batch_size must be a positive integer"),
])
def test_bad_options_are_user_errors(tiny_qwen_vl: Path, options: dict, message: str) -> None:
    with pytest.raises(UserError, match=message):
        adapter(tiny_qwen_vl, **options)


def test_dtype_auto_takes_the_checkpoint_dtype_and_runs_images(tiny_qwen_vl: Path) -> None:
    model = adapter(tiny_qwen_vl, dtype="auto")
    assert model.input_dtype == torch.float32  # the tiny checkpoint is saved in float32
    [r] = model.generate([request("a#0", [png("red"), Text("q")], max_tokens=2)])
    assert r.error is None and r.usage.completion_tokens == 2


def test_missing_torch_is_a_one_line_user_error() -> None:
    code = (
        "import sys; sys.modules['torch'] = None\n"  # what Python does when torch is not installed
        "from evals.types import RunSpec, UserError\n"
        "from model_adapters.hf import HFAdapter\n"
        "try:\n    HFAdapter('x/y', RunSpec(task='t', model='hf/x/y'))\n"
        "except UserError as e:\n    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert out.stdout.strip() == 'the hf adapter needs torch: pip install -e ".[hf]" in the project folder, as the README says'


# ---- Step3-VL: the version guard (the model itself, from its own remote code: tests/test_step3vl.py) --


@pytest.mark.parametrize("version, ok", [("4.57.6", True), ("4.57.1", True), ("4.56.2", False), ("5.0.0", False),
                                         ("5.19.0", False)])
def test_step3_runs_only_on_transformers_4_57(version: str, ok: bool) -> None:
    profile = hf.REMOTE_CODE_PROFILES["step_robotics"]
    if ok:
        hf.check_transformers_version(version, profile)
    else:
        with pytest.raises(UserError, match=r"transformers 4\.57\.x only .*pip install 'transformers==4\.57\.6'"):
            hf.check_transformers_version(version, profile)


# ---- through the CLI ------------------------------------------------------------------------


def test_cli_runs_mathvision_with_images_on_the_hf_adapter(tiny_qwen_vl: Path, mathvision_images: Path,
                                                           tmp_path: Path) -> None:
    data = mathvision_images
    proc = cli("run", "mathvision", "--model", f"hf/{tiny_qwen_vl}", "--data", str(data), "--out",
               str(tmp_path / "runs"), "--max-tokens", "6", "--batch-size", "2", env=ONE_THREAD, timeout=300)
    assert proc.returncode == 0, proc.stderr
    [run_dir] = (tmp_path / "runs").iterdir()
    result = json.loads((run_dir / "results.json").read_text())
    assert result["status"] == "complete"
    assert result["spec"]["adapter_options"]["batch_size"] == 2
    records = [json.loads(line) for line in (run_dir / "samples.jsonl").read_text().splitlines()]
    assert sorted(r["sample_id"] for r in records) == ["1", "2", "3"]
    for r in records:
        assert r["response"]["error"] is None
        assert r["response"]["usage"]["completion_tokens"] == 6
        assert r["response"]["usage"]["prompt_tokens"] > 20  # the prompt, image tokens included


def test_cli_names_the_flag_for_a_remote_code_model(tiny_step3vl: Path, aime_data: Path, tmp_path: Path) -> None:
    proc = cli("run", "aime2025", "--model", f"hf/{tiny_step3vl / 'tiny-hub'}", "--data", str(aime_data), "--out",
               str(tmp_path / "runs"), "--max-tokens", "4", env=ONE_THREAD, timeout=300)
    assert proc.returncode == 2
    [line] = proc.stderr.strip().splitlines()
    assert "pass --trust-remote-code" in line


def test_cli_model_dir_that_does_not_exist_is_one_line_exit_2(aime_data: Path, tmp_path: Path) -> None:
    proc = cli("run", "aime2025", "--model", f"hf/{tmp_path / 'no-such-model'}", "--data", str(aime_data),
               "--out", str(tmp_path / "runs"), env=ONE_THREAD)
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"step3vl-eval: error: model directory {tmp_path / 'no-such-model'} does not exist"
