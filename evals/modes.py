"""Reasoning modes: adapters that wrap an adapter, so every mode works over every backend.

SeRe (sequential reasoning) is one long chain of thought per request; the wrapper only makes sure
the thinking is split off the answer whatever the backend returned.

PaCoRe (parallel coordinated reasoning, DESIGN §6) answers each request in rounds. Round 0 sends
the original messages `widths[0]` times with distinct seeds; each later round sends a synthesis
prompt built from the previous round's compacted replies; the last round has width 1 and its reply
is the answer. The rounds are a pipeline, not a barrier: each problem moves to its next round as
soon as its own replies are in, and its final response is handed on as soon as it exists. A backend
with `generate_feed` (the OpenAI-compatible adapter) pulls the next call whenever a slot frees up;
one that takes a list (hf, vLLM, a Ray pool) gets the ready calls in waves of `--concurrency`.
`-O pacore_schedule=rounds` runs the barrier instead (a round for every problem at once, one
`generate` per round): the same calls and the same records, in another order.

Choices written down here (docs/pacore.md explains them for users):
- Compaction keeps a reply's answer part (after the last `</think>`, or the `content` field) and
  drops replies that failed, came back empty or stopped at the token limit (`finish_reason`
  `length`: an answer cut off mid-way is not a conclusion).
- The synthesis turn is the template with the original turn's parts, text and images in their
  order, spliced in where `{{ original_prompt }}` goes (the reference implementation is text-only:
  it renders the message content as a string, so it says nothing about images). An MMMU question
  that names `<image 1>` mid-sentence keeps the image there in every round.
- Order, as the reference implementation does it: all replies of the round (failed ones included,
  as empty text) sorted by answer length, ties by trajectory index, then shuffled with
  `random.Random(42)`; the dropped ones are removed after that.
- Budgets: the parallel rounds use the run's `max_tokens` (task default 65,536). A synthesis
  round asks for `min(max_tokens, context - estimated prompt tokens)` with a context of 131,072
  (the report's PaCoRe length; `-O pacore_context=N` or `--max-model-len N` change it), so that
  prompt plus answer fit the window a server enforces. The estimate is the original prompt's
  tokens (from round 0's usage, else a byte count) plus one token per 3 UTF-8 bytes of added text
  (an overestimate for English, about right for CJK). The synthesis prompt's token count is
  recorded in the trace: the server's `usage.prompt_tokens`, or the estimate when none came back.
- Sub-call seeds come from the request's seed, the round and the trajectory index.
- Every sub-call is appended (flushed) to `calls.jsonl` in the run dir, keyed by model, messages
  digest and params (seed included); a resumed run takes finished replies from there.
- `--pacore-pool N` (the PaCoRe paper's shortcut for avg@k): one pool of N round-0 replies per
  problem, shared by its repeats; each repeat draws `widths[0]` of them (seeded by its own seed).
  A request's usage then counts the pooled replies it drew, not their one-time cost.
"""

from __future__ import annotations

import functools
import hashlib
import heapq
import json
import random
import time
import zlib
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

from evals import store
from evals.extract import THINK_END, split_thinking
from evals.types import (
    Adapter, Message, Part, Request, Response, RunSpec, Text, Usage, UserError, messages_digest,
    response_from_dict,
)

MODES = ("sere", "pacore")


class SeRe:
    def __init__(self, inner: Adapter):
        self.inner = inner

    def generate(self, requests: list[Request], on_response: Any = None) -> list[Response]:
        def done(resp: Response) -> None:
            split_inline_thinking(resp)
            if on_response:
                on_response(resp)

        return self.inner.generate(requests, done)

    def close(self) -> None:
        self.inner.close()


# ---- PaCoRe: the pieces the rounds are made of ------------------------------------------------

