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


BOX = re.compile(r"\\(?:boxed|fbox)(?![A-Za-z])\s*")
BRACELESS_END = re.compile(r"\$|\\\]|\\\)|\n")  # where the math (or the line) of `\boxed 5` ends


def extract_boxed(text: str) -> str | None:
    r"""The answer in the last `\boxed` (or `\fbox`); None when there is none.

    - `\boxed{...}`: its content, nested braces kept whole; a last box never closed is skipped for
      the one before it.
    - `\boxed 5` (no braces): the text up to the end of its math (`$`, `\]`, `\)`) or its line, as
      the MATH scorer reads `\boxed ` (up to `$`).
    - An equation gives its right side, after the last `=` outside braces, as the Minerva MATH
      normalisation does and as math-verify compares one (`\boxed{m+n=62}` -> `62`).
    - Without braces, the answer is then one token, as LaTeX boxes one argument: `\boxed 5 done`
      -> `5`, `\boxed m+n = 62` -> `62` (a trailing `.`, `,` or `;` is punctuation, not answer).
    """
    boxes = list(BOX.finditer(text))
    closing = matching_braces(text) if boxes else {}
    for m in reversed(boxes):
        i = m.end()
        if i < len(text) and text[i] == "{":
            if i in closing:  # else never closed: try an earlier one
                return equation_value(text[i + 1 : closing[i]].strip())
            continue
        end = BRACELESS_END.search(text, i)
        rest = equation_value(text[i : end.start() if end else len(text)].strip()).split(maxsplit=1)
        token = rest[0].rstrip(".,;") if rest else ""
        if token:
            return token
    return None


def matching_braces(text: str) -> dict[int, int]:
    """Position of each `{` that closes -> position of its `}` (one pass: untrusted text can be long)."""
    opened: list[int] = []
    pairs: dict[int, int] = {}
    for j, ch in enumerate(text):
        if ch == "{":
            opened.append(j)
        elif ch == "}" and opened:
            pairs[opened.pop()] = j
    return pairs


def equation_value(answer: str) -> str:
    """The right side of the last `=` outside braces (`m+n = 62` -> `62`); the answer when none."""
    depth, cut = 0, -1
    for j, ch in enumerate(answer):
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
        elif ch == "=" and depth == 0:
            cut = j
    right = answer[cut + 1 :].strip()
    return right if cut >= 0 and right else answer


def extract_final_answer_letter(text: str, letters: list[str]) -> str | None:
    """The option letter of the last `Final answer: X` line (the report's answer format).

    The rule lives once, with the multiple-choice matcher (`evals.choice.final_answer_letter`).
    """
    return final_answer_letter(text, letters)
