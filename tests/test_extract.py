"""Shared extraction rules, table-driven: (input, expected, why)."""

import pytest

from evals.extract import extract_boxed, extract_final_answer_letter, split_output, split_thinking
from evals.mathcheck import math_equal


@pytest.mark.parametrize("text,expected,why", [
    ("so \\boxed{70}", "70", "plain"),
    ("\\boxed{1} then \\boxed{2}", "2", "the last one wins"),
    ("\\boxed{\\frac{4}{3}}", "\\frac{4}{3}", "nested braces kept whole"),
    ("\\boxed{{a}{b}}", "{a}{b}", "doubly nested"),
    ("\\boxed 5 done", "5", "no braces: one token"),
    ("\\fbox{12}", "12", "fbox counts too"),
    ("\\boxed{7} and \\boxed{8", "7", "an unclosed last box falls back to the previous"),
    ("no box here", None, "nothing to extract"),
    ("", None, "empty"),
])
def test_extract_boxed(text, expected, why):
    assert extract_boxed(text) == expected, why


@pytest.mark.parametrize("raw,finish,expected,why", [
    ("think more</think>answer", "stop", ("think more", "answer"), "prompt opened <think>: only the closing tag"),
    ("<think>a</think>b</think>c", "stop", ("a</think>b", "c"), "split at the LAST </think>"),
    ("just an answer", "stop", ("", "just an answer"), "no thinking at all"),
    ("still thinking when cut", "length", ("still thinking when cut", ""), "cut before </think>: no answer"),
    ("done</think>partial ans", "length", ("done", "partial ans"), "cut after </think> keeps the answer"),
])
def test_split_output(raw, finish, expected, why):
    assert split_output(raw, finish) == expected, why


def test_split_thinking_strips_an_opening_tag():
    assert split_thinking("<think>\nreason\n</think>\n\nanswer") == ("reason", "answer")


@pytest.mark.parametrize("gold,answer,expected,why", [
    ("70", "070", True, "leading zero"),
    ("70", "70.0", True, "numeric equality"),
    ("42", "41", False, "different integers"),
    ("\\frac{4}{3}", "4/3", True, "latex fraction vs slash"),
    ("\\frac{1}{2}", "0.5", True, "fraction vs decimal"),
    ("2", "", False, "empty answer"),
    ("2", "__import__('os').system('echo pwned')", False, "code is text, never evaluated"),
])
def test_math_equal(gold, answer, expected, why):
    assert math_equal(gold, answer) is expected, why


@pytest.mark.parametrize("text,expected,why", [
    ("blah\nFinal answer: B", "B", "the report's format"),
    ("Final answer: (C)", "C", "parenthesised letter"),
    ("final answer: **D**", "D", "markdown bold, lower case"),
    ("Final answer: A ... Final answer: C", "C", "the last one wins"),
    ("Final answer: Z", None, "not an option letter"),
    ("The answer is B", None, "no answer-format line"),
])
def test_final_answer_letter(text, expected, why):
    assert extract_final_answer_letter(text, ["A", "B", "C", "D"]) == expected, why