# The prompt the model was trained with (DESIGN §6), rendered by jinja2 with its default settings
# like the reference implementation: the block tags keep their newlines, and the template's own
# trailing newline is dropped on rendering.
SYNTHESIS_TEMPLATE = """\
You are given a problem and a list of reference responses. Your job is to analyze these references and provide your own response.

Original Problem:
{{ original_prompt }}

Reference Responses:
{% for response in ref_responses %}
Reference {{ loop.index }}:
{{ response }}
{% endfor %}

Now, based on the original problem and reference responses above, please provide your own comprehensive solution.
"""
ORDER_SEED = 42
SYNTHESIS_CONTEXT = 131072
BYTES_PER_TOKEN = 3
IMAGE_TOKENS_GUESS = 1024  # per image, when the backend reports no prompt tokens
# The end of a pipelined run: round-0 calls for this many windows' worth of problems (concurrency x
# width) left to send. Measured against a heavy-tailed server (benchmarks/pacore_pipeline.py,
# docs/performance.md); more keeps the server busier at the end, holds more problems in flight.
LOOKAHEAD_WINDOWS = 3


@functools.lru_cache(maxsize=1)
def _compiled_template() -> Any:
    import jinja2  # only PaCoRe needs it; keeps `import evals` light

    return jinja2.Template(SYNTHESIS_TEMPLATE)


def render_synthesis_prompt(original_prompt: str, references: list[str]) -> str:
    return str(_compiled_template().render(original_prompt=original_prompt, ref_responses=references))


def compact(reply: Response) -> str | None:
    """A reply's conclusion (its answer part), or None when it cannot serve as a reference."""
    if reply.error is not None or reply.finish_reason == "length":
        return None
    text = split_thinking(reply.text)[1] if THINK_END in reply.text else reply.text
    return text.strip() or None


def reference_order(replies: list[Response]) -> list[int]:
    """Indices of the usable replies, in the order the synthesis prompt lists them."""
    order = sorted(range(len(replies)), key=lambda i: len(replies[i].text))
    random.Random(ORDER_SEED).shuffle(order)
    return [i for i in order if compact(replies[i]) is not None]


def last_user_index(messages: list[Message]) -> int | None:
    for i in range(len(messages) - 1, -1, -1):
        if messages[i].role == "user":
            return i
    return None


def synthesis_messages(messages: list[Message], references: list[str]) -> tuple[list[Message], str | None]:
    """The original messages with the last user turn replaced by the synthesis prompt.

    That turn's parts (text and images, in their order) go where the template says
    `{{ original_prompt }}`, so every image stays at its place in the question; other turns are
    left as they are. Without references (nothing survived) the original messages go out
    unchanged. Also returns the prompt's text (the template rendered with the turn's text).
    """
    at = last_user_index(messages)
    if not references or at is None:
        return messages, None
    turn = Message(messages[at].role, synthesis_content(messages[at].content, references))
    return [*messages[:at], turn, *messages[at + 1:]], turn.text()


# Stands for the original prompt while the template renders. The rendered text before the original
# prompt is the template's own (fixed) text, so its first occurrence is the slot whatever the
# references hold.
ORIGINAL_SLOT = "\x00original_prompt\x00"


def synthesis_content(original: list[Part], references: list[str]) -> list[Part]:
    """The synthesis prompt as parts: template text, the original parts in order, template text."""
    head, _, tail = render_synthesis_prompt(ORIGINAL_SLOT, references).partition(ORIGINAL_SLOT)
    return merge_text([Text(head), *original, Text(tail)])


def merge_text(parts: list[Part]) -> list[Part]:
    """Adjacent text parts joined, empty ones dropped: a text-only turn stays one text part."""
    out: list[Part] = []
    for part in parts:
        if isinstance(part, Text):
            if not part.text:
                continue
            if out and isinstance(out[-1], Text):
                out[-1] = Text(out[-1].text + part.text)
                continue
        out.append(part)
    return out


