"""OpenAI-compatible chat completions over HTTP (vLLM, SGLang, hosted APIs).

Built on aiohttp's asyncio client rather than the `openai` SDK or httpx: one session whose
keep-alive connections are sized to the concurrency, and retry logic we control (the SDK retries
on its own schedule, and its import alone costs more than our whole start-up budget). httpx's
connection pool rescans every connection for every request, which at 64 in flight costs ~10 ms of
CPU per request; aiohttp's costs ~0.3 ms (docs/performance.md has the figures).

- A fixed pool of `concurrency` workers (default 64: long reasoning calls need many in flight)
  pulls requests one by one, so memory stays flat however many requests a run has, and a
  request's JSON body is built only when a worker takes it. A request waiting to be retried keeps
  its worker, so a struggling server gets fewer calls while it recovers, not more.
- Adaptive concurrency: a 429 halves the number of requests in flight (at most once a second);
  each run of successes as long as the current limit raises it by one, back up to `concurrency`.
- Retries with exponential backoff and full jitter on 429, 5xx, timeouts, dropped connections
  and malformed bodies; `Retry-After` (seconds or an HTTP date) is honoured.
- Several base URLs share the load (least in flight first): a fleet serving one model.
- Images are encoded once per run (read, checked, base64, JSON-escaped) and spliced into each
  body as bytes (`ImageLiterals`, `encode_body`): an image request costs about what a text one does.
- The API key comes from the environment (`OPENAI_API_KEY` or `--api-key-env NAME`) and is only
  ever put in a request header; a loopback or private server needs none.
- Reasoning from `reasoning_content` / `reasoning`, or split at the last `</think>`;
  `-O reasoning_field=NAME` reads another message field, `-O think_end=MARKER` splits at another
  marker (Qwen3-VL, gpt-oss, Kimi and others differ).
- `-O extra_body='{...}'` (a JSON object) is merged into every request body at the top level, as
  the `openai` SDK's `extra_body` is (e.g. `{"chat_template_kwargs": {"enable_thinking": true}}`);
  it is part of the run spec, so it changes the run id.
"""

from __future__ import annotations

import asyncio
import base64
import email.utils
import gc
import ipaddress
import json
import os
import random
import re
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlparse

import aiohttp
from aiohttp.helpers import get_env_proxy_for_url
from yarl import URL

from evals.extract import THINK_END, split_output
from evals.types import Image, Message, Request, Response, RunSpec, Text, Usage, UserError

DEFAULT_BASE_URL = "http://127.0.0.1:8000/v1"
RETRY_STATUSES = {408, 409, 425, 429, 500, 502, 503, 504, 520, 522, 524}
BACKOFF_BASE = 0.5
BACKOFF_CAP = 60.0
RETRY_AFTER_CAP = 300.0
THROTTLE_COOLDOWN = 1.0  # seconds: a burst of 429s from one overload halves the limit once
IMAGE_CACHE_BYTES = 256 * 2**20  # encoded images kept for resending (repeats; PaCoRe sends an image 16 times)
IMAGE_PROBATION_BYTES = 16 * 2**20  # images sent once so far, kept in case they come again
CHECK_TIMEOUT = 10.0  # seconds for the up-front server check, or --timeout when shorter
SAFE_MIME = re.compile(r"[a-z]+/[a-z0-9.+-]+")


class RetryableError(Exception):
    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class FatalServerError(Exception):
    """An answer that retrying cannot fix (a 4xx other than 429): an error record for this request."""


def is_local(url: str) -> bool:
    host = urlparse(url).hostname or ""
    if host in ("localhost", ""):
        return True
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        return False
    return addr.is_loopback or addr.is_private or addr.is_link_local


def env_proxy(url: str) -> str | None:
    """The proxy that HTTPS_PROXY / HTTP_PROXY / NO_PROXY name for `url`, if any."""
    try:
        proxy, _auth = get_env_proxy_for_url(URL(url))
    except LookupError:
        return None
    return str(proxy)


def parse_retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return min(max(float(value), 0.0), RETRY_AFTER_CAP)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return min(max(when.timestamp() - time.time(), 0.0), RETRY_AFTER_CAP)


def backoff_delay(attempt: int, retry_after: float | None, base: float = BACKOFF_BASE) -> float:
    if retry_after is not None:
        return retry_after
    return random.uniform(0, min(BACKOFF_CAP, base * 2**attempt))


