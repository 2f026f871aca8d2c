"""Shared extraction rules, table-driven: (input, expected, why)."""

import time

import pytest

from evals.extract import extract_boxed, extract_final_answer_letter, split_output, split_thinking
from tasks.mathcheck import canonical, math_equal


@pytest.mark.parametrize("text,expected,why", [
    ("so \\boxed{70}", "70", "plain"),
    ("\\boxed{1} then \\boxed{2}", "2", "the last one wins"),
    ("\\boxed{\\frac{4}{3}}", "\\frac{4}{3}", "nested braces kept whole"),
    ("\\boxed{{a}{b}}", "{a}{b}", "doubly nested"),
    ("\\boxed {70}", "70", "a space before the brace"),
    ("\\fbox{12}", "12", "fbox counts too"),
    ("\\boxed{7} and \\boxed{8", "7", "an unclosed last box falls back to the previous"),
    ("x} \\boxed{70} }}", "70", "stray closing braces around do not matter"),
    ("no box here", None, "nothing to extract"),
    ("", None, "empty"),
    ("\\boxedfoo{3}", None, "another command that starts with boxed"),
    # An equation: its right side, after the last `=` outside braces (Minerva's normalisation;
    # math-verify compares an equation's right side with the gold too).
    ("\\boxed{m+n=62}", "62", "equation in braces: the right side"),
    ("\\boxed{m + n = 62}", "62", "spaces around ="),
    ("\\boxed{x = y = 9}", "9", "chained: after the last ="),
    ("\\boxed{f(x)=\\frac{1}{2}}", "\\frac{1}{2}", "a right side with braces"),
    ("\\boxed{\\text{a=b}}", "\\text{a=b}", "an = inside braces is not the equation's"),
    ("\\boxed{70=}", "70=", "nothing on the right: the whole box"),
    # No braces: to the end of the math or the line, right side of an equation, then one token.
    ("\\boxed 5 done", "5", "no braces: one token"),
    ("\\boxed m+n = 62", "62", "no braces, an equation: the value, not m+n"),
    ("$\\boxed m+n=62$ is it", "62", "no braces, no spaces, ends at $"),
    ("\\[\\boxed 70\\] so", "70", "ends at \\]"),
    ("\\(\\boxed 70\\).", "70", "ends at \\)"),
    ("\\boxed 70.", "70", "a full stop is punctuation"),
    ("\\boxed 70, done", "70", "so is a comma"),
    ("\\boxed 62\nm+n = 3", "62", "ends at the line"),
    ("\\boxed{5} then \\boxed", "5", "a bare last \\boxed falls back to the previous"),
    ("\\boxed\\frac{1}{2}", "\\frac{1}{2}", "a command token"),
    ("\\boxed{70} and later \\boxed 71", "71", "braced and brace-less: the last one wins"),
])
def test_extract_boxed(text, expected, why):
    assert extract_boxed(text) == expected, why


def test_extract_boxed_is_linear_on_many_unclosed_boxes():
    text = "\\boxed{" * 20000 + "1"
    start = time.perf_counter()
    assert extract_boxed(text) is None
    assert time.perf_counter() - start < 1.0


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
    # What reasoning models wrap around an AIME integer (fix: math-verify alone sees no math in `\$504`).
    ("504", "\\$504", True, "dollar sign"),
    ("70", "\\$70.00", True, "dollars and cents"),
    ("70", "\\$ 70", True, "dollar sign and a space"),
    ("70", "\\textdollar 70", True, "\\textdollar"),
    ("70", "70\\text{ dollars}", True, "unit in \\text"),
    ("70", "70 \\text{dollars}", True, "unit in \\text after a space"),
    ("70", "70\\ \\text{ways}", True, "unit after a LaTeX space"),
    ("70", "70\\,\\mathrm{cm}", True, "unit in \\mathrm after a thin space"),
    ("70", "70 dollars", True, "plain words after the number"),
    ("70", "\\$70\\text{ dollars}", True, "both"),
    ("70", "70^\\circ", True, "degrees"),
    ("70", "70^{\\circ}", True, "degrees in braces"),
    ("70", "70°", True, "degree sign"),
    ("70", "\\text{70}", True, "number in \\text"),
    ("70", "\\textbf{70}", True, "bold"),
    ("70", "$70$", True, "math mode"),
    ("70", "\\(70\\)", True, "inline math"),
    ("70", "70.", True, "a full stop"),
    ("70", "70.00", True, "decimal zeros"),
    ("70", "+070", True, "sign and zero"),
    ("70", "70.5", False, "not an integer"),
    ("70", "7 0", False, "two numbers are not one (math-verify reads 7*0)"),
    ("70", "\\$71", False, "wrong dollars stay wrong"),
    ("70", "-70", False, "sign matters"),
    ("70", "70\\%", True, "math-verify's percent leniency (70% also equals 0.7), kept"),
    # Thousands separators: AIME golds are 0-999, so 1,000 is never right; it must still mean 1000.
    ("100", "1,000", False, "1,000 is a thousand, not 1 or 100"),
    ("1000", "1,000", True, "thousands separator"),
    ("1000", "1{,}000", True, "braced comma"),
    ("1000", "1\\,000", True, "thin space (math-verify alone reads 1*0)"),
    ("12345", "12,345", True, "five digits"),
    ("100", "1,00", False, "not a thousands group: math-verify's reading (a pair) decides"),
    ("0", "1\\,000", False, "a thin space is never a product"),
    ("70", "7\\,0", False, "a thin space outside a thousands group joins nothing"),
    ("70", "7\\ 0", False, "nor does a LaTeX space"),
])
def test_math_equal(gold, answer, expected, why):
    assert math_equal(gold, answer) is expected, why


@pytest.mark.parametrize("answer,form", [
    ("070", "70"), ("70.", "70"), ("\\$70.00", "70"), ("\\boxed{70}", "70"), ("$\\text{\\$70}$", "70"),
    ("70^\\circ\\text{C}", "70"), ("-0", "0"), ("\\frac{1}{2}", "\\frac{1}{2}"), ("70\\%", "70\\%"),
    ("\\cos 30^\\circ", "\\cos 30^\\circ"), ("30^\\circ", "30"), ("\\$\\,70", "70"), ("1\\,000", "1000"),
    ("7\\,0", "7 0"),
    ("9" * 300, "9" * 300), (" " * 500 + "x", "x"),
])
def test_canonical_form(answer, form):
    assert canonical(answer) == form


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
