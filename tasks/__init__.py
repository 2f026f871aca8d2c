"""Benchmarks: one module each. `TASKS` is the one place that names them (no import-time registry)."""

from __future__ import annotations

import importlib

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
    module, cls = target.split(":")
    try:
        return getattr(importlib.import_module(module), cls)(**{**kwargs, **(options or {})})
    except TypeError as exc:
        raise UserError(f"bad task option for {name}: {exc}") from None
