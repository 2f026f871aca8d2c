"""The MMMU repository's scoring rules (`eval/eval_utils.py` of MMMU-Benchmark/MMMU), reimplemented.

Behaviour matched rule for rule, quirks included, because the published MMMU numbers come from them:

- Multiple choice (`parse_multiple_choice`): strip `, . ! ? ; : '` from both ends in that order, pad
  with spaces; candidates are the letters found as `(X)`; else as ` X `; else, only when the padded
  response has more than 5 words, the options whose text it contains. Several candidates: the one
  whose match starts last (ties: the earlier letter). None: the official scorer draws
  `random.choice(all_choices)` from one generator seeded 42 at import, over subjects in its order
  and items in file order; here that draw is `official_random_picks`, and `parse_multiple_choice`
  returns None so the caller decides (the MMMU task counts it wrong unless asked otherwise).
- Open (`parse_open`): the shortest tail after an indicator word in each line (`=` only in the
  last line), plus every number in those tails, normalised (numbers rounded to 2 decimals, text
  lower-cased, a single character padded so it cannot match inside a word).
- `eval_open`: a number must equal a normalised gold number; a text prediction must contain a
  normalised gold text.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable
from typing import Any

STRIP_ORDER = [",", ".", "!", "?", ";", ":", "'"]
INDICATORS = ["could be ", "so ", "is ", "thus ", "therefore ", "final ", "answer ", "result "]
TRIVIAL_TAILS = {":", ",", ".", "!", "?", ";", "'"}
NUMBER_WITH_COMMAS = re.compile(r"-?\b\d{1,3}(?:,\d{3})+\b")
# The official patterns, each made to start only at the beginning of a digit run: a match can never
# start inside one (from any digit of a run the pattern ends at the same place), so the results are
# the same, and a 100,000-digit answer costs linear instead of quadratic time.
NUMBER_SCIENTIFIC = re.compile(r"-?(?<!\d)\d+(?:\.\d+)?[eE][+-]?\d+")
NUMBER_SIMPLE = re.compile(r"-?(?:(?<!\d)\d+\.\d+|\.\d+|(?<!\d)\d+\b)(?![eE][+-]?\d+)(?![,\d])")
SEED = 42

Normalized = float | str


def parse_multiple_choice(response: str, all_choices: list[str], index2ans: dict[str, str]) -> str | None:
    """The official letter, or None where the official scorer would pick at random."""
    for char in STRIP_ORDER:
        response = response.strip(char)
    padded = f" {response} "
    bracketed = [c for c in all_choices if f"({c})" in padded]
    if bracketed:
        return _last(bracketed, lambda c: padded.rfind(f"({c})"))
    spaced = [c for c in all_choices if f" {c} " in padded]
    if spaced:
        return _last(spaced, lambda c: padded.rfind(f" {c} "))
    if len(padded.split()) > 5:
        lowered = padded.lower()
        texts = [c for c, text in index2ans.items() if text.lower() in lowered]
        if texts:
            return _last(texts, lambda c: lowered.rfind(index2ans[c].lower()))
    return None


def _last(candidates: list[str], position: Any) -> str:
    """The candidate found last; on a tie the first in order (numpy.argmax semantics)."""
    best = candidates[0]
    for c in candidates[1:]:
        if position(c) > position(best):
            best = c
    return best


def official_random_picks(fallbacks: Iterable[tuple[str, list[str]]]) -> dict[str, str]:
    """Replay the official random fallback: (key, all_choices) pairs in the official order."""
    rng = random.Random(SEED)
    return {key: rng.choice(choices) for key, choices in fallbacks}


def is_number(text: str) -> bool:
    try:
        float(text.replace(",", ""))
        return True
    except ValueError:
        return False


def normalize(text: str) -> list[Normalized]:
    text = text.strip()
    if is_number(text):
        return [round(float(text.replace(",", "")), 2)]
    text = text.lower()
    return [" " + text, text + " "] if len(text) == 1 else [text]


def extract_numbers(text: str) -> list[str]:
    return NUMBER_WITH_COMMAS.findall(text) + NUMBER_SCIENTIFIC.findall(text) + NUMBER_SIMPLE.findall(text)


def key_tails(response: str) -> list[str]:
    """Per line, the shortest tail after an indicator; the whole response when none is found."""
    response = response.strip().strip(".").lower()
    # The official split is r"\.\s(?=[A-Z])|\n" on the lower-cased text: its sentence branch can
    # never match, so only newlines split.
    lines = response.split("\n")
    tails = []
    for i, line in enumerate(lines):
        indicators = INDICATORS + (["="] if i == len(lines) - 1 else [])
        shortest: str | None = None
        for indicator in indicators:
            if indicator in line:
                tail = line.split(indicator)[-1].strip()
                # `not shortest` (not `is None`): an empty tail is replaced by the next one found.
                if not shortest or len(tail) < len(shortest):
                    shortest = tail
        if shortest and shortest.strip() not in TRIVIAL_TAILS:
            tails.append(shortest)
    return tails or [response]


def parse_open(response: str) -> list[Normalized]:
    tails = key_tails(response)
    candidates = tails + [n for tail in tails for n in extract_numbers(tail)]
    found: list[Normalized] = []
    for c in candidates:
        for norm in normalize(c):
            if norm not in found:
                found.append(norm)
    return found


def eval_multiple_choice(gold: str | list[str], pred: str | None) -> bool:
    return pred is not None and (pred in gold if isinstance(gold, list) else pred == gold)


def eval_open(gold: str | list[str], preds: list[Normalized]) -> bool:
    golds = [n for g in (gold if isinstance(gold, list) else [gold]) for n in normalize(str(g))]
    for pred in preds:
        if isinstance(pred, str):
            if any(isinstance(g, str) and g in pred for g in golds):
                return True
        elif pred in golds:
            return True
    return False
