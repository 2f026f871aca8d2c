"""An optional LLM judge for multiple-choice answers that no rule resolved (`--judge MODEL`).

It follows VLMEvalKit's answer matching: the judge sees the question, the options and the answer,
and replies with the option letter whose meaning is closest, or Z when none is. Its reply is read
with the same VLMEvalKit rules (`evals.choice`); a reply that names nothing is `none` (scored
wrong). Differences from VLMEvalKit, on purpose: one call at temperature 0 instead of three tries
and then a random letter, and every unresolved pass is judged (VLMEvalKit stops at a group's first
failed pass: the circular verdict is the same).

MathVista's judge is the official answer extractor instead: the task builds the official few-shot
prompt and reads the reply itself (`reply`, tasks/mathvista.py); caching and counts are the same.

Every call is cached in `<run dir>/judge.jsonl` under a hash of (judge model, prompt), so re-scoring
or resuming never pays twice; failed calls are not cached and are retried next time.
Task options (`-T`): `judge=MODEL` (any adapter spec, e.g. `openai/gpt-4o-mini`),
`judge_base_url=URL` (an `openai/` judge defaults to `$OPENAI_BASE_URL`, else the OpenAI API),
`judge_api_key_env=NAME` (default `OPENAI_API_KEY`); any other `judge_<name>=value` becomes the
judge adapter's option `<name>`.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from evals import store
from evals.choice import Choice, infer_option_letter, infer_option_text, option_lines
from evals.types import Adapter, GenParams, Message, Request, RunSpec, Text, UserError

JUDGE_PARAMS = GenParams(max_tokens=2048, temperature=0.0, top_p=1.0, top_k=0)
OPENAI_API_URL = "https://api.openai.com/v1"
CJK = re.compile(r"[\u4e00-\u9fff]")

JUDGE_PROMPT_EN = (
    "You help me match an answer to the options of a single-choice question. You are given a "
    "question, its options and an answer; find the option whose meaning is closest to the answer. "
    "If the answer means something clearly different from every option, output Z. "
    "Output a single uppercase letter: one of {letters}, or Z.\n"
    "Example 1:\nQuestion: What is the main object in the image?\n"
    "Options: A. teddy bear B. rabbit C. cat D. dog\nAnswer: a cute teddy bear\nYour output: A\n"
    "Example 2:\nQuestion: What is the main object in the image?\n"
    "Options: A. teddy bear B. rabbit C. cat D. dog\nAnswer: Spider\nYour output: Z\n"
    "Example 3:\nQuestion: {question}\nOptions: {options}\nAnswer: {answer}\nYour output: "
)
JUDGE_PROMPT_CN = (
    "请帮我把一个答案与单选题的选项对应起来。你会得到一个问题、它的选项和一个答案，请找出与答案意思最接近的选项。"
    "如果答案与所有选项的意思都明显不同，输出 Z。只输出一个大写字母：{letters} 之一，或 Z。\n"
    "例 1：\n问题：图中最主要的物体是什么？\n选项：A. 泰迪熊 B. 兔子 C. 猫 D. 狗\n答案：一只可爱的泰迪熊\n输出：A\n"
    "例 2：\n问题：图中最主要的物体是什么？\n选项：A. 泰迪熊 B. 兔子 C. 猫 D. 狗\n答案：蜘蛛\n输出：Z\n"
    "例 3：\n问题：{question}\n选项：{options}\n答案：{answer}\n输出："
)


def judge_prompt(question: str, choices: dict[str, str], answer: str) -> str:
    template = JUDGE_PROMPT_CN if CJK.search(question) else JUDGE_PROMPT_EN
    return template.format(letters=", ".join(choices), question=question, options=option_lines(choices),
                           answer=answer)


class ChoiceJudge:
    def __init__(self, adapter: Adapter, model: str, cache_path: Path):
        self.adapter = adapter
        self.model = model
        self.cache_path = cache_path
        self.cache = read_cache(cache_path)
        self.writer = store.RecordWriter(cache_path)
        self.lock = threading.Lock()
        # Judge calls run on their own thread: `score` may be called from inside the main adapter's
        # event loop (the OpenAI adapter's on_response), where another asyncio.run would fail.
        self.worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="judge")
        self.tally = {"calls": 0, "cached": 0, "decided": 0, "no_option": 0, "undecided": 0, "errors": 0}

    def decide(self, question: str, choices: dict[str, str], answer: str) -> Choice:
        """The judge's letter (or Z) with rule `judge`; `none` when it names nothing or fails."""
        reply = self.reply(judge_prompt(question, choices, answer))
        if reply is None:
            return Choice(None, "none")
        letter = infer_option_letter(reply, list(choices)) or infer_option_text(reply, choices)
        self.count("decided" if letter and letter in choices else "no_option" if letter else "undecided")
        return Choice(letter, "judge") if letter else Choice(None, "none")

    def reply(self, prompt: str) -> str | None:
        """The judge's reply to `prompt`, from the cache when it has been asked before; None when the
        call failed. Tasks whose judge reads a free answer (MathVista's extractor) call it directly."""
        digest = hashlib.sha256(f"{self.model}\n{prompt}".encode()).hexdigest()
        cached = self.cache.get(digest)
        if cached is None:
            return self.ask(digest, prompt)
        self.count("cached")
        return cached

    def ask(self, digest: str, prompt: str) -> str | None:
        request = Request(key=f"judge:{digest[:16]}", sample_id=f"judge:{digest[:16]}", repeat=0,
                          messages=[Message("user", [Text(prompt)])], params=JUDGE_PARAMS)
        response = self.worker.submit(self.adapter.generate, [request]).result()[0]
        self.count("calls")
        if response.error is not None:
            self.count("errors")
            return None
        with self.lock:
            self.cache[digest] = response.text
            self.writer.append({"hash": digest, "model": self.model, "prompt": prompt, "output": response.text})
        return response.text

    def count(self, name: str) -> None:
        with self.lock:
            self.tally[name] += 1

    def counts(self) -> dict[str, Any]:
        return {"model": self.model, **self.tally}

    def close(self) -> None:
        self.worker.shutdown()
        self.writer.close()
        self.adapter.close()


