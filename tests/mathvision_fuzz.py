"""A grammar-driven differential fuzzer for MathVision's equality (the oracle tier, issue 20).

It writes answers the way latex2sympy2 1.9.1's grammar (`gen/PSLexer.py`, PSParser of the oracle
venv) and math-verify's parser read them, valid and not: numbers (thousands groups, decimals,
percent), `\\frac` and its variants (`\\dfrac` `\\tfrac` `\\cfrac`, unbraced), `\\sqrt` and
`\\sqrt[n]{}`, powers, products (`\\cdot` `\\times` juxtaposition), `\\pi` `\\tau` `e` `\\infty`,
functions (`\\exp` `\\ln` `\\log` `\\sin` `\\lfloor`), groups (`()` `\\left( \\right)` `{}`
`\\{ \\}` `\\left\\{ \\right\\}` `\\lbrace`), factorials, `\\phantom`, citation marks (`14 [1]`),
relations (`0 < 1`, `\\le`, `=`), units and degrees, spacing commands (`\\, \\; \\: \\! \\quad ~`),
unicode (`π √ × − ² ½`) and trailing text. Each answer has an intended value, and the gold is that
value (or a near miss), so that a value read differently shows as a different verdict. Each answer
goes into a response through one of the official extraction paths (`\\boxed{}`, an answer phrase).

`fuzz_items(n, seed)` gives n distinct responses with their items (gold, options), seeded; HANGS are
the answers that make the official scorer run for ever (it would evaluate a tower of powers or
`factorial(479001600)`): they are scored apart, each within the per-answer time limit.
"""

from __future__ import annotations

import random
from fractions import Fraction
from typing import Any

HANGS = ("12!!", "10^{10^{10}}", "9^{9^{9}}", "(12!)!")

SPACES = ("\\,", "\\;", "\\:", "\\!", "\\quad", "\\qquad", "~", " ", "\\ ", "")
UNITS = ("\\text{ cm}", "\\text{cm}^2", " cm", "\\mathrm{m}", "^\\circ", "^{\\circ}", "°", "\\%", "%", " units",
         "\\text{ degrees}", " km", "{km}", "m^3", "\\text{ dollars}", "元", " 厘米")
RELATIONS = ("<", ">", "\\le", "\\ge", "\\leq", "=", "\\neq", "\\approx", "\\sim")
TRAILING = ("", "", "", ".", "}", "}.", "}}", "\\}", ")", "]", ", so", " [1]", " [2]", "\\\\", " (approx.)",
            "\\text{ (rounded)}", "\\;\\text{cm}", "\\quad\\text{or}\\quad 2", "&", "_", "'")
FRACS = ("\\frac", "\\dfrac", "\\tfrac", "\\cfrac")
PRODUCTS = ("\\cdot", "\\times", "*", " ", "")
EQUALS = ("=", "\\approx", ":")
UNICODE = {"\\pi": "π", "\\sqrt": "√", "\\times": "×", "-": "−", "^2": "²", "\\cdot": "·", "\\infty": "∞"}


def number(v: Fraction, rng: random.Random) -> str:
    """A numeral for v (integers and short decimals as such, else a fraction)."""
    if v.denominator == 1:
        n = v.numerator
        form = rng.randrange(8)
        if form == 0 and abs(n) >= 1000:
            return f"{n:,}"
        if form == 1 and abs(n) >= 1000:
            return f"{n:,}".replace(",", "{,}")
        if form == 2:
            return f"{n}.0"
        return str(n)
    if (v * 100).denominator == 1 and rng.random() < 0.6:
        return f"{float(v):g}"
    return f"\\frac{{{v.numerator}}}{{{v.denominator}}}"