class ImageLiterals:
    """Each image's data URL as a ready JSON string literal (bytes), encoded once per run.

    An image is read, checked, base64-encoded and JSON-escaped the first time a request needs it,
    and those bytes are spliced into each request body that sends it again (repeats, PaCoRe's
    parallel calls). Two segments, least recently used out first: an image seen once waits in a
    small one (`probation_bytes`), an image sent again moves to the large one (`max_bytes`). A run
    that sends each image once (MMBench's rows) thus keeps at most `probation_bytes` of them, never a
    second copy of the whole data set, and one that cycles through its images (avg@k: all problems,
    then all again) keeps them all while they fit. An inline image is known by its base64 text
    object, which an entry keeps alive, so no other image can take its identity.
    """

    def __init__(self, max_bytes: int = IMAGE_CACHE_BYTES, probation_bytes: int = IMAGE_PROBATION_BYTES):
        self.kept = Segment(max_bytes)
        self.probation = Segment(min(probation_bytes, max_bytes))
        self.encoded = 0  # how many times an image was encoded (a test and the benchmark read it)

    @property
    def size(self) -> int:
        return self.kept.size + self.probation.size

    def literal(self, image: Image) -> bytes:
        key = ("b64", id(image.b64)) if image.b64 is not None else ("path", image.path)
        found = self.kept.get(key, image)
        if found is not None:
            return found
        found = self.probation.pop(key, image)
        if found is not None:  # its second use: kept from now on
            self.kept.put(key, image, found)
            return found
        self.encoded += 1
        literal = encode_image(image)
        self.probation.put(key, image, literal)
        return literal


def encode_image(image: Image) -> bytes:
    """The image's data URL as a JSON string literal. Base64 made here from the file's bytes needs
    no escaping; inline base64 text (a data file's) goes through `json.dumps`, whatever it holds."""
    if image.b64 is None and SAFE_MIME.fullmatch(image.mime):
        return b'"data:' + image.mime.encode() + b";base64," + base64.b64encode(image.read_bytes()) + b'"'
    return json.dumps(f"data:{image.mime};base64,{image.as_b64()}").encode()


class Segment:
    """An LRU of encoded images bounded in bytes."""

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self.size = 0
        self.entries: OrderedDict[Any, tuple[Any, bytes]] = OrderedDict()

    def get(self, key: Any, image: Image) -> bytes | None:
        entry = self.entries.get(key)
        if entry is None or entry[0] is not image.b64:
            return None
        self.entries.move_to_end(key)
        return entry[1]

    def pop(self, key: Any, image: Image) -> bytes | None:
        found = self.get(key, image)
        if found is not None:
            del self.entries[key]
            self.size -= len(found)
        return found

    def put(self, key: Any, image: Image, literal: bytes) -> None:
        if len(literal) > self.max_bytes:
            return
        self.entries[key] = (image.b64, literal)
        self.size += len(literal)
        while self.size > self.max_bytes:
            _, (_, dropped) = self.entries.popitem(last=False)
            self.size -= len(dropped)


def to_openai_message(message: Message, slot: str, images: list[Image]) -> dict[str, Any]:
    """The message as the API takes it; each image's URL is `slot` for now, its image appended to
    `images`: `encode_body` splices the encoded images in (a 40 KB base64 string costs ~0.5 ms to
    pass through json.dumps, and it would be passed on every request)."""
    if all(isinstance(p, Text) for p in message.content):
        return {"role": message.role, "content": message.text()}
    parts: list[dict[str, Any]] = []
    for p in message.content:
        if isinstance(p, Text):
            parts.append({"type": "text", "text": p.text})
        else:
            images.append(p)
            parts.append({"type": "image_url", "image_url": {"url": slot}})
    return {"role": message.role, "content": parts}


def encode_body(body: dict[str, Any], slot: str, images: list[Image], literals: ImageLiterals) -> bytes:
    text = json.dumps(body, ensure_ascii=False).encode()
    if not images:
        return text
    pieces = text.split(json.dumps(slot).encode())
    if len(pieces) != len(images) + 1:  # cannot happen: the slot holds a random nonce
        raise AssertionError("image slot found in the request text")
    out = [pieces[0]]
    for image, piece in zip(images, pieces[1:]):
        out += [literals.literal(image), piece]
    return b"".join(out)


