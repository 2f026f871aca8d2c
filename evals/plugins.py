"""Tasks and adapters from outside the package: Python entry points, or one Python file.

- An installed package declares them as entry points, in the groups `step3vl_eval.tasks`
  (name -> `module:TaskClass`) and `step3vl_eval.adapters` (provider -> `module:AdapterClass`).
- A one-off file: `--task-file path.py:ClassName`, `--model file:path.py:ClassName`.

Nothing is imported until a name is looked up (`list` names entry points without importing them),
so a broken plugin only breaks the runs that use it, with one line (exit 2). Built-in names win
over entry points of the same name. The protocols are in `evals/types.py` (`Task`, `Adapter`) and
docs/plugins.md.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from evals.types import GenParams, UserError

TASK_GROUP = "step3vl_eval.tasks"
ADAPTER_GROUP = "step3vl_eval.adapters"

# What a plugin must have. Optional task attributes get these defaults when absent.
TASK_METHODS = ("load", "score", "aggregate")
ADAPTER_METHODS = ("generate", "close")
TASK_DEFAULTS: dict[str, Any] = {"prompt_template": "", "default_repeats": 1, "judge": None}


@dataclass
class Found:
    name: str
    target: str  # "module:Class"
    origin: str  # "entry point (package NAME VERSION)"


def entry_points(group: str) -> dict[str, Found]:
    """Installed entry points of a group, by name, without importing them."""
    found: dict[str, Found] = {}
    for ep in metadata.entry_points(group=group):
        dist = getattr(ep, "dist", None)
        package = f"{dist.metadata['Name']} {dist.version}" if dist is not None else "unknown package"
        found.setdefault(ep.name, Found(ep.name, ep.value, f"entry point (package {package})"))
    return found


def import_target(target: str, what: str) -> Any:
    """`module:Attr` -> the object; any failure is one line naming the plugin."""
    module_name, sep, attr = target.partition(":")
    if not sep or not attr:
        raise UserError(f"{what}: {target!r} must look like module:ClassName")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # a plugin's own import error must not become a traceback
        raise UserError(f"{what}: cannot import {module_name}: {type(exc).__name__}: {exc}") from None
    return lookup(module, attr, what)


def lookup(module: Any, attr: str, what: str) -> Any:
    obj = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise UserError(f"{what}: {module.__name__} has no {attr!r}")
        obj = getattr(obj, part)
    return obj


def split_file_target(value: str, flag: str) -> tuple[Path, str]:
    """`path.py:ClassName` -> (path, ClassName)."""
    path, sep, attr = value.rpartition(":")
    if not sep or not path or not attr:
        raise UserError(f"{flag} must look like path.py:ClassName, got {value!r}")
    return Path(path), attr


def import_file(value: str, flag: str) -> Any:
    """The class `ClassName` from `path.py:ClassName`, importing the file as a module of its own."""
    path, attr = split_file_target(value, flag)
    what = f"{flag} {value}"
    if not path.is_file():
        raise UserError(f"{what}: {path} is not a file")
    resolved = path.resolve()
    # A stable module name per file, so that pickling its objects (the scoring pool) finds it again.
    module_name = "step3vl_plugin_" + hashlib.sha1(str(resolved).encode()).hexdigest()[:12]
    module = sys.modules.get(module_name)
    if module is None:
        spec = importlib.util.spec_from_file_location(module_name, resolved)
        if spec is None or spec.loader is None:
            raise UserError(f"{what}: cannot import {path} (not a Python file?)")
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        try:
            spec.loader.exec_module(module)
        except Exception as exc:
            del sys.modules[module_name]
            raise UserError(f"{what}: cannot import {path}: {type(exc).__name__}: {exc}") from None
    return lookup(module, attr, what)


def missing_methods(obj: Any, names: tuple[str, ...]) -> list[str]:
    return [n for n in names if not callable(getattr(obj, n, None))]


def build_task(cls: Any, options: dict[str, Any], what: str) -> Any:
    """Instantiate a plugin task and check it against the Task protocol."""
    if not callable(cls):
        raise UserError(f"{what}: {cls!r} is not a class")
    try:
        task = cls(**options)
    except TypeError as exc:
        raise UserError(f"{what}: bad task option: {exc}") from None
    except UserError:
        raise
    except Exception as exc:
        raise UserError(f"{what}: the task failed to start: {type(exc).__name__}: {exc}") from None
    missing = missing_methods(task, TASK_METHODS)
    if missing or not isinstance(getattr(task, "name", None), str):
        gaps = [f"method {m}()" for m in missing] + ([] if isinstance(getattr(task, "name", None), str)
                                                      else ["a `name` string"])
        raise UserError(f"{what}: not a Task (it lacks {', '.join(gaps)}; see docs/plugins.md)")
    if not isinstance(getattr(task, "default_params", None), GenParams):
        if hasattr(task, "default_params"):
            raise UserError(f"{what}: not a Task (default_params must be an evals.types.GenParams)")
        task.default_params = GenParams()
    for attr, default in TASK_DEFAULTS.items():
        if not hasattr(task, attr):
            setattr(task, attr, default)
    return task


def build_adapter(cls: Any, name: str, spec: Any, what: str) -> Any:
    """Instantiate a plugin adapter as the built-ins are, `cls(name, spec)`, and check it."""
    if not callable(cls):
        raise UserError(f"{what}: {cls!r} is not a class")
    try:
        adapter = cls(name, spec)
    except UserError:
        raise
    except Exception as exc:
        raise UserError(f"{what}: the adapter failed to start: {type(exc).__name__}: {exc}") from None
    missing = missing_methods(adapter, ADAPTER_METHODS)
    if missing:
        raise UserError(f"{what}: not an Adapter (it lacks {', '.join(m + '()' for m in missing)}; "
                        "see docs/plugins.md)")
    return adapter
