"""API-run figures: throughput against the limit, the whole CLI end to end, CPU per request, resume.

    python benchmarks/api_throughput.py [--latency 0.2] [--concurrency 64] [--requests 2000]
    python benchmarks/api_throughput.py serve --latency 0.2     (the server alone; prints its URL)

The physical limit of an API run is concurrency / latency requests per second. The server is the
test chat server (tests/chat_server.py) run in its own process, so that it does not share the
client's interpreter lock; it answers every call after a fixed `latency` with a ~4 KB reasoning
and a boxed answer, counts the calls it receives and notes when the first one arrived. Ask it for
those figures by writing a line to its stdin; it answers with one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

REASONING = ("Let me think about this step by step. " * 110).strip()  # ~4 KB, like a short chain


# ---- the server (in its own process) ----------------------------------------------------------

def serve(latency: float) -> None:
    from chat_server import ChatServer, Reply

    stats: dict[str, Any] = {"calls": 0, "first": None, "last": None}

    def note_arrival(body: dict[str, Any], attempt: int) -> None:  # called as each call arrives
        stats["calls"] += 1
        stats["first"] = stats["first"] or time.time()

    def answer(body: dict[str, Any]) -> Reply:  # called as each call is answered, after `latency`
        stats["last"] = time.time()
        return Reply(content="The answer is \\boxed{7}.", reasoning_content=REASONING,
                     prompt_tokens=60, completion_tokens=900)

    server = ChatServer(responder=answer, faults=note_arrival, latency=latency).start()
    print(server.url, flush=True)
    for _ in sys.stdin:  # one JSON line of figures per line asked; EOF ends the server
        print(json.dumps(stats), flush=True)


@dataclass
class Server:
    proc: subprocess.Popen[str]
    url: str

    def stats(self) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write("stats\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())


@contextmanager
def chat_server(latency: float) -> Iterator[Server]:
    proc = subprocess.Popen([sys.executable, __file__, "serve", "--latency", str(latency)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        yield Server(proc, proc.stdout.readline().strip())
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        proc.terminate()
        proc.wait(10)


# ---- workloads ---------------------------------------------------------------------------------

def write_problems(path: Path, n: int) -> Path:
    """An AIME-shaped JSONL file (`problem`, `answer`): n problems of about 400 characters."""
    with path.open("w", encoding="utf-8") as fh:
        for i in range(n):
            problem = f"Problem {i}: find the remainder when $7^{{{i + 100}}}$ is divided by 1000. " * 5
            fh.write(json.dumps({"id": f"p{i}", "problem": problem, "answer": str(7 + i % 3)}) + "\n")
    return path


def split_workload(requests: int) -> tuple[int, int]:
    """(problems, repeats) with problems x repeats == requests, AIME-like (few problems, many repeats)."""
    for problems in (40, 50, 25, 20, 10, 8, 5, 4, 2, 1):
        if requests % problems == 0:
            return problems, requests // problems
    return requests, 1


# ---- figure 1: the adapter alone, in this process ----------------------------------------------

def adapter_throughput(url: str, requests: int, concurrency: int) -> float:
    """Requests per second of OpenAIAdapter.generate on `requests` calls (the client side only)."""
    from evals.types import GenParams, Message, Request, RunSpec, Text
    from model_adapters.openai import OpenAIAdapter

    spec = RunSpec(task="aime2025", model="openai/bench", base_urls=[url], concurrency=concurrency)
    adapter = OpenAIAdapter("bench", spec)
    todo = [Request(f"q{i}#0", f"q{i}", 0, [Message("user", [Text(f"Problem {i}. " * 40)])],
                    GenParams(max_tokens=1024, seed=i)) for i in range(requests)]
    started = time.perf_counter()
    adapter.generate(todo, lambda r: None)
    return requests / (time.perf_counter() - started)


# ---- figures 2-4: the whole CLI in a subprocess ------------------------------------------------

@dataclass
class CliRun:
    wall: float  # launch to exit
    to_results: float  # launch to the last write of results.json
    to_first_call: float | None  # launch to the first chat completion reaching the server
    window: float | None  # the server's first arrival to its last answer (a fresh server only)
    cpu: float  # user + system seconds of the CLI process
    peak_rss_mb: float
    calls: int  # chat completions the server received during this run
    returncode: int
    stderr: str


def cli_command(url: str, data: Path, out: Path, repeats: int, concurrency: int, *extra: str) -> list[str]:
    return [sys.executable, "-m", "evals.cli", "run", "aime2025", "--model", "openai/bench",
            "--base-url", url, "--data", str(data), "--samples", str(repeats),
            "--concurrency", str(concurrency), "--out", str(out), "--quiet", *extra]


def run_cli(server: Server, command: list[str], out: Path) -> CliRun:
    before = server.stats()
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    launched = time.time()
    proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    stderr: list[str] = []
    reader = threading.Thread(target=lambda: stderr.append(proc.stderr.read() if proc.stderr else ""))
    reader.start()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.time() - launched
    proc.returncode = os.waitstatus_to_exitcode(status)
    reader.join()
    after = server.stats()
    results = list(out.glob("*/results.json"))
    fresh = before["calls"] == 0 and after["calls"] > 0  # the server's first call is this run's
    return CliRun(
        wall=wall,
        to_results=(results[0].stat().st_mtime - launched) if results else float("nan"),
        to_first_call=after["first"] - launched if fresh else None,
        window=after["last"] - after["first"] if fresh and after["last"] else None,
        cpu=usage.ru_utime + usage.ru_stime,
        peak_rss_mb=usage.ru_maxrss / 1024,
        calls=after["calls"] - before["calls"],
        returncode=proc.returncode,
        stderr="".join(stderr)[-2000:],
    )


# ---- the figures -------------------------------------------------------------------------------

def api_figures(latency: float, concurrency: int, requests: int, work: Path) -> dict[str, Any]:
    """Every API figure from one fresh server per workload; plain numbers for run.py to judge."""
    limit = concurrency / latency
    problems, repeats = split_workload(requests)
    data = write_problems(work / "problems.jsonl", problems)
    out = work / "runs"
    figures: dict[str, Any] = {"limit_rps": limit, "requests": requests, "latency": latency,
                               "concurrency": concurrency}
    with chat_server(latency) as server:
        e2e = run_cli(server, cli_command(server.url, data, out, repeats, concurrency), out)
        resume = run_cli(server, cli_command(server.url, data, out, repeats, concurrency), out)
        figures["adapter_rps"] = adapter_throughput(server.url, requests, concurrency)
    check(e2e, requests)
    figures.update(e2e_rps=requests / e2e.to_results, e2e_wall=e2e.wall, to_first_call=e2e.to_first_call,
                   window_rps=requests / e2e.window if e2e.window else float("nan"),
                   e2e_peak_rss_mb=e2e.peak_rss_mb, resume_calls=resume.calls, resume_wall=resume.wall,
                   resume_ratio=resume.wall / e2e.wall)
    figures.update(overhead_figures(work, concurrency, requests))
    return figures


def overhead_figures(work: Path, concurrency: int, requests: int) -> dict[str, Any]:
    """CPU per request of the whole CLI against an instant server: the marginal cost of a request
    (a large run minus a small one, divided by the difference), so start-up is not spread over it."""
    small = max(1, requests // 10)
    runs = {}
    with chat_server(0.0) as server:
        for n in (small, requests):
            problems, repeats = split_workload(n)
            data = write_problems(work / f"instant-{n}.jsonl", problems)
            out = work / f"instant-{n}"
            runs[n] = run_cli(server, cli_command(server.url, data, out, repeats, concurrency), out)
            check(runs[n], n)
    marginal = (runs[requests].cpu - runs[small].cpu) / (requests - small)
    return {"cpu_ms_per_request": 1000 * marginal, "startup_cpu_s": runs[small].cpu - small * marginal,
            "instant_rps": requests / runs[requests].wall}


# ---- the image path: MathVision testmini with its figures, side by side with the text path -------

SHARED_MATHVISION = ROOT.parent / "shared" / "data" / "mathvision"
SYNTHETIC_FIGURES = 304


def image_data(work: Path) -> tuple[Path, str]:
    """(data dir, where from): the real MathVision testmini (304 figures, 32 KB mean, up to 263 KB)
    when ../shared/data has it, else 304 synthetic JPEG figures of similar sizes in the same layout."""
    if (SHARED_MATHVISION / "data" / "testmini.jsonl").exists() and (SHARED_MATHVISION / "images").is_dir():
        return SHARED_MATHVISION, "MathVision testmini (real figures)"
    import random

    from PIL import Image as PILImage
    from PIL import ImageDraw

    folder = work / "mathvision"
    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "data").mkdir(exist_ok=True)
    rng = random.Random(0)
    rows = []
    for i in range(SYNTHETIC_FIGURES):
        im = PILImage.new("RGB", (rng.randrange(200, 900), rng.randrange(150, 600)), "white")
        draw = ImageDraw.Draw(im)
        for _ in range(rng.randrange(5, 40)):
            x, y = rng.randrange(im.width), rng.randrange(im.height)
            draw.line((x, y, rng.randrange(im.width), rng.randrange(im.height)), fill=(0, 0, 0), width=2)
        im.save(folder / "images" / f"{i}.jpg", quality=90)
        rows.append({"id": str(i), "question": f"How many lines are in the figure? <image1> ({i})", "options": [],
                     "answer": "7", "level": 1 + i % 5, "subject": "counting", "image": f"images/{i}.jpg"})
    (folder / "data" / "testmini.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder, "synthetic figures (no ../shared/data)"


def image_requests(data: Path, requests: int) -> list[Any]:
    """The requests an image run sends: every testmini problem, repeated to about `requests` calls."""
    from evals.runner import build_requests
    from evals.types import GenParams, RunSpec
    from tasks.mathvision import MathVision

    samples = MathVision().load(str(data), "testmini", None)
    spec = RunSpec(task="mathvision", model="openai/bench", repeats=max(1, round(requests / len(samples))),
                   params=GenParams(max_tokens=1024))
    return build_requests(samples, spec)


def mathvision_command(url: str, data: Path, out: Path, repeats: int, concurrency: int) -> list[str]:
    return [sys.executable, "-m", "evals.cli", "run", "mathvision", "--model", "openai/bench", "--base-url", url,
            "--data", str(data), "--split", "testmini", "--samples", str(repeats), "--concurrency", str(concurrency),
            "--out", str(out), "--quiet"]


def image_figures(latency: float, concurrency: int, requests: int, work: Path) -> dict[str, Any]:
    """The image path's figures, taken like the text path's: adapter alone, end to end (with the
    server's window), and CPU per request against an instant server."""
    data, source = image_data(work)
    todo = image_requests(data, requests)
    n, repeats = len(todo), todo[-1].repeat + 1
    limit = concurrency / latency
    figures: dict[str, Any] = {"source": source, "requests": n, "images": n // repeats, "limit_rps": limit}
    out = work / "image-runs"
    with chat_server(latency) as server:
        e2e = run_cli(server, mathvision_command(server.url, data, out, repeats, concurrency), out)
        check(e2e, n)
        figures["adapter_rps"] = adapter_throughput_on(server.url, todo, concurrency)
    figures.update(e2e_rps=n / e2e.to_results, e2e_wall=e2e.wall,
                   window_rps=n / e2e.window if e2e.window else float("nan"))
    small_repeats = max(1, repeats // 5)
    runs = {}
    with chat_server(0.0) as server:
        for k in (small_repeats, repeats):
            out = work / f"image-instant-{k}"
            runs[k] = run_cli(server, mathvision_command(server.url, data, out, k, concurrency), out)
            check(runs[k], k * (n // repeats))
    per_k = n // repeats
    figures["cpu_ms_per_request"] = 1000 * (runs[repeats].cpu - runs[small_repeats].cpu) / ((repeats - small_repeats) * per_k)
    import PIL.Image  # noqa: F401  (imported once per process by the first figure read: not a per-request cost)

    texts = without_images(todo)
    with chat_server(0.0) as server:  # the image path alone: the same prompts with and without figures
        rounds = [(adapter_cpu_ms(server.url, todo, concurrency), adapter_cpu_ms(server.url, texts, concurrency))
                  for _ in range(2)]  # alternated, best of 2: the machine is shared
    figures["adapter_cpu_ms_image"] = min(i for i, _ in rounds)
    figures["adapter_cpu_ms_text"] = min(t for _, t in rounds)
    return figures


def without_images(requests: list[Any]) -> list[Any]:
    from dataclasses import replace

    from evals.types import Message, Text

    return [replace(r, messages=[Message(m.role, [p for p in m.content if isinstance(p, Text)]) for m in r.messages])
            for r in requests]


def adapter_cpu_ms(url: str, todo: list[Any], concurrency: int) -> float:
    """CPU time of this process per request of one `generate` (a fresh adapter: every image is
    encoded in the measured call), against a server that answers at once."""
    from evals.types import RunSpec
    from model_adapters.openai import OpenAIAdapter

    adapter = OpenAIAdapter("bench", RunSpec(task="mathvision", model="openai/bench", base_urls=[url],
                                             concurrency=concurrency))
    started = time.process_time()
    adapter.generate(todo, lambda r: None)
    return 1000 * (time.process_time() - started) / len(todo)


def adapter_throughput_on(url: str, todo: list[Any], concurrency: int) -> float:
    from evals.types import RunSpec
    from model_adapters.openai import OpenAIAdapter

    adapter = OpenAIAdapter("bench", RunSpec(task="mathvision", model="openai/bench", base_urls=[url],
                                             concurrency=concurrency))
    started = time.perf_counter()
    adapter.generate(todo, lambda r: None)
    return len(todo) / (time.perf_counter() - started)


def check(run: CliRun, requests: int) -> None:
    if run.returncode != 0 or run.calls != requests:
        raise RuntimeError(f"benchmark CLI run failed (exit {run.returncode}, {run.calls}/{requests} calls): "
                           f"{run.stderr}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("what", nargs="?", choices=["serve", "all", "images"], default="all")
    p.add_argument("--latency", type=float, default=0.2, help="seconds the server takes per call")
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--requests", type=int, default=2000)
    args = p.parse_args()
    if args.what == "serve":
        serve(args.latency)
        return 0
    work = Path(tempfile.mkdtemp(prefix="bench-api-"))
    try:
        if args.what == "images":
            print(json.dumps(image_figures(args.latency, args.concurrency, args.requests, work), indent=2))
        else:
            print(json.dumps(api_figures(args.latency, args.concurrency, args.requests, work), indent=2))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
