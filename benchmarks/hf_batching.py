"""hf adapter throughput at batch 1 and batch 8, side by side, on the tiny VLM (or a model you name).

    python benchmarks/hf_batching.py [--model DIR] [--requests 32] [--max-tokens 32] [--batch 1 8]

Every request is an image plus a question, greedy, with a fixed `max_tokens`; the random tiny
model rarely emits a stop token, so each request generates close to max_tokens and the runs
compare like for like (the generated-token totals are printed to show it). One run each, after
one warm-up request.
"""

from __future__ import annotations

import argparse
import base64
import io
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from evals.types import GenParams, Image, Message, Request, RunSpec, Text  # noqa: E402


def image(i: int) -> Image:
    from PIL import Image as PILImage

    buf = io.BytesIO()
    PILImage.new("RGB", (64 + 8 * (i % 4), 48 + 8 * (i % 3)), (40 * i % 256, 90, 160)).save(buf, "PNG")
    return Image(b64=base64.b64encode(buf.getvalue()).decode(), mime="image/png")


def requests(n: int, max_tokens: int) -> list[Request]:
    out = []
    for i in range(n):
        parts = [image(i), Text(f"Question {i}: what is the area of the figure? " + "Explain. " * (i % 5))]
        out.append(Request(f"q{i}#0", f"q{i}", 0, [Message("user", parts)], GenParams(max_tokens, 0.0, seed=i)))
    return out


def measure(model: str, batch: int, reqs: list[Request], trust: bool) -> tuple[float, int]:
    from model_adapters.hf import HFAdapter

    options = {"batch_size": batch, "trust_remote_code": trust}
    adapter = HFAdapter(model, RunSpec(task="bench", model=f"hf/{model}", adapter_options=options))
    adapter.generate(reqs[:1])  # warm-up: first-call allocations and kernel selection
    started = time.perf_counter()
    responses = adapter.generate(reqs)
    elapsed = time.perf_counter() - started
    adapter.close()
    assert all(r.error is None for r in responses), [r.error for r in responses if r.error]
    return len(reqs) / elapsed, sum(r.usage.completion_tokens for r in responses)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="model directory (default: build the tiny Qwen2.5-VL)")
    ap.add_argument("--requests", type=int, default=32)
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--trust-remote-code", action="store_true", help="for a model that ships its own code")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch CPU threads (default 1: on a shared 2-core machine a second OpenMP thread "
                         "spins against other processes and the tiny model's steps take many times longer)")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model
        if model is None:
            from tiny_vlm import build_tiny_qwen_vl

            model = str(build_tiny_qwen_vl(Path(tmp) / "tiny_qwen_vl"))
        reqs = requests(args.requests, args.max_tokens)
        print(f"model {model if args.model else 'tiny Qwen2.5-VL (random weights)'}; {args.requests} image requests, "
              f"max_tokens {args.max_tokens}, greedy; torch {torch.__version__}, {torch.get_num_threads()} threads")
        results = {b: measure(model, b, reqs, args.trust_remote_code) for b in args.batch}
    base = results[args.batch[0]][0]
    print(f"{'batch':>5} {'samples/s':>10} {'speed-up':>9} {'tokens':>7}")
    for b, (rate, tokens) in results.items():
        print(f"{b:>5} {rate:>10.2f} {rate / base:>8.2f}x {tokens:>7}")


if __name__ == "__main__":
    main()
