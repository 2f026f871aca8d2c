"""Suites: one name for several tasks, run with each task's own defaults (the report's settings).

`SUITES` is the one place that names them (no import-time registry). `step3vl-eval run table3 ...`
runs the tasks of the STEP3-VL-10B report's Table 3; every flag applies to each of them, as when the
tasks are named one by one. `plan` says how big a suite is at the report's settings, so that a user
can budget a full run (README "The report's whole Table 3 in one command").
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Suite:
    tasks: tuple[str, ...]
    about: str


SUITES: dict[str, Suite] = {
    # Table 3's rows, in the order the leaderboard shows them: MMBench EN, CN (their mean is a report column), MMMU,
    # MMMU-Pro (standard 10 options and vision: the published figure sits beside their mean, see
    # reports/published.json), MathVision, MathVista, AIME 2025, HMMT25.
    "table3": Suite(("mmbench_en", "mmbench_cn", "mmmu", "mmmu_pro", "mmmu_pro_vision", "mathvision", "mathvista",
                     "aime2025", "hmmt2025"),
                    "the STEP3-VL-10B report's Table 3 at its settings"),
}

# Requests per task at the report's settings: questions (MMBench: rows, one per circular pass) x the
# task's default repeats. MMBench v1.1 dev's row count is approximate (v1.0 dev has 4,329 rows per
# language; the v1.1 TSVs are of that size): a run's own count is in its results.json.
QUESTIONS = {"mmbench_en": 4329, "mmbench_cn": 4329, "mmmu": 900, "mmmu_pro": 1730, "mmmu_pro_vision": 1730,
             "mathvision": 3040, "mathvista": 1000, "aime2025": 30, "hmmt2025": 30}
REPEATS = {"aime2025": 64, "hmmt2025": 64}  # avg@64; every other task samples each question once
MAX_TOKENS = 65536  # per generation in both modes (PaCoRe's 131,072 is the synthesis round's context)
PACORE_GENERATIONS = 16 + 1  # the report's widths [16], then the final synthesis


def expand(names: list[str]) -> tuple[list[str], bool]:
    """Task names with each suite name replaced by its tasks (order kept, duplicates dropped), and
    whether a suite was named."""
    out: list[str] = []
    for name in names:
        out += list(SUITES[name].tasks) if name in SUITES else [name]
    return list(dict.fromkeys(out)), any(name in SUITES for name in names)


@dataclass(frozen=True)
class PlanRow:
    task: str
    questions: int
    repeats: int
    generations: int  # model calls: requests, x17 in PaCoRe
    max_tokens: int  # generated tokens if every call ran to the cap


def plan(suite: str, mode: str) -> list[PlanRow]:
    """The size of a full run of `suite` in `mode` at the report's settings: an upper bound on tokens."""
    rows = []
    for task in SUITES[suite].tasks:
        requests = QUESTIONS[task] * REPEATS.get(task, 1)
        calls = requests * (PACORE_GENERATIONS if mode == "pacore" else 1)
        rows.append(PlanRow(task, QUESTIONS[task], REPEATS.get(task, 1), calls, calls * MAX_TOKENS))
    return rows

