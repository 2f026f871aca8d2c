"""Benchmarks: one module each. `TASKS` is the one place that names the built-ins (no import-time
registry); tasks from other packages come from the `step3vl_eval.tasks` entry points, or from one
file with `--task-file path.py:ClassName` (evals/plugins.py, docs/plugins.md)."""

from __future__ import annotations

import importlib
import inspect
from typing import Any

from evals.types import Task, UserError

# name -> ("module:Class", constructor keyword arguments)
TASKS: dict[str, tuple[str, dict[str, str]]] = {
    "aime2025": ("tasks.aime2025:AIME2025", {}),
    "mmmu": ("tasks.mmmu:MMMU", {}),
    "mmbench_en": ("tasks.mmbench:MMBench", {"lang": "en"}),
    "mmbench_cn": ("tasks.mmbench:MMBench", {"lang": "cn"}),
    "mathvision": ("tasks.mathvision:MathVision", {}),
    "mathvista": ("tasks.mathvista:MathVista", {}),
    "mmmu_pro": ("tasks.mmmu_pro:MMMUPro", {"setting": "standard"}),
    "mmmu_pro_vision": ("tasks.mmmu_pro:MMMUPro", {"setting": "vision"}),
    "hmmt2025": ("tasks.hmmt2025:HMMT2025", {}),
}


def get_task(name: str, options: dict[str, Any] | None = None, task_file: str | None = None) -> Task:
    """Build a task; `options` (`-T key=value` on the CLI) go to its constructor.

    A built-in name first, then the task in `task_file` (`path.py:ClassName`), then an installed
    entry point of that name."""
    from evals import plugins

    options = options or {}
    if name in TASKS:
        target, kwargs = TASKS[name]
        module, cls_name = target.split(":")
        cls = getattr(importlib.import_module(module), cls_name)
        check_task_options(name, cls, set(kwargs), options)
        try:
            return cls(**{**kwargs, **options})
        except TypeError as exc:
            raise UserError(f"bad task option for {name}: {exc}") from None
    if task_file:
        task = task_from_file(task_file, options)
        if task.name != name:
            raise UserError(f"--task-file {task_file}: the task is named {task.name!r}, not {name!r}")
        return task
    found = plugins.entry_points(plugins.TASK_GROUP).get(name)
    if found is None:
        known = sorted({*TASKS, *plugins.entry_points(plugins.TASK_GROUP)})
        from tasks.suites import SUITES

        raise UserError(f"unknown task {name!r} (known: {', '.join(known)}; suites: {', '.join(SUITES)}; "
                        "or --task-file path.py:ClassName)")
    what = f"task {name!r} ({found.origin})"
    task = plugins.build_task(plugins.import_target(found.target, what), options, what)
    if task.name != name:
        raise UserError(f"{what}: the task calls itself {task.name!r}; name the entry point the same")
    return task


def task_from_file(task_file: str, options: dict[str, Any] | None = None) -> Task:
    """The task class in `path.py:ClassName`, built with `options`."""
    from evals import plugins

    what = f"--task-file {task_file}"
    return plugins.build_task(plugins.import_file(task_file, "--task-file"), options or {}, what)


def task_origins() -> list[tuple[str, str]]:
    """(name, where it comes from) for every task `run` can find, built-ins first; imports nothing."""
    from evals import plugins

    rows = [(name, "built-in") for name in TASKS]
    for name, found in plugins.entry_points(plugins.TASK_GROUP).items():
        rows.append((name, found.origin + (" [ignored: a built-in has this name]" if name in TASKS else "")))
    return rows


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
