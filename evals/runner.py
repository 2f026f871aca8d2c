"""The runner: samples x repeats -> requests -> mode(adapter) -> scored records -> results.json.

One readable loop. It never branches on the mode or the backend; it skips what the run dir
already holds, appends each finished record at once, and writes results.json atomically.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import time
import zlib
from dataclasses import asdict, fields, is_dataclass, replace
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any, Iterator

from evals import metrics, store
from model_adapters.judge import make_judge
from evals.modes import first_round_answers, wrap_mode
from evals.progress import RunProgress
from evals.scoring import score_many, score_response
from reports.thumbnails import save_inline_thumbnails
from evals.types import (
    Image, Message, Request, Response, RunResult, RunSpec, Sample, Scored, Task, Text, UserError,
    messages_digest, response_from_dict, scored_from_dict,
)
from model_adapters import load_adapter
from tasks import get_task
from tasks.data import data_source


def request_seed(seed: int, sample_id: str, repeat: int) -> int:
    """Distinct, reproducible per (run seed, sample, repeat): sampled repeats must differ."""
    return (seed * 1_000_003 + zlib.crc32(sample_id.encode()) + repeat * 7919) % (2**31 - 1)


def load_samples(task: Task, spec: RunSpec) -> list[Sample]:
    """The task's samples, with `--system-prompt` as a first system message when given."""
    samples = task.load(spec.data, spec.split, spec.limit)
    if spec.system_prompt:
        system = Message("system", [Text(spec.system_prompt)])
        samples = [replace(s, messages=[system, *s.messages]) for s in samples]
    return samples


def build_requests(samples: list[Sample], spec: RunSpec) -> list[Request]:
    return [Request(f"{s.id}#{repeat}", s.id, repeat, s.messages,
                    replace(spec.params, seed=request_seed(spec.seed, s.id, repeat)))
            for repeat in range(spec.repeats) for s in samples]


def prompt_record(messages: list) -> list[dict[str, Any]]:
    """The prompt as saved: text verbatim, images by path or digest (never their bytes)."""
    return [
        {"role": m.role, "content": [
            {"type": "text", "text": p.text} if isinstance(p, Text)
            else {"type": "image", "path": p.path, "digest": p.digest(), "mime": p.mime}
            for p in m.content
        ]}
        for m in messages
    ]


def make_record(request: Request, sample: Sample, response: Response, scored: Scored,
                prompt: tuple[str, list[dict[str, Any]]] | None = None) -> dict[str, Any]:
    """One line of samples.jsonl; `prompt` is (digest, prompt record) when the caller has it already."""
    digest, saved = prompt or (messages_digest(request.messages), prompt_record(request.messages))
    return {
        "key": request.key,
        "sample_id": request.sample_id,
        "repeat": request.repeat,
        "prompt_digest": digest,
        "prompt": saved,
        "target": sample.target,
        "metadata": sample.metadata,
        "response": plain(response),
        "scored": plain(scored),
    }


def release(response: Response) -> None:
    """Drop a recorded response's long strings: the list that `generate` returns still holds the
    object, and a run's answers (64K-token reasoning x thousands) must not pile up in memory."""
    response.text = response.reasoning = ""
    response.trace = []


def plain(value: Any) -> Any:
    """`dataclasses.asdict` without its deep copy of every leaf (a record is serialised at once)."""
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def summarize(task: Task, samples: dict[str, Sample], records: list[dict[str, Any]]) -> dict[str, Any]:
    scored = [scored_from_dict(r["scored"]) for r in records]
    answered = [s for s in scored if not s.error]
    agg = task.aggregate(samples, answered) if answered else {"metrics": {}, "breakdowns": {}}
    rules: dict[str, int] = {}
    for s in scored:
        rules[s.rule] = rules.get(s.rule, 0) + 1
    usage = [r["response"]["usage"] for r in records]
    counts = {
        "requests": len(scored),
        "answered": len(answered),
        "errors": sum(s.error for s in scored),
        "truncated": sum(s.truncated for s in scored),
        "unparsed": rules.get("none", 0),
        "fallback": sum(used_fallback(s) for s in scored),
        "judge": rules.get("judge", 0),
        "scoring_errors": rules.get("scoring_error", 0),
        "prompt_tokens": sum(u.get("prompt_tokens", 0) for u in usage),
        "completion_tokens": sum(u.get("completion_tokens", 0) for u in usage),
    }
    counts["mean_tokens_per_request"] = round((counts["prompt_tokens"] + counts["completion_tokens"]) / max(1, len(records)))
    agreement = first_round_agreement(task, samples, records)
    if agreement is not None:
        agg["metrics"]["pacore_round0_agreement"] = agreement
    agg["counts"] = counts
    agg["rules"] = rules
    return agg


