"""The `step3vl-eval` command line.

Exit codes: 0 success; 1 the run finished but some requests failed after their retries (rerun the
same command, or `--resume RUN_DIR`, to retry them); 2 a usage or input error (one line on
stderr, nothing written into an existing run dir); 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

from evals.types import RunResult, RunSpec, UserError

RUN_EXAMPLE = """examples:
  step3vl-eval run aime2025 --model openai/step3-vl --base-url http://127.0.0.1:8000/v1 --samples 4
  step3vl-eval run mmmu --model openai/step3-vl --mode pacore --limit 50
  step3vl-eval run mathvision --model replay:preds.jsonl --data MATH-V/data/test.jsonl
  step3vl-eval run mathvision --model replay:preds.jsonl --data bundled   (testmini, shipped with the package)
  step3vl-eval run table3 --model openai/step3-vl --mode pacore   (the report's Table 3: a suite of 9 tasks)
  step3vl-eval run aime2025 --config eval.toml --samples 8     (flags override the file)
  step3vl-eval run mmmu --model openai/qwen3-vl -O extra_body='{"chat_template_kwargs": {"enable_thinking": true}}'
  step3vl-eval run --task-file my_task.py:MyTask --model mock --log-to mlflow
"""

# Flags a config file may set, with how to read them; anything else in the file is an error.
CONFIG_KEYS: dict[str, type] = {
    "tasks": list, "model": str, "base_url": list, "mode": str, "samples": int, "limit": int, "seed": int,
    "max_tokens": int, "temperature": float, "top_p": float, "top_k": int, "concurrency": int,
    "timeout": float, "max_retries": int, "data": str, "split": str, "out": str, "api_key_env": str,
    "trust_remote_code": bool, "batch_size": int, "dtype": str, "device_map": str,
    "tensor_parallel_size": int, "data_parallel_size": int, "max_model_len": int,
    "gpu_memory_utilization": float, "judge": str, "pacore_widths": str, "pacore_pool": int,
    "adapter_options": dict, "task_options": dict, "system_prompt": str, "task_file": str, "log_to": list,
    "ray": str, "replicas": int,
}
ADAPTER_FLAGS = ("trust_remote_code", "batch_size", "dtype", "device_map", "tensor_parallel_size",
                 "data_parallel_size", "max_model_len", "gpu_memory_utilization", "ray", "replicas")
PARAM_FLAGS = ("max_tokens", "temperature", "top_p", "top_k")


class ArgumentParser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2 (argparse would print the usage too)
        raise UserError(message)


def add_run_parser(sub: Any) -> None:
    p = sub.add_parser("run", help="evaluate a model on one or more tasks", epilog=RUN_EXAMPLE,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("tasks", nargs="*", help="task or suite names (see `step3vl-eval list`)")
    p.add_argument("--model", help="provider/name: openai/NAME, hf/ID_OR_DIR, vllm/ID_OR_DIR, replay:FILE, mock")
    p.add_argument("--base-url", action="append", dest="base_url", help="OpenAI-compatible endpoint (repeatable)")
    p.add_argument("--mode", choices=["sere", "pacore"], help="reasoning mode (default sere)")
    p.add_argument("--samples", "-k", type=int, help="repeats per problem (default: the task's, e.g. 64 for AIME)")
    p.add_argument("--limit", type=int, help="first N problems only")
    p.add_argument("--seed", type=int)
    p.add_argument("--max-tokens", type=int)
    p.add_argument("--temperature", type=float)
    p.add_argument("--top-p", type=float)
    p.add_argument("--top-k", type=int, help="0 disables (the report's setting)")
    p.add_argument("--concurrency", type=int, help="requests in flight (openai adapter, default 64)")
    p.add_argument("--timeout", type=float, help="seconds per HTTP request (default 3600)")
    p.add_argument("--max-retries", type=int)
    p.add_argument("--data", help="local data file or folder instead of the hub (TASK=PATH for several tasks); "
                                   "`bundled`: the data shipped in the package (mathvision testmini, aime2025 "
                                   "answer key)", action="append")
    p.add_argument("--split")
    p.add_argument("--out", help="parent folder of run dirs (default runs/)")
    p.add_argument("--resume", help="finish an interrupted run dir with its saved settings (flags that would "
                   "change them are refused; --base-url, --concurrency, --timeout, --max-retries, --api-key-env "
                   "may change)")
    p.add_argument("--config", help="TOML file with the same keys as these flags (underscored)")
    p.add_argument("--api-key-env", help="environment variable holding the API key (default OPENAI_API_KEY)")
    p.add_argument("--trust-remote-code", action="store_true", default=None,
                   help="allow a model's own Python code (hf/vllm); never on by default")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--dtype")
    p.add_argument("--device-map")
    p.add_argument("--tensor-parallel-size", type=int)
    p.add_argument("--data-parallel-size", type=int)
    p.add_argument("--max-model-len", type=int)
    p.add_argument("--gpu-memory-utilization", type=float)
    p.add_argument("--ray", nargs="?", const="", metavar="ADDRESS",
                   help="run the hf/vllm adapter as Ray actors on the cluster at ADDRESS (none: RAY_ADDRESS, "
                        "else a cluster started on this machine, else a new local one)")
    p.add_argument("--replicas", type=int, help="with --ray: how many model replicas (actors) to run")
    p.add_argument("--judge", help="LLM judge for unresolved multiple-choice answers, e.g. openai/gpt-4o-mini")
    p.add_argument("--pacore-widths", help="comma-separated round widths (default 16; a final 1 is appended)")
    p.add_argument("--pacore-pool", type=int, help="PaCoRe avg@k shortcut: pool size of round-0 replies")
    p.add_argument("-O", dest="adapter_option", action="append", metavar="KEY=VALUE", help="adapter option")
    p.add_argument("-T", dest="task_option", action="append", metavar="KEY=VALUE", help="task option")
    p.add_argument("--system-prompt", help="a system message before every prompt (part of the run's identity)")
    p.add_argument("--task-file", metavar="PATH.py:CLASS", help="run a task class from a Python file "
                   "(docs/plugins.md); its name is added to the tasks")
    p.add_argument("--log-to", action="append", choices=["mlflow", "wandb"],
                   help="also log the run to an experiment tracker (repeatable; docs/trackers.md)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


GATE_EPILOG = """exit codes: 0 pass (inconclusive and improvement included), 1 a regression beyond --tolerance
and significant at --alpha, 2 usage or input error (bad flag, malformed baseline, protocol change).
examples:
  step3vl-eval gate --write-baseline runs/ ci/baseline.json
  step3vl-eval gate --baseline ci/baseline.json --current runs/ --tolerance 1.0
  step3vl-eval gate --plan --baseline ci/baseline.json --detect 3
"""

COMPARE_EPILOG = """examples:
  step3vl-eval compare runs/aime2025-model-a-sere-1a2b3c4d5e runs/aime2025-model-b-sere-5e4d3c2b1a
  step3vl-eval compare runs-main/ runs-pr/ --html changes.html --csv changes.csv
"""

REPORT_EPILOG = """examples:
  step3vl-eval report runs/ --html leaderboard.html --csv leaderboard.csv
  step3vl-eval report runs/mmmu-step3-vl-sere-1a2b3c4d5e runs/mmmu-step3-vl-pacore-5e4d3c2b1a --md summary.md
  step3vl-eval report runs/ --md "$GITHUB_STEP_SUMMARY"
A folder that is not a run dir stands for the run dirs inside it.
"""


TOP_EPILOG = """examples:
  step3vl-eval demo                                     (first run: offline, bundled data, seconds)
  step3vl-eval run aime2025 --model openai/step3-vl --base-url http://127.0.0.1:8000/v1 --samples 4
  step3vl-eval run mathvision --data bundled --model replay:preds.jsonl
  step3vl-eval report runs/ --html leaderboard.html --csv leaderboard.csv
  step3vl-eval COMMAND --help                           (each command's options and examples)
exit codes: 0 ok, 1 some requests failed (rerun to retry), 2 input error, 130 interrupted
"""

DEMO_EPILOG = """example:
  step3vl-eval demo --out step3vl-demo
Replays the MATH-V authors' released predictions of four models on the bundled MathVision testmini
(checking every verdict against the official evaluator's), runs the mock tool on the bundled AIME 2025
answer key as a pipeline check, and writes leaderboard.html and leaderboard.csv. No hub, no model server.
"""


def package_version() -> str:
    from importlib import metadata

    try:
        return metadata.version("step3vl-eval")
    except metadata.PackageNotFoundError:
        return "unknown (not installed: pip install -e .)"


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog="step3vl-eval", description="Evaluate vision-language models the STEP3-VL-10B way.",
                            epilog=TOP_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"step3vl-eval {package_version()}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=ArgumentParser)
    d = sub.add_parser("demo", help="first run: offline, on bundled data, in seconds (no model server needed)",
                       epilog=DEMO_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    d.add_argument("--out", default="step3vl-demo", help="folder for its runs and reports (default step3vl-demo/)")
    add_run_parser(sub)
    s = sub.add_parser("score", help="re-score a run dir without the model",
                       epilog="examples:\n  step3vl-eval score runs/aime2025-step3-vl-sere-1a2b3c4d5e\n"
                              "  step3vl-eval score runs/mathvision-m-sere-1a2b3c4d5e -T equality=emulated"
                              "   (into a new run dir)",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    s.add_argument("run_dir")
    s.add_argument("-T", dest="task_option", action="append", metavar="KEY=VALUE",
                   help="re-score with this task option (e.g. equality=emulated): into the run dir of those "
                        "settings, beside the original, which stays as it is")
    st = sub.add_parser("setup", help="install what a task needs once (mathvision: MATH-V's official parser)",
                        epilog="example:\n  step3vl-eval setup mathvision", formatter_class=argparse.RawDescriptionHelpFormatter)
    st.add_argument("what", choices=["mathvision"])
    sub.add_parser("list", help="list tasks, suites, adapters and modes", epilog="example:\n  step3vl-eval list",
                   formatter_class=argparse.RawDescriptionHelpFormatter)
    g = sub.add_parser("gate", help="fail CI on a regression that noise cannot explain", epilog=GATE_EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    g.add_argument("--baseline", help="run dir, folder of run dirs, or baseline JSON (from --write-baseline)")
    g.add_argument("--current", help="run dir or folder of run dirs (e.g. the CI job's --out)")
    g.add_argument("--tolerance", type=float, default=1.0, help="points a drop must exceed to fail (default 1.0)")
    g.add_argument("--alpha", type=float, default=0.05,
                   help="one-sided significance level of the whole call (default 0.05; see --correction)")
    g.add_argument("--tasks", nargs="+", help="compare only these tasks (each must be in both)")
    g.add_argument("--strict", action="store_true",
                   help="refuse a folder holding several runs of a task (default: the newest complete one)")
    g.add_argument("--allow-protocol-change", action="store_true", help="compare despite a protocol change")
    g.add_argument("--json", nargs="?", const="-", metavar="FILE", help="JSON report to FILE (no FILE: to stdout)")
    g.add_argument("--write-baseline", nargs=2, metavar=("RUN_DIR", "FILE"), help="save a run as a baseline JSON")
    g.add_argument("--correction", choices=["holm", "none"], default="holm",
                   help="family-wise control over the compared tasks (default holm; none: each task at --alpha)")
    g.add_argument("--plan", action="store_true",
                   help="power planning from --baseline: the questions or repeats that catch a --detect drop")
    g.add_argument("--detect", type=float, default=3.0, help="with --plan: the drop to catch, in points (default 3)")
    c = sub.add_parser("compare", help="what changed between two runs: paired counts and the flipped questions",
                       epilog=COMPARE_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    c.add_argument("run_a", metavar="RUN_A", help="run dir, or folder of run dirs (one per task)")
    c.add_argument("run_b", metavar="RUN_B", help="run dir, or folder of run dirs (one per task)")
    c.add_argument("--tasks", nargs="+", help="compare only these tasks (each must be on both sides)")
    c.add_argument("--html", help="write the comparison as a standalone HTML page")
    c.add_argument("--csv", help="write one row per paired question (its change: gained, lost, both right, ...)")
    c.add_argument("--all", action="store_true", help="list every paired question in the terminal, not only changed ones")
    c.add_argument("--title", help="HTML page title")
    r = sub.add_parser("report", help="HTML/CSV/Markdown leaderboard and sample explorer from run dirs",
                       epilog=REPORT_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    r.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="run dirs, or folders of run dirs (e.g. runs/)")
    r.add_argument("--html", help="write the HTML report (leaderboard, breakdowns, compute, sample explorer)")
    r.add_argument("--csv", help="write the tidy CSV (one row per run, task, metric, category)")
    r.add_argument("--md", help="write the Markdown summary (e.g. $GITHUB_STEP_SUMMARY)")
    r.add_argument("--json", help="write the results in the versioned JSON schema of docs/reports.md (- for stdout)")
    r.add_argument("--title", help="page and summary title")
    r.add_argument("--no-samples", action="store_true", help="HTML without the sample explorer (a small file)")
    r.add_argument("--max-chars", type=int, help="cut each explorer text to N characters, head and tail kept "
                                                 "(default 8000; 0 keeps all)")
    return parser


def parse_key_values(items: list[str] | None, what: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UserError(f"{what} must look like KEY=VALUE, got {item!r}")
        out[key] = coerce(value)
    return out


def coerce(value: str) -> Any:
    if value[:1] in ("{", "["):  # a JSON object or list, e.g. -O extra_body='{"top_k": 20}'
        try:
            return json.loads(value)
        except ValueError:
            return value  # not JSON after all (a template?): the option's reader judges the text
    if value.lower() in ("true", "false"):
        return value.lower() == "true"
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            pass
    return value


def read_config(path: str) -> dict[str, Any]:
    try:
        import tomllib
    except ImportError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise UserError(f"cannot read config {path}: {exc.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"config {path} is not valid TOML: {exc}") from None
    for key, value in data.items():
        if key not in CONFIG_KEYS:
            raise UserError(f"unknown key {key!r} in config {path}")
        want = CONFIG_KEYS[key]
        if want is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if want is list and isinstance(value, str):
            value = [value]
        if not isinstance(value, want) or (want is int and isinstance(value, bool)):
            raise UserError(f"config {path}: {key!r} must be {want.__name__}, got {type(value).__name__}")
        data[key] = value
    return data


def merged_options(args: argparse.Namespace) -> dict[str, Any]:
    """Config file values, overridden by the flags given on the command line."""
    opts = read_config(args.config) if args.config else {}
    for key in CONFIG_KEYS:
        value = getattr(args, key, None)
        if value not in (None, []):
            opts[key] = value
    opts.setdefault("adapter_options", {})
    opts.setdefault("task_options", {})
    opts["adapter_options"] = {**opts["adapter_options"], **parse_key_values(args.adapter_option, "-O")}
    opts["task_options"] = {**opts["task_options"], **parse_key_values(args.task_option, "-T")}
    return opts


def data_for(task: str, values: list[str] | str | None, tasks: list[str], suite: bool = False) -> str | None:
    """The --data of one task. With a suite, `bundled` means the bundled data of the suite's tasks that
    ship some; the others load as they would without it (hub, or their TASK=PATH)."""
    from tasks.data import BUNDLED_TASKS

    if not values:
        return None
    values = [values] if isinstance(values, str) else values
    per_task = {}
    plain = []
    for v in values:
        name, sep, path = v.partition("=")
        if sep and name in tasks:
            per_task[name] = path
        else:
            plain.append(v)
    # not a path: every task's own bundled data (outside a suite, a task without any is refused)
    if plain == ["bundled"]:
        return per_task.get(task, "bundled" if task in BUNDLED_TASKS or not suite else None)
    if len(plain) > 1 or (plain and len(tasks) > 1):
        raise UserError("with several tasks or several --data values, write --data TASK=PATH")
    return per_task.get(task) or (plain[0] if plain else None)


def parse_widths(value: str | None) -> list[int]:
    if value is None:
        return [16]
    try:
        widths = [int(w) for w in str(value).split(",") if w.strip()]
    except ValueError:
        raise UserError(f"--pacore-widths must be comma-separated integers, got {value!r}") from None
    if not widths or any(w < 1 for w in widths):
        raise UserError("--pacore-widths needs positive widths, e.g. 16 or 32,4")
    return widths


def default_repeats(model: str, task: str, task_default: int) -> int:
    """Replay's repeats come from its file (`id#k` keys: k + 1; plain ids: 1), not the task's default."""
    from model_adapters import parse_model

    provider, name = parse_model(model)
    if provider == "replay":
        from model_adapters.replay import repeats_for

        return repeats_for(name, task)
    return task_default


def check_replay_source(model: str, task: str) -> None:
    """A replay folder with per-task entries but none for this task stops a suite before any run."""
    from model_adapters import parse_model

    provider, name = parse_model(model)
    if provider == "replay":
        from model_adapters.replay import source_for

        source_for(name, task)


def check_data_choice(task_name: str, data: str | None, model: str) -> None:
    from model_adapters import parse_model
    from tasks.data import BUNDLED, bundled_dir, check_bundled_use

    if data == BUNDLED:
        bundled_dir(task_name)  # a task without bundled data: one line naming those that have some
        check_bundled_use(task_name, data, parse_model(model)[0])


def check_sampling(temperature: float, top_p: float) -> None:
    """Values every backend refuses (a server on every request, one 400 each) stop the run here.
    (A negative --top-k is not among them: like 0 it disables top-k, vLLM's own convention being -1.)"""
    if not temperature >= 0:
        raise UserError(f"--temperature must be 0 or more, got {temperature:g}")
    if not 0 < top_p <= 1:
        raise UserError(f"--top-p must be in (0, 1], got {top_p:g}")


def spec_for(task_name: str, opts: dict[str, Any]) -> RunSpec:
    from model_adapters import check_options
    from tasks import get_task

    if not opts.get("model"):
        raise UserError("--model is required (e.g. --model openai/step3-vl)")
    task_file = opts.get("task_file") if task_name == opts.get("file_task_name") else None
    check_options(opts["model"], opts["adapter_options"])
    task = get_task(task_name, opts["task_options"], task_file)
    data = data_for(task_name, opts.get("data"), opts["tasks"], bool(opts.get("suite")))
    check_data_choice(task_name, data, opts["model"])
    params = replace(task.default_params, **{k: opts[k] for k in PARAM_FLAGS if k in opts})
    if params.max_tokens < 1:
        raise UserError("--max-tokens must be at least 1")
    check_sampling(params.temperature, params.top_p)
    if opts.get("timeout") is not None and not opts["timeout"] > 0:
        raise UserError("--timeout must be more than 0 seconds")
    if opts.get("max_retries") is not None and opts["max_retries"] < 0:
        raise UserError("--max-retries must be 0 or more")
    check_replay_source(opts["model"], task_name)
    repeats = opts["samples"] if "samples" in opts else default_repeats(opts["model"], task_name, task.default_repeats)
    if repeats < 1:
        raise UserError("--samples must be at least 1")
    if opts.get("limit") is not None and opts["limit"] < 1:
        raise UserError("--limit must be at least 1")
    if opts.get("concurrency") is not None and opts["concurrency"] < 1:
        raise UserError("--concurrency must be at least 1")
    if opts.get("replicas") is not None and "ray" not in opts:
        raise UserError("--replicas needs --ray")
    adapter_options = dict(opts["adapter_options"])
    adapter_options.update({k: opts[k] for k in ADAPTER_FLAGS if k in opts})
    task_options = dict(opts["task_options"])
    if opts.get("judge"):
        task_options["judge"] = opts["judge"]
    spec = RunSpec(task=task_name, model=opts["model"], params=params, repeats=repeats,
                   adapter_options=adapter_options, task_options=task_options,
                   data=data,
                   pacore_widths=parse_widths(opts.get("pacore_widths")))
    simple = {f.name for f in fields(RunSpec)} & {"mode", "limit", "seed", "split", "concurrency", "timeout",
                                                   "max_retries", "api_key_env", "out", "pacore_pool",
                                                   "system_prompt"}
    spec = replace(spec, task_file=task_file)
    spec = replace(spec, **{k: opts[k] for k in simple if k in opts})
    if opts.get("base_url"):
        spec.base_urls = list(opts["base_url"])
    if data == "bundled" and spec.split is None:
        from tasks.data import BUNDLED_SPLITS

        spec.split = BUNDLED_SPLITS.get(task_name)
    return spec


def print_summary(run_dir: Path, result: RunResult) -> None:
    from rich.console import Console
    from rich.table import Table

    from evals.store import short_model

    table = Table(title=f"{result.spec.task} · {short_model(result.spec.model)} · {result.spec.mode}")
    for col in ("metric", "value", "95% CI", "n"):
        table.add_column(col, justify="left" if col == "metric" else "right")
    for name, m in result.metrics.items():
        if isinstance(m, dict) and "value" in m:
            lo, hi = m.get("ci", [None, None])
            ci = f"{100 * lo:.2f} – {100 * hi:.2f}" if lo is not None else ""
            table.add_row(name, f"{100 * m['value']:.2f}", ci, str(m.get("n", "")))
    console = Console()
    console.print(table)
    if result.provenance.get("no_gold"):  # a split without public answers (MathVista test)
        console.print(result.provenance["no_gold"], highlight=False)
    c = result.counts
    console.print(f"requests {c.get('requests', 0)} · errors {c.get('errors', 0)} · truncated "
                  f"{c.get('truncated', 0)} · unparsed {c.get('unparsed', 0)} · fallback {c.get('fallback', 0)}"
                  f" · status {result.status}")
    if c.get("fallback"):
        console.print(f"fallback: {c['fallback']} answers were read by the scorer's last-resort rule, not an "
                      "answer format (MathVision: the whole reply taken as the answer, as the official "
                      "evaluator does; MMMU official: no option found, counted wrong or, with -T official_fallback=random, "
                      "a seeded random letter): see docs/tasks.md",
                      highlight=False)
    if c.get("scoring_errors"):
        console.print(f"[red]{c['scoring_errors']} answers could not be scored (a scorer bug: see run.log); "
                      f"`step3vl-eval score {run_dir}` re-scores them once it is fixed[/red]")
    console.print(f"results: {run_dir / 'results.json'}")


def add_file_task(opts: dict[str, Any]) -> None:
    """`--task-file path.py:Class`: an absolute path (a resume from elsewhere finds it), and its
    task's name added to the tasks to run."""
    from tasks import task_from_file

    if not opts.get("task_file"):
        return
    path, sep, cls = str(opts["task_file"]).rpartition(":")
    if sep and path:
        opts["task_file"] = f"{Path(path).resolve()}:{cls}"
    name = task_from_file(opts["task_file"], opts["task_options"]).name
    opts["file_task_name"] = name
    if name not in opts["tasks"]:
        opts["tasks"].append(name)


def merged_log_to(args: argparse.Namespace) -> list[str]:
    configured = read_config(args.config).get("log_to", []) if args.config else []
    return list(dict.fromkeys([*configured, *(args.log_to or [])]))


def errors_hint(model: str, errors: int, out_dir: Path) -> str:
    if model.startswith("replay:"):
        return (f"{errors} requests have no prediction in the replay file: they are error records (counted, not "
                "scored); rerunning cannot fill them, a file that answers them can")
    return f"{errors} requests failed after retries; rerun the same command (or --resume {out_dir}) to retry them"


# What --resume takes from the command line: how to reach the model, never what is measured.
RESUME_FLAGS = ("base_url", "concurrency", "timeout", "max_retries", "api_key_env")
RESUME_IGNORED = ("trust_remote_code", "log_to")  # checked below / the tracker's own


def flag_for(field: str) -> str:
    """The flag that sets a spec field (`changed_settings`' names)."""
    group, _, key = field.partition(".")
    if group == "adapter_options":
        return f"--{key.replace('_', '-')}" if key in ADAPTER_FLAGS else f"-O {key}"
    if group == "task_options":
        return "--judge" if key == "judge" else f"-T {key}"
    return {"repeats": "--samples", "task": "a task name"}.get(group, f"--{(key or group).replace('_', '-')}")


def changed_settings(args: argparse.Namespace, spec: RunSpec) -> dict[str, str]:
    """The saved settings the flags given would change, by flag ("--samples": "repeats: 4 -> 8"), read by
    building the spec they describe over the saved settings: the command that started the run changes none."""
    from evals import store

    given = merged_options(args)
    saved = {"model": spec.model, "mode": spec.mode, "samples": spec.repeats, "limit": spec.limit, "seed": spec.seed,
             "data": spec.data, "split": spec.split, "pacore_widths": ",".join(map(str, spec.pacore_widths)),
             "pacore_pool": spec.pacore_pool, "system_prompt": spec.system_prompt, "task_file": spec.task_file,
             **{k: getattr(spec.params, k) for k in PARAM_FLAGS}}
    opts = {**{k: v for k, v in saved.items() if v is not None}, **given, "tasks": list(given.get("tasks") or [])}
    opts["adapter_options"] = {**spec.adapter_options, **given["adapter_options"]}
    opts["task_options"] = {**spec.task_options, **given["task_options"]}
    add_file_task(opts)
    if opts["tasks"] not in ([], [spec.task]):
        return {"a task name": f"task: {spec.task} -> {', '.join(opts['tasks'])}"}
    fresh = store.spec_identity(spec_for(spec.task, opts))

    def flat(d: dict[str, Any]) -> dict[str, Any]:
        return {f"{k}.{i}" if isinstance(v, dict) else k: w for k, v in d.items()
                for i, w in (v.items() if isinstance(v, dict) else [(None, v)])}
    old, new = flat(store.spec_identity(spec)), flat(fresh)
    return {flag_for(k): f"{k}: {old.get(k)} -> {new.get(k)}" for k in {**old, **new} if old.get(k) != new.get(k)}


def resume_spec(args: argparse.Namespace, run_dir: Path) -> RunSpec:
    """The run's saved spec, with the operational flags given now. A flag that changes what is measured
    is refused, not silently dropped; a saved --trust-remote-code must be given again."""
    from evals import runner, store

    spec = runner.resume_spec(run_dir)
    options = parse_key_values(args.adapter_option, "-O")
    operational_adapter = [k for k in ADAPTER_FLAGS if k in store.OPERATIONAL_ADAPTER_OPTIONS]
    refused = [f"--{k.replace('_', '-')}" for k in CONFIG_KEYS
               if k not in (*RESUME_FLAGS, *RESUME_IGNORED, *operational_adapter, "tasks")
               and getattr(args, k, None) not in (None, [])]
    refused += ["a task name"] * bool(args.tasks) + ["--config"] * bool(args.config)
    refused += [f"-O {k}" for k in options if k not in store.OPERATIONAL_ADAPTER_OPTIONS]
    refused += [f"-T {k}" for k in parse_key_values(args.task_option, "-T")]
    try:
        changes = changed_settings(args, spec) if refused else {}
    except UserError as exc:  # flags that describe no run at all
        changes = {", ".join(refused): str(exc)}
    if changes:
        raise UserError(f"--resume takes the settings saved in {run_dir}; {', '.join(changes)} cannot change them "
                        f"({'; '.join(changes.values())}): leave them out, or run without --resume for a run of their own")
    if spec.adapter_options.get("trust_remote_code") and not args.trust_remote_code:
        raise UserError(f"{run_dir} was run with --trust-remote-code: give it again to resume (a model's own "
                        "code never runs on a saved setting alone)")
    for name in RESUME_FLAGS[1:]:
        if getattr(args, name) is not None:
            setattr(spec, name, getattr(args, name))
    if args.base_url:
        spec.base_urls = args.base_url
    spec.adapter_options.update({k: getattr(args, k) for k in operational_adapter if getattr(args, k) is not None})
    spec.adapter_options.update({k: v for k, v in options.items() if k in store.OPERATIONAL_ADAPTER_OPTIONS})
    if spec.timeout is not None and not spec.timeout > 0:
        raise UserError("--timeout must be more than 0 seconds")
    return spec


def command_run(args: argparse.Namespace) -> int:
    from evals import runner
    from reports import trackers
    from tasks import suites

    if args.resume:
        run_dir = Path(args.resume)
        jobs = [(resume_spec(args, run_dir), run_dir)]
    else:
        opts = merged_options(args)
        opts["tasks"], opts["suite"] = suites.expand(list(opts.get("tasks") or []))
        add_file_task(opts)
        if not opts["tasks"]:
            raise UserError("name at least one task (see `step3vl-eval list`)")
        jobs = [(spec_for(t, opts), None) for t in opts["tasks"]]
    status = 0
    log_to = list(args.log_to or []) if args.resume else list(merged_log_to(args))
    for spec, run_dir in jobs:
        tracking = trackers.Tracking(spec, log_to)
        try:
            out_dir, result = runner.run(spec, run_dir, show_progress=not args.quiet, on_start=tracking.start)
        except (Exception, KeyboardInterrupt):
            tracking.stop()
            raise
        tracking.finish(out_dir, result)
        print_summary(out_dir, result)
        if result.counts.get("errors"):
            print(errors_hint(spec.model, result.counts["errors"], out_dir), file=sys.stderr)
            status = 1
    return status


def command_score(args: argparse.Namespace) -> int:
    from evals import runner

    run_dir = Path(args.run_dir)
    if args.task_option:
        new_dir, result = runner.rescore_as(run_dir, parse_key_values(args.task_option, "-T"))
        if new_dir != run_dir:
            print(f"re-scored into {new_dir} ({run_dir} is unchanged)")
        print_summary(new_dir, result)
        return 0
    print_summary(run_dir, runner.rescore(run_dir))
    return 0


def command_setup(args: argparse.Namespace) -> int:
    from tasks.latex2sympy_sidecar import setup

    return setup()


def command_list(args: argparse.Namespace) -> int:
    from evals.modes import MODES
    from model_adapters import adapter_origins
    from tasks import task_origins
    from tasks.suites import SUITES, plan

    tasks, adapters = task_origins(), adapter_origins()
    width = max(len(name) for name, _ in [*tasks, *adapters]) + 2
    print("tasks:")
    for name, origin in tasks:
        print(f"  {name:<{width}}{origin}")
    print("adapters:")
    for name, origin in adapters:
        print(f"  {name:<{width}}{origin}" + ("   (a scripted smoke-test tool)" if name == "mock" else ""))
    print("suites:")
    for name, suite in SUITES.items():
        sizes = {mode: sum(r.generations for r in plan(name, mode)) for mode in MODES}
        print(f"  {name:<{width}}{suite.about}; {sizes['sere']:,} model calls in SeRe, {sizes['pacore']:,} in PaCoRe\n"
              f"  {'':<{width}}{', '.join(suite.tasks)}")
    print("modes:    " + ", ".join(MODES))
    return 0


def command_gate(args: argparse.Namespace) -> int:
    if args.plan and not args.write_baseline:
        from gates.power import command_plan

        return command_plan(args)
    from gates.gate import command_gate as gate

    return gate(args)


def command_compare(args: argparse.Namespace) -> int:
    from reports.compare_view import command_compare as compare

    return compare(args)


def command_report(args: argparse.Namespace) -> int:
    import reports

    return reports.cli_command(args)


def command_demo(args: argparse.Namespace) -> int:
    from tasks.demo import run_demo

    return run_demo(Path(args.out), spec_for)


COMMANDS = {"demo": command_demo, "run": command_run, "score": command_score, "list": command_list, "gate": command_gate,
            "report": command_report, "compare": command_compare, "setup": command_setup}


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        return COMMANDS[args.command](args)
    except UserError as exc:
        print(f"step3vl-eval: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("step3vl-eval: interrupted; run the same command again to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
