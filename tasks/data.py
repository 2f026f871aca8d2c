"""Loading benchmark rows from local files or the Hugging Face hub.

Local data: a `.jsonl`, `.json` (a list of objects), `.parquet` file, or a folder holding such
files (read in name order). Each row comes with a `source` string (`file:line`) so that an error
can name the file, the row and the field.

Bundled data (`--data bundled`): what the package ships under `tasks/bundled/` so that a first run
needs no hub: MathVision `testmini` with its images (MIT) and the AIME 2025 answer key (the problem
statements are not freely licensed: see each folder's README). A run records which source it read
(`data_source` in results.json: bundled, local or hub) beside the dataset fingerprint.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from evals.types import UserError

Row = tuple[str, dict[str, Any]]
MAX_LINE_BYTES = 64 * 1024 * 1024  # one data row; a larger one is a damaged file, refused without reading it
LOCAL_SUFFIXES = (".jsonl", ".json", ".parquet")
BUNDLED = "bundled"  # the --data value that selects the data shipped in the package
BUNDLED_ROOT = Path(__file__).parent / "bundled"
BUNDLED_TASKS = {"mathvision": "MathVision testmini (304 problems, images)", "aime2025": "AIME 2025 answer key"}
BUNDLED_SPLITS = {"mathvision": "testmini"}  # the split a bundled set is, recorded in the run's spec
# Bundled sets without problem statements: only tools that never read the prompt may use them.
ANSWER_KEY_ONLY = {"aime2025"}
PROMPTLESS_ADAPTERS = ("replay", "mock")
HUB_PROBE_SECONDS = 3.0


def bundled_dir(task: str) -> Path:
    """The package folder of a task's bundled data, or a UserError naming the tasks that have one."""
    if task not in BUNDLED_TASKS:
        have = "; ".join(f"{name}: {what}" for name, what in BUNDLED_TASKS.items())
        raise UserError(f"--data bundled: no bundled data for {task} (bundled: {have})")
    return BUNDLED_ROOT / task


def check_bundled_use(task: str, data: str | None, provider: str) -> None:
    """An answer-key-only bundle must not reach a model: its prompts hold no problem statement."""
    if data == BUNDLED and task in ANSWER_KEY_ONLY and provider not in PROMPTLESS_ADAPTERS:
        raise UserError(f"the bundled {task} data is an answer key without problem statements (see "
                        f"{BUNDLED_ROOT / task / 'README.md'}): use it with replay or mock, or load the "
                        "problems from the hub (no --data) or --data FILE to ask a model")


def data_source(task: str, data: str | None, hub_id: str | None) -> dict[str, str]:
    """Where a run's data came from, for results.json: bundled, a local path, or the hub."""
    if data == BUNDLED:
        return {"kind": "bundled", "location": f"step3vl-eval tasks/bundled/{task}"}
    if data:
        return {"kind": "local", "location": str(Path(data).resolve())}
    return {"kind": "hub", "location": hub_id or "unknown"}


def load_rows(data: str | None, hub_id: str, hub_configs: list[str | None], split: str) -> list[Row]:
    if data:
        return load_local_rows(Path(data))
    return load_hub_rows(hub_id, hub_configs, split)


def load_local_rows(path: Path) -> list[Row]:
    if not path.exists():
        raise UserError(f"data path does not exist: {path}")
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix in LOCAL_SUFFIXES)
        if not files:
            raise UserError(f"no {'/'.join(LOCAL_SUFFIXES)} files in {path}")
        return [row for f in files for row in load_local_rows(f)]
    if path.suffix == ".jsonl":
        return list(_jsonl_rows(path))
    if path.suffix == ".json":
        items = _read_json(path)
        if not isinstance(items, list) or not all(isinstance(r, dict) for r in items):
            raise UserError(f"{path}: expected a JSON list of objects")
        return [(f"{path}:{i + 1}", r) for i, r in enumerate(items)]
    if path.suffix == ".parquet":
        return _parquet_rows(path)
    raise UserError(f"{path}: unsupported data file type (use {', '.join(LOCAL_SUFFIXES)})")


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise UserError(f"{path}: not UTF-8 text") from None
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror}") from None


def _read_json(path: Path) -> Any:
    try:
        return json.loads(_read_text(path))
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}: invalid JSON ({exc.msg} at line {exc.lineno})") from None


