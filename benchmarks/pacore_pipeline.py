"""PaCoRe against SeRe at GPU scale, side by side: how busy each keeps a heavy-tailed server, when
PaCoRe's first final record exists, and each run's peak RSS against the volume of its replies.

    python benchmarks/pacore_pipeline.py [--latency 0.4] [--sigma 1.0] [--seeds 0 1 2] [--problems 30] [--repeats 8]
                                         [--width 16] [--concurrency 64] [--pad 262144] [--rss-repeats 64]

The server is the test chat server (tests/chat_server.py) in its own process, a fresh one per run:
each call sleeps a lognormal time (median `--latency`, sigma `--sigma`) drawn from a seeded
generator in the order calls arrive, so both runs of a pair meet the same sequence of latencies.
The default is the issue's workload, median 0.4 s (`--latency 0.2`: the same shape in half the time).
Each run is the CLI in a subprocess (`os.wait4` gives its own peak RSS).

- Busy share: the seconds the server spent answering, over concurrency x its window (first arrival
  to last answer). SeRe sends as many calls as PaCoRe (problems x repeats x (width + 1)); the
  figure is PaCoRe's share over SeRe's (goal >= 0.98), per latency seed (`--seeds`: a run's end is
  decided by its few slowest calls, so one seed is one draw) and their mean.
- First final: when the server answered PaCoRe's first synthesis (its final record is appended
  right after) and its last round-0 call, in seconds after the first arrival.
- Memory: PaCoRe with every reply padded to `--pad` characters of reasoning (>= 1 GB of replies at
  the defaults) and SeRe with `--rss-repeats` repeats of the same replies; peak RSS over the
  replies' volume (goal < 0.25).

`--simulate N` drives the same scheduler (evals.modes.Pipeline) in simulated time over N latency
seeds instead: no client CPU, no HTTP, only where the calls' order leaves the server idle.

Prints one line per figure (`--json`: then a JSON line with everything). Exit status 0 whatever the figures.
"""

from __future__ import annotations

import argparse
import heapq
import json
import math
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(ROOT))

from api_throughput import write_problems  # noqa: E402
from pacore_round import chat_server  # noqa: E402

BUSY_GOAL = 0.98
RSS_GOAL = 0.25


def heavy_tailed_server(latency: float, sigma: float, pad: int = 0, seed: int = 0) -> Any:
    return chat_server(latency, "--sigma", str(sigma), "--pad-reasoning", str(pad), "--seed", str(seed))


def server_stats(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"{url}/stats", timeout=30) as r:
        return dict(json.loads(r.read()))


