"""Local models through transformers: `--model hf/ID_OR_DIR`.

- Loads `AutoProcessor` and the model class the checkpoint calls for: image-text-to-text when
  transformers knows the architecture, else the class its remote code names (Step3-VL: a causal LM).
- Batches with left padding, grouping requests of similar length (`batch_size`, default 8); a
  batch that fails is split and retried, and a single request that fails becomes an error record.
- Sampling is done per row with the request's own seed (a logits processor that samples and hands
  greedy decoding a one-hot row), so repeats differ, a rerun reproduces them, and a request's
  output does not depend on which batch it landed in. Temperature 0 means greedy.
- Generation settings are exactly the request's (max tokens, temperature, top_p, top_k); the
  model's own `generation_config` sampling defaults are not applied, only its stop tokens.
- Whether a model takes images is decided from what it is (`no_images_reason`): a remote-code
  profile, else a processor whose call takes `images` and a config with vision settings. A request
  with images for a text-only model fails alone, with one line saying why.
- A missing or unreadable image fails that request (an error record, retried by `--resume`), not
  the run.
- Every checkpoint is loaded with `output_loading_info=True`: a missing, unexpected or mismatched
  weight stops the run, because transformers would otherwise initialise it randomly and only warn.

Step3-VL (DESIGN §5) runs only with `--trust-remote-code`, on transformers 4.57.x, with the weight
key mapping below and one request at a time (its remote code cannot batch).
"""

from __future__ import annotations

import gc
import hashlib
import io
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from evals.extract import split_output
from evals.types import GenParams, Image, Message, Request, Response, RunSpec, Text, Usage, UserError

DEFAULT_BATCH_SIZE = 8
CHATML_STOPS = ("<|im_end|>", "<|endoftext|>")
INSTALL_HINT = 'pip install -e ".[hf]" in the project folder, as the README says'

# Hub checkpoint names -> the module names transformers 4.57 builds. The projector must be in the
# lookahead: without it a checkpoint re-saved by transformers (internal names) loads with the vision
# projector newly initialised, and text-only answers still look right.
STEP3_KEY_MAPPING = {
    r"^vision_model": "model.vision_model",
    r"^model(?!\.(language_model|vision_model|vit_large_projector))": "model.language_model",
    r"^vit_large_projector": "model.vit_large_projector",
}


@dataclass(frozen=True)
class RemoteCodeProfile:
    """What a known remote-code model needs from this adapter."""

    label: str
    key_mapping: dict[str, str] | None
    max_batch: int | None
    takes_images: bool
    transformers_range: tuple[str, str]  # [lowest, below)
    transformers_pin: str


REMOTE_CODE_PROFILES = {
    "step_robotics": RemoteCodeProfile("Step3-VL", STEP3_KEY_MAPPING, 1, True, ("4.57", "4.58"), "transformers==4.57.6"),
}


@dataclass
class Prepared:
    """One request rendered through the chat template; images are decoded only when its batch runs."""

    index: int
    request: Request
    prompt: str
    images: list[Image] = field(default_factory=list)


