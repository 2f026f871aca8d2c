"""Run directories: `runs/<run id>/` with samples.jsonl, results.json and run.log (DESIGN §8).

Records are appended and flushed as each request finishes; results.json is written atomically
(temporary file in the same folder, fsync, rename), so a crash leaves either the old or the new file.
A crash can tear the last line of samples.jsonl: reading detects it and resume repairs it.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import tempfile
from datetime import datetime, timezone
from dataclasses import asdict
from pathlib import Path
from collections.abc import Iterator
from typing import Any

from evals.types import RunResult, RunSpec, UserError, result_from_dict

SAMPLES = "samples.jsonl"
RESULTS = "results.json"
LOG = "run.log"
CALLS = "calls.jsonl"  # sub-calls of a mode (PaCoRe rounds), cached for resume
# Statuses of a run that has not finished: `interrupted` is written by a run stopped by Ctrl-C or an
# error; `stopped` is read for a `running` one whose process is gone (`load_result`). Rerunning resumes them.
UNFINISHED = ("running", "interrupted", "stopped")

# Fields that do not change what a run measures: they stay out of the run id and the protocol.
# Prediction files replay reads (model_adapters/replay.py): a label drops these extensions.
PREDICTION_SUFFIXES = (".jsonl", ".json", ".xlsx", ".tsv")
OPERATIONAL_FIELDS = {"out", "concurrency", "timeout", "max_retries", "base_urls", "api_key_env", "task_file"}
# Fields added after runs existed: left out of the identity while unset, so older run ids still match.
LATER_FIELDS = {"system_prompt"}
OPERATIONAL_ADAPTER_OPTIONS = {"batch_size", "device_map", "gpu_memory_utilization", "tensor_parallel_size",
                               "data_parallel_size", "mock_delay", "backoff_base",
                               "ray", "replicas", "ray_cpus", "ray_gpus", "ray_chunk", "pacore_schedule"}


def spec_identity(spec: RunSpec) -> dict[str, Any]:
    d = asdict(spec)
    for name in OPERATIONAL_FIELDS:
        d.pop(name, None)
    for name in LATER_FIELDS:
        if d.get(name) is None:
            d.pop(name, None)
    d["adapter_options"] = {k: v for k, v in d["adapter_options"].items() if k not in OPERATIONAL_ADAPTER_OPTIONS}
    return d


def run_id_for(spec: RunSpec) -> str:
    """Deterministic: the same command finds the same run dir again (and resumes it). The digest covers
    the whole model string (a replay file's full path), so two files with one stem get two run ids."""
    digest = hashlib.sha256(json.dumps(spec_identity(spec), sort_keys=True).encode()).hexdigest()[:10]
    model = re.sub(r"[^A-Za-z0-9._-]+", "_", short_model(spec.model).rsplit("/", 1)[-1].rsplit(":", 1)[-1])[:40]
    return f"{spec.task}-{model}-{spec.mode}-{digest}"


def short_model(model: str) -> str:
    """How labels and run ids name a model: `replay:/path/Gemini-Pro-CoT.jsonl` -> `replay:Gemini-Pro-CoT`
    (the file's stem, its folder and extension dropped); other names stay whole."""
    provider, sep, name = model.partition(":")
    if not (sep and provider == "replay"):
        return model
    name = name.rstrip("/").rsplit("/", 1)[-1]
    for suffix in PREDICTION_SUFFIXES:
        if name.endswith(suffix) and len(name) > len(suffix):
            return f"replay:{name[:-len(suffix)]}"
    return f"replay:{name}"


def write_json_atomic(path: Path, obj: Any) -> None:
    write_text_atomic(path, [json.dumps(obj, indent=2, ensure_ascii=False, default=str)])


def write_jsonl_atomic(path: Path, records: list[dict[str, Any]]) -> None:
    write_text_atomic(path, (json.dumps(r, ensure_ascii=False) + "\n" for r in records))


def umask_mode() -> int:
    """The mode `open()` gives a new file under the process umask (0o644 under the usual 022)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


def write_text_atomic(path: Path, chunks: Any) -> None:
    """Temporary file in the same folder, fsync, rename: readers see the old file or the new one.
    The file gets the umask's mode like any other the tool writes (mkstemp alone would make it 0600).
    A path that is not a regular file (`--md /dev/stdout`, a pipe) is written in place: a rename would
    replace the device link itself; a symlink to a file is followed, so the link stays a link."""
    if path.exists() and not path.is_file():
        write_text_in_place(path, chunks)
        return
    path = Path(os.path.realpath(path))
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise UserError(f"cannot write {path}: {exc.strerror}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            if hasattr(os, "fchmod"):  # POSIX
                os.fchmod(fh.fileno(), umask_mode())
            for chunk in chunks:
                fh.write(chunk)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise UserError(f"cannot write {path}: {exc.strerror}") from None


def write_text_in_place(path: Path, chunks: Any) -> None:
    try:
        with open(path, "w", encoding="utf-8") as fh:
            for chunk in chunks:
                fh.write(chunk)
    except OSError as exc:
        raise UserError(f"cannot write {path}: {exc.strerror}") from None


def read_jsonl(path: Path, repair: bool = False) -> list[dict[str, Any]]:
    """Read records line by line; a torn last line (a crash mid-write) is dropped, and cut off the
    file if `repair`. A damaged line with records after it is an error: the run dir is damaged."""
    return [rec for _, rec in scan_jsonl(path, repair)]


def scan_jsonl(path: Path, repair: bool = False) -> Iterator[tuple[int, dict[str, Any]]]:
    """`read_jsonl` one record at a time, each with its byte offset: memory stays flat however big
    the file (a run's replies can be GBs)."""
    if not path.exists():
        return
    if not path.is_file():
        raise UserError(f"{path} is not a file")
    good_bytes = 0
    with open(path, "rb") as fh:
        for n, line in enumerate(fh, 1):
            if line.strip():
                try:
                    rec = json.loads(line)
                    if not isinstance(rec, dict):
                        raise ValueError("not an object")
                except (ValueError, UnicodeDecodeError):
                    if fh.read(1 << 20).strip():
                        raise UserError(f"{path}:{n}: corrupt record (not a JSON object); the run dir is damaged") from None
                    break  # torn last line
                yield good_bytes, rec
            good_bytes += len(line)
    if repair and good_bytes < path.stat().st_size:
        with open(path, "r+b") as fh:
            fh.truncate(good_bytes)


def log(run_dir: Path, message: str) -> None:
    """A timestamped line in run.log: best effort (a full disk is reported by the write that matters)."""
    stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
    try:
        with open(run_dir / LOG, "a", encoding="utf-8") as fh:
            fh.write(f"{stamp} {message}\n")
    except OSError:
        pass


class RecordWriter:
    """Appends one JSON line per finished request and flushes it at once."""

    def __init__(self, path: Path):
        self.path = path
        try:
            self.fh = open(path, "a", encoding="utf-8")
        except OSError as exc:
            raise UserError(f"cannot write {path}: {exc.strerror}") from None

    def append(self, record: dict[str, Any]) -> None:
        try:
            self.fh.write(json.dumps(record, ensure_ascii=False) + "\n")
            self.fh.flush()
        except OSError as exc:
            raise UserError(f"cannot write {self.path}: {exc.strerror}; the records before this one are kept") from None

    def close(self) -> None:
        try:
            self.fh.close()
        except OSError:
            pass  # the failed write was already reported


def load_result(run_dir: Path) -> RunResult:
    path = run_dir / RESULTS
    if not run_dir.is_dir():
        raise UserError(f"not a run directory: {run_dir}")
    if not path.is_file():
        raise UserError(f"{run_dir} holds no {RESULTS}: not a run directory")
    try:
        result = result_from_dict(json.loads(path.read_text(encoding="utf-8")))
    except (ValueError, KeyError, TypeError, AttributeError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: unreadable results ({type(exc).__name__}: {exc})") from None
    if result.status == "running" and writer_gone(result.provenance):
        result.status = "stopped"  # killed (SIGKILL, a crash) before it could say so; read-time only
    return result


def writer_gone(provenance: dict[str, Any]) -> bool:
    """The process that wrote `running` is known to be dead: it ran on this host and its pid is gone.
    Another host, a run saved before pids were recorded, or a reused pid: not known, stays `running`."""
    pid = provenance.get("pid")
    if os.name != "posix" or provenance.get("host") != platform.node() or not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # PermissionError: alive, another user's
        return False
    return False


# Adapters that answer from a script, not a model: their runs check a pipeline and their scores mean
# nothing, so a report shows them last and a folder's run of a real model is chosen before them.
SCRIPTED_PROVIDERS = ("mock",)


def is_scripted(model: str) -> bool:
    """`mock`, `mock/alpha`: the scripted smoke-test tool, not a model."""
    return re.split(r"[/:]", model, maxsplit=1)[0] in SCRIPTED_PROVIDERS


def latest_records(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The last record for each key (a retried error is superseded by its retry)."""
    out: dict[str, dict[str, Any]] = {}
    for r in records:
        out[r["key"]] = r
    return out
