"""Mathematical equivalence through math-verify (gold first, as its docs require).

math-verify bounds its parsing and comparison with `signal.alarm`, which only works in the main
thread: elsewhere we pass no timeout (callers that need a bound score in a process pool).
"""

from __future__ import annotations

import re
import threading

_INTEGER = re.compile(r"^[+-]?\d+$")


def _canonical_integer(text: str) -> str:
    # Compared as text: int() refuses strings of more than 4,300 digits, and a model can write one.
    sign = "-" if text.startswith("-") else ""
    digits = text.lstrip("+-").lstrip("0") or "0"
    return ("" if digits == "0" else sign) + digits


def _wrap(answer: str) -> str:
    # math-verify extracts from LaTeX; a bare answer must be put in math mode to be found.
    return answer if "$" in answer or "\\boxed" in answer else f"${answer}$"


def math_equal(gold: str, answer: str) -> bool:
    gold, answer = gold.strip(), answer.strip()
    if not answer:
        return False
    if _INTEGER.match(gold) and _INTEGER.match(answer):
        return _canonical_integer(gold) == _canonical_integer(answer)  # as math-verify decides: 070 == 70
    from math_verify import parse, verify

    in_main = threading.current_thread() is threading.main_thread()
    timeout = 5 if in_main else None
    try:
        g = parse(_wrap(gold), parsing_timeout=timeout)
        a = parse(_wrap(answer), parsing_timeout=timeout)
        return bool(g and a and verify(g, a, timeout_seconds=timeout))
    except Exception:  # untrusted text: any parser failure is "not equal", never a crash
        return False
