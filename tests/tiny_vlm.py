"""Tiny random-weight vision-language models for tests (DESIGN §11); also a dev script.

    python tests/tiny_vlm.py OUT_DIR

`build_tiny_qwen_vl(dir)` writes a Qwen2.5-VL (native transformers classes, servable by vLLM):
a byte-level BPE trained here (vocab 1024, the Qwen special tokens first), a ChatML chat template
that puts image parts where they are, text hidden 64 with head_dim 32 (vLLM's CPU attention needs
at least 32), 2 layers, a 2-layer vision tower. About 1 MB; builds offline in seconds.

`build_tiny_text_lm(dir)` writes a text-only Qwen2 with the same tokenizer and template.

Step3-VL itself is not imitated here: the tests build a tiny one from the model's own remote code
(`../shared/step3vl/build.py`, the `tiny_step3vl` fixture). `script_step3vl_reply(dir, out, reply)`
re-weights such a model so that it gives a known reply (for `</think>` splitting and stops).

Random weights produce junk: assert on structure, lengths and determinism, never on content.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
]
THINK_TOKENS = ["<think>", "</think>"]  # ordinary added tokens: they survive skip_special_tokens

# Qwen2's pre-tokenizer split, so that transformers 4.x and 5.x tokenize the same way.
QWEN_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)

IMAGE_PART = "<|vision_start|><|image_pad|><|vision_end|>"


def chat_template(open_think: bool = False) -> str:
    """ChatML; image parts render where they sit among the text parts; `enable_thinking=True` (a
    chat-template argument) opens `<think>` in the generation prompt."""
    generation = "<|im_start|>assistant\n" + ("<think>\n" if open_think else "")
    return (
        "{%- for message in messages -%}"
        "{{- '<|im_start|>' + message['role'] + '\\n' -}}"
        "{%- if message['content'] is string -%}{{- message['content'] -}}"
        "{%- else -%}{%- for part in message['content'] -%}"
        "{%- if part['type'] == 'text' -%}{{- part['text'] -}}"
        "{%- elif part['type'] in ['image', 'image_url'] -%}{{- '" + IMAGE_PART + "' -}}"
        "{%- endif -%}{%- endfor -%}{%- endif -%}"
        "{{- '<|im_end|>\\n' -}}"
        "{%- endfor -%}"
        "{%- if add_generation_prompt -%}{{- '" + generation.replace("\n", "\\n") + "' -}}"
        # a per-request switch, as Qwen3's template has: `chat_template_kwargs` in the request sets it
        "{%- if enable_thinking is defined and enable_thinking -%}{{- '<think>\\n' -}}{%- endif -%}"
        "{%- endif -%}"
    )


def _corpus() -> list[str]:
    words = (
        "the a of to and in is it that for on with as what which how many find solve compute answer "
        "triangle circle square angle area length point line figure image shown below above left right "
        "value number integer sum product equal greater less option choose correct final because so "
        "therefore think step first then next last question problem cat dog red blue green 0 1 2 3 4 5 "
        "6 7 8 9 + - * / = ( ) [ ] { } \\boxed \\frac A. B. C. D. E. Final answer: x y z"
    ).split()
    lines = []
    for i in range(400):
        lines.append(" ".join(words[(i * k + 3) % len(words)] for k in range(1, 14)))
    return lines


def build_tokenizer():  # -> Qwen2TokenizerFast
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import Qwen2TokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN_SPLIT), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=1024,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_corpus(), trainer)
    fast = Qwen2TokenizerFast(
        tokenizer_object=tok,
        unk_token=None,
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=SPECIAL_TOKENS[1:],
        padding_side="left",
    )
    fast.add_tokens(THINK_TOKENS)
    return fast


def build_processor(open_think: bool = False):  # -> Qwen2_5_VLProcessor
    from transformers import Qwen2_5_VLProcessor, Qwen2VLImageProcessor
    from transformers.models.qwen2_vl.video_processing_qwen2_vl import Qwen2VLVideoProcessor

    # Few pixels -> at most 16 image tokens per image: fast on CPU, cheap for vLLM's profiling run.
    pixels = {"min_pixels": 28 * 28 * 4, "max_pixels": 28 * 28 * 16}
    image_processor = Qwen2VLImageProcessor(**pixels)
    video_processor = Qwen2VLVideoProcessor(**pixels)
    return Qwen2_5_VLProcessor(
        image_processor=image_processor,
        tokenizer=build_tokenizer(),
        video_processor=video_processor,
        chat_template=chat_template(open_think),
    )


def _text_dims(vocab_size: int) -> dict:
    return {
        "vocab_size": vocab_size,
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "num_key_value_heads": 1,
        "max_position_embeddings": 4096,
        "rms_norm_eps": 1e-6,
        "rope_theta": 10000.0,
        "tie_word_embeddings": False,
        "bos_token_id": None,
    }


def _token_ids(tokenizer) -> dict[str, int]:
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in ("<|image_pad|>", "<|video_pad|>", "<|vision_start|>", "<|vision_end|>")}
    ids["eos"] = tokenizer.convert_tokens_to_ids("<|im_end|>")
    ids["pad"] = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    return ids


def build_tiny_qwen_vl(out_dir: str | Path, seed: int = 0) -> Path:
    import torch
    from transformers import GenerationConfig, Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    out = Path(out_dir)
    processor = build_processor()
    ids = _token_ids(processor.tokenizer)
    text = _text_dims(len(processor.tokenizer))
    text["rope_scaling"] = {"type": "mrope", "rope_type": "default", "mrope_section": [4, 6, 6]}  # sums to head_dim/2
    text.update(eos_token_id=ids["eos"], pad_token_id=ids["pad"])
    config = Qwen2_5_VLConfig(
        text_config=text,
        vision_config={
            "depth": 2,
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_heads": 2,
            "out_hidden_size": 64,
            "fullatt_block_indexes": [1],
            "window_size": 112,
        },
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        eos_token_id=ids["eos"],
        pad_token_id=ids["pad"],
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = Qwen2_5_VLForConditionalGeneration(config).eval()
    model.generation_config = GenerationConfig(eos_token_id=[ids["eos"], ids["pad"]], pad_token_id=ids["pad"])
    model.save_pretrained(out)
    processor.save_pretrained(out)
    _fix_saved_config(out / "config.json", "Qwen2_5_VLForConditionalGeneration")
    return out


def _fix_saved_config(path: Path, architecture: str) -> None:
    """transformers 4.57 saves Qwen-VL's `architectures` inside `text_config` only; vLLM reads the
    top level and would otherwise take the model for an embedding model."""
    config = json.loads(path.read_text())
    config["architectures"] = [architecture]
    path.write_text(json.dumps(config, indent=2))


def build_tiny_text_lm(out_dir: str | Path, seed: int = 0) -> Path:
    """A text-only Qwen2 causal LM with the same tokenizer: AutoProcessor gives back its tokenizer."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    out = Path(out_dir)
    tokenizer = build_tokenizer()
    tokenizer.chat_template = chat_template()
    ids = _token_ids(tokenizer)
    config = Qwen2Config(**_text_dims(len(tokenizer)), eos_token_id=ids["eos"], pad_token_id=ids["pad"])
    torch.manual_seed(seed)
    Qwen2ForCausalLM(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


# ---- the tiny Step3-VL (../shared/step3vl/build.py) made to give a known reply --------------------


def script_step3vl_reply(model_dir: str | Path, out_dir: str | Path, reply: str, strength: float = 60.0) -> Path:
    """A copy of a tiny Step3-VL whose greedy (and, at temperature 1, almost surely sampled) reply is
    `reply` followed by `<|im_end|>`, whatever the prompt and images.

    The model's own code and processor run unchanged; only weight values differ. Every attention
    output and MLP down-projection is zeroed, so the last hidden state is the normalised embedding of
    the last token alone; the chain's tokens get orthogonal embeddings and `lm_head` maps each to the
    next one. The chain starts at the generation prompt's last token (the `\\n` after `<think>`);
    its tokens must be distinct. Random weights never reach `</think>`: this is how the tests see a
    real `...</think>answer` reply stop on its own.
    """
    import shutil

    import torch
    from safetensors.torch import load_file, save_file
    from transformers import AutoTokenizer

    src, out = Path(model_dir), Path(out_dir)
    shutil.copytree(src, out, dirs_exist_ok=True)
    tokenizer = AutoTokenizer.from_pretrained(src)
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": [{"type": "text", "text": "q"}]}],
                                           add_generation_prompt=True, tokenize=False)
    start = tokenizer.encode(prompt, add_special_tokens=False)[-1]
    chain = [start] + tokenizer.encode(reply, add_special_tokens=False) + [tokenizer.convert_tokens_to_ids("<|im_end|>")]
    if len(set(chain)) != len(chain):
        raise ValueError(f"the reply's tokens repeat (or repeat the prompt's last token): {chain}")
    weights = load_file(str(out / "model.safetensors"))
    decoder = "model.language_model." if "model.language_model.norm.weight" in weights else "model."
    hidden = weights[decoder + "norm.weight"].shape[0]
    if len(chain) > hidden:
        raise ValueError(f"a reply of {len(chain) - 1} tokens needs more than the model's {hidden} dimensions")
    for name in weights:
        if name.endswith(("self_attn.o_proj.weight", "mlp.down_proj.weight")):
            weights[name] = torch.zeros_like(weights[name])
    weights[decoder + "norm.weight"] = torch.ones(hidden)
    embed, head = weights[decoder + "embed_tokens.weight"], torch.zeros_like(weights["lm_head.weight"])
    for dim, (token, successor) in enumerate(zip(chain, chain[1:])):
        embed[token] = torch.zeros(hidden)
        embed[token, dim] = 1.0  # RMS-normalised to sqrt(hidden) on that one dimension
        head[successor, dim] = strength / hidden ** 0.5
    weights["lm_head.weight"] = head
    save_file(weights, str(out / "model.safetensors"), metadata={"format": "pt"})
    return out


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit("usage: python tests/tiny_vlm.py OUT_DIR")
    print(build_tiny_qwen_vl(Path(sys.argv[1])))