def estimate_tokens(text: str) -> int:
    return -(-len(text.encode("utf-8")) // BYTES_PER_TOKEN)


def original_prompt_tokens(messages: list[Message], round0: list[Response]) -> int:
    """The original prompt's length in tokens: as the server counted it, else an estimate."""
    reported = max((r.usage.prompt_tokens for r in round0 if r.error is None), default=0)
    if reported > 0:
        return reported
    images = sum(len(m.images()) for m in messages)
    return sum(estimate_tokens(m.text()) for m in messages) + images * IMAGE_TOKENS_GUESS


def synthesis_budget(max_tokens: int, context: int, prompt_tokens: int) -> int:
    """New tokens a synthesis may ask for: the run's limit, within what the context leaves."""
    return max(1, min(max_tokens, context - prompt_tokens))


def trajectory_seed(seed: int | None, round_index: int, trajectory: int) -> int:
    """Distinct per trajectory and round, reproducible from the request's seed."""
    digest = hashlib.sha256(f"pacore/{seed}/{round_index}/{trajectory}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % (2**31 - 1)


def pool_seed(run_seed: int, sample_id: str, index: int) -> int:
    return trajectory_seed(run_seed * 1_000_003 + zlib.crc32(sample_id.encode()), -1, index)


def call_cache_key(model: str, request: Request) -> str:
    payload = [model, messages_digest(request.messages), asdict(request.params)]
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:24]


def reply_record(index: int, reply: Response, seed: int | None, cached: bool) -> dict[str, Any]:
    """One reply as the trace keeps it: the answer, never the reasoning (only its length)."""
    return {
        "index": index, "seed": seed, "text": reply.text,
        "reasoning_chars": reply.meta.get("reasoning_chars", len(reply.reasoning)),
        "finish_reason": reply.finish_reason, "usage": asdict(reply.usage), "latency": round(reply.latency, 4),
        "error": reply.error, "kept": compact(reply) is not None, "cached": cached,
    }


def first_round_answers(trace: list[dict[str, Any]]) -> list[str]:
    """The compacted round-0 answers of a PaCoRe trace (empty for any other response)."""
    if not trace or "replies" not in trace[0]:
        return []
    return [r["text"] for r in trace[0]["replies"] if r.get("kept")]


# ---- PaCoRe: the pipeline ----------------------------------------------------------------------

SCHEDULES = ("pipeline", "rounds")


@dataclass
class Problem:
    """One outer request on its way through the rounds."""

    request: Request
    seq: int  # admission order: earlier problems' calls go first within a round
    replies: list[list[Response]] = field(default_factory=list)  # per round, by trajectory
    cached: list[list[bool]] = field(default_factory=list)
    seeds: list[list[int | None]] = field(default_factory=list)
    rounds: list[dict[str, Any]] = field(default_factory=list)  # per round: budget, prompt, order
    pool_indices: list[int] | None = None
    waiting: int = 0  # replies of the current round still to come


@dataclass
class Call:
    """One sub-call of a round, and the (problem, trajectory) slots its reply fills.

    A pooled round-0 reply can fill slots of several repeats of the same problem.
    """

    request: Request
    round: int
    targets: list[tuple[Problem, int]]
    pool_index: int | None = None


class CallCache:
    """The finished sub-calls of `calls.jsonl`, by cache key. Only their offsets stay in memory: a
    reply is read back from the file when a resumed run asks for it (a run's replies can be GBs)."""

    def __init__(self, path: Path):
        self.offsets: dict[str, int] = {}
        for offset, rec in store.scan_jsonl(path, repair=True):
            if rec.get("response", {}).get("error") is None:
                self.offsets[rec["cache_key"]] = offset
        self.fh = open(path, "rb") if self.offsets else None

    def get(self, key: str) -> Response | None:
        offset = self.offsets.get(key)
        if offset is None or self.fh is None:
            return None
        self.fh.seek(offset)
        return response_from_dict(json.loads(self.fh.readline())["response"])

    def close(self) -> None:
        if self.fh is not None:
            self.fh.close()


def split_inline_thinking(resp: Response) -> Response:
    """A server without a reasoning parser returns the thinking inline: split it off the answer."""
    if THINK_END in resp.text:
        reasoning, resp.text = split_thinking(resp.text)
        resp.reasoning = (resp.reasoning + "\n" + reasoning).strip()
    return resp


class PaCoRe:
    def __init__(self, inner: Adapter, spec: RunSpec):
        self.inner = inner
        self.widths = [*spec.pacore_widths, 1]
        if not spec.pacore_widths or any(w < 1 for w in self.widths):
            raise UserError("--pacore-widths needs positive widths, e.g. 16 or 32,4")
        self.pool = spec.pacore_pool
        if self.pool is not None and self.pool < self.widths[0]:
            raise UserError(f"--pacore-pool {self.pool} is smaller than the first width {self.widths[0]}")
        self.model = spec.model
        self.run_seed = spec.seed
        opts = spec.adapter_options
        context = opts.get("pacore_context") or opts.get("max_model_len") or getattr(inner, "max_model_len", None)
        self.context = int(context or SYNTHESIS_CONTEXT)
        self.schedule = str(opts.get("pacore_schedule") or "pipeline")
        if self.schedule not in SCHEDULES:
            raise UserError(f"-O pacore_schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}")
        self.wave = max(1, spec.concurrency)  # calls per generate() on a backend that takes batches
        # the end of the run, in round-0 calls left to send: earlier rounds go first from there (Pipeline)
        self.lookahead = LOOKAHEAD_WINDOWS * self.wave * (self.pool or self.widths[0])
        self.first = self.wave * (self.pool or self.widths[0])  # round-0 calls that always finish as they go
        self.cache: CallCache | None = None
        self.writer: store.RecordWriter | None = None
        self.sent = 0  # sub-calls handed to the wrapped adapter (cache hits excluded)
        self.round_seconds: list[float] = []  # per round of the last generate(): its last reply, after the previous round's
        self.run_dir: Path | None = None
        self.on_call: Callable[[Response], None] | None = None

    # -- the sub-call cache (calls.jsonl) --

    def attach(self, run_dir: Path, on_call: Callable[[Response], None] | None = None) -> None:
        """Resume from the run dir's saved round replies; `on_call` hears of each new model call."""
        self.run_dir = run_dir
        self.on_call = on_call
        self.cache = CallCache(run_dir / store.CALLS)
        self.writer = store.RecordWriter(run_dir / store.CALLS)

    def cached(self, call: Call) -> Response | None:
        return self.cache.get(call_cache_key(self.model, call.request)) if self.cache is not None else None

    def remember(self, call: Call, reply: Response) -> None:
        if self.writer is not None:
            self.writer.append({"cache_key": call_cache_key(self.model, call.request), "call": call.request.key,
                                "round": call.round, "response": asdict(reply)})

    # -- the calls of a round --

    def sub_request(self, request: Request, key: str, messages: list[Message], seed: int, max_tokens: int) -> Request:
        params = replace(request.params, seed=seed, max_tokens=max_tokens)
        return Request(key, request.sample_id, request.repeat, messages, params)

    def open_round(self, p: Problem, info: dict[str, Any], seeds: list[int]) -> None:
        p.rounds.append(info)
        p.seeds.append(list(seeds))
        p.replies.append([Response(p.request.key, error="no reply")] * len(seeds))
        p.cached.append([False] * len(seeds))
        p.waiting = len(seeds)

    def first_round_calls(self, problems: list[Problem]) -> list[Call]:
        if self.pool is not None:
            return self.pool_calls(problems)
        width, calls = self.widths[0], []
        for p in problems:
            req = p.request
            seeds = [trajectory_seed(req.params.seed, 0, i) for i in range(width)]
            self.open_round(p, {"round": 0, "width": width, "max_tokens": req.params.max_tokens}, seeds)
            calls += [Call(self.sub_request(req, f"{req.key}/r0/t{i}", req.messages, s, req.params.max_tokens), 0,
                           [(p, i)]) for i, s in enumerate(seeds)]
        return calls

    def pool_calls(self, problems: list[Problem]) -> list[Call]:
        """One pool of replies per problem; each repeat draws its first-round replies from it."""
        assert self.pool is not None
        width, pool = self.widths[0], self.pool
        by_sample: dict[str, list[Problem]] = {}
        for p in problems:
            by_sample.setdefault(p.request.sample_id, []).append(p)
            p.pool_indices = random.Random(p.request.params.seed).sample(range(pool), width)
            seeds = [pool_seed(self.run_seed, p.request.sample_id, j) for j in p.pool_indices]
            self.open_round(p, {"round": 0, "width": width, "pool": pool, "max_tokens": p.request.params.max_tokens},
                            seeds)
        calls = []
        for sample_id, group in by_sample.items():
            req = group[0].request
            for j in range(pool):
                targets = [(p, slot) for p in group for slot, k in enumerate(p.pool_indices or []) if k == j]
                sub = self.sub_request(req, f"{sample_id}/pool/p{j}", req.messages, pool_seed(self.run_seed, sample_id, j),
                                       req.params.max_tokens)
                calls.append(Call(sub, 0, targets, pool_index=j))
        return calls

    def synthesis_calls(self, problems: list[Problem], round_index: int) -> list[Call]:
        width, calls = self.widths[round_index], []
        for p in problems:
            req, previous = p.request, p.replies[-1]
            order = reference_order(previous)
            messages, prompt = synthesis_messages(req.messages, [compact(previous[i]) or "" for i in order])
            info: dict[str, Any] = {"round": round_index, "width": width, "references": order}
            max_tokens = req.params.max_tokens
            if prompt is None:
                info["fallback"] = "no reply survived: the original messages were sent"
            else:
                info["prompt_tokens_estimate"] = self.synthesis_prompt_estimate(p, prompt)
                max_tokens = synthesis_budget(max_tokens, self.context, info["prompt_tokens_estimate"])
            info["max_tokens"] = max_tokens
            seeds = [trajectory_seed(req.params.seed, round_index, i) for i in range(width)]
            self.open_round(p, info, seeds)
            calls += [Call(self.sub_request(req, f"{req.key}/r{round_index}/t{i}", messages, s, max_tokens), round_index,
                           [(p, i)]) for i, s in enumerate(seeds)]
        return calls

    def synthesis_prompt_estimate(self, p: Problem, prompt: str) -> int:
        """Original prompt tokens (images included) plus the text the synthesis prompt adds."""
        messages = p.request.messages
        base = original_prompt_tokens(messages, p.replies[0])
        at = last_user_index(messages)
        replaced = messages[at].text() if at is not None else ""
        return base + max(0, estimate_tokens(prompt) - estimate_tokens(replaced))

    # -- the whole run --

    def generate(self, requests: list[Request], on_response: Any = None) -> list[Response]:
        run = Pipeline(self, requests, on_response, self.lookahead, self.first)
        if self.schedule == "rounds":
            run.admit_all()  # every problem's round 0 at once: a wave per round, the barrier of old
            self.drive_in_waves(run, None)
        elif hasattr(self.inner, "generate_feed"):
            self.inner.generate_feed(run, run.received)
        else:
            self.drive_in_waves(run, self.wave)
        self.round_seconds = [b - a for a, b in zip([0.0, *run.round_done], run.round_done)]
        self.log_rounds(run)
        return [run.finals[r.key] for r in requests]

    def drive_in_waves(self, run: Pipeline, size: int | None) -> None:
        """A backend that takes a list (hf, vLLM, a Ray pool) gets the ready calls in waves of
        `size` (None: all of them); replies that come back make the next wave's calls ready."""
        while True:
            wave = []
            while size is None or len(wave) < size:
                req = run.next_request()
                if req is None:
                    break
                wave.append(req)
            if not wave:
                return
            replies = self.inner.generate(wave, run.received)
            for reply in replies:  # an adapter that returns without calling back for some
                if reply.key in run.pending:
                    run.received(reply)

    def log_rounds(self, run: Pipeline) -> None:
        """A line in run.log per round, with how many calls came from calls.jsonl."""
        if self.run_dir is None:
            return
        for r, width in enumerate(self.widths):
            calls, cached = run.round_calls[r], run.round_cached[r]
            last = f", its last reply {run.round_done[r]:.1f} s after the start" if r < len(run.round_done) else ""
            store.log(self.run_dir, f"pacore round {r} (width {width}): {calls} calls, {cached} from calls.jsonl{last}")

    def final_response(self, p: Problem) -> Response:
        answer = p.replies[-1][0]
        trace = []
        for r, info in enumerate(p.rounds):
            replies = [reply_record(i, reply, p.seeds[r][i], p.cached[r][i]) for i, reply in enumerate(p.replies[r])]
            if p.pool_indices is not None and r == 0:
                for rec, j in zip(replies, p.pool_indices):
                    rec["pool_index"] = j
            entry = {**info, "replies": replies}
            if r > 0 and "prompt_tokens_estimate" in info:
                reported = max((x.usage.prompt_tokens for x in p.replies[r] if x.error is None), default=0)
                entry["prompt_tokens"] = reported or info["prompt_tokens_estimate"]
                entry["prompt_tokens_source"] = "usage" if reported else "estimate"
            trace.append(entry)
        usage = sum((x.usage for rnd in p.replies for x in rnd), Usage())
        calls = sum(len(rnd) for rnd in p.replies)
        meta = {"pacore": {
            "widths": self.widths, "pool": self.pool, "calls": calls,
            "cached_calls": sum(sum(c) for c in p.cached),
            "failed_calls": sum(x.error is not None for rnd in p.replies for x in rnd),
            "synthesis_prompt_tokens": trace[-1].get("prompt_tokens"),
        }}
        return Response(
            key=p.request.key, text=answer.text, reasoning=answer.reasoning, finish_reason=answer.finish_reason,
            usage=usage, latency=sum(max((x.latency for x in rnd), default=0.0) for rnd in p.replies),
            error=answer.error, trace=trace, meta=meta,
        )

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
        if self.cache is not None:
            self.cache.close()
            self.cache = None
        self.inner.close()


class Pipeline:
    """One `generate` of PaCoRe as a stream of sub-calls (the feed a backend pulls from).

    Each problem moves to its next round as soon as its own replies are in, and its final response
    goes to `on_response` as soon as its last round returns. `next_request` hands out the call to
    send next: a later round first (a problem near its end finishes, and its replies are let go),
    then earlier problems first; a new problem is let in only when nothing else is ready, so the
    replies held in memory are those of the few problems in flight. Calls found in calls.jsonl are
    answered on the spot. None means nothing is ready now: more may come as replies come back.

    The end of the run is the exception. Once the round-0 calls not yet sent fit in `lookahead`
    (three windows of `--concurrency` problems; the first window, or half of a smaller run, always
    finishes as it goes), the remaining problems are let in at once and their round-0 calls go before any later
    round. A synthesis must wait for its problem's slowest round-0 reply, so the earlier the last
    round-0 call leaves, the more of the run's slowest replies are back before the window runs out of
    work; the syntheses held back meanwhile are the work that fills it at the very end. Later rounds
    first to the very end would leave the window emptying behind each problem's slowest reply, then a
    synthesis after it.
    """

    def __init__(self, mode: PaCoRe, requests: list[Request], on_response: Any, lookahead: int = 0, first: int = 0):
        self.mode = mode
        self.on_response = on_response
        groups: dict[str, list[Request]] = {}
        for r in requests:  # the pool is shared by a sample's repeats: they come in together
            groups.setdefault(r.sample_id if mode.pool is not None else r.key, []).append(r)
        self.waiting_groups = iter(groups.values())
        self.admitted = 0
        # round-0 calls not handed out yet (sent or answered from calls.jsonl)
        self.round0_left = len(groups) * mode.pool if mode.pool is not None else len(requests) * mode.widths[0]
        # the first window of problems (at least half the run's round-0 calls) finishes as it goes
        self.lookahead = min(lookahead, self.round0_left - min(first, self.round0_left // 2))
        self.ended = False
        self.ready: list[tuple[int, int, int, Call]] = []  # heap: (-round, problem seq, order, call)
        self.ready0: list[tuple[int, int, Call]] = []  # the end of the run's round-0 calls: (problem seq, order, call)
        self.order = 0
        self.pending: dict[str, Call] = {}  # handed to the backend, reply not back yet
        self.finals: dict[str, Response] = {}
        rounds = len(mode.widths)
        self.round_calls, self.round_cached = [0] * rounds, [0] * rounds
        self.round_done: list[float] = []  # seconds from the start to each round's last reply
        self.round_left = [len(requests)] * rounds  # problems that have not finished each round
        self.started = time.perf_counter()

    def admit(self) -> bool:
        group = next(self.waiting_groups, None)
        if group is None:
            return False
        problems = []
        for request in group:
            problems.append(Problem(request, self.admitted))
            self.admitted += 1
        for call in self.mode.first_round_calls(problems):
            self.dispatch(call)
        return True

    def admit_all(self) -> None:
        while self.admit():
            pass

    def dispatch(self, call: Call) -> None:
        self.round_calls[call.round] += 1
        hit = self.mode.cached(call)
        if hit is not None:
            self.round_cached[call.round] += 1
            self.round0_left -= call.round == 0
            self.deliver(call, replace(hit, key=call.request.key), True)
            return
        seq = min((p.seq for p, _ in call.targets), default=0)  # a pooled reply no repeat drew: made all the same
        if call.round == 0 and self.ending():
            heapq.heappush(self.ready0, (seq, self.order, call))
        else:
            heapq.heappush(self.ready, (-call.round, seq, self.order, call))
        self.order += 1

    def ending(self) -> bool:
        return self.round0_left <= self.lookahead

    def next_request(self) -> Request | None:
        if not self.ended and self.ending():
            self.ended = True
            later = []
            for entry in self.ready:  # round-0 calls already waiting move ahead of the syntheses
                if entry[0] == 0:
                    heapq.heappush(self.ready0, entry[1:])
                else:
                    later.append(entry)
            self.ready = later
            heapq.heapify(self.ready)
            self.admit_all()
        while not self.ready and not self.ready0:
            if not self.admit():
                return None
        if self.ready0:  # the end: round 0 first
            call = heapq.heappop(self.ready0)[2]
        else:
            call = heapq.heappop(self.ready)[3]
        if call.round == 0:
            self.round0_left -= 1
        self.pending[call.request.key] = call
        self.mode.sent += 1
        return call.request

    def received(self, reply: Response) -> None:
        """The backend's reply to a call `next_request` handed out."""
        call = self.pending.pop(reply.key)
        split_inline_thinking(reply)
        self.mode.remember(call, reply)
        if self.mode.on_call is not None:
            self.mode.on_call(reply)
        self.deliver(call, reply, False)

    def deliver(self, call: Call, reply: Response, cached: bool) -> None:
        reply = split_inline_thinking(reply)
        last = len(self.mode.widths) - 1
        if call.round < last and reply.reasoning:  # the trace keeps its length only: let the text go now
            reply = replace(reply, reasoning="", meta={**reply.meta, "reasoning_chars": len(reply.reasoning)})
        for p, slot in call.targets:
            p.replies[call.round][slot] = reply
            p.cached[call.round][slot] = cached
            p.waiting -= 1
            if p.waiting == 0:
                self.round_finished(p, call.round)

    def round_finished(self, p: Problem, round_index: int) -> None:
        self.round_left[round_index] -= 1
        if self.round_left[round_index] == 0:
            self.round_done.append(time.perf_counter() - self.started)
        if round_index == len(self.mode.widths) - 1:
            final = self.mode.final_response(p)
            self.finals[p.request.key] = final
            if self.on_response:
                self.on_response(final)
            return
        for call in self.mode.synthesis_calls([p], round_index + 1):
            self.dispatch(call)


def wrap_mode(adapter: Adapter, spec: RunSpec) -> Adapter:
    if spec.mode == "sere":
        return SeRe(adapter)
    if spec.mode == "pacore":
        if spec.model.startswith("replay"):
            raise UserError("--mode pacore needs a model to call; a replay file holds final answers "
                            "(score it with --mode sere)")
        return PaCoRe(adapter, spec)
    raise UserError(f"unknown mode {spec.mode!r} (use one of: {', '.join(MODES)})")