def written(v: Fraction, rng: random.Random, depth: int = 0) -> str:
    """One written form of the value v, chosen from the grammar's constructs (recursively)."""
    if depth > 2:
        return number(v, rng)
    sub = lambda x: written(x, rng, depth + 1)  # noqa: E731
    k = Fraction(rng.choice((2, 3, 4, 5, 10)))
    forms = [
        lambda: number(v, rng),
        lambda: number(v, rng),
        lambda: f"{rng.choice(FRACS)}{{{sub(v * k)}}}{{{number(k, rng)}}}",
        lambda: f"\\frac{number(v * k, rng)}{number(k, rng)}" if (v * k).denominator == 1 and 0 <= v * k < 10 else number(v, rng),
        lambda: f"\\sqrt{{{sub(v * v)}}}" if v >= 0 else f"-\\sqrt{{{sub(v * v)}}}",
        lambda: f"\\sqrt[3]{{{sub(v ** 3)}}}" if v.denominator == 1 and abs(v) < 50 else number(v, rng),
        lambda: f"\\sqrt[2]{{{sub(v * v)}}}" if v >= 0 else number(v, rng),
        lambda: f"({sub(v)})",
        lambda: f"\\left({sub(v)}\\right)",
        lambda: f"{{{sub(v)}}}",
        lambda: f"\\{{{sub(v)}\\}}",
        lambda: f"\\left\\{{ {sub(v)} \\right\\}}",
        lambda: f"\\lbrace {sub(v)} \\rbrace",
        lambda: f"{sub(v - 1)}+1",
        lambda: f"{sub(v + 2)} - 2",
        lambda: f"2{rng.choice(PRODUCTS)}{sub(v / 2)}",
        lambda: f"{sub(v)} e^{{0}}",
        lambda: f"{sub(v)}\\cdot e^{{0}}",
        lambda: f"e^{{\\ln {number(v, rng)}}}" if v > 0 else number(v, rng),
        lambda: f"\\exp(\\ln {number(v, rng)})" if v > 0 else number(v, rng),
        lambda: f"\\exp{{\\ln{{{number(v, rng)}}}}}" if v > 0 else number(v, rng),
        lambda: f"\\ln(e^{{{number(v, rng)}}})",
        lambda: f"\\log_{{2}}{{{2 ** int(v)}}}" if v.denominator == 1 and 0 <= v < 20 else number(v, rng),
        lambda: f"\\frac{{{number(v, rng)}\\tau}}{{\\tau}}",
        lambda: f"\\frac{{{number(v, rng)}\\pi}}{{\\pi}}",
        lambda: f"{number(v / 2, rng)}\\tau" if rng.random() < 0.3 else f"{number(v, rng)}\\pi",
        lambda: f"\\phantom{{0}}{number(v, rng)}",
        lambda: f"{number(v, rng)}\\phantom{{.}}",
        lambda: f"{number(v, rng)} [1]",
        lambda: f"{number(v + 1, rng)} [1]",
        lambda: f"{number(v, rng)}[{rng.randint(1, 9)}]",
        lambda: f"{number(v, rng)}^{{1}}",
        lambda: f"{sub(v)}^1",
        lambda: f"{number(v * 100, rng)}\\%" if (v * 100).denominator == 1 else number(v, rng),
        lambda: f"{int(v)}!" if v.denominator == 1 and 0 <= v < 8 else number(v, rng),
        lambda: f"\\lfloor {number(v + Fraction(1, 3), rng)} \\rfloor" if v.denominator == 1 else number(v, rng),
        lambda: f"\\lceil {number(v - Fraction(1, 3), rng)} \\rceil" if v.denominator == 1 else number(v, rng),
        lambda: f"|{number(-v, rng)}|",
        lambda: f"\\left|{number(-v, rng)}\\right|",
        lambda: f"\\sin(0)+{sub(v)}",
        lambda: f"\\cos 0 \\cdot {sub(v)}",
        lambda: f"{sub(v)}{rng.choice(SPACES)}{rng.choice(UNITS)}",
        lambda: f"{rng.choice(('0', '1', '2', 'x', 'a'))} {rng.choice(RELATIONS)} {sub(v)}",
        lambda: f"{sub(v)} {rng.choice(RELATIONS)} {rng.choice(('0', '1', '2', '100'))}",
        lambda: f"x{rng.choice(EQUALS)}{sub(v)}",
        lambda: f"{sub(v)}{rng.choice(TRAILING)}",
        lambda: spaced(sub(v), rng),
        lambda: uni(sub(v), rng),
        lambda: f"\\mathbf{{{sub(v)}}}",
        lambda: f"\\text{{{number(v, rng)}}}",
        lambda: f"\\boxed{{{sub(v)}}}",
        lambda: f"{number(v, rng)}\\infty" if rng.random() < 0.2 else f"{number(v, rng)}",
        lambda: f"\\overline{{{number(v, rng)}}}",
        lambda: f"{number(v, rng)}^{{\\circ}}C",
        lambda: f"\\operatorname{{{rng.choice(('abs', 'sgn', 'floor'))}}}({number(v, rng)})",
        lambda: f"{number(v, rng)}\\,\\%",
        lambda: f"{sub(v)}\\;\\;",
        lambda: f"{number(v, rng)}\\mathrm{{~cm}}^{{2}}",
        lambda: f"\\dfrac {number(v * 2, rng)} 2" if (v * 2).denominator == 1 and 0 <= v * 2 < 10 else number(v, rng),
        lambda: f"{sub(v)} \\text{{ or }} {sub(-v)}",
        lambda: f"\\pm {sub(v)}",
        lambda: f"{sub(v)}\\times 10^{{0}}",
        lambda: f"{number(v * 1000, rng)}\\times 10^{{-3}}" if (v * 1000).denominator == 1 else number(v, rng),
        lambda: f"{number(v, rng)}e0" if rng.random() < 0.5 else f"{float(v):e}",
    ]
    return rng.choice(forms)()


def spaced(text: str, rng: random.Random) -> str:
    """A spacing command (or two) at a random place."""
    i = rng.randint(0, len(text))
    return text[:i] + rng.choice(SPACES) + rng.choice(SPACES[-3:]) + text[i:]


def uni(text: str, rng: random.Random) -> str:
    """One LaTeX command written as its unicode character."""
    found = [k for k in UNICODE if k in text]
    if not found:
        return text + rng.choice(("²", "′", "″", "…", "½", "\u00a0", "\u2009"))
    k = rng.choice(found)
    return text.replace(k, UNICODE[k], 1)


