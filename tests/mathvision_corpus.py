"""Generated MathVision responses for the oracle tier: seeded, built at test time over the real
golds and options of MATH-V `test.jsonl`, never stored.

Each response takes a real item, an answer core (the gold letter, the gold option's text, the free
gold, a wrong option, a near miss), a written form of it (units, degrees, `\\%`, `\\!`, `\\,`,
`\\dfrac`, tuples, emphasis, LaTeX-wrapped letters, trailing text after a complete expression,
unbalanced braces, Chinese) and a wrapper (one or several `\\boxed`, `\\fbox`, answer phrases, a
letter at the edges, `is <number>`, very long, empty). Shapes whose exact value would not finish
(towers of powers) are not generated: the official scorer would hang on them as well.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from typing import Any

LETTERS = "ABCDE"
FILLER = ("Let the side of the square be $s$. The triangle $ABC$ has area $\\frac{1}{2}bh$, so we "
          "compare the two regions; since $x^2 = 4$ we get $x = 2$ and the rest follows. ")
# The shapes: a complete expression, then whatever the response wrote after its box.
TRAILING_TEXT = ("}oftheareaofabcd.theansweris:", "}{cm", "}.theansweris:", "}.\\end{align*", "}isthevalueof\\sin{t",
                 ".so,evenwithout", "} of the area of $ABCD$. The answer is: ", "}} cm", "}\\text{ units", "}.\n",
                 "} (rounded)", "}\\quad", "}=", "}\\approx", "})", "}]", "},", "} and }", "}\\!", "}\\%")
UNITS = ("\\text{ cm}", "\\text{cm}", " cm", "cm", "\\mathrm{cm}", "\\mathrm{~cm}^{2}", "\\text{ cm}^2", " km", "{km}",
         " units", "\\text{ units}", "m^3", "{m}^3", " m", "\\,\\text{m}", " dollars", "\\text{ degrees}",
         " 厘米", "元")
CHINESE = ("答案是{}", "所以答案为 {}。", "故选{}", "答案：{}", "{}（单位：厘米）",
           "结果是$\\boxed{{{}}}$。")
DISTRACTOR_VALUES = ("0", "1", "2", "-2", "10", "0.5", ".5", "\\frac{1}{2}", "\\pi", "2\\pi", "\\sqrt{2}", "3.14",
                     "1,000", "1{,}000", "12", "-\\frac{3}{4}", "e", "\\infty", "x", "(1,2)", "[0,1]")


def plain(text: str) -> str:
    return text.replace("$", "").strip()


def answer_cores(item: dict[str, Any], rng: random.Random) -> list[str]:
    """Things a response might give for this item: right, wrong, and near misses."""
    gold, options = str(item["answer"]), [str(o) for o in item["options"]]
    cores = [gold]
    if options:
        cores += [options[LETTERS.index(gold)], plain(options[LETTERS.index(gold)]), rng.choice(LETTERS),
                  plain(rng.choice(options)), f"({gold})", gold.lower()]
    else:
        cores += [plain(gold)]
    value = plain(cores[-1] if options else gold)
    number = re.fullmatch(r"-?\d+(?:\.\d+)?", value)
    if number:
        x = float(value)
        cores += [str(x), f"{x:.2f}", f"{x + 0.004:.3f}", str(int(x) + rng.choice((1, -1, 10))), f"0{value}",
                  f"{x / 100:g}", f"{value}.0", f"{int(x):,}" if x == int(x) else value]
    cores.append(rng.choice(DISTRACTOR_VALUES))
    return cores


def _sub(pattern: str, repl: str) -> Callable[[str, random.Random], str]:
    return lambda v, rng: re.sub(pattern, repl, v, count=1)


FORMS: list[Callable[[str, random.Random], str]] = [
    lambda v, rng: v,
    lambda v, rng: v,
    lambda v, rng: v,
    lambda v, rng: v + rng.choice(TRAILING_TEXT) + rng.choice(("", v, "\\frac{1}{4", "5", "the end")),
    lambda v, rng: v + rng.choice(TRAILING_TEXT),
    lambda v, rng: rng.choice(("{", "{{", "")) + v + rng.choice(("}", "}}", "}}}", "")),
    lambda v, rng: rng.choice(("-\\!", "\\!", "-\\! ", "+\\!")) + v,
    _sub(r"(\d)(\d)", r"\1\\!\2"),
    _sub(r"-", r"-\\!"),
    _sub(r"(\d)(\d{3})\b", r"\1\\,\2"),
    _sub(r"(\d)(\d{3})\b", r"\1{,}\2"),
    lambda v, rng: v + rng.choice(("\\%", "%", " \\%", "\\ \\%", "\\%}", "\\%.")),
    lambda v, rng: v + rng.choice(UNITS),
    lambda v, rng: v + rng.choice(("^\\circ", "^{\\circ}", "°", "^\\circ C", " degrees", "^{\\circ}.")),
    lambda v, rng: v.replace("\\frac", rng.choice(("\\dfrac", "\\tfrac", "\\frac"))),
    lambda v, rng: rng.choice(("\\dfrac{{{}}}{{2}}", "\\frac{{{}}}{{4}}", "\\dfrac{{1}}{{{}}}", "\\sqrt{{{}}}",
                               "{}^2", "2{}", "{}\\pi", "\\frac {}3", "\\sqrt{}")).format(v),
    lambda v, rng: rng.choice(("({}, {})", "[{}, {}]", "({},{})", "(-\\infty, {}]", "({}, \\infty)", "\\{{{}, {}\\}}",
                               "{} and {}", "{},{}")).format(v, rng.choice(DISTRACTOR_VALUES)),
    lambda v, rng: rng.choice(("**{}**", "*{}*", "__{}__", "`{}`", "**({})**")).format(v),
    lambda v, rng: rng.choice(("\\text{{{}}}", "\\textbf{{{}}}", "\\mathrm{{{}}}", "\\mathbf{{{}}}", "\\({}\\)",
                               "${}$", "\\text{{({})}}", "\\mbox{{{}}}", "\\left({}\\right)")).format(v),
    lambda v, rng: rng.choice(("x = {}", "AB = {}", "S \\approx {}", "x={}=y", "{} = 3", "a+b = {}")).format(v),
    lambda v, rng: rng.choice(CHINESE).format(v),
    lambda v, rng: " " + v + " ",
]


def wrap(core: str, item: dict[str, Any], rng: random.Random) -> str:
    """A whole response around the written answer."""
    reasoning = FILLER * rng.choice((0, 1, 1, 2))
    other = rng.choice(DISTRACTOR_VALUES)
    letter = rng.choice(LETTERS)
    choice = rng.randrange(22)
    if choice < 5:
        return f"{reasoning}Therefore the answer is $\\boxed{{{core}}}$."
    if choice == 5:
        return f"{reasoning}First \\boxed{{{other}}}, then \\boxed{{{core}}}"
    if choice == 6:
        return f"{reasoning}\\boxed{{{core}}} of the area of $ABCD$. The answer is: {core}"
    if choice == 7:
        return f"{reasoning}\\fbox{{{core}}}"
    if choice == 8:
        return f"{reasoning}{rng.choice(('The answer is', 'the final answer is', 'The correct answer is'))} {core}."
    if choice == 9:
        return f"{reasoning}the answer should be {core}. Because {FILLER}"
    if choice == 10:
        return f"{reasoning}So the value is {core}"
    if choice == 11:
        return rng.choice((f"{reasoning}So it is option {letter}.", f"{reasoning}Hence ({letter}).",
                           f"{letter}\n{reasoning}", f"({letter})\n{reasoning}", f"({letter}) {letter}\n{core}"))
    if choice == 12:
        return core
    if choice == 13:
        return rng.choice(("", " ", "\n\n", "\\boxed{}", "The answer is ."))
    if choice == 14:
        return FILLER * rng.randint(60, 400) + f"\\boxed{{{core}}}"
    if choice == 15:
        return f"{reasoning}所以答案是 \\boxed{{{core}}}。"
    if choice == 16:
        return f"$\\boxed{{{core}}}$ is the answer. The answer is {other}."
    if choice == 17:
        return f"{reasoning}\\boxed{{{core}}}\n\nThe answer is \\boxed{{{core}}}."
    if choice == 18:
        closing = rng.choice(("", "}", "{", "\\}"))
        return f"{reasoning}**Final Answer:** \\boxed{{{core}}} {closing}"
    if choice == 19:
        return f"{reasoning}The answer is {core}\nso that is {other}."
    if choice == 20:
        return f"{reasoning}\\boxed{{{core}}}}} and then {{x}}"
    return f"{reasoning}\\boxed{{{core}"


def generated_responses(items: list[dict[str, Any]], n: int, seed: int) -> list[dict[str, str]]:
    """`n` responses `{"id", "response"}` over the real items, the same for the same seed."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        item = rng.choice(items)
        core = rng.choice(answer_cores(item, rng))
        for form in rng.sample(FORMS, rng.choice((1, 1, 2))):
            core = form(core, rng)
        out.append({"id": str(item["id"]), "response": wrap(core, item, rng)})
    return out
