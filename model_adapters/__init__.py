"""Backends: one module each, imported lazily so that `import evals` never imports torch or vllm.

`--model` takes `provider/name` (`openai/step3-vl`, `hf/stepfun-ai/Step3-VL-10B`,
`vllm/stepfun-ai/Step3-VL-10B`), `replay:FILE`, or `mock` (a scripted smoke-test tool).
"""

from __future__ import annotations

import importlib

from evals.types import Adapter, RunSpec, UserError

ADAPTERS: dict[str, str] = {
    "openai": "model_adapters.openai:OpenAIAdapter",
    "hf": "model_adapters.hf:HFAdapter",
    "vllm": "model_adapters.vllm:VLLMAdapter",
    "replay": "model_adapters.replay:ReplayAdapter",
    "mock": "model_adapters.mock:MockAdapter",
}

# `-O NAME=VALUE` options each adapter reads (besides the flags --dtype, --batch-size, ...);
# None: the adapter checks them itself (vllm: any engine argument). PaCoRe reads pacore_context.
OPTIONS: dict[str, tuple[str, ...] | None] = {
    "openai": ("backoff_base", "max_tokens_field", "pacore_context"),
    "hf": ("trust_remote_code", "allow_unused_weights", "dtype", "batch_size", "device_map", "pacore_context"),
    "vllm": None,
    "replay": ("pacore_context",),
    "mock": ("mock_text", "mock_script", "mock_delay", "pacore_context"),
}
INSTALL_HINTS = {"hf": "pip install -e \".[hf]\"", "vllm": "pip install -e \".[vllm]\""}  # the README's commands


def check_options(model: str, options: dict[str, object]) -> None:
    """An option the adapter does not read is an error (a typo must not be silently ignored)."""
    provider, _ = parse_model(model)
    known = OPTIONS.get(provider)
    unknown = sorted(set(options) - set(known)) if known is not None else []
    if unknown:
        raise UserError(f"unknown {provider} adapter option {unknown[0]!r} (-O; valid: {', '.join(known or ())})")


def parse_model(model: str) -> tuple[str, str]:
    """`openai/step3-vl` -> (openai, step3-vl); `replay:preds.jsonl` -> (replay, preds.jsonl); `mock` -> (mock, "")."""
    for sep in ("/", ":"):
        provider, found, name = model.partition(sep)
        if found and provider in ADAPTERS:
            return provider, name
    if model in ADAPTERS:
        return model, ""
    raise UserError(f"unknown adapter in --model {model!r} (use one of: {', '.join(ADAPTERS)}, as provider/name)")


def load_adapter(spec: RunSpec) -> Adapter:
    provider, name = parse_model(spec.model)
    module, cls = ADAPTERS[provider].split(":")
    try:
        mod = importlib.import_module(module)
    except ImportError as exc:
        hint = f" ({INSTALL_HINTS[provider]} in the project folder)" if provider in INSTALL_HINTS else ""
        raise UserError(f"the {provider} adapter needs {exc.name or exc}{hint}") from None
    return getattr(mod, cls)(name, spec)
