"""Tiny random-weight vision-language models for tests (DESIGN §11); also a dev script.

    python tests/tiny_vlm.py OUT_DIR [--step3]

`build_tiny_qwen_vl(dir)` writes a Qwen2.5-VL (native transformers classes, servable by vLLM):
a byte-level BPE trained here (vocab 1024, the Qwen special tokens first), a ChatML chat template
that puts image parts where they are, text hidden 64 with head_dim 32 (vLLM's CPU attention needs
at least 32), 2 layers, a 2-layer vision tower. About 1 MB; builds offline in seconds.

`build_tiny_text_lm(dir)` writes a text-only Qwen2 with the same tokenizer and template.

`build_tiny_step3_like(dir)` writes a remote-code model shaped like Step3-VL for the loading guards:
config `model_type` `step_robotics`, its own modeling file, weights saved with the hub's key layout
(`model.*`, `vision_model.*`, `vit_large_projector.*`, `lm_head.*`), a generation prompt that opens
`<think>`, and (like the real remote code) a forward pass that fails for a batch of more than one.
`layout="resaved"` writes the key names transformers 4.57 uses inside the model instead.

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


# ---- a Step3-VL-shaped remote-code model ------------------------------------------------------

STEP3_CONFIG_PY = '''
from transformers import Qwen2Config


class StepVLConfig(Qwen2Config):
    model_type = "step_robotics"

    def __init__(self, patch_dim=1176, vision_hidden=32, merge_tokens=4, image_token_id=0, **kwargs):
        self.patch_dim = patch_dim
        self.vision_hidden = vision_hidden
        self.merge_tokens = merge_tokens
        self.image_token_id = image_token_id
        super().__init__(**kwargs)
'''

STEP3_MODELING_PY = '''
import torch
from torch import nn
from transformers import GenerationMixin, PreTrainedModel, Qwen2Model
from transformers.modeling_outputs import CausalLMOutputWithPast

from .configuration_step_vl import StepVLConfig


class StepVLPreTrainedModel(PreTrainedModel):
    config_class = StepVLConfig
    base_model_prefix = "model"
    _supports_sdpa = True

    def _init_weights(self, module):
        if isinstance(module, (nn.Linear, nn.Embedding)):
            module.weight.data.normal_(0.0, self.config.initializer_range)
            if getattr(module, "bias", None) is not None:
                module.bias.data.zero_()


class PatchEncoder(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.proj = nn.Linear(config.patch_dim, config.vision_hidden)

    def forward(self, pixel_values):
        return torch.tanh(self.proj(pixel_values))


class StepVLModel(StepVLPreTrainedModel):
    def __init__(self, config):
        super().__init__(config)
        self.language_model = Qwen2Model(config)
        self.vision_model = PatchEncoder(config)
        self.vit_large_projector = nn.Linear(config.vision_hidden * config.merge_tokens, config.hidden_size)

    def get_input_embeddings(self, input_ids=None, pixel_values=None):
        embeds = self.language_model.embed_tokens(input_ids)
        if pixel_values is None or not (input_ids == self.config.image_token_id).any():
            return embeds
        if input_ids.shape[0] > 1:
            # The real Step3-VL remote code fails here for a batch of more than one.
            raise RuntimeError("StepVL get_input_embeddings supports batch size 1 only")
        feats = self.vision_model(pixel_values.to(embeds.dtype))
        feats = self.vit_large_projector(feats.reshape(-1, self.config.vision_hidden * self.config.merge_tokens))
        mask = (input_ids == self.config.image_token_id).unsqueeze(-1)
        return embeds.masked_scatter(mask, feats.to(embeds.dtype))


class StepVLForConditionalGeneration(StepVLPreTrainedModel, GenerationMixin):
    def __init__(self, config):
        super().__init__(config)
        self.model = StepVLModel(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()

    def get_input_embeddings(self):
        return self.model.language_model.embed_tokens

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, past_key_values=None,
                inputs_embeds=None, pixel_values=None, image_grid_thw=None, use_cache=None,
                cache_position=None, **kwargs):
        if inputs_embeds is None:
            inputs_embeds = self.model.get_input_embeddings(input_ids, pixel_values)
        out = self.model.language_model(
            inputs_embeds=inputs_embeds, attention_mask=attention_mask, position_ids=position_ids,
            past_key_values=past_key_values, use_cache=use_cache, cache_position=cache_position,
        )
        return CausalLMOutputWithPast(logits=self.lm_head(out.last_hidden_state), past_key_values=out.past_key_values)
'''

# Checkpoint key prefixes: transformers' internal names -> the hub's layout.
HUB_LAYOUT = {
    "model.language_model.": "model.",
    "model.vision_model.": "vision_model.",
    "model.vit_large_projector.": "vit_large_projector.",
}


def build_tiny_step3_like(out_dir: str | Path, layout: str = "hub", seed: int = 0) -> Path:
    """A remote-code model with Step3-VL's module layout; `layout` is "hub" or "resaved"."""
    from safetensors.torch import save_file

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "configuration_step_vl.py").write_text(STEP3_CONFIG_PY)
    (out / "modeling_step_vl.py").write_text(STEP3_MODELING_PY)
    processor = build_processor(open_think=True)
    ids = _token_ids(processor.tokenizer)
    config = {
        "model_type": "step_robotics",
        "architectures": ["StepVLForConditionalGeneration"],
        "auto_map": {
            "AutoConfig": "configuration_step_vl.StepVLConfig",
            "AutoModelForCausalLM": "modeling_step_vl.StepVLForConditionalGeneration",
        },
        **_text_dims(len(processor.tokenizer)),
        "patch_dim": 3 * 2 * 14 * 14,
        "vision_hidden": 32,
        "merge_tokens": 4,
        "image_token_id": ids["<|image_pad|>"],
        "eos_token_id": ids["eos"],
        "pad_token_id": ids["pad"],
        "torch_dtype": "float32",
    }
    (out / "config.json").write_text(json.dumps(config, indent=2))
    processor.save_pretrained(out)
    model = _instantiate_step3_like(out, seed)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    if layout == "hub":
        state = {_to_hub_key(k): v for k, v in state.items()}
    save_file(state, str(out / "model.safetensors"), metadata={"format": "pt"})
    return out


def _instantiate_step3_like(model_dir: Path, seed: int):
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(model_dir, trust_remote_code=True)
    torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(config, trust_remote_code=True).eval()


def _to_hub_key(key: str) -> str:
    for internal, hub in HUB_LAYOUT.items():
        if key.startswith(internal):
            return hub + key[len(internal) :]
    return key


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit("usage: python tests/tiny_vlm.py OUT_DIR [--step3]")
    target = Path(sys.argv[1])
    built = build_tiny_step3_like(target) if "--step3" in sys.argv else build_tiny_qwen_vl(target)
    print(built)