def value(rng: random.Random) -> Fraction:
    kind = rng.randrange(6)
    if kind < 3:
        return Fraction(rng.choice((rng.randint(0, 20), rng.randint(0, 400), rng.randint(1000, 99999))))
    if kind == 3:
        return Fraction(rng.randint(-50, 50))
    if kind == 4:
        return Fraction(rng.randint(1, 999), rng.choice((2, 4, 5, 10, 100)))
    return Fraction(rng.randint(1, 30), rng.choice((3, 6, 7, 9)))


def gold_for(v: Fraction, rng: random.Random) -> str:
    """The item's gold: the value as MATH-V writes golds, or a near miss."""
    roll = rng.random()
    if roll < 0.12:
        v = v + rng.choice((1, -1, Fraction(1, 100), Fraction(1, 1000)))
    elif roll < 0.16:
        v = v / 100
    if v.denominator == 1:
        return str(v.numerator)
    if (v * 100).denominator == 1 and rng.random() < 0.7:
        return f"{float(v):g}"
    return rng.choice((f"\\frac{{{v.numerator}}}{{{v.denominator}}}", f"{v.numerator}/{v.denominator}",
                       f"{float(v):.2f}"))


# How replies carry an answer, each through one of the official extraction paths: one or several
# `\\boxed{}` (the last one counts), an answer phrase (lower or capitalised, cut at a newline or at
# ". "), `is <number>.`, or none (the whole reply is read); with the text reasoning models put around
# them (a think block, Markdown, display math, a sentence after the answer).
WRAPPERS = (
    "So the result is $\\boxed{{{}}}$.",
    "The answer is {}",
    "First \\boxed{{1}}, then \\boxed{{{}}}",
    "**Final Answer:** \\boxed{{{}}}",
    "<think>\nThe figure gives the lengths; add them.\n</think>\nThe final answer is {}.\nIt follows from the figure.",
    "Therefore, the answer is {}. This matches the diagram.",
    "The correct answer is {}",
    "Thus the answer should be ${}$.",
    "\\[\n\\boxed{{{}}}\n\\]",
    "The answer is $\\boxed{{{}}}$ (in the units asked).",
    "{}",
    "Answer: {}",
    "so the area is {}",
    "Hence the final answer is $\\boxed{{{}}}$",
    "We compute $2+2=4$ and then \\boxed{{{}}}.",
    "The Answer Is {}.",
)


def response_for(answer: str, rng: random.Random, wrapper: int | None = None) -> str:
    """The answer inside a response: the wrapper given, else one drawn (the boxed forms most often)."""
    if wrapper is None:
        roll = rng.randrange(10)
        wrapper = 0 if roll < 6 else 1 if roll < 8 else 2 if roll == 8 else 3
    return WRAPPERS[wrapper].format(answer)


def gold_forms(v: Fraction, rng: random.Random) -> list[str]:
    """More golds for the same answer, as MATH-V writes them: the value in each of its forms, and
    near misses (off by one, by a hundredth, a hundred times smaller)."""
    golds = [str(v.numerator) if v.denominator == 1 else f"\\frac{{{v.numerator}}}{{{v.denominator}}}",
             f"{float(v):g}", f"{v.numerator}/{v.denominator}" if v.denominator != 1 else f"{v.numerator}.0",
             f"{float(v):.2f}"]
    for miss in (v + 1, v - Fraction(1, 100), v / 100, -v):
        golds.append(gold_for(miss, random.Random(rng.random())) if rng.random() < 0.5 else f"{float(miss):g}")
    return golds


def fuzz_items(n: int, seed: int, per_answer: int = 1) -> list[dict[str, Any]]:
    """n distinct items `{"id", "response", "answer", "gold", "options"}` (free-form), seeded.

    Each generated answer gives `per_answer` items (adjacent): the first with a drawn wrapper and gold
    as before, the others with another wrapper each and another gold (the value in another form, or a
    near miss), so that the same text is read through every extraction path and judged against
    golds it equals and golds it misses."""
    rng = random.Random(seed)
    seen: set[tuple[str, str]] = set()
    out: list[dict[str, Any]] = []
    while len(out) < n:
        v = value(rng)
        answer = written(v, rng)
        if rng.random() < 0.15:
            answer = rng.choice((spaced, uni))(answer, rng)
        pairs = [(response_for(answer, rng), gold_for(v, rng))]
        if per_answer > 1:
            wrappers = rng.sample(range(len(WRAPPERS)), per_answer - 1)
            golds = gold_forms(v, rng)
            pairs += [(response_for(answer, rng, w), rng.choice(golds)) for w in wrappers]
        for response, gold in pairs:
            if (response, gold) in seen or len(out) == n:
                continue
            seen.add((response, gold))
            out.append({"id": f"fuzz-{len(out)}", "response": response, "answer": answer, "gold": gold,
                        "options": []})
    return out


def oracle_test_lines(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The `test.jsonl` lines the official scorer reads the golds from."""
    return [{"id": item["id"], "answer": item["gold"], "options": item["options"], "question": "", "level": 1,
             "subject": "fuzz"} for item in items]