class HFAdapter:
    def __init__(self, name: str, spec: RunSpec):
        self.torch, self.transformers = import_backend()
        opts = spec.adapter_options
        self.name = name
        self.base_seed = spec.seed
        self.trust_remote_code = bool(opts.get("trust_remote_code", False))
        self.allow_unused_weights = bool(opts.get("allow_unused_weights", False))
        location = resolve_model(name)
        raw_config = read_raw_config(self.transformers, location, name)
        self.profile = REMOTE_CODE_PROFILES.get(raw_config.get("model_type", ""))
        check_remote_code(self.transformers, raw_config, name, self.trust_remote_code, self.profile)
        self.dtype = parse_dtype(self.torch, opts.get("dtype"))
        self.batch_size = positive_int(opts.get("batch_size", DEFAULT_BATCH_SIZE), "batch_size")
        if self.profile and self.profile.max_batch and self.batch_size > self.profile.max_batch:
            say(f"{self.profile.label}'s remote code cannot batch: running one request at a time")
            self.batch_size = self.profile.max_batch
        device_map = opts.get("device_map") or ("auto" if self.torch.cuda.is_available() else None)
        self.processor = load_processor(self.transformers, location, name, self.trust_remote_code)
        self.tokenizer = getattr(self.processor, "tokenizer", self.processor)
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        install_broadcast_padding_mask(self.transformers)
        self.model = self._load_model(location, raw_config, device_map)
        self.device = self.model.device
        self.input_dtype = self.model.dtype  # what pixel values are cast to (`--dtype auto` included)
        self.stop_ids = stop_token_ids(self.model, self.tokenizer)
        self.no_images_reason = no_images_reason(self.processor, raw_config, self.profile)
        self.takes_images = self.no_images_reason is None
        self.split_noted = False

    # ---- loading --------------------------------------------------------------------------

    def _load_model(self, location: str, raw_config: dict[str, Any], device_map: str | None) -> Any:
        cls = model_class(self.transformers, raw_config, self.trust_remote_code)
        kwargs: dict[str, Any] = {
            "dtype": self.dtype,
            "trust_remote_code": self.trust_remote_code,
            "output_loading_info": True,
        }
        if device_map:
            kwargs["device_map"] = device_map
        if self.profile and self.profile.key_mapping:
            kwargs["key_mapping"] = self.profile.key_mapping
        verbosity = self.transformers.logging.get_verbosity()
        self.transformers.logging.set_verbosity_error()  # the loading info is checked below instead
        try:
            model, info = cls.from_pretrained(location, **kwargs)
        except (OSError, ValueError, ImportError) as exc:
            raise UserError(f"cannot load the model {self.name}: {first_line(exc)}") from None
        finally:
            self.transformers.logging.set_verbosity(verbosity)
        check_loading_info(info, self.name, self.allow_unused_weights)
        return model.eval()

    # ---- generation -----------------------------------------------------------------------

    def generate(self, requests: list[Request], on_response: Callable[[Response], None] | None = None) -> list[Response]:
        results: list[Response | None] = [None] * len(requests)
        prepared: list[Prepared] = []
        for i, request in enumerate(requests):
            try:
                prepared.append(self._prepare(i, request))
            except UserError as exc:
                self._deliver(results, i, Response(request.key, error=str(exc)), on_response)
        for batch in plan_batches(prepared, self.batch_size):
            for item, response in zip(batch, self._run_batch(batch)):
                self._deliver(results, item.index, response, on_response)
        return [r for r in results if r is not None]

    def close(self) -> None:
        self.model = None
        gc.collect()
        if self.torch.cuda.is_available():
            self.torch.cuda.empty_cache()

    @staticmethod
    def _deliver(results: list[Response | None], index: int, response: Response,
                 on_response: Callable[[Response], None] | None) -> None:
        results[index] = response
        if on_response is not None:
            on_response(response)

    def _prepare(self, index: int, request: Request) -> Prepared:
        images = [p for m in request.messages for p in m.content if isinstance(p, Image)]
        if images and not self.takes_images:
            raise UserError(f"{self.name} takes no images ({self.no_images_reason})")
        conversation = to_conversation(request.messages, parts=self.takes_images)
        try:
            prompt = self.processor.apply_chat_template(conversation, add_generation_prompt=True, tokenize=False)
        except Exception as exc:  # a template error concerns this request's messages only
            raise UserError(f"chat template failed: {first_line(exc)}") from None
        return Prepared(index, request, prompt, images)

    def _run_batch(self, batch: list[Prepared]) -> list[Response]:
        started = time.perf_counter()
        try:
            images = [decode_image(img) for item in batch for img in item.images]
            tokens = self._generate_tokens(batch, images)
        except UserError as exc:  # an unreadable image
            return self._split_or_fail(batch, str(exc))
        except Exception as exc:
            return self._split_or_fail(batch, f"generation failed: {first_line(exc)}")
        latency = time.perf_counter() - started
        return [self._response(item, prompt_len, row, latency) for item, (prompt_len, row) in zip(batch, tokens)]

    def _split_or_fail(self, batch: list[Prepared], error: str) -> list[Response]:
        """A failed batch is retried in halves, so that one bad request fails alone."""
        if len(batch) == 1:
            return [Response(batch[0].request.key, error=error)]
        if not self.split_noted:
            say(f"a batch of {len(batch)} failed ({error}); retrying it in smaller batches")
            self.split_noted = True
        half = len(batch) // 2
        return self._run_batch(batch[:half]) + self._run_batch(batch[half:])

    def _generate_tokens(self, batch: list[Prepared], images: list[Any]) -> list[tuple[int, list[int]]]:
        torch = self.torch
        texts = [item.prompt for item in batch]
        call: dict[str, Any] = {"text": texts, "return_tensors": "pt", "padding": True, "add_special_tokens": False}
        if images:
            call["images"] = images
        inputs = self.processor(**call)
        inputs = {k: move(v, self.device, self.input_dtype, torch) for k, v in inputs.items()}
        params = [item.request.params for item in batch]
        seeds = [request_seed(item.request, self.base_seed) for item in batch]
        config = self.transformers.GenerationConfig(
            max_new_tokens=max(p.max_tokens for p in params),
            do_sample=False,  # RowSampler below samples; greedy then picks its one-hot choice
            eos_token_id=self.stop_ids,
            pad_token_id=self.tokenizer.pad_token_id,
        )
        sampler = RowSampler(torch, params, seeds)
        with torch.inference_mode():
            out = self.model.generate(
                **inputs,
                generation_config=config,
                logits_processor=self.transformers.LogitsProcessorList([sampler]),
            )
        prompt_width = inputs["input_ids"].shape[1]
        prompt_lens = inputs["attention_mask"].sum(dim=1).tolist()
        return [(int(n), row[prompt_width:].tolist()) for n, row in zip(prompt_lens, out)]

    def _response(self, item: Prepared, prompt_len: int, generated: list[int], latency: float) -> Response:
        limit = item.request.params.max_tokens
        ids = generated[:limit]
        stop_at = next((i for i, t in enumerate(ids) if t in self.stop_ids), None)
        finish = "length" if stop_at is None else "stop"
        kept = ids if stop_at is None else ids[:stop_at]
        raw = self.tokenizer.decode(kept, skip_special_tokens=True)
        reasoning, text = split_output(raw, finish)
        completion = len(ids) if stop_at is None else stop_at + 1
        return Response(item.request.key, text=text, reasoning=reasoning, finish_reason=finish,
                        usage=Usage(prompt_len, completion), latency=latency)


