"""The progress bar: done/total, rate, ETA, tokens and errors (rich, on stderr).

A mode that makes several model calls per request (PaCoRe) reports each call through `note_call`,
so a long first round shows its calls and tokens moving before any final answer is done.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from evals.types import Response


RATE_WINDOW = 200  # answers the rate is taken over


class RunProgress:
    def __init__(self, total: int, done: int, enabled: bool = True):
        self.tokens = 0
        self.errors = 0
        self.calls = 0
        self.enabled = enabled
        self.recent: deque[float] = deque(maxlen=RATE_WINDOW)  # when the last answers came
        self.bar = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"),
            TimeRemainingColumn(), TextColumn("{task.fields[calls]}"), TextColumn("{task.fields[tokens]} tok"),
            TextColumn("{task.fields[errors]} err"),
            console=Console(stderr=True), disable=not enabled, transient=False,
        )
        self.task_id = self.bar.add_task("eval", total=total, completed=done, rate="", calls="", tokens=0, errors=0)

    def note_call(self, response: Response) -> None:
        """One model call of a multi-call mode (its tokens counted here, not again in `advance`)."""
        self.calls += 1
        self.tokens += response.usage.completion_tokens
        self.bar.update(self.task_id, calls=f"{self.calls} calls", tokens=self.tokens)

    def advance(self, response: Response) -> None:
        if not self.calls:
            self.tokens += response.usage.completion_tokens
        self.errors += response.error is not None
        self.recent.append(time.monotonic())
        span = self.recent[-1] - self.recent[0]
        # Our own window: rich's `task.speed` sums its last 1,000 samples on every call (~1 ms each).
        rate = f"{(len(self.recent) - 1) / span:.1f} req/s" if span > 0 else ""
        self.bar.update(self.task_id, advance=1, rate=rate, tokens=self.tokens, errors=self.errors)

    def __enter__(self) -> RunProgress:
        self.bar.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.bar.__exit__(*exc)
