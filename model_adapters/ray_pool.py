"""The hf or vllm adapter as a pool of Ray actors across a cluster: `--ray [ADDRESS] --replicas N`.

Ray places the replicas (each asks for the GPUs its tensor parallelism needs) and restarts nothing;
this module only splits a `generate` call into chunks and hands each replica its next chunk as it
finishes one, two in flight per replica so that none waits for a round trip. The runner stays the
one process that writes samples.jsonl: responses come back here and go to `on_response` as before,
so resume, PaCoRe rounds (one `generate` per round, spread over the whole pool), the progress bar
and error records are unchanged.

A replica that dies (its node lost, its process killed) takes nothing with it: the chunks it held
go back to the queue for the others. With no replica left, every request still unanswered becomes
an error record, so the run ends with exit 1 and the same command resumes it later.

Images given by path are read here and sent inline: a replica on another node cannot read this
machine's files. Each image is read once per `generate` call.
"""

from __future__ import annotations

import logging
import math
import re
import sys
from collections import deque
from dataclasses import dataclass, field, replace
from typing import Any, Callable

from evals.types import Image, Message, Request, Response, RunSpec, UserError

RAY_OPTIONS = ("ray", "replicas", "ray_cpus", "ray_gpus", "ray_chunk")
POOLED_PROVIDERS = ("hf", "vllm")
IN_FLIGHT_PER_REPLICA = 2  # one running, one queued on the actor: no idle gap between chunks
DEFAULT_MAX_CHUNK = 64


class Replica:
    """One adapter (hf or vllm) inside a Ray actor; built with `ray.remote(Replica)`."""

    def __init__(self, spec: RunSpec, build: Callable[[RunSpec], Any]):
        self.adapter = build(spec)

    def ready(self) -> int:
        import os

        return os.getpid()

    def generate(self, requests: list[Request]) -> list[Response]:
        return self.adapter.generate(requests)


@dataclass
class Chunk:
    requests: list[Request]


@dataclass
class Member:
    """A replica of the pool and the chunks it holds (object ref -> chunk)."""

    actor: Any
    pid: int
    held: dict[Any, Chunk] = field(default_factory=dict)


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise UserError("--ray needs ray (pip install 'step3vl-eval[ray]')") from None
    return ray


def positive_int(value: Any, what: str) -> int:
    try:
        n = int(value)
    except (TypeError, ValueError):
        n = 0
    if n < 1:
        raise UserError(f"{what} must be a positive integer, got {value!r}")
    return n


def non_negative(value: Any, what: str) -> float:
    try:
        n = float(value)
    except (TypeError, ValueError):
        n = -1.0
    if n < 0:
        raise UserError(f"{what} must be a number of at least 0, got {value!r}")
    return n


def replica_gpus(opts: dict[str, Any], cluster_gpus: float) -> float:
    """GPUs per replica: `-O ray_gpus=N`, else tensor x data parallel size on a cluster with GPUs."""
    if "ray_gpus" in opts:
        return non_negative(opts["ray_gpus"], "ray_gpus")
    if cluster_gpus <= 0:
        return 0.0
    tp = int(opts.get("tensor_parallel_size") or 1)
    dp = int(opts.get("data_parallel_size") or 1)
    return float(tp * dp)


def inner_spec(spec: RunSpec) -> RunSpec:
    """The spec each replica builds its adapter from: the same, without the pool's own options."""
    return replace(spec, adapter_options={k: v for k, v in spec.adapter_options.items() if k not in RAY_OPTIONS})


def portable(requests: list[Request], cache: dict[str, Image]) -> list[Request]:
    """Requests whose images travel inline (base64), read once per path."""
    out = []
    for r in requests:
        if not any(isinstance(p, Image) and p.b64 is None for m in r.messages for p in m.content):
            out.append(r)
            continue
        messages = [Message(m.role, [inline(p, cache) if isinstance(p, Image) else p for p in m.content])
                    for m in r.messages]
        out.append(replace(r, messages=messages))
    return out


def inline(image: Image, cache: dict[str, Image]) -> Image:
    if image.b64 is not None:
        return image
    key = str(image.path)
    if key not in cache:
        try:
            cache[key] = Image(b64=image.as_b64(), mime=image.mime)
        except UserError:
            return image  # unreadable: the replica's adapter makes it that request's error record
    return cache[key]


def chunk_size(n_requests: int, replicas: int, maximum: int) -> int:
    """Small enough that every replica gets several chunks (a lost one costs little), at most `maximum`."""
    return max(1, min(maximum, math.ceil(n_requests / (IN_FLIGHT_PER_REPLICA * 2 * max(1, replicas)))))


