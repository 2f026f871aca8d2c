"""Multiple-choice answers: the prompt layout and the VLMEvalKit-style matcher (MMMU, MMBench).

The order, as the STEP3-VL-10B report scores MMMU and MMBench (DESIGN §7):

1. `answer_format`: the report's answer format, `Final answer: X` (the last one whose X is an option
   letter; `最终答案：X` too, the Chinese prompt's form). This rule is ours, not VLMEvalKit's: a
   deliberate deviation, measured in tests/test_oracle_vlmevalkit.py and docs/tasks.md.
2. `official`: VLMEvalKit's `can_infer` (`can_infer_option`, then `can_infer_text`, at the commit
   of ../shared/oracles/vlmevalkit, reimplemented here and proven equal by the oracle tests):
   replace `.()[],:;!*#{}` by spaces; if exactly one option letter is a whole token and its first
   occurrence is among the last 4 tokens, that letter. Else, unless the answer (as given, not
   stripped) is over twice as long as all option texts together, the one option whose text
   (lower-cased) the answer contains. A known refusal phrase, or a lone `Z` token with no option
   letter, resolves to `Z` (wrong, never sent to a judge); an answer holding VLMEvalKit's
   "Failed to obtain answer via API" skips the letter rule.
3. A judge, when the run has one (see `model_adapters/judge.py`); else `none` (scored wrong).
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

# The label in any case, bold or not; then the letter, upper case only, wrapped as reasoning models
# write it (`**B**`, `(B)`, `[B]`, `"B"`, `$\boxed{B}$`, `\(B\)`, `\text{B}`), and standing alone:
# `Final answer: B. 42 kg` counts; `Final answer: A sedimentary rock`, `final answer: e.g., ...` and
# `Final answer: b` do not. The wrappers hold no letter, so the match cannot skip over words.
FINAL_LABEL = r"(?i:final\s+answer)|最终答案"
LETTER_OPENERS = (r"(?:\s|[*_`$(\[{（【\"'“‘「]|\\[(\[]"
                  r"|\\(?:boxed|fbox|text|textbf|textrm|mathrm|mathbf|mathit|textit)\s*\{)*")
LETTER_CLOSED = r"[*_`$)\]}）】\"'”’」\\]"  # right after the letter: a wrapper closes
LETTER_ENDS = r"\s*(?:$|[,，。;；:：、!?！？\-–—]|\.(?![A-Za-z]))"  # or the line, a clause, a sentence ends
FINAL_ANSWER = re.compile(
    rf"(?:{FINAL_LABEL})[\s*_]*[:：]{LETTER_OPENERS}([A-Z])(?={LETTER_CLOSED}|{LETTER_ENDS})",
    re.MULTILINE,
)
FAILED_API = "Failed to obtain answer via API"  # VLMEvalKit skips its letter rule for such answers


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
        letter = m.group(1)
        if letter in letters:
            return letter
    return None


def infer_option_letter(answer: str, letters: list[str]) -> str | None:
    """VLMEvalKit's `can_infer_option`: a lone option letter near the end of the answer."""
    if FAILED_API in answer:
        return None
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
    # Not stripped: VLMEvalKit's length check counts the answer's surrounding whitespace too.
    letter = infer_option_letter(text, letters) or infer_option_text(text, choices)
    return Choice(letter, "official") if letter else Choice(None, "none")
