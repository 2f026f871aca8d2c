"""The benchmark suite: every speed and memory figure of the harness, each against its goal.

    python benchmarks/run.py [--latency 0.2] [--concurrency 64] [--requests 2000] [--pairs 800]

Prints one table (figure, measured, goal, verdict; the image path, MathVision testmini with its
figures, next to the text path) and then the lines of the PaCoRe-round, PaCoRe-pipeline (busy share
against SeRe, first final record, peak RSS per GB of replies) and hf-batching benchmarks when those
scripts are present. Timings depend on the machine and on what
else runs on it: the header gives the CPU count and the load average before and after, so that a
figure taken on a busy machine reads as such. Exit status 0 whatever the figures (a benchmark,
not a test). docs/performance.md explains each figure and how to size --concurrency.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from api_throughput import api_figures, chat_server, image_figures, run_cli, write_problems
from scoring_pool import scoring_figures
from tsv_memory import tsv_figures, write_tsv

HEAVY_MODULES = ("torch", "transformers", "vllm")
EXTERNAL_TIMEOUT = 240  # seconds for each of the other issues' scripts
PIPELINE_TIMEOUT = 900  # pacore_pipeline.py: 6 runs of 4,080 calls (~50 s each) and two of 1 GB of replies


@dataclass
class Row:
    figure: str
    measured: str
    goal: str
    ok: bool | None  # None: a figure given for information, without a goal

    @property
    def verdict(self) -> str:
        return {True: "ok", False: "MISSED", None: ""}[self.ok]


def api_rows(f: dict) -> list[Row]:
    limit = f["limit_rps"]
    workload = f"{f['requests']} calls, {f['concurrency']} concurrent, {1000 * f['latency']:.0f} ms each"
    e2e = f["e2e_rps"] / limit
    return [
        Row(f"API throughput, in the server's window ({workload})",
            f"{f['window_rps']:.0f} req/s = {f['window_rps'] / limit:.2f} x limit", ">= 0.9",
            f["window_rps"] / limit >= 0.9),
        Row("API throughput, adapter alone (same workload)",
            f"{f['adapter_rps']:.0f} req/s = {f['adapter_rps'] / limit:.2f} x limit {limit:.0f}", ">= 0.9",
            f["adapter_rps"] / limit >= 0.9),
        Row("End to end: CLI launch -> results.json, same workload",
            f"{f['e2e_rps']:.0f} req/s = {e2e:.2f} x limit ({f['e2e_wall']:.2f} s)", ">= 0.6", e2e >= 0.6),
        Row("Launch -> first request reaches the server", f"{f['to_first_call']:.2f} s", "<= 1 s",
            f["to_first_call"] <= 1.0),
        Row("Harness CPU per request (instant server; whole CLI, HTTP included)",
            f"{f['cpu_ms_per_request']:.2f} ms (start-up + finish {f['startup_cpu_s']:.2f} s CPU)", "<= 2 ms",
            0 < f["cpu_ms_per_request"] <= 2.0),
        Row("Resume of a finished run: model calls", f"{f['resume_calls']}", "0", f["resume_calls"] == 0),
        Row("Resume of a finished run: time vs the original run",
            f"{f['resume_wall']:.2f} s = {f['resume_ratio']:.2f} x", "", None),
        Row("Peak RSS of the end-to-end CLI run", f"{f['e2e_peak_rss_mb']:.0f} MB", "", None),
    ]


def image_rows(text: dict, image: dict) -> list[Row]:
    """The image path next to the text path, each as a share of its own concurrency / latency."""
    rows = []
    workload = (f"{image['requests']} calls on {image['images']} figures of {image['source']} "
                f"vs {text['requests']} text calls")
    for name, key, goal in (("in the server's window (its first arrival to its last answer)", "window_rps", 0.9),
                            ("end to end (CLI launch -> results.json)", "e2e_rps", 0.7),
                            ("adapter alone", "adapter_rps", 0.9)):
        t, i = text[key] / text["limit_rps"], image[key] / image["limit_rps"]
        rows.append(Row(f"Image vs text, {name}; {workload}" if key == "window_rps" else f"Image vs text, {name}",
                        f"image {i:.2f} | text {t:.2f} x limit", f"image >= {goal}", i >= goal))
    whole = image["cpu_ms_per_request"] / text["cpu_ms_per_request"]
    rows.append(Row("Image vs text, client CPU per request (instant server; whole CLI, MathVision's scorer "
                    "included, which AIME's integer answers skip)",
                    f"image {image['cpu_ms_per_request']:.2f} ms | text {text['cpu_ms_per_request']:.2f} ms "
                    f"= {whole:.2f} x", "<= 1.5 x",
                    # a marginal cost <= 0 is noise (too few requests, a busy machine), never a pass
                    whole <= 1.5 and min(image["cpu_ms_per_request"], text["cpu_ms_per_request"]) > 0))
    alone = image["adapter_cpu_ms_image"] / image["adapter_cpu_ms_text"]
    rows.append(Row("Image vs text, the adapter alone on the same prompts with and without figures",
                    f"image {image['adapter_cpu_ms_image']:.2f} ms | text {image['adapter_cpu_ms_text']:.2f} ms "
                    f"= {alone:.2f} x (+{image['adapter_cpu_ms_image'] - image['adapter_cpu_ms_text']:.2f} ms)", "",
                    None))
    return rows


def import_row(work: Path) -> Row:
    """Which heavy modules an API run imports (a small run under `-X importtime`)."""
    data = write_problems(work / "imports.jsonl", 4)
    with chat_server(0.0) as server:
        proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "evals.cli", "run", "aime2025", "--model",
                               "openai/bench", "--base-url", server.url, "--data", str(data), "--samples", "1",
                               "--out", str(work / "imports"), "--quiet"],
                              capture_output=True, text=True, cwd=ROOT, env={**os.environ, "HF_HUB_OFFLINE": "1"},
                              check=False)
    imported = {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")}
    heavy = sorted(m for m in HEAVY_MODULES if m in imported)
    return Row("Heavy modules an API run imports (torch, transformers, vllm)", ", ".join(heavy) or "none", "none",
               not heavy and proc.returncode == 0)


def scoring_row(f: dict) -> Row:
    return Row(f"Scoring {f['pairs']} math-verify answers: pool of {f['workers']} vs 1 process",
               f"{f['speedup']:.2f}x ({f['one_per_s']:.0f} -> {f['pool_per_s']:.0f} /s, best of {f['rounds']}; "
               f"machine ceiling now {f['ceiling']:.2f}x; CPU-implied on idle cores {f['idle_estimate']:.2f}x"
               f"{'' if f['same_verdicts'] else '; VERDICTS DIFFER'})",
               f">= 1.7x on {f['workers']} cores", f["speedup"] >= 1.7 and f["same_verdicts"])


def tsv_rows(path: Path, work: Path) -> list[Row]:
    f = tsv_figures(path)
    loader = Row(f"Peak RSS iterating an MMBench-size TSV ({f['rows']} rows, {f['file_mb']:.0f} MB)",
                 f"{f['peak_mb']:.0f} MB = {f['ratio']:.2f} x file (interpreter {f['imported_mb']:.0f} MB; "
                 f"{f['ratio_above_interpreter']:.2f} x above it)", "< 2x", f["ratio"] < 2.0)
    with chat_server(0.0) as server:
        out = work / "mmbench-runs"
        run = run_cli(server, [sys.executable, "-m", "evals.cli", "run", "mmbench_en", "--model", "openai/bench",
                               "--base-url", server.url, "--data", str(path), "--out", str(out), "--quiet"], out)
    whole = Row("Peak RSS of a whole MMBench run on that TSV (instant server)",
                f"{run.peak_rss_mb:.0f} MB = {run.peak_rss_mb / f['file_mb']:.2f} x file ({run.calls} calls, "
                f"{run.wall:.1f} s)", "", None if run.returncode == 0 else False)
    return [loader, whole]


def external_lines(script: str, needs: str | None, args: list[str], timeout: float = EXTERNAL_TIMEOUT) -> list[str]:
    """The output of another issue's benchmark script, or one line saying why it was skipped."""
    path = HERE / script
    if not path.exists():
        return [f"{script}: skipped (not present yet)"]
    if needs and importlib.util.find_spec(needs) is None:
        return [f"{script}: skipped ({needs} is not installed)"]
    try:
        proc = subprocess.run([sys.executable, str(path), *args], capture_output=True, text=True, cwd=ROOT,
                              timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return [f"{script}: stopped after {timeout:.0f} s"]
    lines = proc.stdout.strip().splitlines()
    if proc.returncode not in (0, 1):  # pacore_round exits 1 when it misses its goal: still figures
        lines.append(f"(exit {proc.returncode}) {proc.stderr.strip().splitlines()[-1:] or ''}")
    return lines


def print_table(rows: list[Row]) -> None:
    widths = [max(len(getattr(r, name)) for r in rows) for name in ("figure", "measured", "goal")]
    header = ("figure", "measured", "goal")
    print("  ".join(h.ljust(w) for h, w in zip(header, widths)) + "  verdict")
    print("  ".join("-" * w for w in widths) + "  -------")
    for r in rows:
        print("  ".join(v.ljust(w) for v, w in zip((r.figure, r.measured, r.goal), widths)) + f"  {r.verdict}")


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.1f} (1 min) {five:.1f} (5 min)"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--latency", type=float, default=0.2)
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--requests", type=int, default=2000)
    p.add_argument("--pairs", type=int, default=600, help="math-verify answers for the scoring figure")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--rows", type=int, default=4300, help="rows of the MMBench-size TSV")
    args = p.parse_args()

    started = time.time()
    print(f"step3vl-eval benchmarks: {os.cpu_count()} CPUs, {load()}; Python {sys.version.split()[0]}", flush=True)
    work = Path(tempfile.mkdtemp(prefix="step3vl-bench-"))
    try:
        text = api_figures(args.latency, args.concurrency, args.requests, work)
        rows = api_rows(text)
        rows += image_rows(text, image_figures(args.latency, args.concurrency, args.requests, work))
        rows.append(import_row(work))
        rows.append(scoring_row(scoring_figures(args.pairs, args.workers)))
        rows += tsv_rows(write_tsv(work / "MMBench_DEV_EN_V11.tsv", args.rows, 24), work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print_table(rows)
    print(f"\n{load()} after {time.time() - started:.0f} s of measuring")
    print("\n== PaCoRe round (benchmarks/pacore_round.py) ==")
    print("\n".join(external_lines("pacore_round.py", None, ["--latency", "0.5", "--width", "16"])))
    print("\n== PaCoRe at GPU scale vs SeRe, heavy-tailed server (benchmarks/pacore_pipeline.py) ==")
    print("\n".join(external_lines("pacore_pipeline.py", None, ["--seeds", "0", "1", "2"], PIPELINE_TIMEOUT)))
    print("\n== MATH-V's parser in one frame-stack block (benchmarks/parser_stack.py) ==")
    print("\n".join(external_lines("parser_stack.py", None, [])))
    print("\n== hf batching (benchmarks/hf_batching.py) ==")
    print("\n".join(external_lines("hf_batching.py", "torch", [])))
    print(f"\ntotal {time.time() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
