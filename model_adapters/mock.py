"""Mock: a scripted smoke-test tool, not a model. It never calls anything.

Every request gets the same answer (`-O mock_text=...`, default below), or the answer scripted for
its sample id in a JSON file (`-O mock_script=FILE`, `{id: text}`). Use it to check a pipeline,
a config or a report offline; its scores mean nothing.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from evals.extract import split_thinking
from evals.types import Request, Response, RunSpec, Usage, UserError

DEFAULT_TEXT = "<think>mock reasoning</think>Final answer: A. The answer is \\boxed{0}."


class MockAdapter:
    def __init__(self, name: str, spec: RunSpec):
        opts = spec.adapter_options
        self.text = str(opts.get("mock_text", DEFAULT_TEXT))
        self.delay = float(opts.get("mock_delay", 0.0))
        self.script: dict[str, str] = {}
        if "mock_script" in opts:
            try:
                self.script = json.loads(Path(opts["mock_script"]).read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise UserError(f"cannot read mock script {opts['mock_script']}: {exc}") from None
        self.calls = 0

    def generate(self, requests: list[Request], on_response: Any = None) -> list[Response]:
        out = []
        for req in requests:
            self.calls += 1
            if self.delay:
                time.sleep(self.delay)
            raw = self.script.get(req.key, self.script.get(req.sample_id, self.text))
            reasoning, answer = split_thinking(raw)
            resp = Response(key=req.key, text=answer, reasoning=reasoning, finish_reason="stop",
                            usage=Usage(prompt_tokens=sum(len(m.text()) for m in req.messages) // 4,
                                        completion_tokens=len(raw) // 4))
            out.append(resp)
            if on_response:
                on_response(resp)
        return out

    def close(self) -> None:
        pass
