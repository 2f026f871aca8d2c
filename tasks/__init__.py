"""Benchmarks: one module each. `TASKS` is the one place that names them (no import-time registry)."""

from __future__ import annotations

import importlib
import inspect

from evals.types import Task, UserError

# name -> ("module:Class", constructor keyword arguments)
TASKS: dict[str, tuple[str, dict[str, str]]] = {
    "aime2025": ("tasks.aime2025:AIME2025", {}),
    "mmmu": ("tasks.mmmu:MMMU", {}),
    "mmbench_en": ("tasks.mmbench:MMBench", {"lang": "en"}),
    "mmbench_cn": ("tasks.mmbench:MMBench", {"lang": "cn"}),
    "mathvision": ("tasks.mathvision:MathVision", {}),
}


def get_task(name: str, options: dict[str, str] | None = None) -> Task:
    """Build a task; `options` (`-T key=value` on the CLI) go to its constructor."""
    if name not in TASKS:
        raise UserError(f"unknown task {name!r} (known: {', '.join(sorted(TASKS))})")
    target, kwargs = TASKS[name]
    module, cls_name = target.split(":")
    cls = getattr(importlib.import_module(module), cls_name)
    check_task_options(name, cls, set(kwargs), options or {})
    try:
        return cls(**{**kwargs, **(options or {})})
    except TypeError as exc:
        raise UserError(f"bad task option for {name}: {exc}") from None


def check_task_options(name: str, cls: type, fixed: set[str], options: dict[str, str]) -> None:
    """One line naming the valid options when `-T` names one the task does not take. A task with
    `**options` takes the judge's (`judge`, `judge_*`)."""
    params = [] if cls.__init__ is object.__init__ else list(inspect.signature(cls.__init__).parameters.values())[1:]
    judged = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params)
    valid = [p.name for p in params if p.name not in fixed and p.kind is not inspect.Parameter.VAR_KEYWORD]
    valid += ["judge", "judge_*"] if judged else []
    unknown = sorted(k for k in options if k not in valid and not (judged and k.startswith("judge")))
    if unknown:
        what = f"valid: {', '.join(valid)}" if valid else f"{name} takes no task options"
        raise UserError(f"unknown task option {unknown[0]!r} for {name} (-T / --judge; {what})")