def _jsonl_rows(path: Path):
    try:
        fh = path.open("rb")
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror}") from None
    with fh:
        n = 0
        while raw := fh.readline(MAX_LINE_BYTES + 1):
            n += 1
            if len(raw) > MAX_LINE_BYTES:
                raise UserError(f"{path}:{n}: line longer than {MAX_LINE_BYTES // 2**20} MB")
            if not raw.strip():
                continue
            try:
                row = json.loads(raw.decode("utf-8"))
            except UnicodeDecodeError:
                raise UserError(f"{path}:{n}: not UTF-8 text") from None
            except json.JSONDecodeError as exc:
                raise UserError(f"{path}:{n}: invalid JSON ({exc.msg})") from None
            if not isinstance(row, dict):
                raise UserError(f"{path}:{n}: expected a JSON object")
            yield f"{path}:{n}", row


def _parquet_rows(path: Path) -> list[Row]:
    try:
        import pyarrow.parquet as pq

        table = pq.read_table(path)
    except ImportError:
        raise UserError("reading Parquet needs pyarrow: pip install pyarrow") from None
    except Exception as exc:
        raise UserError(f"{path}: not a readable Parquet file ({exc})") from None
    return [(f"{path}:{i + 1}", r) for i, r in enumerate(table.to_pylist())]


def hub_unreachable() -> str | None:
    """Why the hub cannot be reached (DNS, refused, no answer in HUB_PROBE_SECONDS), or None. Asked
    once before loading: the hub client retries for ~25 s before it gives up on an unreachable hub.
    Behind a proxy, or offline already (HF_HUB_OFFLINE), the client is left to decide."""
    import os
    import socket
    import urllib.request
    from urllib.parse import urlparse

    if os.environ.get("HF_HUB_OFFLINE", "").upper() in ("1", "ON", "YES", "TRUE"):
        return None
    url = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    if url.scheme in urllib.request.getproxies() and not urllib.request.proxy_bypass(url.hostname or ""):
        return None
    try:
        socket.create_connection((url.hostname, url.port or (443 if url.scheme == "https" else 80)),
                                 timeout=HUB_PROBE_SECONDS).close()
    except TimeoutError:
        return f"{url.hostname}: no answer within {HUB_PROBE_SECONDS:g} s"
    except OSError as exc:
        return f"{url.hostname}: {exc.strerror or type(exc).__name__}"
    return None


def offline_hint(hub_id: str) -> str:
    return (f"pass --data PATH for local files (or --data bundled: the package's own "
            f"{', '.join(BUNDLED_TASKS.values())}); HF_HUB_OFFLINE=1 reads {hub_id} from the hub's local cache "
            "without asking the hub")


def load_hub_rows(hub_id: str, configs: list[str | None], split: str) -> list[Row]:
    import os

    unreachable = hub_unreachable()
    if unreachable and "datasets" not in sys.modules:  # read from the cache only, at once
        os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        import datasets
    except ImportError:
        raise UserError("loading from the hub needs `datasets` (pip install datasets), or pass --data") from None
    quiet_hub_logging()
    rows: list[Row] = []
    for config in configs:
        try:
            ds = datasets.load_dataset(hub_id, config, split=split)
        except Exception as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            if unreachable:
                raise UserError(f"cannot reach the hub ({unreachable}) and {hub_id} ({config or 'default'}, "
                                f"{split}) is not in its local cache; {offline_hint(hub_id)}") from None
            raise UserError(f"cannot load {hub_id} ({config or 'default'}, {split}) from the hub: {first}; "
                            f"{offline_hint(hub_id)}") from None
        rows.extend((f"{hub_id}/{config}:{i + 1}", dict(r)) for i, r in enumerate(undecoded_images(ds)))
    return rows


def quiet_hub_logging() -> None:
    """The hub client logs each retry as a warning: the one line of our error says it all."""
    import logging

    for name in ("huggingface_hub", "datasets", "fsspec", "urllib3"):
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        import datasets

        datasets.logging.set_verbosity_error()
        datasets.disable_progress_bars()
    except (ImportError, AttributeError):
        pass


def undecoded_images(ds: Any) -> Any:
    """Keep image columns as `{bytes, path}`: decoding every figure at load costs time and memory."""
    import datasets

    for name, feature in ds.features.items():
        if isinstance(feature, datasets.Image):
            ds = ds.cast_column(name, datasets.Image(decode=False))
    return ds


def require_fields(row: dict[str, Any], names: list[str], source: str) -> None:
    missing = [n for n in names if n not in row or row[n] is None]
    if missing:
        raise UserError(f"{source}: missing field {', '.join(repr(m) for m in missing)}")