def used_fallback(s: Scored) -> bool:
    """The fallback rule answered, for the headline or for a second protocol kept in `extra`
    (MMMU's official protocol: `extra["official"]["rule"]`)."""
    return s.rule == "fallback" or any(isinstance(v, dict) and v.get("rule") == "fallback" for v in s.extra.values())


def first_round_agreement(task: Task, samples: dict[str, Sample], records: list[dict[str, Any]]) -> dict[str, Any] | None:
    """PaCoRe: how often a round-0 answer extracts to the same answer as the final one.

    The task's own extraction runs over each compacted round-0 answer in the trace (a synthetic
    Response scored like a final one). Per request the share of agreeing answers; the metric is
    their mean. Requests whose final answer extracted to nothing are left out. None for SeRe.
    Rules only: an LLM judge (`--judge`) is not asked about round-0 answers (it would cost K times
    the judge calls of the run).
    """
    judge = getattr(task, "judge", None)
    if judge is not None:
        task.judge = None  # type: ignore[attr-defined]
    try:
        finals, items = [], []
        for r in records:
            answers = first_round_answers(r["response"].get("trace") or [])
            final = r["scored"].get("extracted")
            if not answers or final is None:
                continue
            finals.append((final, len(answers)))
            sample = samples[r["sample_id"]]
            items += [(sample, Response(key=r["key"], text=a, finish_reason="stop"), 0) for a in answers]
        extracted = iter([s.extracted for s in score_many(task, items)])  # K answers per request: pooled
        shares = [sum(next(extracted) == final for _ in range(n)) / n for final, n in finals]
    finally:
        if judge is not None:
            task.judge = judge  # type: ignore[attr-defined]
    return metrics.mean_metric(shares, binary=False) if shares else None


def image_folder(samples: list[Sample]) -> str | None:
    """The folder holding every image file the samples name (None when no image is a file)."""
    folders = {os.path.dirname(os.path.abspath(part.path)) for s in samples for m in s.messages for part in m.content
               if isinstance(part, Image) and part.b64 is None and part.path}
    return os.path.commonpath(sorted(folders)) if folders else None


def portable_digest(messages: list[Message], folder: str | None) -> str:
    """`messages_digest` with image files named relative to `folder`: the same data installed or copied
    elsewhere (the bundled data under another checkout or venv) keeps its fingerprint."""
    if folder is None:
        return messages_digest(messages)
    moved = [Message(m.role, [Image(path=os.path.relpath(os.path.abspath(p.path), folder))
                              if isinstance(p, Image) and p.b64 is None and p.path else p for p in m.content])
             for m in messages]
    return messages_digest(moved)


