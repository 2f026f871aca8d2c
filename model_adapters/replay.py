"""Replay: responses that another tool produced, read from a file, so they can be scored here.

`--model replay:PATH` where PATH is
- a JSONL file of `{"id" or "key": ..., "response": ...}` (MathVision's released outputs, or our own
  samples.jsonl, whose records hold `response.text`),
- a JSON object `{id: prediction}` (MMMU's `total_val_output.json`) or `{id: {"response": ...}}`
  (MathVista's `output_*.json`, whose official `extraction` comes along: `load_extractions`),
- a JSON list of `{"id": ..., "response": ...}` (MMMU's per-subject `output.json`),
- a VLMEvalKit prediction file (`.xlsx` / `.tsv` with `index` and `prediction`) or an lmms-eval
  `--log_samples` file (model_adapters/formats.py); a 0.7.3 log names rows by their position in the
  split (`doc_id`), mapped here onto the samples in data order, its `target` checked against the gold;
  where only lmms-eval's `filtered_resps` survive, that is said on stderr and in results.json
  (`provenance.replay`), and the filtered text is replayed with `meta["filtered_answer"]`,
- or a folder: every `*.json` / `*.jsonl` / `*.xlsx` / `*.tsv` under it (MMMU's per-subject folders).
  A folder of several tasks' predictions (`run table3 --model replay:DIR`) holds one entry per task,
  named after it: `DIR/<task>.jsonl`, `DIR/<task>.json` or a folder `DIR/<task>/` (`source_for`), so
  that tasks sharing ids (`mmmu_pro`, `mmmu_pro_vision`) and their repeats stay apart.
A record found by `key` (`<id>#<repeat>`) answers that repeat; one found by `id` answers every repeat.
Repeats come from the file unless `--samples` says otherwise: keys up to `<id>#k` make k + 1 repeats,
plain ids make 1 (`repeats_in_file`). A file that answers fewer than MIN_MATCH of the samples is an
input error naming ids from both sides (`check_coverage`); below full coverage, the requests with no
prediction become error records (counted, never scored as a wrong answer) and the run says how many.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from evals import store
from evals.extract import split_thinking
from evals.types import Request, Response, RunSpec, UserError
from model_adapters.formats import FILTERED, POSITION, VLMEVALKIT_SUFFIXES, foreign_records

RESPONSE_FIELDS = ("response", "prediction", "output", "text")
MIN_MATCH = 0.5  # share of the samples a replay file must answer; fewer means the wrong file or data
NO_MATCH = "[invalid]"  # what lmms-eval's regex filter leaves when its pattern finds nothing


def _text_of(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, list):  # a parsed MMMU prediction can be a list of candidates
        return json.dumps(value) if value else ""
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, dict):
        if isinstance(value.get("response"), dict):  # our own samples.jsonl record
            return value["response"].get("text", "")
        for name in RESPONSE_FIELDS:
            if name in value:
                return _text_of(value[name])
    return None


def _records_in(path: Path) -> list[tuple[str, Any]]:
    """(id or key, raw value) pairs from one file."""
    foreign = foreign_records(path)
    if foreign is not None:
        return foreign
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read predictions {path}: {exc}") from None
    if path.suffix == ".jsonl":
        out = []
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                raise UserError(f"{path}:{n}: invalid JSON in predictions") from None
            ident = row.get("key") or row.get("id") if isinstance(row, dict) else None
            if ident is None:
                raise UserError(f"{path}:{n}: prediction has neither 'key' nor 'id'")
            out.append((str(ident), row))
        return out
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}: invalid JSON in predictions ({exc.msg})") from None
    if isinstance(data, dict):
        return [(str(k), v) for k, v in data.items()]
    if isinstance(data, list):
        if not all(isinstance(r, dict) and "id" in r for r in data):
            raise UserError(f"{path}: a prediction list needs an 'id' in every item")
        return [(str(r["id"]), r) for r in data]
    raise UserError(f"{path}: predictions must be a JSON object or list")


def load_predictions(path: Path) -> dict[str, str]:
    if not path.exists():
        raise UserError(f"predictions file does not exist: {path}")
    files = sorted(p for p in path.rglob("*") if p.suffix in (".json", ".jsonl", *VLMEVALKIT_SUFFIXES)) if path.is_dir() else [path]
    predictions: dict[str, str] = {}
    found_in: dict[str, Path] = {}
    for f in files:
        for ident, value in _records_in(f):
            text = _text_of(value)
            if text is None:
                raise UserError(f"{f}: prediction for {ident!r} has no response text")
            # Two files answering one id differently (MMMU's example folder holds the raw responses
            # and total_val_output.json's parsed ones): refuse rather than let one silently win.
            if ident in found_in and found_in[ident] != f and predictions[ident] != text:
                raise UserError(f"{f}: {ident!r} is also answered, differently, in {found_in[ident]}; "
                                "replay one file or folder")
            predictions[ident], found_in[ident] = text, f
    if not predictions:
        raise UserError(f"no predictions found in {path}")
    return predictions


def load_extractions(path: Path) -> dict[str, str]:
    """The answers another tool's extractor already read from the responses, by id: MathVista's
    output files (`{pid: {..., "response", "extraction"}}`) carry the official GPT-4 extractor's
    `extraction`. Replayed as `Response.meta["extraction"]`; a task that knows the field scores from
    it (tasks/mathvista.py), the others ignore it."""
    files = sorted(path.rglob("*.json")) if path.is_dir() else [path] if path.suffix == ".json" else []
    found: dict[str, str] = {}
    for f in files:
        if foreign_records(f) is None:
            found.update((ident, value["extraction"]) for ident, value in _records_in(f)
                         if isinstance(value, dict) and isinstance(value.get("extraction"), str))
    return found


def load_annotations(path: Path) -> dict[str, dict[str, Any]]:
    """What an lmms-eval log says beside each answer, by id or key: which field it came from
    (`answers`: resps or filtered_resps) and, for rows known by position, the logged `target`."""
    files = sorted(path.rglob("*.json*")) if path.is_dir() else [path]
    found: dict[str, dict[str, Any]] = {}
    for f in files:
        if f.suffix in (".json", ".jsonl"):
            found.update((ident, value) for ident, value in foreign_records(f) or []
                         if isinstance(value, dict) and "answers" in value)
    return found


def by_position(found: dict[str, Any], sample_ids: list[str]) -> dict[str, Any]:
    """Keys `doc_id=<n>[#k]` (a row's position in the split) -> the id of the n-th sample (`#k` kept);
    a position past the samples (`--limit`) keeps its key and answers nothing."""
    out = {}
    for key, value in found.items():
        base, repeat = split_key(key)
        position = base[len(POSITION):] if base.startswith(POSITION) else ""
        if position.isdigit() and int(position) < len(sample_ids):
            base = sample_ids[int(position)]
        out[base if repeat is None else f"{base}#{repeat}"] = value
    return out


def check_targets(source: str, annotations: dict[str, dict[str, Any]], targets: dict[str, str]) -> None:
    """Rows mapped by position must be the samples they land on: their logged target is the gold."""
    pairs = [(split_key(k)[0], a["target"]) for k, a in annotations.items()
             if a.get("target") is not None and split_key(k)[0] in targets]
    differ = [(sid, logged) for sid, logged in pairs if logged.strip() != str(targets[sid]).strip()]
    if pairs and len(differ) > (1 - MIN_MATCH) * len(pairs):
        sid, logged = differ[0]
        raise UserError(f"replay file {source} names its rows by position (lmms-eval's doc_id), and {len(differ)} of "
                        f"{len(pairs)} logged targets differ from the gold there (e.g. {sid!r}: {logged!r} vs "
                        f"{targets[sid]!r}): a log of other data, split or order")


def filtered_note(source: str, annotations: dict[str, dict[str, Any]], keys: list[str]) -> dict[str, Any] | None:
    """When some answers are lmms-eval's filtered text, not raw outputs: what results.json records."""
    filtered = [k for k in keys if annotations.get(k, {}).get("answers") == FILTERED]
    if not filtered:
        return None
    share = f"all {len(keys)}" if len(filtered) == len(keys) else f"{len(filtered)} of {len(keys)}"
    return {"answers": FILTERED, "count": len(filtered), "of": len(keys),
            "note": f"replay: {share} answers in {source} are lmms-eval's filtered_resps (its log keeps no raw resps "
                    "for them): the text its task's filters left, not the model's output, scored as given (a task "
                    "that reads a format, AIME's \\boxed{}, takes it as the answer: rule 'filtered')"}


def split_key(ident: str) -> tuple[str, int | None]:
    """`q7#3` -> ("q7", 3); a plain id (or one whose suffix is not a number) -> (id, None)."""
    base, sep, repeat = ident.rpartition("#")
    return (base, int(repeat)) if sep and base and repeat.isdigit() else (ident, None)


def repeats_in_file(predictions: dict[str, str]) -> int:
    """How many repeats the file holds: 1 + the largest `#k` of its keys; plain ids give 1."""
    return 1 + max((k for k in (split_key(i)[1] for i in predictions) if k is not None), default=0)


TASK_ENTRY_SUFFIXES = ("", ".jsonl", ".json", *VLMEVALKIT_SUFFIXES)


def task_entries(folder: Path) -> dict[str, Path]:
    """A folder's entries named after a task (`mmmu.jsonl`, `aime2025/`): task name -> path."""
    from tasks import TASKS

    found = {}
    for task in TASKS:
        for suffix in TASK_ENTRY_SUFFIXES:
            path = folder / f"{task}{suffix}"
            if path.exists() and path.is_dir() == (suffix == ""):
                found.setdefault(task, path)
    return found


def source_for(name: str, task: str) -> Path:
    """The predictions of `task` in `--model replay:NAME`: NAME itself, or, in a folder holding entries
    named after tasks, the task's own entry (a folder with some but not this one is an input error)."""
    if not name:
        raise UserError("replay needs a file: --model replay:PATH")
    path = Path(name)
    entries = task_entries(path) if path.is_dir() else {}
    if not entries:
        return path
    if task not in entries:
        raise UserError(f"replay folder {path} has per-task entries ({', '.join(sorted(entries))}) but none for "
                        f"{task}: add {task}.jsonl (or {task}/) or leave the task out")
    return entries[task]


def repeats_for(name: str, task: str) -> int:
    """The repeats of `--model replay:NAME` for `task` when `--samples` is not given."""
    return repeats_in_file(load_predictions(source_for(name, task)))


def answered_ids(predictions: dict[str, str]) -> set[str]:
    """Sample ids with at least one prediction: plain ids, and the ids of `id#k` keys."""
    return {ident for ident in predictions} | {split_key(i)[0] for i in predictions}


def missing_requests(predictions: dict[str, str], sample_ids: list[str], repeats: int) -> int:
    return sum(sid not in predictions and f"{sid}#{k}" not in predictions
               for sid in sample_ids for k in range(repeats))


def check_coverage(source: str, predictions: dict[str, str], sample_ids: list[str], repeats: int) -> str | None:
    """A UserError when the file answers under MIN_MATCH of the samples (ids from both sides named);
    otherwise a note saying how many requests have no prediction, or None when none is missing."""
    answered = answered_ids(predictions)
    matched = [sid for sid in sample_ids if sid in answered]
    if len(matched) < MIN_MATCH * len(sample_ids):
        file_ids = sorted({split_key(i)[0] for i in predictions})
        raise UserError(f"replay file {source} answers {len(matched)} of the {len(sample_ids)} samples "
                        f"(needs {MIN_MATCH:.0%}): its ids are e.g. {', '.join(map(repr, file_ids[:3]))}; the "
                        f"data's are e.g. {', '.join(map(repr, sample_ids[:3]))} (wrong file, task or --data?)")
    missing = missing_requests(predictions, sample_ids, repeats)
    if not missing:
        return None
    return (f"replay: {missing} of {len(sample_ids) * repeats} requests have no prediction in {source} "
            f"({len(sample_ids) - len(matched)} samples unanswered): they are error records, not scored")


class ReplayAdapter:
    def __init__(self, name: str, spec: RunSpec):
        source = source_for(name, spec.task)
        self.source = str(source)
        self.predictions = load_predictions(source)
        self.extractions = load_extractions(source)
        self.annotations = load_annotations(source)

    def check_samples(self, sample_ids: list[str], repeats: int,
                      targets: dict[str, str] | None = None) -> dict[str, Any]:
        """Called by the runner before anything is written: map rows known by position onto the
        samples, refuse a file for other data, note gaps and filtered answers. Returns what
        results.json records (`{"replay": ...}` when only filtered answers survive, else {})."""
        self.predictions = by_position(self.predictions, sample_ids)
        self.annotations = by_position(self.annotations, sample_ids)
        if targets:
            check_targets(self.source, self.annotations, targets)
        note = check_coverage(self.source, self.predictions, sample_ids, repeats)
        if note:
            print(f"step3vl-eval: {note}", file=sys.stderr)
        keys = [key for sid in sample_ids for key in (sid, *(f"{sid}#{k}" for k in range(repeats)))
                if key in self.predictions]
        filtered = filtered_note(self.source, self.annotations, keys)
        if filtered is None:
            return {}
        print(f"step3vl-eval: {filtered['note']}", file=sys.stderr)
        return {"replay": filtered}

    def check_finished(self, run_dir: Path, done: set[str]) -> None:
        """Resuming: the run id covers the file's path, not its content, so the answers this run already
        scored must still be the file's (a file that now answers what was missing is welcome)."""
        changed = []
        for _, rec in store.scan_jsonl(run_dir / store.SAMPLES):
            key, saved = rec["key"], rec["response"]
            text = self.predictions.get(key, self.predictions.get(rec["sample_id"]))
            if key in done and text is not None and split_thinking(text) != (saved.get("reasoning"), saved.get("text")):
                changed.append(key)
        if changed:
            raise UserError(f"{len(changed)} answers that {run_dir} already scored differ in {self.source} now (e.g. "
                            f"{changed[0]!r}): the file changed; start a new run (another --out, or remove that run dir)")

    def generate(self, requests: list[Request], on_response: Any = None) -> list[Response]:
        out = []
        for req in requests:
            key = req.key if req.key in self.predictions else req.sample_id
            text = self.predictions.get(key)
            if text is None:
                resp = Response(key=req.key, error="no prediction for this sample in the replay file")
            else:
                reasoning, answer = split_thinking(text)
                resp = Response(key=req.key, text=answer, reasoning=reasoning, finish_reason="stop")
                extraction = self.extractions.get(req.key, self.extractions.get(req.sample_id))
                if extraction is not None:
                    resp.meta["extraction"] = extraction
                if self.annotations.get(key, {}).get("answers") == FILTERED:
                    resp.meta["filtered_answer"] = None if answer.strip() == NO_MATCH else answer.strip()
            out.append(resp)
            if on_response:
                on_response(resp)
        return out

    def close(self) -> None:
        pass
