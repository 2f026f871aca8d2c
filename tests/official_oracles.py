"""Load the official scorers from ../shared/oracles, as released, for the differential tests.

The code there is third-party and is run, never copied. The MMMU scorer imports only numpy. The
two VLMEvalKit files import helpers from their package (`..smp`, `...utils`); they get small
stand-ins here for the few names they use (a logger, load/dump, `istype`, `timestr`), the way
../shared/oracles/README.md describes. Everything skips with the reason when ../shared is absent.
"""

from __future__ import annotations

import copy
import importlib.util
import logging
import os
import random
import re
import string
import sys
import types
import warnings
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
ORACLES = REPO.parent / "shared" / "oracles"
MMMU_COMMIT = "MMMU-Benchmark/MMMU @ bb0b95a945998d91dfef37e969e07d49d1139438"
VLMEVALKIT_COMMIT = "open-compass/VLMEvalKit @ c3371551bb84a36b8012d277231059c901ffa2f7"


def oracle_file(*parts: str) -> Path:
    path = ORACLES.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"official scorer not available: {path} is absent (../shared/oracles ships only with the project)")
    return path


def load_module(name: str, path: Path) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


_loads = 0


def fresh_mmmu_eval_utils() -> types.ModuleType:
    """MMMU's `eval_utils.py`, executed anew: its import runs `random.seed(42)`, as each run of the
    official scorer (one process per run) starts its random fallback sequence there."""
    global _loads
    _loads += 1
    pytest.importorskip("numpy", reason="the MMMU scorer needs numpy")
    return load_module(f"mmmu_official_oracle_{_loads}", oracle_file("mmmu", "eval_utils.py"))


# ---- VLMEvalKit ------------------------------------------------------------------------------------

PACKAGE = "vlmevalkit_oracle"


def vlmevalkit() -> types.SimpleNamespace:
    """`matching_util` and `multiple_choice` as a package `vlmevalkit_oracle` with stand-ins."""
    if PACKAGE in sys.modules:
        return sys.modules[PACKAGE].loaded
    matching = oracle_file("vlmevalkit", "matching_util.py")
    multiple = oracle_file("vlmevalkit", "multiple_choice.py")
    pd = pytest.importorskip("pandas", reason="VLMEvalKit's multiple_choice.py needs pandas (the dev extra)")
    np = pytest.importorskip("numpy")
    if os.environ.get("VERBOSE"):  # can_infer_option reads it: set, it refuses an `A` among 4+ tokens
        pytest.skip("VERBOSE is set: VLMEvalKit's can_infer_option would log instead of answering")

    stored: dict[str, Any] = {}  # dump/load stand-ins: results and xlsx files kept in memory

    def dump(data: Any, path: str) -> None:
        stored[path] = copy.deepcopy(data)

    def load(path: str) -> Any:
        return copy.deepcopy(stored[path])

    def istype(value: Any, kind: type) -> bool:  # VLMEvalKit: isinstance, or eval(str) of that type
        return isinstance(value, kind) or (kind is int and isinstance(value, np.integer))

    smp = types.ModuleType(f"{PACKAGE}.smp")
    smp.__dict__.update(
        string=string, cp=copy, os=os, osp=os.path, re=re, rd=random, pd=pd, np=np, defaultdict=defaultdict,
        get_logger=lambda name: logging.getLogger(f"{PACKAGE}.{name}"), load=load, dump=dump, istype=istype,
        timestr=lambda: "oracle", cn_string=lambda s: bool(re.search("[\u4e00-\u9fff]", s)),
    )
    utils = types.ModuleType(f"{PACKAGE}.utils")
    utils.__path__ = []  # a package: matching_util imports `..smp` from inside it

    def no_model(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the oracle runs without a judge model: track_progress_rich must not be called")

    utils.track_progress_rich = no_model
    root = types.ModuleType(PACKAGE)
    root.__path__ = []
    dataset = types.ModuleType(f"{PACKAGE}.dataset")
    dataset.__path__ = []
    dataset_utils = types.ModuleType(f"{PACKAGE}.dataset.utils")
    dataset_utils.__path__ = []
    for module in (root, smp, utils, dataset, dataset_utils):
        sys.modules[module.__name__] = module
    matching_util = load_module(f"{PACKAGE}.utils.matching_util", matching)
    utils.can_infer, utils.can_infer_lego = matching_util.can_infer, matching_util.can_infer_lego
    multiple_choice = load_module(f"{PACKAGE}.dataset.utils.multiple_choice", multiple)
    root.loaded = types.SimpleNamespace(matching_util=matching_util, multiple_choice=multiple_choice, stored=stored)
    return root.loaded


def can_infer(answer: str, choices: dict[str, str]) -> str | None:
    """VLMEvalKit's verdict (`False` as None); the oracle lower-cases the dict it gets, so it gets a copy."""
    found = vlmevalkit().matching_util.can_infer(answer, dict(choices))
    return found or None


def circular_hits(data: Any, groups_per_call: int = 250) -> dict[int, int]:
    """VLMEvalKit's `mcq_circular_eval` without a judge model (exact matching): hit per group.

    `data` holds `index`, the option letters, `answer` and `prediction`; the answers double as its
    `meta`. Groups are independent, so they go in slices (VLMEvalKit filters the whole frame once
    per group: slices keep that linear)."""
    mc = vlmevalkit().multiple_choice
    groups = data["index"] % 1_000_000
    ids = sorted(set(groups))
    hits: dict[int, int] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pandas' chained-assignment warnings on VLMEvalKit's slices
        for start in range(0, len(ids), groups_per_call):
            part = data[groups.isin(ids[start:start + groups_per_call])].copy()
            result = mc.mcq_circular_eval(None, part, part[["index", "answer"]].copy(), nproc=1,
                                          result_file="/nonexistent/oracle_result.pkl")
            hits.update({int(i): int(h) for i, h in zip(result["index"], result["hit"])})
    return hits
