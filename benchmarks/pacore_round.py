"""How long a PaCoRe round takes, in units of one call's latency (goal: a width-16 round <= 1.3).

    python benchmarks/pacore_round.py [--latency 0.5] [--width 16] [--samples 1] [--concurrency 64]

Starts the test chat server (tests/chat_server.py, in its own process so that it does not share
the client's interpreter lock) with a fixed latency per call, runs PaCoRe over the OpenAI-compatible
adapter for `--samples` problems, and prints the wall time of each
round divided by the latency. Round 0 sends width x samples calls at once; with enough
concurrency it should cost about one latency (plus HTTP overhead), not width x latency.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from evals.modes import PaCoRe  # noqa: E402
from evals.types import GenParams, Message, Request, RunSpec, Text  # noqa: E402
from model_adapters.openai import OpenAIAdapter  # noqa: E402

GOAL = 1.3


def problems(n: int) -> list[Request]:
    return [Request(f"q{i}#0", f"q{i}", 0, [Message("user", [Text(f"Problem {i}: what is {i} + {i}?")])],
                    GenParams(max_tokens=1024, seed=i)) for i in range(n)]


@contextmanager
def chat_server(latency: float, *flags: str) -> Iterator[str]:
    """The test server in a subprocess (with more of its flags, e.g. `--sigma 1.0`); yields its base URL."""
    proc = subprocess.Popen([sys.executable, str(ROOT / "tests" / "chat_server.py"), "--latency", str(latency),
                             *flags], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        yield proc.stdout.readline().strip()
    finally:
        proc.terminate()
        proc.wait(10)


def single_call_seconds(adapter: OpenAIAdapter) -> float:
    started = time.perf_counter()
    adapter.generate(problems(1))
    return time.perf_counter() - started


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--latency", type=float, default=0.5, help="seconds the server takes per call")
    p.add_argument("--width", type=int, default=16)
    p.add_argument("--samples", type=int, default=1, help="problems whose rounds go out together")
    p.add_argument("--concurrency", type=int, default=64)
    args = p.parse_args()

    with chat_server(args.latency) as url:
        spec = RunSpec(task="aime2025", model="openai/bench", mode="pacore", base_urls=[url],
                       concurrency=args.concurrency, pacore_widths=[args.width])
        inner = OpenAIAdapter("bench", spec)
        single_call_seconds(inner)  # warm up the client code paths
        single = single_call_seconds(inner)
        mode = PaCoRe(inner, spec)
        mode.generate(problems(args.samples))

    print(f"latency {args.latency:.3f} s; one call through the adapter {single:.3f} s "
          f"({single / args.latency:.2f} x latency)")
    print(f"{args.samples} problem(s) x width {args.width} (+1 synthesis), concurrency {args.concurrency}, "
          f"{mode.sent} calls sent")
    for i, seconds in enumerate(mode.round_seconds):
        width = mode.widths[i]
        print(f"round {i} (width {width:>2}, {width * args.samples:>4} calls): {seconds:.3f} s = "
              f"{seconds / args.latency:.2f} x latency")
    ratio = mode.round_seconds[0] / args.latency
    print(f"width-{args.width} round / one call through the adapter = {mode.round_seconds[0] / single:.2f} "
          "(the adapter's fixed cost per generate() taken out)")
    verdict = "ok" if ratio <= GOAL else "SLOWER THAN THE GOAL"
    print(f"width-{args.width} round / one call's latency = {ratio:.2f} (goal <= {GOAL}): {verdict}")
    return 0 if ratio <= GOAL else 1


if __name__ == "__main__":
    sys.exit(main())
