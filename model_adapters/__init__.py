"""Backends: one module each, imported lazily so that `import evals` never imports torch or vllm.

`--model` takes `provider/name` (`openai/step3-vl`, `hf/stepfun-ai/Step3-VL-10B`,
`vllm/stepfun-ai/Step3-VL-10B`), `replay:FILE`, `mock` (a scripted smoke-test tool),
`file:path.py:ClassName` (an adapter class in one file), or `PROVIDER/name` for an adapter that an
installed package declares in the `step3vl_eval.adapters` entry points (evals/plugins.py). With
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
FILE_PROVIDER = "file"  # --model file:path.py:ClassName

# `-O NAME=VALUE` options each adapter reads (besides the flags --dtype, --batch-size, ...);
# None: the adapter checks them itself (vllm: any engine argument). PaCoRe reads pacore_context and
# pacore_schedule.
OPTIONS: dict[str, tuple[str, ...] | None] = {
    "openai": ("backoff_base", "max_tokens_field", "pacore_context", "pacore_schedule", "extra_body", "think_end",
               "reasoning_field", "image_cache_mb", "max_model_len"),
    "hf": ("trust_remote_code", "allow_unused_weights", "dtype", "batch_size", "device_map", "pacore_context",
           "pacore_schedule", "ray_cpus", "ray_gpus", "ray_chunk"),  # the ray_* options: the actors of --ray
    "vllm": None,
    "replay": ("pacore_context",),
    "mock": ("mock_text", "mock_script", "mock_delay", "pacore_context", "pacore_schedule"),
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
    from evals import plugins

    if model.startswith(FILE_PROVIDER + ":"):
        return FILE_PROVIDER, model[len(FILE_PROVIDER) + 1:]
    found = provider_in(model, ADAPTERS)
    if found:
        return found
    installed = plugins.entry_points(plugins.ADAPTER_GROUP)  # read only when no built-in matches
    found = provider_in(model, installed)
    if found:
        return found
    names = [*ADAPTERS, *(n for n in installed if n not in ADAPTERS)]
    raise UserError(f"unknown adapter in --model {model!r} (use one of: {', '.join(names)}, as provider/name; "
                    "or file:path.py:ClassName)")


def provider_in(model: str, known: dict) -> tuple[str, str] | None:
    for sep in ("/", ":"):
        provider, found, name = model.partition(sep)
        if found and provider in known:
            return provider, name
    return (model, "") if model in known else None


def load_adapter(spec: RunSpec) -> Adapter:
    if "ray" in spec.adapter_options:  # --ray: the hf or vllm adapter as a pool of Ray actors
        from model_adapters.ray_pool import RayPool

        return RayPool(spec, parse_model(spec.model)[0], load_adapter)  # each replica: load_adapter without --ray

    from evals import plugins

    provider, name = parse_model(spec.model)
    if provider == FILE_PROVIDER:  # the class gets name "" (its settings come with -O)
        what = f"--model {spec.model}"
        return plugins.build_adapter(plugins.import_file(name, "--model file:"), "", spec, what)
    if provider not in ADAPTERS:
        found = plugins.entry_points(plugins.ADAPTER_GROUP)[provider]
        what = f"adapter {provider!r} ({found.origin})"
        return plugins.build_adapter(plugins.import_target(found.target, what), name, spec, what)
    module, cls = ADAPTERS[provider].split(":")
    try:
        mod = importlib.import_module(module)
    except ImportError as exc:
        hint = f" ({INSTALL_HINTS[provider]} in the project folder)" if provider in INSTALL_HINTS else ""
        raise UserError(f"the {provider} adapter needs {exc.name or exc}{hint}") from None
    return getattr(mod, cls)(name, spec)


def adapter_origins() -> list[tuple[str, str]]:
    """(provider, where it comes from) for every adapter `--model` can name; imports nothing."""
    from evals import plugins

    rows = [(name, "built-in") for name in ADAPTERS]
    for name, found in plugins.entry_points(plugins.ADAPTER_GROUP).items():
        rows.append((name, found.origin + (" [ignored: a built-in has this name]" if name in ADAPTERS else "")))
    return rows