def dataset_fingerprint(samples: list[Sample], portable: bool = True) -> str:
    """`portable=False`: the fingerprint of runs made before image paths were made relative (absolute
    paths), still accepted when such a run is resumed."""
    folder = image_folder(samples) if portable else None
    h = hashlib.sha256()
    for s in samples:
        digest = portable_digest(s.messages, folder)
        h.update(json.dumps([s.id, s.target, digest], ensure_ascii=False, default=str).encode())
    return h.hexdigest()[:16]


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
                             text=True, timeout=5)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in ("step3vl-eval", "aiohttp", "math-verify", "datasets", "transformers", "torch", "vllm"):
        try:
            versions[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            pass
    return versions


def provenance(task: Task, samples: list[Sample], spec: RunSpec) -> dict[str, Any]:
    return {
        "dataset_fingerprint": dataset_fingerprint(samples),
        "data_source": data_source(spec.task, spec.data, getattr(task, "hub_id", None)),
        "prompt_template_hash": hashlib.sha256(task.prompt_template.encode()).hexdigest()[:16],
        "n_samples": len(samples),
        "git_commit": git_commit(),
        "packages": package_versions(),
        "host": platform.node(),
        "command": sys.argv[1:],
    }


def prepare_run_dir(run_dir: Path, spec: RunSpec, prov: dict[str, Any],
                    legacy_fingerprint: str | None = None) -> set[str]:
    """Create the run dir, or check that an existing one belongs to this spec; return the keys it
    finished. Read one record at a time: a run's samples.jsonl can be GBs."""
    if run_dir.exists():
        previous = store.load_result(run_dir)
        if store.spec_identity(previous.spec) != store.spec_identity(spec):
            unrecorded = sorted(set(spec.task_options) - set(previous.spec.task_options))
            if previous.spec.task == spec.task and unrecorded:  # a run made before the option was recorded
                raise UserError(f"{run_dir} was scored before its task recorded -T {unrecorded[0]} "
                                f"(now {spec.task_options[unrecorded[0]]}): start a new run, or re-score it into "
                                f"one with `step3vl-eval score {run_dir} -T {unrecorded[0]}=...`")
            raise UserError(f"{run_dir} holds a different run (task {previous.spec.task}, model "
                            f"{previous.spec.model}); choose another --out")
        old_fp = previous.provenance.get("dataset_fingerprint")
        if old_fp and old_fp not in (prov["dataset_fingerprint"], legacy_fingerprint):
            raise UserError(f"the data changed since {run_dir} was started (fingerprint {old_fp} -> "
                            f"{prov['dataset_fingerprint']}); start a new run")
        path = run_dir / store.SAMPLES
        latest: dict[str, tuple[int, bool]] = {}  # key -> (offset of its last record, finished)
        lines = 0
        for offset, rec in store.scan_jsonl(path, repair=True):
            latest[rec["key"]] = (offset, rec["response"].get("error") is None)
            lines += 1
        finished = sorted(offset for offset, ok in latest.values() if ok)
        if len(finished) != lines:  # drop errored records (retried now) so each key stays once
            store.write_text_atomic(path, lines_at(path, finished))
        return {key for key, (_, ok) in latest.items() if ok}
    try:
        run_dir.mkdir(parents=True)
    except OSError as exc:
        raise UserError(f"cannot create run dir {run_dir}: {exc.strerror}") from None
    return set()


def lines_at(path: Path, offsets: list[int]) -> Iterator[str]:
    with open(path, "rb") as fh:
        for offset in offsets:
            fh.seek(offset)
            yield fh.readline().decode("utf-8")


def summary_records(run_dir: Path) -> list[dict[str, Any]]:
    """The last record of each key, cut to what the metrics read (score, usage, PaCoRe's round-0
    answers): read one at a time, so the prompts, reasoning and traces of a run never pile up."""
    latest: dict[str, dict[str, Any]] = {}
    for _, r in store.scan_jsonl(run_dir / store.SAMPLES):
        answers = first_round_answers(r["response"].get("trace") or [])
        trace = [{"replies": [{"text": a, "kept": True} for a in answers]}] if answers else []
        latest[r["key"]] = {"key": r["key"], "sample_id": r["sample_id"], "repeat": r["repeat"], "scored": r["scored"],
                            "response": {"usage": r["response"].get("usage") or {}, "trace": trace}}
    return list(latest.values())


def write_result(run_dir: Path, result: RunResult) -> None:
    store.write_json_atomic(run_dir / store.RESULTS, asdict(result))


def run(spec: RunSpec, run_dir: Path | None = None, show_progress: bool = True,
        on_start: Any = None) -> tuple[Path, RunResult]:
    """`on_start(run_dir)` is called once the run dir is ready, before any request (trackers)."""
    task = get_task(spec.task, spec.task_options, spec.task_file)
    spec = with_measured_options(task, spec)
    samples = load_samples(task, spec)
    if not samples:
        raise UserError(f"no samples in the data for {spec.task}")
    by_id = {s.id: s for s in samples}
    if len(by_id) != len(samples):
        raise UserError(f"the data for {spec.task} has duplicate sample ids")
    prov = provenance(task, samples, spec)
    backend = load_adapter(spec)  # validates the model side before touching disk
    if hasattr(backend, "check_samples"):  # replay: a file made for other data is refused here
        prov.update(backend.check_samples(list(by_id), spec.repeats, {s.id: s.target for s in samples}))
    adapter = wrap_mode(backend, spec)
    run_dir = run_dir or Path(spec.out) / store.run_id_for(spec)
    created = not run_dir.exists()
    # refuses a foreign or damaged run dir untouched
    done = prepare_run_dir(run_dir, spec, prov, dataset_fingerprint(samples, portable=False))
    if done and hasattr(backend, "check_finished"):  # replay: the file must not have changed under the run
        backend.check_finished(run_dir, done)
    task.judge = make_judge(spec, run_dir)  # None unless --judge: resolves unparsed answers, cached
    if on_start is not None:
        on_start(run_dir)
    started = time.time()
    try:
        # pid and host (in prov) let a reader tell a run killed with SIGKILL from a live one
        result = RunResult(run_dir.name, "running", spec,
                           provenance={**prov, "started": started, "pid": os.getpid()})
        write_result(run_dir, result)
        todo = [r for r in build_requests(samples, spec) if r.key not in done]
        store.log(run_dir, f"start: {len(todo)} requests to send, {len(done)} already done")
        by_key = {r.key: r for r in todo}
        writer = store.RecordWriter(run_dir / store.SAMPLES)
        progress = RunProgress(total=len(todo) + len(done), done=len(done), enabled=show_progress)
        if hasattr(adapter, "attach"):  # a mode with its own saved state (PaCoRe's round replies)
            adapter.attach(run_dir, on_call=progress.note_call)
        thumbnails: set[str] = set()
        prompts: dict[str, tuple[str, list[dict[str, Any]]]] = {}  # per sample: repeats share a prompt

        def on_response(response: Response) -> None:
            req = by_key[response.key]
            sample = by_id[req.sample_id]
            scored = score_response(task, sample, response, req.repeat)
            if sample.id not in prompts:
                prompts[sample.id] = (messages_digest(sample.messages), prompt_record(sample.messages))
                save_inline_thumbnails(run_dir, sample.messages, thumbnails)
            writer.append(make_record(req, sample, response, scored, prompts[sample.id]))
            progress.advance(response)
            if response.error is not None:
                store.log(run_dir, f"error {response.key}: {response.error}")
            if scored.rule == "scoring_error":
                store.log(run_dir, f"scoring error {response.key}: {scored.extra['scoring_error']}")
            release(response)

        try:
            with progress:
                adapter.generate(todo, on_response)
        finally:
            writer.close()
            adapter.close()
            if task.judge is not None:
                task.judge.close()
    except (Exception, KeyboardInterrupt) as exc:
        stop(run_dir, task, samples, spec, prov, started, exc, created)
        raise
    return run_dir, finish(run_dir, task, samples, spec, prov, started)


def stop(run_dir: Path, task: Task, samples: list[Sample], spec: RunSpec, prov: dict[str, Any],
         started: float, exc: BaseException, created: bool) -> None:
    """A run stopped by Ctrl-C or an error: run.log says why and results.json says `interrupted`, with
    the partial score of what was saved (rerunning resumes it). A run dir this command created that
    holds nothing saved (a bad image in the first request) is removed: nothing to resume, and a fixed
    data file would otherwise find a dir fingerprinted for the old one."""
    if created and nothing_saved(run_dir):
        shutil.rmtree(run_dir, ignore_errors=True)
        return
    why = ("interrupted (Ctrl-C)" if isinstance(exc, KeyboardInterrupt)
           else str(exc) if isinstance(exc, UserError) else f"{type(exc).__name__}: {exc}")
    store.log(run_dir, f"stopped: {why}")
    try:
        finish(run_dir, task, samples, spec, prov, started, status="interrupted")
    except UserError:
        pass  # a full disk or a damaged samples file: the error that stopped the run is the one to show


def nothing_saved(run_dir: Path) -> bool:
    """Only the runner's own bookkeeping is there: results.json, run.log and an empty samples.jsonl."""
    names = {p.name for p in run_dir.iterdir()} if run_dir.is_dir() else set()
    samples = run_dir / store.SAMPLES
    return names <= {store.RESULTS, store.LOG, store.SAMPLES} and (not samples.exists() or samples.stat().st_size == 0)


def finish(run_dir: Path, task: Task, samples: list[Sample], spec: RunSpec, prov: dict[str, Any],
           started: float, status: str | None = None) -> RunResult:
    """Score what was saved into results.json; `status="interrupted"`: a stopped run's partial score
    (stamped `stopped`, not `finished`: a report never prefers it to a finished run)."""
    by_id = {s.id: s for s in samples}
    records = summary_records(run_dir)
    order = {s.id: i for i, s in enumerate(samples)}
    # Data order, not completion order: the metrics must not depend on which request finished first.
    records = sorted((r for r in records if r["sample_id"] in by_id), key=lambda r: (order[r["sample_id"]], r["repeat"]))
    summary = summarize(task, by_id, records)
    complete = len(records) == len(samples) * spec.repeats and summary["counts"]["errors"] == 0
    extra = {"rules": summary["rules"], "stopped" if status else "finished": time.time(), "started": started}
    if hasattr(task, "summary_extras"):
        extra.update(task.summary_extras())
    status = status or ("complete" if complete else "incomplete")
    result = RunResult(run_dir.name, status, spec, summary["metrics"],
                       summary["breakdowns"], summary["counts"], {**prov, **extra})
    write_result(run_dir, result)
    store.log(run_dir, f"end: {result.status}, {summary['counts']['errors']} errors")
    return result


def with_measured_options(task: Task, spec: RunSpec) -> RunSpec:
    """The spec with the options the task resolves itself that change its verdicts (MathVision's
    equality engine), so that they are in the run id even when left at their default."""
    measured = task.measured_options() if hasattr(task, "measured_options") else {}
    return replace(spec, task_options={**spec.task_options, **measured}) if measured else spec


def rescore_as(run_dir: Path, task_options: dict[str, Any]) -> tuple[Path, RunResult]:
    """Re-score a run with other task options (`score RUN_DIR -T equality=...`): into the run dir of
    the spec they make, beside the original, which is never changed; in place when they change nothing."""
    previous = store.load_result(run_dir)
    spec = replace(previous.spec, task_options={**previous.spec.task_options, **task_options})
    spec = with_measured_options(get_task(spec.task, spec.task_options, spec.task_file), spec)
    if store.spec_identity(spec) == store.spec_identity(previous.spec):
        return run_dir, rescore(run_dir)
    target = run_dir.parent / store.run_id_for(spec)
    if target.exists():
        raise UserError(f"{target} already exists (a run with these settings): re-score it with "
                        f"`step3vl-eval score {target}`, or remove it first")
    try:
        shutil.copytree(run_dir, target)
    except OSError as exc:
        shutil.rmtree(target, ignore_errors=True)
        raise UserError(f"cannot copy {run_dir} to {target}: {exc.strerror}") from None
    copied = replace(previous, run_id=target.name, spec=spec,
                     provenance={**previous.provenance, "rescored_from": run_dir.name})
    write_result(target, copied)
    try:
        return target, rescore(target)
    except BaseException:
        shutil.rmtree(target, ignore_errors=True)  # no half-scored copy left behind
        raise


def rescore(run_dir: Path) -> RunResult:
    """Score a finished run's saved responses again, without the model."""
    previous = store.load_result(run_dir)
    task = get_task(previous.spec.task, previous.spec.task_options, previous.spec.task_file)
    spec = with_measured_options(task, previous.spec)
    samples = load_samples(task, spec)
    task.judge = make_judge(spec, run_dir)  # its cache makes re-scoring free
    by_id = {s.id: s for s in samples}
    records = list(store.latest_records(store.read_jsonl(run_dir / store.SAMPLES)).values())
    missing = [r["sample_id"] for r in records if r["sample_id"] not in by_id]
    if missing:
        raise UserError(f"{run_dir}: {len(missing)} saved samples are not in the data (e.g. {missing[0]!r})")
    items = [(by_id[r["sample_id"]], response_from_dict(r["response"]), r["repeat"]) for r in records]
    for r, scored in zip(records, score_many(task, items)):
        r["scored"] = asdict(scored)
    if task.judge is not None:
        task.judge.close()
    store.write_jsonl_atomic(run_dir / store.SAMPLES, records)
    prov = {**previous.provenance, **provenance(task, samples, spec)}
    return finish(run_dir, task, samples, spec, prov, previous.provenance.get("started", time.time()))


def resume_spec(run_dir: Path) -> RunSpec:
    return store.load_result(run_dir).spec

