"""Reasoning modes: adapters that wrap an adapter, so every mode works over every backend.

SeRe (sequential reasoning) is one long chain of thought per request; the wrapper only makes sure
the thinking is split off the answer whatever the backend returned.
"""

from __future__ import annotations

from typing import Any

from evals.extract import THINK_END, split_thinking
from evals.types import Adapter, Request, Response, RunSpec, UserError

MODES = ("sere", "pacore")


class SeRe:
    def __init__(self, inner: Adapter):
        self.inner = inner

    def generate(self, requests: list[Request], on_response: Any = None) -> list[Response]:
        def done(resp: Response) -> None:
            if THINK_END in resp.text:  # a server without a reasoning parser returns it inline
                reasoning, resp.text = split_thinking(resp.text)
                resp.reasoning = (resp.reasoning + "\n" + reasoning).strip()
            if on_response:
                on_response(resp)

        return self.inner.generate(requests, done)

    def close(self) -> None:
        self.inner.close()


def wrap_mode(adapter: Adapter, spec: RunSpec) -> Adapter:
    if spec.mode == "sere":
        return SeRe(adapter)
    if spec.mode == "pacore":
        raise UserError("--mode pacore is not available yet in this version (use --mode sere)")
    raise UserError(f"unknown mode {spec.mode!r} (use one of: {', '.join(MODES)})")