# ---- sampling -------------------------------------------------------------------------------


class RowSampler:
    """Samples each row with its own temperature/top_p/top_k and seeded generator.

    Returns logits that are -inf except at the chosen token, so greedy decoding emits exactly the
    sampled token. transformers samples a batch from one global RNG; this keeps every request
    reproducible whatever batch it runs in.
    """

    def __init__(self, torch: Any, params: list[GenParams], seeds: list[int]):
        self.torch = torch
        self.params = params
        self.seeds = seeds
        self.generators: list[Any] = []

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        torch = self.torch
        if not self.generators:
            self.generators = [torch.Generator(device=scores.device).manual_seed(s) for s in self.seeds]
        choice = torch.empty(scores.shape[0], dtype=torch.long, device=scores.device)
        for row, (p, gen) in enumerate(zip(self.params, self.generators)):
            choice[row] = sample_token(torch, scores[row].float(), p, gen)
        out = torch.full_like(scores, -math.inf)
        out.scatter_(1, choice.unsqueeze(1), 0.0)
        return out


def sample_token(torch: Any, logits: Any, p: GenParams, generator: Any) -> Any:
    if p.temperature <= 0:
        return logits.argmax()
    logits = logits / p.temperature
    if p.top_k and p.top_k > 0 and p.top_k < logits.shape[-1]:
        kth = torch.topk(logits, p.top_k).values[-1]
        logits = logits.masked_fill(logits < kth, -math.inf)
    probs = torch.softmax(logits, dim=-1)
    if p.top_p < 1.0:
        sorted_probs, order = torch.sort(probs, descending=True)
        outside = (sorted_probs.cumsum(-1) - sorted_probs) > p.top_p  # the top token always stays
        sorted_probs = sorted_probs.masked_fill(outside, 0.0)
        probs = torch.zeros_like(probs).scatter_(-1, order, sorted_probs)
    return torch.multinomial(probs, 1, generator=generator)[0]


