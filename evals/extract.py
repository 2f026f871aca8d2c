"""Answer-extraction rules shared by more than one task.

A benchmark's own rules live in its task module; what two tasks share lives here once.
"""

from __future__ import annotations

import re

from evals.choice import final_answer_letter

THINK_END = "</think>"


def split_thinking(text: str, think_end: str = THINK_END) -> tuple[str, str]:
    """Split raw model output at the last `think_end` (default `</think>`) into (reasoning, answer).

    The Step3-VL generation prompt already opens `<think>`, so the output usually holds only the
    closing tag. An opening tag matching the marker (`<think>` for `</think>`) at the start is
    dropped. Without the marker the whole text is the answer and the reasoning is empty.
    """
    head, sep, tail = text.rpartition(think_end)
    if not sep:
        return "", text
    opening = "<" + think_end[2:] if think_end.startswith("</") else None
    if opening and head.lstrip().startswith(opening):
        head = head.split(opening, 1)[1]
    return head.strip(), tail.strip()


def split_output(raw: str, finish_reason: str | None, think_end: str = THINK_END) -> tuple[str, str]:
    """(reasoning, answer) of a raw completion whose prompt may have opened the reasoning.

    A completion cut by the token limit before any `think_end` is all reasoning: it has no answer.
    """
    if think_end in raw:
        return split_thinking(raw, think_end)
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
