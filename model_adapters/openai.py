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
import email.utils
import ipaddress
import json
import os
import random
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
IMAGE_CACHE_ENTRIES = 256  # data URLs kept for resending (PaCoRe sends one image many times)


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


def to_openai_message(message: Message, image_cache: OrderedDict[str, str]) -> dict[str, Any]:
    if all(isinstance(p, Text) for p in message.content):
        return {"role": message.role, "content": message.text()}
    parts: list[dict[str, Any]] = []
    for p in message.content:
        if isinstance(p, Text):
            parts.append({"type": "text", "text": p.text})
        else:
            parts.append({"type": "image_url", "image_url": {"url": data_url(p, image_cache)}})
    return {"role": message.role, "content": parts}


def data_url(image: Image, cache: OrderedDict[str, str]) -> str:
    """The image as a data URL; a bounded cache (most recent first) keeps memory flat on big runs."""
    key = image.digest()
    url = cache.get(key)
    if url is None:
        url = cache[key] = f"data:{image.mime};base64,{image.as_b64()}"
        if len(cache) > IMAGE_CACHE_ENTRIES:
            cache.popitem(last=False)
    else:
        cache.move_to_end(key)
    return url


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
        self.image_cache: OrderedDict[str, str] = OrderedDict()
        self.calls = 0
        self.learned_limit = self.concurrency
        self.throttles = 0
        asyncio.run(self.check_servers())

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
        """Fail fast, with one line, on a server that cannot be reached or rejects the key."""
        async with self.session(10.0) as session:
            for url in self.base_urls:
                try:
                    async with session.get(f"{url}/models", proxy=self.proxies[url]) as r:
                        status = r.status
                except (aiohttp.ClientError, asyncio.TimeoutError, OSError, ValueError) as exc:
                    raise UserError(f"cannot reach {url}: {type(exc).__name__}") from None
                if status in (401, 403):
                    raise UserError(f"{url} refused the API key (HTTP {status})")

    def body(self, req: Request) -> bytes:
        p = req.params
        token_field = str(self.options.get("max_tokens_field", "max_tokens"))
        body: dict[str, Any] = {
            "model": self.model,
            "messages": [to_openai_message(m, self.image_cache) for m in req.messages],
            token_field: p.max_tokens,
            "temperature": p.temperature,
            "top_p": p.top_p,
        }
        if p.seed is not None:
            body["seed"] = p.seed
        if p.top_k and p.top_k > 0:
            body["top_k"] = p.top_k  # a vLLM/SGLang extension; hosted APIs reject it
        body.update(self.extra_body)
        return json.dumps(body, ensure_ascii=False).encode()

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
            raise FatalServerError(f"HTTP {status}: {content[:300].decode('utf-8', 'replace')}")
        return parse_completion(content, req.key, self.think_end, self.reasoning_field)

    async def send(self, session: aiohttp.ClientSession, limit: AdaptiveLimit, req: Request) -> Response:
        start = time.perf_counter()
        body = self.body(req)
        last = ""
        for attempt in range(self.max_retries + 1):
            try:
                await limit.acquire()
                try:
                    resp = await self.post_once(session, limit, req, body)
                finally:
                    await limit.release()
                limit.succeeded()
                resp.latency = time.perf_counter() - start
                resp.meta["attempts"] = attempt + 1
                return resp
            except RetryableError as exc:
                last = str(exc)
                if attempt < self.max_retries:
                    await asyncio.sleep(backoff_delay(attempt, exc.retry_after, self.backoff_base))
            except FatalServerError as exc:
                last = str(exc)
                break
        return Response(key=req.key, error=f"{last} (after {attempt + 1} attempts)",
                        latency=time.perf_counter() - start)

    async def worker(self, session: aiohttp.ClientSession, limit: AdaptiveLimit, todo: Iterator[Request],
                     done: Callable[[Response], None]) -> None:
        for req in todo:  # the workers share one iterator: each takes the next request
            done(await self.send(session, limit, req))

    async def run_all(self, requests: list[Request], on_response: Any) -> list[Response]:
        results: dict[str, Response] = {}

        def done(resp: Response) -> None:
            results[resp.key] = resp
            if on_response:
                on_response(resp)

        todo = iter(requests)
        limit = AdaptiveLimit(self.concurrency, self.learned_limit)
        async with self.session(self.timeout) as session:
            workers = [asyncio.ensure_future(self.worker(session, limit, todo, done))
                       for _ in range(min(self.concurrency, len(requests)))]
            try:
                await asyncio.gather(*workers)
            finally:
                for w in workers:
                    w.cancel()
                self.learned_limit, self.throttles = limit.limit, self.throttles + limit.throttles
        return [results[r.key] for r in requests]

    def generate(self, requests: list[Request], on_response: Any = None) -> list[Response]:
        if not requests:
            return []
        return asyncio.run(self.run_all(requests, on_response))

    def close(self) -> None:
        pass
