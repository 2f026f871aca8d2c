"""Backends: one module each, imported lazily so that `import evals` never imports torch or vllm.

`--model` takes `provider/name` (`openai/step3-vl`, `hf/stepfun-ai/Step3-VL-10B`,
`vllm/stepfun-ai/Step3-VL-10B`), `replay:FILE`, or `mock` (a scripted smoke-test tool). With
`--ray` the hf or vllm adapter runs as a pool of Ray actors (model_adapters/ray_pool.py).
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
    if "ray" in spec.adapter_options:  # --ray: the hf or vllm adapter as a pool of Ray actors
        from model_adapters.ray_pool import RayPool

        return RayPool(spec)
    provider, name = parse_model(spec.model)
    module, cls = ADAPTERS[provider].split(":")
    try:
        mod = importlib.import_module(module)
    except ImportError as exc:
        extra = {"hf": "hf", "vllm": "vllm"}.get(provider, "")
        hint = f" (pip install 'step3vl-eval[{extra}]')" if extra else ""
        raise UserError(f"the {provider} adapter needs {exc.name or exc}{hint}") from None
    return getattr(mod, cls)(name, spec)
