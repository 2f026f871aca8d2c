"""The plain types that flow from a dataset row to a score (DESIGN §3).

Every type round-trips through JSON with `to_dict` / `from_dict`, so a run directory holds
everything a report, a gate or a re-score needs.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, Protocol


class UserError(Exception):
    """A mistake the user can fix (bad flag, bad file, unreachable server).

    The CLI prints its message as one line and exits with code 2.
    """


@dataclass
class Text:
    text: str
    type: Literal["text"] = "text"


@dataclass
class Image:
    """An image kept as a file path or as base64 text; decoded only when a model needs it."""

    path: str | None = None
    b64: str | None = None
    mime: str = "image/jpeg"
    type: Literal["image"] = "image"

    def read_bytes(self) -> bytes:
        if self.b64 is not None:
            try:
                return base64.b64decode(self.b64, validate=True)
            except ValueError as exc:
                raise UserError(f"image data is not valid base64 ({exc})") from None
        if self.path is None:
            raise UserError("image part has neither a path nor data")
        try:
            return Path(self.path).read_bytes()
        except OSError as exc:
            raise UserError(f"cannot read image {self.path}: {exc.strerror}") from None

    def as_b64(self) -> str:
        return self.b64 if self.b64 is not None else base64.b64encode(self.read_bytes()).decode()

    def digest(self) -> str:
        """A cheap identity for cache keys: the path, or a hash of the inline data."""
        if self.b64 is not None:
            return "sha1:" + hashlib.sha1(self.b64.encode()).hexdigest()
        return f"path:{self.path}"


Part = Text | Image


@dataclass
class Message:
    role: str
    content: list[Part]

    def text(self) -> str:
        return "".join(p.text for p in self.content if isinstance(p, Text))

    def images(self) -> list[Image]:
        return [p for p in self.content if isinstance(p, Image)]


@dataclass
class GenParams:
    max_tokens: int = 65536
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0  # 0 = disabled (HF / vLLM convention)
    seed: int | None = None


@dataclass
class Sample:
    id: str
    messages: list[Message]
    target: Any  # str, or a list of acceptable answers
    choices: dict[str, str] | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass
class Request:
    key: str  # "<sample id>#<repeat>"
    sample_id: str
    repeat: int
    messages: list[Message]
    params: GenParams


@dataclass
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(self.prompt_tokens + other.prompt_tokens, self.completion_tokens + other.completion_tokens)


@dataclass
class Response:
    key: str
    text: str = ""
    reasoning: str = ""
    finish_reason: str | None = None
    usage: Usage = field(default_factory=Usage)
    latency: float = 0.0
    error: str | None = None
    trace: list[dict[str, Any]] = field(default_factory=list)  # PaCoRe rounds
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def truncated(self) -> bool:
        """Cut off by the token limit before its answer began: scored wrong, counted apart."""
        return self.error is None and self.finish_reason == "length" and not self.text.strip()


@dataclass
class Scored:
    key: str
    sample_id: str
    repeat: int
    extracted: str | None
    # answer_format | official | fallback | judge | filtered (a replayed tool's filter) | none | error | truncated
    rule: str
    correct: bool
    score: float = 0.0
    truncated: bool = False
    error: bool = False
    extra: dict[str, Any] = field(default_factory=dict)  # e.g. a second protocol's verdict


@dataclass
class RunSpec:
    task: str
    model: str  # "provider/name", e.g. "openai/step3-vl", "replay:FILE", "mock"
    mode: str = "sere"
    params: GenParams = field(default_factory=GenParams)
    repeats: int = 1
    limit: int | None = None
    seed: int = 0
    data: str | None = None
    split: str | None = None
    base_urls: list[str] = field(default_factory=list)
    concurrency: int = 64
    timeout: float = 3600.0
    max_retries: int = 6
    api_key_env: str = "OPENAI_API_KEY"
    pacore_widths: list[int] = field(default_factory=lambda: [16])
    pacore_pool: int | None = None
    adapter_options: dict[str, Any] = field(default_factory=dict)
    task_options: dict[str, Any] = field(default_factory=dict)
    out: str = "runs"
    system_prompt: str | None = None  # a system message put before every sample's messages
    task_file: str | None = None  # `path.py:ClassName` of a task loaded from a file (--task-file)


@dataclass
class RunResult:
    run_id: str
    status: str  # running | complete | incomplete | interrupted; `stopped` when read (store.load_result)
    spec: RunSpec
    metrics: dict[str, Any] = field(default_factory=dict)
    breakdowns: dict[str, Any] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)


class Adapter(Protocol):
    """A backend, built as `Adapter(name, spec)`. `generate` returns one Response per Request, in
    order; `on_response` is called (in the caller's thread) as each request finishes. A failed
    request is a Response with `error` set, not an exception (docs/plugins.md)."""

    def generate(self, requests: list[Request], on_response: Any = None) -> list[Response]: ...

    def close(self) -> None: ...


# ---- JSON round trip -------------------------------------------------------------------------

def to_dict(obj: Any) -> Any:
    return asdict(obj)


def _part_from_dict(d: dict[str, Any]) -> Part:
    return Text(d["text"]) if d.get("type") == "text" else Image(d.get("path"), d.get("b64"), d.get("mime", "image/jpeg"))


def message_from_dict(d: dict[str, Any]) -> Message:
    return Message(d["role"], [_part_from_dict(p) for p in d["content"]])


def _plain(cls: type, d: dict[str, Any]) -> Any:
    names = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in d.items() if k in names})


def params_from_dict(d: dict[str, Any]) -> GenParams:
    return _plain(GenParams, d)


def response_from_dict(d: dict[str, Any]) -> Response:
    r = _plain(Response, d)
    r.usage = _plain(Usage, d.get("usage") or {})
    return r


def scored_from_dict(d: dict[str, Any]) -> Scored:
    return _plain(Scored, d)


def sample_from_dict(d: dict[str, Any]) -> Sample:
    s = _plain(Sample, d)
    s.messages = [message_from_dict(m) for m in d["messages"]]
    return s


def request_from_dict(d: dict[str, Any]) -> Request:
    r = _plain(Request, d)
    r.messages = [message_from_dict(m) for m in d["messages"]]
    r.params = params_from_dict(d["params"])
    return r


def spec_from_dict(d: dict[str, Any]) -> RunSpec:
    s = _plain(RunSpec, d)
    s.params = params_from_dict(d.get("params") or {})
    return s


def result_from_dict(d: dict[str, Any]) -> RunResult:
    r = _plain(RunResult, d)
    r.spec = spec_from_dict(d["spec"])
    return r


def messages_digest(messages: list[Message]) -> str:
    """A stable hash of a prompt (text and image identities), for records and cache keys."""
    payload = [
        [m.role, [p.text if isinstance(p, Text) else p.digest() for p in m.content]] for m in messages
    ]
    return hashlib.sha256(json.dumps(payload, ensure_ascii=False).encode()).hexdigest()[:16]


class Task(Protocol):
    """One benchmark (one module in `tasks/`). See tasks/aime2025.py for the model to follow.

    A task from outside the package (docs/plugins.md) needs `name`, `load`, `score` and
    `aggregate`; `default_params`, `default_repeats` and `prompt_template` get defaults
    (evals/plugins.py), and the runner sets `judge`."""

    name: str
    prompt_template: str
    default_params: GenParams
    default_repeats: int
    judge: Any  # None, or the `--judge` model the runner attaches (model_adapters/judge.py) for unresolved answers

    def load(self, data: str | None, split: str | None, limit: int | None) -> list[Sample]: ...

    def score(self, sample: Sample, response: Response) -> Scored:
        """Called only for responses with an answer: errors and truncations never reach it."""
        ...

    def aggregate(self, samples: dict[str, Sample], scored: list[Scored]) -> dict[str, Any]:
        """Return {"metrics": {name: metric}, "breakdowns": {group: {category: metric}}}.

        `metrics["accuracy"]` is always the headline (avg@k with repeats, CircularEval for MMBench).

        A metric is the dict `evals.metrics.metric(...)` builds: value in [0, 1], ci, n, method.
        `scored` holds no error records (they are counted, never scored).
        """
        ...