def parse_completion(body: bytes, key: str, think_end: str = THINK_END,
                     reasoning_field: str | None = None) -> Response:
    try:
        data = json.loads(body)
        choice = data["choices"][0]
        message = choice["message"]
    except (ValueError, KeyError, IndexError, TypeError):
        raise RetryableError("malformed response body (no choices[0].message)") from None
    content = message.get("content") or ""
    fields = (reasoning_field,) if reasoning_field else ("reasoning_content", "reasoning")
    reasoning = next((message[f] for f in fields if isinstance(message.get(f), str) and message[f]), "")
    finish = choice.get("finish_reason")
    if not reasoning:
        reasoning, content = split_output(content, finish, think_end)
    elif think_end in content:
        extra, content = split_output(content, finish, think_end)
        reasoning = f"{reasoning}\n{extra}".strip()
    usage = data.get("usage") or {}
    return Response(
        key=key, text=content.strip(), reasoning=reasoning.strip(), finish_reason=finish,
        usage=Usage(int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)),
    )


def extra_body_option(value: Any) -> dict[str, Any]:
    """`-O extra_body=` as a dict: a JSON object (the CLI parses it), or its text (a config file)."""
    if value is None:
        return {}
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise UserError(f"-O extra_body must be a JSON object, got {value!r}") from None
    if not isinstance(value, dict):
        raise UserError(f"-O extra_body must be a JSON object, got {json.dumps(value)}")
    if "messages" in value or "model" in value:
        raise UserError("-O extra_body may not replace 'messages' or 'model'")
    return value


def positive_option(value: Any, name: str) -> int:
    try:
        n = int(value)
    except (TypeError, ValueError):
        n = 0
    if n < 1:
        raise UserError(f"{name} must be a positive integer, got {value!r}")
    return n


class ListFeed:
    """A list of requests as a feed (`OpenAIAdapter.run_feed`): the next one, until none is left."""

    def __init__(self, requests: list[Request]):
        self.todo = iter(requests)

    def next_request(self) -> Request | None:
        return next(self.todo, None)


# ---- the server's context ----------------------------------------------------------------------
# SGLang (and vLLM before it clamped by itself) answers HTTP 400 when prompt + max_tokens exceed the
# context. Their words:
#   SGLang: "Requested token count exceeds the model's maximum context length of N tokens. You requested
#            a total of T tokens: P tokens from the input messages and M tokens for the completion. ..."
#   vLLM:   "This model's maximum context length is N tokens. However, you requested T tokens (P in the
#            messages, M in the completion). ..."  (newer: "... your prompt contains P input tokens ...")
#   vLLM 0.32, max_tokens alone over the context: "max_tokens=M cannot be greater than max_model_len=N. ..."
CONTEXT_LENGTH = re.compile(r"maximum context length (?:of |is )(\d+) tokens|max_model_len=(\d+)")
PROMPT_LENGTH = re.compile(r"(\d+) tokens from the input messages|\((\d+) in the messages|"
                           r"(?:has|contains) (?:at least )?(\d+) input tokens")
BYTES_PER_TOKEN = 3  # prompt estimate without a tokenize endpoint: over for English, about right for CJK
TOKENS_PER_MESSAGE = 8  # the chat template's role markers
TOKENS_PER_IMAGE = 1024


class ContextLimitError(Exception):
    """The server said the request does not fit its context, and how long the prompt is (if it did)."""

    def __init__(self, message: str, context: int, prompt_tokens: int | None):
        super().__init__(message)
        self.context = context
        self.prompt_tokens = prompt_tokens


def context_limit_error(status: int, content: bytes) -> ContextLimitError | None:
    if status != 400:
        return None
    text = content.decode("utf-8", "replace")
    found = CONTEXT_LENGTH.search(text)
    if not found:
        return None
    prompt = PROMPT_LENGTH.search(text)
    prompt_tokens = int(next(g for g in prompt.groups() if g)) if prompt else None
    return ContextLimitError(f"HTTP 400: {text[:300]}", int(next(g for g in found.groups() if g)), prompt_tokens)


