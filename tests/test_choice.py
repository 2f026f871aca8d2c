"""The multiple-choice matcher shared by MMMU (report protocol) and MMBench: table-driven."""

from __future__ import annotations

import pytest

from evals.choice import (
    final_answer_letter, infer_option_letter, infer_option_text, match_choice, question_block,
)

ABCD = {"A": "teddy bear", "B": "rabbit", "C": "cat", "D": "dog"}

# (answer text, expected letter, expected rule, why)
MATCH_CASES = [
    ("Final answer: B", "B", "answer_format", "the report's format"),
    ("Final answer: (C)", "C", "answer_format", "letter in parentheses"),
    ("**Final answer:** D", "D", "answer_format", "markdown bold around the label"),
    ("**Final Answer**: [A]", "A", "answer_format", "bold label, colon outside, brackets"),
    ("Final answer: B. rabbit", "B", "answer_format", "letter followed by its option text"),
    ("Final answer: b", None, "none", "a lower-case letter is not the format (nor a VLMEvalKit token)"),
    ("**Final Answer:** **B**", "B", "answer_format", "bold label, bold letter (reasoning models)"),
    ("Final answer: $\\boxed{B}$", "B", "answer_format", "boxed letter in inline math"),
    ("Final Answer: \\(C\\)", "C", "answer_format", "letter in \\( \\)"),
    ('Final answer: "D"', "D", "answer_format", "quoted letter"),
    ("Final answer: \\text{A}", "A", "answer_format", "\\text{} letter"),
    ("**Final Answer**: $\\boxed{\\text{C}}$.", "C", "answer_format", "nested wrappers, then a period"),
    ("FINAL ANSWER: **(B)** rabbit", "B", "answer_format", "label in capitals, bold bracketed letter"),
    ("Final answer:\n\nD", "D", "answer_format", "the letter on a line of its own"),
    ("最终答案：（C）", "C", "answer_format", "CN format with full-width parentheses"),
    ("Option A is wrong because the ears are long. Option C is a cat.\n**Final Answer:** **B**", "B",
     "answer_format", "other letters earlier: the format still decides (the fallback would give up)"),
    ("final answer: e.g., a rabbit", "B", "official",
     "'e.g.' is no letter E: the format is not met, VLMEvalKit's text rule finds the rabbit"),
    ("Final answer: E.g. the dog", "D", "official", "'E.g.' is no letter E either, even capitalised"),
    ("Final answer: A sedimentary rock formed over millions of years and", None, "none",
     "an article after the label is no letter"),
    ("最终答案：C", "C", "answer_format", "the CN prompt's format, full-width colon"),
    ("Final answer：D", "D", "answer_format", "full-width colon after the English label"),
    ("Final answer: A\n...\nFinal answer: C", "C", "answer_format", "the last Final answer wins"),
    ("Final answer: E\nso it is D", "D", "official", "E is not an option: fall through to the rules"),
    ("Final answer: A sedimentary rock formed over millions of years", None, "none",
     "'A' is an article here: not the format; the VLMEvalKit rule sees token A too far back"),
    ("Final answer: A sedimentary rock.", "A", "official",
     "not the format, but VLMEvalKit's letter rule takes the A among the last 4 tokens"),
    ("The answer is (B).", "B", "official", "VLMEvalKit: one letter as a token in the last 4"),
    ("B", "B", "official", "a bare letter"),
    ("I think it is B, the rabbit", "B", "official", "B is the 5th of 7 tokens: among the last 4"),
    ("B is my answer because the rabbit is shown clearly", None, "none",
     "B is the 1st of 9 tokens, and the answer is over twice the option texts for the text rule"),
    ("It is a cat", "C", "official", "VLMEvalKit text rule: one option text inside a short answer"),
    ("Either A or B", None, "none", "two letters: the letter rule refuses; no option text"),
    ("a teddy bear or a dog", None, "none", "two option texts: the text rule refuses"),
    ("答案是B", None, "none", "CJK: the letter is glued to the text, so it is no token (VLMEvalKit too)"),
    ("答案是 B", "B", "official", "CJK with a space: the letter is a token"),
    ("Cannot determine the answer", "Z", "official", "VLMEvalKit's refusal phrase resolves to Z (wrong)"),
    ("", None, "none", "empty answer"),
    ("Failed to obtain answer via API. B", None, "none",
     "VLMEvalKit skips its letter rule for an API failure; the text rule finds nothing"),
    ("  cat" + " " * 40, None, "none",
     "not stripped: with its spaces the answer is over twice the option texts (VLMEvalKit's length check)"),
    ("  cat  ", "C", "official", "short enough with its spaces: the text rule takes the cat"),
]


