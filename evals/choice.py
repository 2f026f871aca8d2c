"""Multiple-choice answers: the prompt layout and the VLMEvalKit-style matcher (MMMU, MMBench).

The order, as the STEP3-VL-10B report scores MMMU and MMBench (DESIGN §7):

1. `answer_format`: the report's answer format, `Final answer: X` (the last such line with a valid
   letter; `最终答案：X` too, the Chinese prompt's form).
2. `official`: VLMEvalKit's rules (`can_infer_option`, then `can_infer_text`, reimplemented here):
   replace `.()[],:;!*#{}` by spaces; if exactly one option letter is a whole token and its first
   occurrence is among the last 4 tokens, that letter. Else, unless the answer is over twice as long
   as all option texts together, the one option whose text (lower-cased) the answer contains.
   A known refusal phrase, or a lone `Z` token with no option letter, resolves to `Z` (wrong, never
   sent to a judge), as in VLMEvalKit.
3. A judge, when the run has one (see `evals/judge.py`); else `none` (scored wrong).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

VLMEVALKIT_SEPARATORS = ".()[],:;!*#{}"
REFUSALS = (
    "Sorry, I can't help with images of people yet.",
    "I can't process this file.",
    "I'm sorry, but without the image provided",
    "Cannot determine the answer",
)
NO_OPTION = "Z"  # VLMEvalKit's letter for "the answer matches no option"

# The letter must stand alone: `Final answer: B`, `(B)`, `**B**`, `B. 42 kg`, `B)`; not the article
# in `Final answer: A sedimentary rock`.
FINAL_ANSWER = re.compile(
    r"(?:final\s+answer|最终答案)\s*\**\s*[:：]\s*\**\s*[(\[（【]?\s*([A-Za-z])"
    r"(?=\s*(?:$|[.)\]）】*,，。;；:：、\-–—]))",
    re.IGNORECASE | re.MULTILINE,
)


@dataclass
class Choice:
    letter: str | None  # an option letter, NO_OPTION, or None when unresolved
    rule: str  # answer_format | official | none


def option_lines(choices: dict[str, str]) -> str:
    """`A. text` lines, the VLMEvalKit layout the report followed."""
    return "\n".join(f"{letter}. {text}" for letter, text in choices.items())


def question_block(question: str, choices: dict[str, str], hint: str | None = None) -> str:
    """The `{question}` of the report's template: hint, question, options (VLMEvalKit's layout)."""
    parts = [f"Hint: {hint}"] if hint else []
    parts.append(f"Question: {question}")
    if choices:
        parts.append("Options:\n" + option_lines(choices))
    return "\n".join(parts)


def final_answer_letter(text: str, letters: list[str]) -> str | None:
    """The letter of the last `Final answer: X` whose X is one of `letters`."""
    for m in reversed(list(FINAL_ANSWER.finditer(text))):
        letter = m.group(1).upper()
        if letter in letters:
            return letter
    return None


def infer_option_letter(answer: str, letters: list[str]) -> str | None:
    """VLMEvalKit's `can_infer_option`: a lone option letter near the end of the answer."""
    if any(refusal in answer for refusal in REFUSALS):
        return NO_OPTION
    tokens = answer.translate({ord(c): " " for c in VLMEVALKIT_SEPARATORS}).split()
    present = [letter for letter in letters if letter in tokens]
    if len(present) == 1:
        # VLMEvalKit looks at the first occurrence: `A ... A` with the first far back fails.
        return present[0] if tokens.index(present[0]) > len(tokens) - 5 else None
    if not present and NO_OPTION in tokens:
        return NO_OPTION
    return None


def infer_option_text(answer: str, choices: dict[str, str]) -> str | None:
    """VLMEvalKit's `can_infer_text`: exactly one option text inside a not-too-long answer."""
    lowered = answer.lower()
    if len(lowered) > 2 * sum(len(text) for text in choices.values()):
        return None
    found = [letter for letter, text in choices.items() if text.lower() in lowered]
    return found[0] if len(found) == 1 else None


def match_choice(text: str, choices: dict[str, str]) -> Choice:
    """Resolve an answer to an option letter with the report's rules (no judge)."""
    letters = list(choices)
    letter = final_answer_letter(text, letters)
    if letter:
        return Choice(letter, "answer_format")
    answer = text.strip()
    letter = infer_option_letter(answer, letters) or infer_option_text(answer, choices)
    return Choice(letter, "official") if letter else Choice(None, "none")