def read_cache(path: Path) -> dict[str, str]:
    """The cached judge replies (a torn last line from a crash is dropped and repaired)."""
    cache: dict[str, str] = {}
    for n, record in enumerate(store.read_jsonl(path, repair=True), 1):
        if not isinstance(record.get("hash"), str) or not isinstance(record.get("output"), str):
            raise UserError(f"{path}: record {n} is not a judge cache record")
        cache[record["hash"]] = record["output"]
    return cache


def reject_unknown_options(task: str, options: dict[str, Any]) -> None:
    """Tasks take the judge's `-T judge*` options (the runner reads them); anything else is a typo."""
    unknown = [k for k in options if not k.startswith("judge")]
    if unknown:
        raise UserError(f"{task}: unknown task option {', '.join(sorted(unknown))}")


def make_judge(spec: RunSpec, run_dir: Path) -> ChoiceJudge | None:
    """The judge the run asked for (`spec.task_options["judge"]`), or None."""
    from model_adapters import load_adapter

    options = spec.task_options
    model = options.get("judge")
    if not model:
        return None
    extra = {k[len("judge_"):]: v for k, v in options.items()
             if k.startswith("judge_") and k not in ("judge_base_url", "judge_api_key_env")}
    base_url = options.get("judge_base_url")
    if not base_url and str(model).startswith("openai/"):  # e.g. --judge openai/gpt-4o-mini
        base_url = os.environ.get("OPENAI_BASE_URL", OPENAI_API_URL)
    judge_spec = RunSpec(
        task=spec.task, model=str(model), params=JUDGE_PARAMS, base_urls=[str(base_url)] if base_url else [],
        concurrency=spec.concurrency, timeout=spec.timeout, max_retries=spec.max_retries,
        api_key_env=str(options.get("judge_api_key_env", "OPENAI_API_KEY")), adapter_options=extra,
    )
    run_dir.mkdir(parents=True, exist_ok=True)
    return ChoiceJudge(load_adapter(judge_spec), str(model), run_dir / "judge.jsonl")