@pytest.mark.parametrize("text,letter,rule,why", MATCH_CASES, ids=[c[3] for c in MATCH_CASES])
def test_match_choice_follows_report_then_vlmevalkit_rules(text, letter, rule, why):
    found = match_choice(text, dict(ABCD))
    assert (found.letter, found.rule) == (letter, rule), why


# (answer, letters, expected, why) for VLMEvalKit's can_infer_option
OPTION_CASES = [
    ("A", ["A", "B"], "A", "one token"),
    ("(A)", ["A", "B"], "A", "parentheses become spaces"),
    ("**B**", ["A", "B"], "B", "asterisks become spaces"),
    ("B: rabbit", ["A", "B"], "B", "colon becomes a space"),
    ("A is right because the picture shows it", ["A", "B"], None, "first A far from the end"),
    ("because the picture shows A. A", ["A", "B"], "A", "first occurrence is in the last 4 tokens"),
    ("Answer: E", ["A", "B", "C", "D"], None, "E is not an option"),
    ("Z", ["A", "B"], "Z", "a lone Z means no option"),
    ("A-B", ["A", "B"], None, "a hyphen is not a separator: the token is 'A-B'"),
]


@pytest.mark.parametrize("answer,letters,expected,why", OPTION_CASES, ids=[c[3] for c in OPTION_CASES])
def test_infer_option_letter(answer, letters, expected, why):
    assert infer_option_letter(answer, letters) == expected, why


# (answer, choices, expected, why) for VLMEvalKit's can_infer_text
TEXT_CASES = [
    ("The Rabbit", {"A": "bear", "B": "rabbit"}, "B", "case-insensitive containment"),
    ("rabbit " * 10, {"A": "bear", "B": "rabbit"}, None, "over twice the option texts' length"),
    ("cathedral", {"A": "cat", "B": "dog"}, "A", "containment, not whole words (VLMEvalKit's rule)"),
    ("北京", {"A": "北京", "B": "上海"}, "A", "CJK option text"),
]


@pytest.mark.parametrize("answer,choices,expected,why", TEXT_CASES, ids=[c[3] for c in TEXT_CASES])
def test_infer_option_text(answer, choices, expected, why):
    assert infer_option_text(answer, choices) == expected, why


def test_final_answer_ignores_letters_that_are_not_options():
    assert final_answer_letter("Final answer: F", ["A", "B"]) is None


def test_question_block_uses_vlmevalkit_layout():
    text = question_block("What is it?", {"A": "cat", "B": "dog"}, hint="A pet.")
    assert text == "Hint: A pet.\nQuestion: What is it?\nOptions:\nA. cat\nB. dog"
    assert question_block("Open?", {}) == "Question: Open?"


@pytest.mark.parametrize("text", [
    "Final answer:" + " " * 100_000,  # three nested whitespace runs made this cubic once (1,000 spaces: 3 s)
    "**Final Answer:**" + " *" * 50_000 + "b",
    "Final answer: " + "$\\boxed{\\text{" * 20_000,
    ("Final answer: " + " " * 200) * 2_000,
])
def test_final_answer_rule_is_linear_on_hostile_text(text: str):
    import time

    start = time.perf_counter()
    assert match_choice(text, dict(ABCD)).rule != "answer_format"
    assert time.perf_counter() - start < 2.0
