"""Answer-extraction rules shared by more than one task.

A benchmark's own rules live in its task module; what two tasks share lives here once.
"""

from __future__ import annotations

import re

from evals.choice import final_answer_letter

THINK_END = "</think>"


def split_thinking(text: str) -> tuple[str, str]:
    """Split raw model output at the last `</think>` into (reasoning, answer).

    The Step3-VL generation prompt already opens `<think>`, so the output usually holds only the
    closing tag. Without a closing tag the whole text is the answer and the reasoning is empty.
    """
    head, sep, tail = text.rpartition(THINK_END)
    if not sep:
        return "", text
    reasoning = head.split("<think>", 1)[1] if head.lstrip().startswith("<think>") else head
    return reasoning.strip(), tail.strip()


def split_output(raw: str, finish_reason: str | None) -> tuple[str, str]:
    """(reasoning, answer) of a raw completion whose prompt may have opened `<think>`.

    A completion cut by the token limit before any `</think>` is all reasoning: it has no answer.
    """
    if THINK_END in raw:
        return split_thinking(raw)
    if finish_reason == "length":
        return raw.strip(), ""
    return "", raw.strip()


def extract_boxed(text: str) -> str | None:
    r"""The content of the last `\boxed{...}` (or `\fbox{...}`), with nested braces kept whole.

    `\boxed 5` (a single token without braces) is accepted too. Returns None when there is none
    or the last one is never closed.
    """
    starts = [m for m in re.finditer(r"\\(?:boxed|fbox)\s*", text)]
    for m in reversed(starts):
        i = m.end()
        if i < len(text) and text[i] == "{":
            depth = 0
            for j in range(i, len(text)):
                if text[j] == "{":
                    depth += 1
                elif text[j] == "}":
                    depth -= 1
                    if depth == 0:
                        return text[i + 1 : j].strip()
            continue  # unclosed: try an earlier one
        token = re.match(r"[^\s$]+", text[i:])
        if token:
            return token.group(0)
    return None


def extract_final_answer_letter(text: str, letters: list[str]) -> str | None:
    """The option letter of the last `Final answer: X` line (the report's answer format).

    The rule lives once, with the multiple-choice matcher (`evals.choice.final_answer_letter`).
    """
    return final_answer_letter(text, letters)
