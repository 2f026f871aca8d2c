"""Mathematical equivalence through math-verify (gold first, as its docs require).

An answer is first brought to a canonical form (`canonical`): the dressing a reasoning model puts
around a number (`$...$`, `\\$`, `\\text{ dollars}`, `^\\circ`, `\\text{70}`, thousands separators,
`70.` / `70.00`, leading zeros) is removed by plain text rules. Two integers in canonical form
compare as integers, with no parser at all; anything else goes to math-verify, wrapped in `$...$`.

math-verify bounds its parsing and comparison with `signal.alarm`, which only works in the main
thread: elsewhere we pass no timeout (callers that need a bound score in a process pool).
"""

from __future__ import annotations

import functools
import re
import threading
from typing import Any

_INTEGER = re.compile(r"^[+-]?\d+$")
_MATH_WRAPPERS = [("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]")]
_STYLE = re.compile(r"^\\(?:text|textbf|textrm|mathrm|mathbf|mbox|boxed)\s*\{([^{}]*)\}$")
# A unit or word after the number: `70 \text{ dollars}`, `70\,\mathrm{cm}`, `70\ \text{ways}`.
_TRAILING_UNIT = re.compile(r"(?:\\[,;:! ]|~|\s)*\\(?:text|mbox|mathrm|textrm)\s*\{\s*[A-Za-z][A-Za-z .]*\}$")
# A number of degrees (only a number: `\cos 30^\circ` is not `\cos 30`).
_DEGREES = re.compile(r"^([+-]?\d+(?:\.\d+)?)\s*(?:\^\s*\{?\s*\\circ\s*\}?|\\degree|°)$")
_SPACING = re.compile(r"\\[,;:! ]|~")  # typographic spaces: a space, never a join
_CURRENCY = re.compile(r"\\\$|\\(?:textdollar|dollar)(?![A-Za-z])")
# Plain words after a number: `70 dollars`, `70 ways.` (math-verify would multiply the letters).
_TRAILING_WORDS = re.compile(r"^([+-]?\d+(?:\.\d+)?)(?:\s+[A-Za-z]{2,})+\.?$")
DRESSED_MAX = 200  # longer answers skip the dressing rules: some regexes here are not linear-time
_THOUSANDS = re.compile(r"^[+-]?\d{1,3}(?:(?:,|\{,\}|\\,)\d{3})+$")  # 1,000  1{,}000  1\,000
_SEPARATOR = re.compile(r",|\{,\}|\\,")
_ZERO_DECIMALS = re.compile(r"^([+-]?\d+)\.0*$")


def canonical(answer: str) -> str:
    """The answer without its dressing; two answers with the same canonical form are equal.

    Only rules that keep the value: it never turns two different numbers into one text. A comma
    between digit groups of three (`1,000`, `1{,}000`) is a thousands separator, as math-verify
    reads it; so is a thin space there (`1\\,000`; math-verify reads a product). Other spacing
    commands become spaces: `7\\,0` is not 70.
    """
    text = answer.strip()
    if len(text) > DRESSED_MAX:
        return _canonical_integer(text) if _INTEGER.match(text) else text
    for _ in range(4):  # nested dressing: `$\text{\$70}$`
        before = text
        for left, right in _MATH_WRAPPERS:
            if len(text) > len(left) + len(right) and text.startswith(left) and text.endswith(right):
                text = text[len(left) : -len(right)].strip()
        style = _STYLE.match(text)
        if style:
            text = style.group(1).strip()
        text = _TRAILING_UNIT.sub("", text).strip()
        text = _DEGREES.sub(r"\1", _CURRENCY.sub("", text).strip())
        if text == before:
            break
    if _THOUSANDS.match(text):
        text = _SEPARATOR.sub("", text)
    text = _SPACING.sub(" ", text).strip()
    words = _TRAILING_WORDS.match(text)
    if words:
        text = words.group(1)
    zero = _ZERO_DECIMALS.match(text)
    if zero:
        text = zero.group(1)
    return _canonical_integer(text) if _INTEGER.match(text) else text


def _canonical_integer(text: str) -> str:
    # Compared as text: int() refuses strings of more than 4,300 digits, and a model can write one.
    sign = "-" if text.startswith("-") else ""
    digits = text.lstrip("+-").lstrip("0") or "0"
    return ("" if digits == "0" else sign) + digits


def is_integer(canonical_form: str) -> bool:
    return bool(_INTEGER.match(canonical_form))


def math_equal(gold: str, answer: str) -> bool:
    return canonical_equal(canonical(gold), canonical(answer))


def canonical_equal(gold: str, answer: str) -> bool:
    """`math_equal` on answers already in canonical form (maj@k compares many)."""
    if not gold or not answer:
        return False
    if gold == answer:
        return True
    if is_integer(gold) and is_integer(answer):
        return False  # different integers (math-verify agrees: 070 == 70, 70 != 71)
    from math_verify import verify

    g, a = parsed(gold), parsed(answer)
    try:
        return bool(g and a and verify(g, a, timeout_seconds=_timeout()))
    except Exception:  # untrusted text: any parser failure is "not equal", never a crash
        return False


def _timeout() -> int | None:
    return 5 if threading.current_thread() is threading.main_thread() else None


@functools.lru_cache(maxsize=4096)
def parsed(form: str) -> list[Any]:
    """math-verify's reading of an answer in canonical form, put in math mode (cached: maj@k
    compares each distinct answer with several others)."""
    from math_verify import parse

    try:
        return list(parse(f"${form}$", parsing_timeout=_timeout()))
    except Exception:  # untrusted text: unreadable is "no value"
        return []