class RayPool:
    """`build` makes one replica's adapter from the spec (model_adapters.load_adapter without --ray)."""

    def __init__(self, spec: RunSpec, provider: str, build: Callable[[RunSpec], Any]):
        if provider not in POOLED_PROVIDERS:
            raise UserError(f"--ray runs the hf or vllm adapter, not {provider} (an API server fleet takes "
                            "several --base-url instead)")
        opts = spec.adapter_options
        self.replicas = positive_int(opts.get("replicas", 1), "--replicas")
        self.max_chunk = positive_int(opts.get("ray_chunk", DEFAULT_MAX_CHUNK), "ray_chunk")
        cpus = non_negative(opts.get("ray_cpus", 1), "ray_cpus")
        self.ray = ray = import_ray()
        address = opts.get("ray") or None  # None: RAY_ADDRESS, else a cluster started on this machine, else a new one
        self.connected = not ray.is_initialized()  # a caller that connected already keeps its connection
        if self.connected:
            try:
                ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False)
            except (ConnectionError, ValueError, RuntimeError) as exc:
                raise UserError(f"cannot connect to the Ray cluster at {address or 'the default address'}: "
                                f"{first_line(exc)}") from None
        gpus = replica_gpus(opts, ray.cluster_resources().get("GPU", 0.0))
        actor_class = ray.remote(Replica).options(num_cpus=cpus, num_gpus=gpus, max_restarts=0, max_task_retries=0)
        actors = [actor_class.remote(inner_spec(spec), build) for _ in range(self.replicas)]
        self.members = self.start(actors)

    def start(self, actors: list[Any]) -> list[Member]:
        """Wait for every replica to load its model; a model that fails to load is the run's error."""
        ray = self.ray
        members = []
        for actor in actors:
            try:
                members.append(Member(actor, ray.get(actor.ready.remote())))
            except (ray.exceptions.RayActorError, ray.exceptions.RayTaskError) as exc:
                self.kill_all(actors)
                self.close()
                raise UserError(startup_error(exc)) from None
        return members

    def kill_all(self, actors: list[Any]) -> None:
        for actor in actors:
            try:
                self.ray.kill(actor)
            except Exception:  # already gone
                pass

    def generate(self, requests: list[Request], on_response: Callable[[Response], None] | None = None) -> list[Response]:
        if not requests:
            return []
        ray = self.ray
        size = chunk_size(len(requests), len(self.members), self.max_chunk)
        images: dict[str, Image] = {}
        queue = deque(Chunk(requests[i:i + size]) for i in range(0, len(requests), size))
        results: dict[str, Response] = {}
        owner: dict[Any, Member] = {}

        def deliver(response: Response) -> None:
            results[response.key] = response
            if on_response is not None:
                on_response(response)

        while True:
            for member in self.members:
                while queue and len(member.held) < IN_FLIGHT_PER_REPLICA:
                    chunk = queue.popleft()
                    ref = member.actor.generate.remote(portable(chunk.requests, images))
                    member.held[ref] = chunk
                    owner[ref] = member
            if not owner:
                break
            [ref], _ = ray.wait(list(owner), num_returns=1)
            member = owner.pop(ref)
            chunk = member.held.pop(ref)
            try:
                responses = ray.get(ref)
            except ray.exceptions.RayActorError as exc:
                self.lose(member, chunk, queue, owner, exc)
                continue
            except ray.exceptions.RayTaskError as exc:  # the adapter itself raised: that chunk's errors
                responses = [Response(r.key, error=f"replica failed: {first_line(exc)}") for r in chunk.requests]
            for response in responses:
                deliver(response)
        for r in requests:
            if r.key not in results:
                deliver(Response(r.key, error="no Ray replica left to run it; run the same command again to resume"))
        return [results[r.key] for r in requests]

    def lose(self, member: Member, chunk: Chunk, queue: deque[Chunk], owner: dict[Any, Member], exc: Exception) -> None:
        """A dead replica's chunks go back to the front of the queue, for the others."""
        queue.appendleft(chunk)
        for ref, held in member.held.items():
            queue.appendleft(held)
            owner.pop(ref, None)
        member.held.clear()
        self.members.remove(member)
        self.kill_all([member.actor])
        print(f"step3vl-eval: a Ray replica died (pid {member.pid}: {first_line(exc)}); "
              f"{len(self.members)} left take its requests", file=sys.stderr)

    def close(self) -> None:
        self.kill_all([m.actor for m in getattr(self, "members", [])])
        self.members = []
        if self.connected and self.ray.is_initialized():
            self.ray.shutdown()


def startup_error(exc: BaseException) -> str:
    """The one line to show for a replica that could not load its model: the adapter's own message
    (`model directory ... does not exist`) when the replica raised a UserError, else Ray's first line."""
    found = re.findall(r"UserError: (.+)", str(exc))
    return found[-1].strip() if found else f"a Ray replica could not start: {first_line(exc)}"


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__