def estimate_prompt_tokens(messages: list[Message]) -> int:
    text = sum(len(m.text().encode("utf-8")) for m in messages)
    images = sum(len(m.images()) for m in messages)
    return -(-text // BYTES_PER_TOKEN) + TOKENS_PER_MESSAGE * len(messages) + TOKENS_PER_IMAGE * images


def model_ids(listing: Any) -> list[str]:
    """The model names in a `/models` answer."""
    entries = listing.get("data") if isinstance(listing, dict) else None
    return [e["id"] for e in entries if isinstance(e, dict) and isinstance(e.get("id"), str)] \
        if isinstance(entries, list) else []


def unknown_model(status: int, reply: Any) -> bool:
    """A chat answer that says the path or the model name is wrong: 404 (vLLM, OpenAI, Ollama), or a
    400 whose message says the model does not exist (LiteLLM and other proxies)."""
    if status == 404:
        return True
    text = json.dumps(reply).lower() if status == 400 and reply is not None else ""
    return "model" in text and any(w in text for w in ("does not exist", "not found", "invalid model"))


def served_context(listing: Any, model: str) -> int | None:
    """`max_model_len` of the served model in a `/models` answer (vLLM and SGLang report it)."""
    entries = listing.get("data") if isinstance(listing, dict) else None
    if not isinstance(entries, list):
        return None
    entries = [e for e in entries if isinstance(e, dict)]
    mine = [e for e in entries if e.get("id") == model] or entries[:1]
    value = mine[0].get("max_model_len") if mine else None
    return value if isinstance(value, int) and value > 0 else None


class AdaptiveLimit:
    """How many requests may be in flight: halved on a 429, raised by one per `limit` successes.

    One per `generate` call (asyncio primitives belong to one event loop); the adapter carries the
    learned limit over to the next call, so a PaCoRe round starts where the last one ended."""

    def __init__(self, maximum: int, start: int | None = None):
        self.maximum = maximum
        self.limit = min(maximum, start or maximum)
        self.in_use = 0
        self.successes = 0
        self.last_cut = float("-inf")
        self.throttles = 0
        self.changed = asyncio.Condition()

    async def acquire(self) -> None:
        async with self.changed:
            await self.changed.wait_for(lambda: self.in_use < self.limit)
            self.in_use += 1

    async def release(self) -> None:
        async with self.changed:
            self.in_use -= 1
            self.changed.notify(max(1, self.limit - self.in_use))

    def throttled(self) -> None:
        now = time.monotonic()
        if now - self.last_cut >= THROTTLE_COOLDOWN:
            self.limit = max(1, self.limit // 2)
            self.last_cut, self.successes = now, 0
            self.throttles += 1

    def succeeded(self) -> None:
        if self.limit < self.maximum:
            self.successes += 1
            if self.successes >= self.limit:
                self.limit, self.successes = self.limit + 1, 0


class OpenAIAdapter:
    def __init__(self, name: str, spec: RunSpec):
        if not name:
            raise UserError("--model openai/NAME needs the served model's name")
        self.model = name
        self.base_urls = [u.rstrip("/") for u in (spec.base_urls or [os.environ.get("OPENAI_BASE_URL", DEFAULT_BASE_URL)])]
        self.concurrency = max(1, spec.concurrency)
        self.timeout = spec.timeout
        self.max_retries = spec.max_retries
        self.options = spec.adapter_options
        self.backoff_base = float(self.options.get("backoff_base", BACKOFF_BASE))
        self.extra_body = extra_body_option(self.options.get("extra_body"))
        self.think_end = str(self.options.get("think_end") or THINK_END)
        self.reasoning_field = str(self.options["reasoning_field"]) if self.options.get("reasoning_field") else None
        self.api_key = os.environ.get(spec.api_key_env) or None
        if self.api_key is None and not all(is_local(u) for u in self.base_urls):
            raise UserError(f"no API key for {self.base_urls[0]}: set {spec.api_key_env} "
                            "(or name another variable with --api-key-env)")
        self.in_flight = {u: 0 for u in self.base_urls}
        self.proxies = {u: env_proxy(u) for u in self.base_urls}
        try:  # -O image_cache_mb=N
            cache_mb = float(self.options.get("image_cache_mb", IMAGE_CACHE_BYTES / 2**20))
        except (TypeError, ValueError):
            raise UserError(f"image_cache_mb must be a number, got {self.options['image_cache_mb']!r}") from None
        self.images = ImageLiterals(int(cache_mb * 2**20))
        self.image_slot = f"\x00image-{secrets.token_hex(8)}\x00"  # where an image goes in a body
        self.frozen = False
        self.calls = 0
        self.learned_limit = self.concurrency
        self.throttles = 0
        asyncio.run(self.check_servers())
        self.max_model_len: int | None = None  # the server's context: -O max_model_len, else /models
        self.tokenize_url: str | None = None  # the server's tokenize endpoint, when it has one
        asyncio.run(self.learn_context())

    def headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        return headers

    def session(self, timeout: float) -> aiohttp.ClientSession:
        """Keep-alive connections, one per worker.

        Proxies come from the environment, looked up once per base URL (`env_proxy`): aiohttp's
        own `trust_env` looks them up, and reads ~/.netrc, in a thread for every request."""
        connector = aiohttp.TCPConnector(limit=self.concurrency, limit_per_host=0)
        return aiohttp.ClientSession(connector=connector, headers=self.headers(),
                                     timeout=aiohttp.ClientTimeout(total=timeout, sock_connect=min(30.0, timeout)))

    async def check_servers(self) -> None:
        """Fail fast, with one line, on a server that cannot be reached, rejects the key, has no
        OpenAI API at this path or does not serve this model: a run of such requests could only fail.
        `/models` decides when it lists the model; else one 1-token chat request does (a listing may
        omit aliases a server accepts, and some servers have no `/models`)."""
        async with self.session(min(CHECK_TIMEOUT, self.timeout)) as session:
            for url in self.base_urls:
                status, listing = await self.probe(session, url, "GET", "models")
                if status == 200 and self.model in model_ids(listing):
                    continue
                chat, reply = await self.probe(session, url, "POST", "chat/completions", {
                    "model": self.model, "messages": [{"role": "user", "content": "Say OK."}], "max_tokens": 1})
                if not unknown_model(chat, reply):
                    continue
                if status == 404:
                    raise UserError(f"no OpenAI API at {url} (HTTP 404 for /models and /chat/completions): "
                                    "check --base-url (vLLM and SGLang serve under http://HOST:PORT/v1)")
                served = model_ids(listing)
                raise UserError(f"{url} does not serve model {self.model!r} (HTTP {chat})"
                                + (f"; it serves: {', '.join(served[:5])}" if served else ""))

    async def probe(self, session: aiohttp.ClientSession, url: str, method: str, path: str,
                    body: dict[str, Any] | None = None) -> tuple[int, Any]:
        """(status, JSON body or None) of one check request; an unreachable server or a refused key
        is the user's error. A chat request that fails otherwise (0) is not: a busy server may be slow,
        and the run's own retries handle that."""
        try:
            async with session.request(method, f"{url}/{path}", json=body, proxy=self.proxies[url]) as r:
                status = r.status
                try:
                    content = await r.json(content_type=None)
                except (ValueError, aiohttp.ClientError):
                    content = None
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError, ValueError) as exc:
            if method == "POST":
                return 0, None
            if isinstance(exc, asyncio.TimeoutError):
                raise UserError(f"cannot reach {url}: no answer within {min(CHECK_TIMEOUT, self.timeout):g} s "
                                "(--timeout)") from None
            raise UserError(f"cannot reach {url}: {type(exc).__name__}") from None
        if status in (401, 403):
            raise UserError(f"{url} refused the API key (HTTP {status})")
        return status, content

    async def learn_context(self) -> None:
        """The server's context (`max_model_len` in `/models`, or `-O max_model_len`) and whether it
        counts prompt tokens for us (vLLM's `/tokenize`). A server that says neither: nothing is fitted
        up front, and a 400 naming the context still gets one retry (`resend_within_context`)."""
        given = self.options.get("max_model_len")
        async with self.session(min(10.0, self.timeout)) as session:
            if given is not None:
                self.max_model_len = positive_option(given, "max_model_len")
            else:
                found = [await self.get_json(session, f"{url}/models") for url in self.base_urls]
                contexts = [c for c in (served_context(f, self.model) for f in found) if c]
                self.max_model_len = min(contexts) if contexts else None
            if self.max_model_len is not None:
                self.tokenize_url = await self.find_tokenize(session)

    async def get_json(self, session: aiohttp.ClientSession, url: str, body: dict[str, Any] | None = None) -> Any:
        try:
            call = session.get(url) if body is None else session.post(url, json=body)
            async with call as r:
                return await r.json(content_type=None) if r.status == 200 else None
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError, ValueError):
            return None

    async def find_tokenize(self, session: aiohttp.ClientSession) -> str | None:
        base = self.base_urls[0]
        probe = {"model": self.model, "messages": [{"role": "user", "content": "hi"}], "add_generation_prompt": True}
        for url in (f"{base.removesuffix('/v1')}/tokenize", f"{base}/tokenize"):
            found = await self.get_json(session, url, probe)
            if isinstance(found, dict) and isinstance(found.get("count"), int):
                return url
        return None

    async def fitted_max_tokens(self, session: aiohttp.ClientSession, req: Request) -> int:
        """The request's max_tokens, cut to what the server's context leaves after the prompt: the
        prompt as the server's tokenize endpoint counts it, else estimated."""
        wanted = req.params.max_tokens
        if self.max_model_len is None or estimate_prompt_tokens(req.messages) + wanted <= self.max_model_len:
            return wanted
        counted = await self.count_prompt_tokens(session, req) if self.tokenize_url else None
        prompt = counted if counted is not None else estimate_prompt_tokens(req.messages)
        return max(1, min(wanted, self.max_model_len - prompt))

    async def count_prompt_tokens(self, session: aiohttp.ClientSession, req: Request) -> int | None:
        assert self.tokenize_url is not None
        images: list[Image] = []
        body: dict[str, Any] = {"model": self.model, "add_generation_prompt": True,
                                "messages": [to_openai_message(m, self.image_slot, images) for m in req.messages]}
        if "chat_template_kwargs" in self.extra_body:  # they change the prompt (e.g. enable_thinking)
            body["chat_template_kwargs"] = self.extra_body["chat_template_kwargs"]
        try:
            async with session.post(self.tokenize_url, data=encode_body(body, self.image_slot, images, self.images)) as r:
                found = await r.json(content_type=None) if r.status == 200 else None
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError, ValueError):
            return None
        count = found.get("count") if isinstance(found, dict) else None
        return count if isinstance(count, int) else None

    async def resend_within_context(self, session: aiohttp.ClientSession, limit: AdaptiveLimit, req: Request,
                                    exc: ContextLimitError) -> Response:
        """Once more, with the completion budget the server's own count allows; else an error that says so."""
        self.max_model_len = min(self.max_model_len or exc.context, exc.context)  # fit the next ones up front
        prompt = exc.prompt_tokens
        if prompt is None:  # the server named its context only: count the prompt, else estimate it (over)
            counted = await self.count_prompt_tokens(session, req) if self.tokenize_url else None
            prompt = counted if counted is not None else estimate_prompt_tokens(req.messages)
        room = exc.context - prompt
        if room < 1:
            return Response(req.key, error=f"the prompt leaves no room in the server's context of {exc.context} "
                                           f"tokens: {exc}")
        try:
            resp = await self.send_with_retries(session, limit, req, min(room, req.params.max_tokens))
        except ContextLimitError as again:
            return Response(req.key, error=f"over the server's context of {again.context} tokens even with "
                                           f"max_tokens {room}: {again}")
        resp.meta["max_tokens"] = min(room, req.params.max_tokens)
        resp.meta["context_retry"] = True
        return resp

    def body(self, req: Request, max_tokens: int | None = None) -> bytes:
        p = req.params
        token_field = str(self.options.get("max_tokens_field", "max_tokens"))
        images: list[Image] = []
        body: dict[str, Any] = {
            "model": self.model,
            "messages": [to_openai_message(m, self.image_slot, images) for m in req.messages],
            token_field: p.max_tokens if max_tokens is None else max_tokens,
            "temperature": p.temperature,
            "top_p": p.top_p,
        }
        if p.seed is not None:
            body["seed"] = p.seed
        if p.top_k and p.top_k > 0:
            body["top_k"] = p.top_k  # a vLLM/SGLang extension; hosted APIs reject it
        body.update(self.extra_body)
        return encode_body(body, self.image_slot, images, self.images)

    def pick_url(self) -> str:
        return min(self.base_urls, key=lambda u: self.in_flight[u])

    async def post_once(self, session: aiohttp.ClientSession, limit: AdaptiveLimit, req: Request,
                        body: bytes) -> Response:
        url = self.pick_url()
        self.in_flight[url] += 1
        self.calls += 1
        try:
            async with session.post(f"{url}/chat/completions", data=body, proxy=self.proxies[url]) as r:
                status, content = r.status, await r.read()
                retry_after = r.headers.get("Retry-After")
        except asyncio.TimeoutError:
            raise RetryableError(f"timed out after {self.timeout:g} s") from None
        except (aiohttp.ClientError, OSError) as exc:
            raise RetryableError(f"connection failed: {type(exc).__name__}") from None
        finally:
            self.in_flight[url] -= 1
        if status == 429:
            limit.throttled()
        if status in RETRY_STATUSES:
            raise RetryableError(f"HTTP {status}", parse_retry_after(retry_after))
        if status >= 400:
            raise context_limit_error(status, content) or FatalServerError(
                f"HTTP {status}: {content[:300].decode('utf-8', 'replace')}")
        return parse_completion(content, req.key, self.think_end, self.reasoning_field)

    async def send(self, session: aiohttp.ClientSession, limit: AdaptiveLimit, req: Request) -> Response:
        start = time.perf_counter()
        max_tokens = await self.fitted_max_tokens(session, req)
        try:
            resp = await self.send_with_retries(session, limit, req, max_tokens)
        except ContextLimitError as exc:
            resp = await self.resend_within_context(session, limit, req, exc)
        else:
            if max_tokens != req.params.max_tokens:
                resp.meta["max_tokens"] = max_tokens  # what was asked for, within the server's context
        resp.latency = time.perf_counter() - start
        return resp

    async def send_with_retries(self, session: aiohttp.ClientSession, limit: AdaptiveLimit, req: Request,
                                max_tokens: int) -> Response:
        body = self.body(req, max_tokens)
        last = ""
        for attempt in range(self.max_retries + 1):
            try:
                await limit.acquire()
                try:
                    resp = await self.post_once(session, limit, req, body)
                finally:
                    await limit.release()
                limit.succeeded()
                resp.meta["attempts"] = attempt + 1
                return resp
            except RetryableError as exc:
                last = str(exc)
                if attempt < self.max_retries:
                    await asyncio.sleep(backoff_delay(attempt, exc.retry_after, self.backoff_base))
            except FatalServerError as exc:
                last = str(exc)
                break
        return Response(key=req.key, error=f"{last} (after {attempt + 1} attempts)")

    async def run_feed(self, feed: Any, on_response: Callable[[Response], None]) -> None:
        """`concurrency` workers send what `feed.next_request()` hands out. None from the feed means
        nothing is ready now: a worker waits for a reply to come back (a reply may make more ready)
        and stops once nothing is ready and nothing is in flight."""
        limit = AdaptiveLimit(self.concurrency, self.learned_limit)
        replied = asyncio.Event()
        in_flight = 0

        async def worker(session: aiohttp.ClientSession) -> None:
            nonlocal in_flight
            while True:
                req = feed.next_request()
                if req is None:
                    if in_flight == 0:
                        replied.set()  # the others see it too, and stop
                        return
                    replied.clear()
                    await replied.wait()
                    continue
                in_flight += 1
                resp = await self.send(session, limit, req)
                on_response(resp)
                in_flight -= 1
                replied.set()

        async with self.session(self.timeout) as session:
            workers = [asyncio.ensure_future(worker(session)) for _ in range(self.concurrency)]
            try:
                await asyncio.gather(*workers)
            finally:
                for w in workers:
                    w.cancel()
                self.learned_limit, self.throttles = limit.limit, self.throttles + limit.throttles

    def generate_feed(self, feed: Any, on_response: Callable[[Response], None]) -> None:
        """Requests as a feed rather than a list (PaCoRe's pipeline): see `run_feed`."""
        self.freeze_once()
        asyncio.run(self.run_feed(feed, on_response))

    def generate(self, requests: list[Request], on_response: Any = None) -> list[Response]:
        if not requests:
            return []
        results: dict[str, Response] = {}

        def done(resp: Response) -> None:
            results[resp.key] = resp
            if on_response:
                on_response(resp)

        self.freeze_once()
        asyncio.run(self.run_feed(ListFeed(requests), done))
        return [results[r.key] for r in requests]

    def freeze_once(self) -> None:
        if not self.frozen:
            # Everything alive now (modules, the loaded samples) lives until the run ends: moved out
            # of the collector's reach, a full collection no longer walks it. Unfrozen, one took
            # 0.1-0.5 s on a MathVision run (math-verify and sympy loaded), a stall in mid-run.
            gc.freeze()
            self.frozen = True

    def close(self) -> None:
        pass