def request_seed(request: Request, base_seed: int) -> int:
    if request.params.seed is not None:
        return int(request.params.seed) % 2**63
    digest = hashlib.sha256(f"{base_seed}:{request.key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % 2**63


# ---- batching -------------------------------------------------------------------------------


def plan_batches(items: list[Prepared], batch_size: int) -> list[list[Prepared]]:
    """Group requests of one max_tokens and similar prompt length, so padding and tails stay short."""
    ordered = sorted(items, key=lambda it: (it.request.params.max_tokens, len(it.images), len(it.prompt)))
    batches: list[list[Prepared]] = []
    for item in ordered:
        last = batches[-1] if batches else None
        if last and len(last) < batch_size and last[0].request.params.max_tokens == item.request.params.max_tokens:
            last.append(item)
        else:
            batches.append([item])
    return batches


def to_conversation(messages: list[Message], parts: bool) -> list[dict[str, Any]]:
    """Chat-template input: list-of-parts content in every message for a processor (Step3-VL's
    remote processor raises on a plain string), a plain string for a text-only tokenizer."""
    conversation = []
    for m in messages:
        if not parts:
            conversation.append({"role": m.role, "content": m.text()})
            continue
        content = [
            {"type": "text", "text": p.text} if isinstance(p, Text) else {"type": "image"} for p in m.content
        ]
        conversation.append({"role": m.role, "content": content})
    return conversation


def decode_image(image: Image) -> Any:
    from PIL import Image as PILImage

    data = image.read_bytes()
    try:
        with PILImage.open(io.BytesIO(data)) as img:
            return img.convert("RGB")
    except Exception as exc:  # PIL raises several types for corrupt data
        where = image.path or "inline image"
        raise UserError(f"cannot decode image {where}: {first_line(exc)}") from None


def move(value: Any, device: Any, dtype: Any, torch: Any) -> Any:
    if not isinstance(value, torch.Tensor):
        return value
    if torch.is_floating_point(value):
        return value.to(device=device, dtype=dtype)
    return value.to(device=device)


# ---- attention masks of padded batches (transformers 4.x) ---------------------------------------


def install_broadcast_padding_mask(transformers: Any) -> None:
    """Build padded-batch attention masks by broadcasting instead of torch.vmap (transformers 4.x).

    transformers 4.57 evaluates the mask function with vmap at every decoding step; for a padded
    batch on a small model that costs more than the forward pass itself (60% of a batch-8 step of
    the tiny test model), which is what makes batching pay. Broadcasting the same mask function
    gives the same mask (tests/test_hf_adapter.py compares them); a function that cannot be
    broadcast, and every unpadded batch, goes through transformers' own code. transformers 5 does
    not use vmap here, so nothing is installed there.
    """
    from packaging.version import Version

    if Version(transformers.__version__).major >= 5:
        return
    from transformers import masking_utils

    original = masking_utils.sdpa_mask
    if getattr(original, "broadcasts", False):
        return

    def sdpa_mask(batch_size: int, cache_position: Any, kv_length: int, kv_offset: int = 0,
                  mask_function: Callable = masking_utils.causal_mask_function, attention_mask: Any = None,
                  **kwargs: Any) -> Any:
        def fallback() -> Any:
            return original(batch_size=batch_size, cache_position=cache_position, kv_length=kv_length,
                            kv_offset=kv_offset, mask_function=mask_function, attention_mask=attention_mask, **kwargs)

        if attention_mask is None or bool(attention_mask.all()):
            return fallback()  # no padding: transformers may skip the mask altogether
        padding = masking_utils.prepare_padding_mask(attention_mask, kv_length, kv_offset, _slice=False)
        combined = masking_utils.and_masks(mask_function, masking_utils.padding_mask_function(padding))
        device = cache_position.device
        batch = masking_utils.torch.arange(batch_size, device=device).view(-1, 1, 1, 1)
        head = masking_utils.torch.zeros(1, dtype=batch.dtype, device=device).view(1, -1, 1, 1)
        kv = (masking_utils.torch.arange(kv_length, device=device) + kv_offset).view(1, 1, 1, -1)
        try:
            mask = combined(batch, head, cache_position.view(1, 1, -1, 1), kv)
        except Exception:  # a mask function written for scalars only
            return fallback()
        return mask.expand(batch_size, 1, cache_position.shape[0], kv_length)

    sdpa_mask.broadcasts = True  # type: ignore[attr-defined]
    transformers.AttentionMaskInterface.register("sdpa", sdpa_mask)


# ---- loading helpers ------------------------------------------------------------------------


def import_backend() -> tuple[Any, Any]:
    try:
        import torch
    except ImportError:
        raise UserError(f"the hf adapter needs torch: {INSTALL_HINT}") from None
    try:
        import transformers
    except ImportError:
        raise UserError(f"the hf adapter needs transformers: {INSTALL_HINT}") from None
    return torch, transformers


def resolve_model(name: str) -> str:
    if not name:
        raise UserError("the hf adapter needs a model: --model hf/HUB_ID or hf/LOCAL_DIR")
    path = Path(name).expanduser()
    if path.is_dir():
        return str(path)
    if path.exists():
        raise UserError(f"model path {name} is a file; pass the model's directory")
    if name.startswith(("/", ".", "~")) or name.count("/") != 1:
        raise UserError(f"model directory {name} does not exist")
    return name  # a hub id: transformers finds it in the cache (or downloads it when online)


def read_raw_config(transformers: Any, location: str, name: str) -> dict[str, Any]:
    """config.json as a dict, read without running any of the model's own code."""
    try:
        raw, _ = transformers.PretrainedConfig.get_config_dict(location)
    except OSError as exc:
        raise UserError(f"cannot load the model {name}: {first_line(exc)}") from None
    return raw


def check_remote_code(transformers: Any, raw: dict[str, Any], name: str, trusted: bool,
                      profile: RemoteCodeProfile | None) -> None:
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    model_type = raw.get("model_type", "")
    needs_code = bool(raw.get("auto_map")) and model_type not in CONFIG_MAPPING
    if needs_code and not trusted:
        raise UserError(f"{name} runs its own Python code: pass --trust-remote-code to allow it (only for a model you trust)")
    if profile is not None:
        check_transformers_version(transformers.__version__, profile)


def check_transformers_version(version: str, profile: RemoteCodeProfile) -> None:
    from packaging.version import Version

    low, below = profile.transformers_range
    if not Version(low) <= Version(version) < Version(below):
        raise UserError(
            f"{profile.label}'s remote code runs on transformers {low}.x only (installed: {version}): "
            f"pip install '{profile.transformers_pin}'"
        )


def load_processor(transformers: Any, location: str, name: str, trusted: bool) -> Any:
    try:
        return transformers.AutoProcessor.from_pretrained(location, trust_remote_code=trusted)
    except (OSError, ValueError, ImportError) as exc:
        raise UserError(f"cannot load the processor of {name}: {first_line(exc)}") from None


def no_images_reason(processor: Any, raw: dict[str, Any], profile: RemoteCodeProfile | None) -> str | None:
    """None when the model takes images, else why not, decided from what the model is.

    A known remote-code model says so in its profile. Otherwise both must hold: the processor's
    call takes `images` (a text-only model's AutoProcessor is its tokenizer, whose call does not),
    and the config describes a vision part. Attribute names prove nothing: Step3-VL's processor has
    no `image_processor` attribute, yet it takes images.
    """
    if profile is not None:
        return None if profile.takes_images else f"{profile.label} is a text-only model"
    if not call_takes_images(processor):
        return "its processor takes no images: a text-only model"
    if not has_vision_settings(raw):
        return "its config describes no vision part: a text-only model"
    return None


def call_takes_images(processor: Any) -> bool:
    import inspect

    try:
        params = inspect.signature(processor.__call__).parameters
    except (TypeError, ValueError):
        return False
    return "images" in params


def has_vision_settings(raw: dict[str, Any]) -> bool:
    """A vision tower's config or image-token settings (vision_config, image_token_id, ...)."""
    return any("vision" in key or "image" in key or "visual" in key for key in raw)


def model_class(transformers: Any, raw: dict[str, Any], trusted: bool) -> Any:
    auto_map = raw.get("auto_map") or {}
    if trusted and auto_map:
        for cls_name in ("AutoModelForImageTextToText", "AutoModelForVision2Seq", "AutoModelForCausalLM"):
            if cls_name in auto_map and hasattr(transformers, cls_name):
                return getattr(transformers, cls_name)
    from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES

    if raw.get("model_type") in MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES:
        return transformers.AutoModelForImageTextToText
    return transformers.AutoModelForCausalLM


def check_loading_info(info: dict[str, Any], name: str, allow_unused: bool) -> None:
    """Stop when weights were left newly initialised (transformers itself only warns)."""
    problems = []
    kinds = ["missing_keys", "mismatched_keys"] + ([] if allow_unused else ["unexpected_keys"])
    for kind in kinds:
        keys = sorted(str(k[0] if isinstance(k, tuple) else k) for k in info.get(kind) or [])
        if keys:
            problems.append(f"{len(keys)} {kind.replace('_', ' ')} (e.g. {keys[0]})")
    if problems:
        raise UserError(
            f"{name}: the checkpoint does not match the model ({'; '.join(problems)}); "
            "running it would use newly initialised weights"
        )


def stop_token_ids(model: Any, tokenizer: Any) -> list[int]:
    ids: set[int] = set()
    configured = getattr(model.generation_config, "eos_token_id", None)
    ids.update(configured if isinstance(configured, list) else [configured] if configured is not None else [])
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    vocab = tokenizer.get_vocab()
    ids.update(vocab[t] for t in CHATML_STOPS if t in vocab)
    return sorted(ids)


def parse_dtype(torch: Any, value: str | None) -> Any:
    if not value:
        return torch.bfloat16 if torch.cuda.is_available() else torch.float32
    names = {"bf16": "bfloat16", "bfloat16": "bfloat16", "fp16": "float16", "float16": "float16",
             "half": "float16", "fp32": "float32", "float32": "float32", "float": "float32", "auto": "auto"}
    if value not in names:
        raise UserError(f"unknown dtype {value!r} (use bfloat16, float16, float32 or auto)")
    return "auto" if names[value] == "auto" else getattr(torch, names[value])


def positive_int(value: Any, what: str) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = 0
    if number < 1:
        raise UserError(f"{what} must be a positive integer, got {value!r}")
    return number


def first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


def say(message: str) -> None:
    print(f"step3vl-eval: {message}", file=sys.stderr)