def run(url: str, data: Path, out: Path, repeats: int, concurrency: int, *extra: str) -> dict[str, Any]:
    """One CLI run to completion: its wall time, CPU, peak RSS and the server's stats."""
    command = [sys.executable, "-m", "evals.cli", "run", "aime2025", "--model", "openai/bench", "--base-url", url,
               "--data", str(data), "--samples", str(repeats), "--concurrency", str(concurrency),
               "--out", str(out), "--quiet", *extra]
    launched = time.time()
    proc = subprocess.Popen(command, cwd=ROOT, env={**os.environ, "HF_HUB_OFFLINE": "1"},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    stderr = proc.stderr.read()  # the run writes little there; read to the end, then reap
    _, status, usage = os.wait4(proc.pid, 0)
    stats = server_stats(url)
    window = stats["last_answer"] - stats["first_arrival"]
    figures = {"returncode": os.waitstatus_to_exitcode(status), "wall": time.time() - launched,
               "cpu": usage.ru_utime + usage.ru_stime, "peak_rss_mb": usage.ru_maxrss / 1024,
               "calls": stats["calls"], "window": window,
               "busy_share": stats["busy_seconds"] / (concurrency * window),
               "stderr": stderr.decode("utf-8", "replace")[-500:]}
    if stats.get("first_synthesis_answer") is not None:
        figures["first_final_at"] = stats["first_synthesis_answer"] - stats["first_arrival"]
        figures["last_round0_at"] = stats["last_plain_answer"] - stats["first_arrival"]
    return figures


def reply_volume_mb(run_root: Path) -> float:
    """The replies' text as the run saved them (calls.jsonl for PaCoRe, else samples.jsonl)."""
    (run_dir,) = run_root.iterdir()
    calls = run_dir / "calls.jsonl"
    return (calls if calls.exists() else run_dir / "samples.jsonl").stat().st_size / 2**20


def busy_figures(args: argparse.Namespace, work: Path) -> list[dict[str, Any]]:
    """One SeRe and one PaCoRe run per latency seed, one after the other."""
    data = write_problems(work / "problems.jsonl", args.problems)
    calls = args.problems * args.repeats * (args.width + 1)
    pairs = []
    for seed in args.seeds:
        pair: dict[str, Any] = {"seed": seed}
        for name, repeats, extra in (("sere", calls // args.problems, []),
                                     ("pacore", args.repeats, ["--mode", "pacore", "--pacore-widths", str(args.width)])):
            with heavy_tailed_server(args.latency, args.sigma, seed=seed) as url:
                pair[name] = run(url, data, work / f"busy-{name}-{seed}", repeats, args.concurrency, *extra)
        pair["ratio"] = pair["pacore"]["busy_share"] / pair["sere"]["busy_share"]
        pairs.append(pair)
    return pairs


def memory_figures(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    data = write_problems(work / "problems.jsonl", args.problems)
    figures = {}
    for name, repeats, extra in (("pacore", args.repeats, ["--mode", "pacore", "--pacore-widths", str(args.width)]),
                                 ("sere", args.rss_repeats, [])):
        with heavy_tailed_server(args.rss_latency, args.sigma, args.pad) as url:
            out = work / f"rss-{name}"
            f = run(url, data, out, repeats, args.concurrency, *extra)
        f["replies_mb"] = f["calls"] * args.pad / 2**20  # the padding alone: the replies' text
        f["saved_mb"] = reply_volume_mb(out)
        f["rss_over_replies"] = f["peak_rss_mb"] / f["replies_mb"]
        figures[name] = f
        shutil.rmtree(out, ignore_errors=True)  # a GB on disk: gone before the next run
    return figures


# ---- the same scheduler in simulated time (no client CPU, no HTTP) ------------------------------

class NoBackend:
    max_model_len = None

    def close(self) -> None:
        pass


def simulated_busy(next_request: Any, received: Any, concurrency: int, latency: float, sigma: float,
                   seed: int) -> float:
    """Busy share of a server with `concurrency` slots when `next_request` fills every free slot at
    once: each call takes a lognormal time drawn in the order calls go out (as the server draws them)."""
    from evals.types import Response, Usage

    rng = random.Random(seed)
    now, busy, in_flight, events, order = 0.0, 0.0, 0, [], 0
    while True:
        while in_flight < concurrency:
            req = next_request()
            if req is None:
                break
            took = latency * math.exp(sigma * rng.gauss(0, 1))
            busy, in_flight, order = busy + took, in_flight + 1, order + 1
            heapq.heappush(events, (now + took, order, req))
        if not events:
            return busy / (concurrency * now)
        now, _, req = heapq.heappop(events)
        in_flight -= 1
        received(Response(req.key, text="\\boxed{1}", usage=Usage(10, 5)))


def simulate(args: argparse.Namespace, seeds: list[int], lookahead_windows: float | None = None) -> list[float]:
    """PaCoRe's busy share over SeRe's per seed, the real Pipeline driven in simulated time."""
    from evals.modes import PaCoRe, Pipeline
    from evals.types import GenParams, Message, Request, RunSpec, Text

    calls = args.problems * args.repeats * (args.width + 1)
    ratios = []
    for seed in seeds:
        todo = iter(range(calls))
        sere = simulated_busy(lambda: (lambda i: None if i is None else Request(f"c{i}", "s", 0, [], GenParams()))(
            next(todo, None)), lambda r: None, args.concurrency, args.latency, args.sigma, seed)
        spec = RunSpec(task="aime2025", model="sim", mode="pacore", concurrency=args.concurrency,
                       pacore_widths=[args.width])
        mode = PaCoRe(NoBackend(), spec)  # type: ignore[arg-type]
        if lookahead_windows is not None:
            mode.lookahead = int(lookahead_windows * args.concurrency * args.width)
        requests = [Request(f"p{i}#{r}", f"p{i}", r, [Message("user", [Text(f"Problem {i}")])],
                            GenParams(max_tokens=100, seed=1000 * i + r))
                    for i in range(args.problems) for r in range(args.repeats)]
        run = Pipeline(mode, requests, None, mode.lookahead, mode.first)
        pacore = simulated_busy(run.next_request, run.received, args.concurrency, args.latency, args.sigma, seed)
        ratios.append(pacore / sere)
    return ratios


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.1f} (1 min) {five:.1f} (5 min)"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--latency", type=float, default=0.4, help="median seconds per call (the issue's)")
    p.add_argument("--sigma", type=float, default=1.0, help="lognormal sigma of the latency")
    p.add_argument("--problems", type=int, default=30)
    p.add_argument("--repeats", type=int, default=8)
    p.add_argument("--width", type=int, default=16)
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--pad", type=int, default=262144, help="characters of reasoning per reply in the memory runs")
    p.add_argument("--rss-repeats", type=int, default=64, help="SeRe repeats in the memory run")
    p.add_argument("--rss-latency", type=float, default=0.02, help="median seconds per call in the memory runs")
    p.add_argument("--seeds", type=int, nargs="+", default=[0], help="latency seeds: one SeRe/PaCoRe pair each")
    p.add_argument("--skip-memory", action="store_true")
    p.add_argument("--json", action="store_true", help="end with a JSON line of every figure")
    p.add_argument("--simulate", type=int, default=0, metavar="N",
                   help="only the scheduler in simulated time, over N latency seeds (no CPU, no HTTP)")
    args = p.parse_args()

    if args.simulate:
        seeds = list(range(args.simulate))
        for name, windows in (("ends as it goes (no end of run)", 0.0), ("as the harness runs it", None)):
            r = simulate(args, seeds, windows)
            print(f"simulated, {name}: PaCoRe busy / SeRe busy = {sum(r) / len(r):.3f} mean over {len(r)} seeds "
                  f"({min(r):.3f}-{max(r):.3f}; {sum(x < BUSY_GOAL for x in r)} seeds below {BUSY_GOAL})")
        return 0

    print(f"{os.cpu_count()} CPUs, {load()}", flush=True)
    work = Path(tempfile.mkdtemp(prefix="step3vl-pacore-"))
    try:
        busy = busy_figures(args, work)
        memory = {} if args.skip_memory else memory_figures(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"heavy-tailed server (median {args.latency:g} s, sigma {args.sigma:g}), {args.problems} problems, "
          f"concurrency {args.concurrency}; SeRe x {args.problems * args.repeats * (args.width + 1) // args.problems} "
          f"vs PaCoRe x {args.repeats} width {args.width}, as many calls; one pair per latency seed")
    for pair in busy:
        sere, pacore = pair["sere"], pair["pacore"]
        first, last0 = pacore.get("first_final_at"), pacore.get("last_round0_at")
        print(f"seed {pair['seed']}: busy SeRe {sere['busy_share']:.3f} ({sere['calls']} calls, {sere['window']:.1f} s) "
              f"PaCoRe {pacore['busy_share']:.3f} ({pacore['calls']} calls, {pacore['window']:.1f} s) = "
              f"{pair['ratio']:.3f}; PaCoRe's first final {first:.2f} s, last round-0 reply {last0:.2f} s "
              f"after the first call")
    ratios = [pair["ratio"] for pair in busy]
    mean = sum(ratios) / len(ratios)
    print(f"PaCoRe busy / SeRe busy = {mean:.3f} (mean of {len(ratios)}; {min(ratios):.3f}-{max(ratios):.3f}) "
          f"(goal >= {BUSY_GOAL}): {'ok' if mean >= BUSY_GOAL else 'MISSED'}")
    early = all(p["pacore"].get("first_final_at", 1e9) < p["pacore"].get("last_round0_at", 0) for p in busy)
    worst = max(p["pacore"]["first_final_at"] / p["pacore"]["last_round0_at"] for p in busy)
    print(f"PaCoRe's first final before its last round-0 reply: {'ok' if early else 'MISSED'} "
          f"(at most {worst:.3f} of the time to that reply)")
    for name, f in memory.items():
        print(f"peak RSS {name}: {f['peak_rss_mb']:.0f} MB for {f['calls']} replies of {args.pad} characters "
              f"({f['replies_mb']:.0f} MB; {f['saved_mb']:.0f} MB saved) = {f['rss_over_replies']:.3f} of the "
              f"replies (goal < {RSS_GOAL}): {'ok' if f['rss_over_replies'] < RSS_GOAL else 'MISSED'} "
              f"[{f['wall']:.0f} s, exit {f['returncode']}]")
    runs = [(f"{n} seed {p['seed']}", p[n]) for p in busy for n in ("sere", "pacore")] + list(memory.items())
    bad = [f"{n}: exit {f['returncode']} {f['stderr']}" for n, f in runs if f["returncode"] != 0]
    for line in bad:
        print(f"FAILED RUN {line}")
    print(f"{load()}")
    if args.json:
        print(json.dumps({"busy": busy, "memory": memory}, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
