"""MathVision's official answer rules (MATH-V `evaluation/evaluate.py` and `utils.py`), reimplemented.

The official chain, applied to the stripped response in this order:
1. a letter at the edges: ends with ` X.` / ` (X).`, or starts with `X\\n` / `(X)\\n` / `(X) X\\n`
   (letters tried A to E, the first that fits wins);
2. the text after the last `is `, when it is a number (Python `float()`), without trailing dots;
3. without a `\\boxed{`: the text after each of "the final answer is", "the answer is", "the correct
   answer is", "the answer should be" (each also capitalised), cut at the first newline and `. `;
   with several `\\boxed{`: only the last one is kept;
4. `find_math_answer`: lower-case, the greedy `oxed{(.*)}` match, cut at an unmatched `}`, the part
   after the last `=` / `\\approx`, LaTeX and unit clean-up, then the MATH `_strip_string` rules.

Equality (`official_equal`): lower-case both, exact string, then tuples `(a,b)` / `[a,b]` with each
element rounded to 2 decimals, then the value of each side rounded to 2 decimals. The official
scorer gets that value as `round(eval(str(latex2sympy(s))), 2)` with `from math import *` in scope,
and any exception means "not equal". Its parser (latex2sympy2 1.9.1, ANTLR 4.7.2) reads the longest
valid prefix: it stops before the first token that cannot continue the expression and ignores the
rest unread (`\\frac{1}{4}}ofthearea` is 1/4, `5.so,even` is 5), though the one token after the
prefix is lexed (`{12}#` fails on `#`); it reads `30\\%` as 3/10 and fails on `\\!`, `\\(`, a bare
`%`. That parser cannot be installed beside math-verify, so the value comes from one of two engines:
- `official` (the default, `-T equality=official`): the original in a sidecar process
  (`tasks.latex2sympy_sidecar`: its side install, or the Python STEP3VL_LATEX2SYMPY_PYTHON names),
  passed to `official_equal` as `parser`: it only parses; its printout is valued here by an AST
  walker over `math`, never by eval, and each parse is time-limited;
- `emulated` (`parser=None`): this emulation. Common shapes (numbers, `\\frac`, `\\sqrt`, `\\pi`, powers, `+ - * / :`,
  `30\\%`) are valued directly by `QuickValue`, with the original's types (decimals read as
  rationals, integers kept where sympy keeps them) and its prefix reading (it stops before `}`, `)`,
  `]`, `.`, `_`, `'`, `&`); other text is cut before an unmatched `}` and fails fast where it cannot
  have a value there (no digit, a stray letter or Greek letter, a character outside the original
  grammar, `\\circ`, `%`, `\\%` not after a number, `\\!`, `\\(`, `\\boxed`, `\\mathrm{}`); the
  rest is parsed with the fork math-verify ships (`latex2sympy2_extended`, without its
  normalisation; the original's groups `\\{ \\}` and `[ ]`, thousands groups and juxtaposed
  products written out for it) and the printout valued by the same walker, refusing powers and
  factorials whose exact value would not finish.
Both agree with the official scorer on every response of the oracle tier's corpora (the four
released MATH-V prediction files and 20,000 generated responses: tests/test_oracle_mathvision.py);
on 10,000 fuzzed answers (tests/test_fuzz_mathvision.py) the official engine agrees on every one and
the emulation differs on 74, counted by class in docs/tasks.md.
"""

from __future__ import annotations

import ast
import math
import operator
import re
from fractions import Fraction
from functools import lru_cache

from tasks.latex2sympy_sidecar import OriginalParser

LETTERS = "ABCDE"
ANSWER_PHRASES = ("the final answer is", "the answer is", "the correct answer is", "the answer should be")
UNIT_AND_LATEX_NOISE = (
    (" ", ""), ("\\,", ""), ("∞", "\\infty"), ("+\\infty", "\\infty"), ("\\\\", "\\"), ("\n", ""),
    ("\\text", ""), ("\\mbox", ""), ("bmatrix", "pmatrix"), ("\\left", ""), ("\\right", ""),
    ("^{\\circ}", ""), ("^\\circ", ""), ("{m}^3", ""), ("m^3", ""), ("{units}", ""), ("units", ""),
    ("{km}", ""), ("km", ""),
)
MATH_NAMES = {name: value for name, value in vars(math).items() if not name.startswith("_")}
PRINTED_EXPRESSION = re.compile(r"[\w\s.+\-*/(),<>=!]+")
# The original's NUMBER: digits with optional thousands groups (`8,178` is 8178), a decimal part.
NUMBER = r"(?:\d+(?:,\d{3})*(?:\.\d+)?|\.\d+)"
DECIMAL = re.compile(NUMBER)
PERCENT = re.compile(rf"({NUMBER})\\%")
# Without a digit or a command there is no number to evaluate: only symbols, which eval cannot name.
NO_NUMBER = re.compile(r"[^0-9\\]*")
# A letter outside a command is a sympy Symbol, and eval knows no symbol (`e` parses as E).
STRAY_LETTER = re.compile(r"(?:^|[^\\a-zA-Z])[a-zA-Z]*[a-z]")
# (`\\tau` is not among them: it prints as `tau`, which eval takes from `math`.)
GREEK_SYMBOL = re.compile(r"\\(?:var)?(?:alpha|beta|gamma|delta|epsilon|zeta|eta|theta|iota|kappa|lambda|mu|nu|xi|"
                          r"omicron|rho|sigma|upsilon|phi|chi|psi|omega)(?![a-zA-Z])", re.IGNORECASE)
COMMAND_WITH_NAME_ARGUMENT = re.compile(r"\\(?:operatorname|begin|end|mathit)")
# Characters outside the original grammar's alphabet are a lexer error there.
UNLEXABLE = re.compile(r"[^A-Za-z0-9 \t\r\n+\-*/(){}\[\]|^_:;,.!=<>&'\\$~⌊⌋⌈⌉‰]")
# The grammar skips only these blanks: any other (a no-break space, a thin space) is a lexer error.
OTHER_BLANK = re.compile(r"[^\S \t\r\n]")
# What the original latex2sympy2 does to its input before parsing.
ORIGINAL_PREPARSE_EDITS = (
    ("\\dfrac", "\\frac"), ("\\tfrac", "\\frac"), ("\\mathrm{T}", "T"), ("\\mathrm{d}", "d"), ("{\\rm d}", "d"),
    ("\\displaystyle", " "), ("\\quad", " "), ("\\qquad", " "), ("~", " "), ("\\,", " "), ("$", " "),
    ("\\bigl(", "("), ("\\bigr)", ")"), ("\\left(", "("), ("\\right)", ")"),
)
# A syntax error in the original grammar (the fork we parse with accepts them), or a symbol name.
# `\\!`, `\\(`, `\\)`, `\\ `, `\\;`, `\\:` are lexer errors there; `\\%` only follows a number
# (`30\\%` is 3/10, which `QuickValue` reads).
NOT_EVALUABLE = re.compile(r"\\circ|(?<!\\)%|\\%|\\boxed|\\mathrm\{|\\[!() ;:]|\\cfrac|\\phantom")
# Groups of the original grammar that the fork reads otherwise (a set, an interval): `\\{6\\}` is 6,
# `14 [1]` is 14*1 there.
GROUP_EDITS = (("\\left\\{", "("), ("\\right\\}", ")"), ("\\{", "("), ("\\}", ")"), ("\\lbrace", "("),
               ("\\rbrace", ")"))
MAX_RESULT_DIGITS = 10_000  # beyond this Python's exact integer arithmetic would run for ever
# sympy evaluates integer powers and factorials while parsing, before `too_costly` can look:
# a tower of powers, a huge exponent or a huge factorial is refused before it is parsed.
UNPARSEABLY_LARGE = re.compile(r"\^\s*\{[^{}]*\^|\^\s*\d+\s*\^|\^\s*\{?\s*\d{5,}|\d{5,}\s*!")
ARITHMETIC_NODES = (ast.Expression, ast.BinOp, ast.UnaryOp, ast.Constant, ast.Name, ast.Call, ast.Load, ast.Add,
                    ast.Sub, ast.Mult, ast.Div, ast.Pow, ast.USub, ast.UAdd, ast.Mod, ast.FloorDiv, ast.Tuple,
                    ast.Compare, ast.Lt, ast.Gt, ast.LtE, ast.GtE, ast.Eq, ast.NotEq)


# ---- extraction ------------------------------------------------------------------------------

def letter_at_edges(text: str) -> str | None:
    for c in LETTERS:
        if (text.endswith((f" {c}.", f" ({c}).")) or text.startswith((f"{c}\n", f"({c})\n", f"({c}) {c}\n"))):
            return c
    return None


def is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def after_answer_phrases(text: str) -> tuple[str, bool]:
    """The text after each answer phrase in turn (the official loop strips even when none occurs)."""
    found_any = False
    for phrase in ANSWER_PHRASES:
        for variant in (phrase, phrase.replace("the", "The")):
            found = variant in text
            text = text.split(variant)[-1].strip()
            if found:
                text = text.split("\n")[0].split(". ")[0]
                found_any = True
    return text, found_any


def fix_sqrt(s: str) -> str:
    head, *rest = s.split("\\sqrt")
    return head + "".join("\\sqrt{" + p[0] + "}" + p[1:] if p and p[0] != "{" else "\\sqrt" + p for p in rest)


def fix_fracs(s: str) -> str:
    head, *rest = s.split("\\frac")
    out = head
    for p in rest:
        if p.startswith("{"):
            out += "\\frac" + p
        elif len(p) < 2:
            return s
        elif p[1] != "{":
            out += "\\frac{" + p[0] + "}{" + p[1] + "}" + p[2:]
        else:
            out += "\\frac{" + p[0] + "}" + p[1:]
    return out


def fix_a_slash_b(s: str) -> str:
    parts = s.split("/")
    if len(parts) != 2:
        return s
    try:
        a, b = int(parts[0]), int(parts[1])
    except ValueError:
        return s
    return f"\\frac{{{a}}}{{{b}}}" if s == f"{a}/{b}" else s


def strip_string(s: str) -> str:
    """The MATH dataset's `_strip_string`, as MATH-V calls it (fracs fixed only next to a sqrt)."""
    for old, new in (("\n", ""), ("\\!", ""), ("\\\\", "\\"), ("tfrac", "frac"), ("dfrac", "frac"),
                     ("\\left", ""), ("\\right", ""), ("^{\\circ}", ""), ("^\\circ", ""), ("\\$", ""), ("$", "")):
        s = s.replace(old, new)
    s = s.split("\\text{ ")[0].replace("\\%", "")
    s = s.replace(" .", " 0.").replace("{.", "{0.")
    if not s:
        return s
    if s[0] == ".":
        s = "0" + s
    for sep in ("=", "\\approx"):
        if len(s.split(sep)) == 2:
            s = s.split(sep)[-1]
    if "sqrt" in s:
        s = fix_sqrt(s)
    s = s.replace(" ", "")
    if "sqrt" in s:
        s = fix_fracs(s)
    if s == "0.5":
        s = "\\frac{1}{2}"
    return fix_a_slash_b(s)


def find_math_answer(s: str) -> str:
    s = s.lower().replace("{}", "")
    boxed = re.findall(r"oxed{(.*)}", s, flags=re.DOTALL)
    ans = boxed[-1] if boxed else s
    close, open_ = ans.find("}"), ans.find("{")
    if close != -1 and (open_ == -1 or close < open_):
        ans = ans.split("}")[0]
    ans = ans.split("=")[-1].split("\\approx")[-1]
    for old, new in UNIT_AND_LATEX_NOISE:
        ans = ans.replace(old, new)
    return strip_string(ans)


def tidy_option_letters(s: str) -> str:
    for c in "abcde":
        s = s.replace(f"({c})", c)
    for c in "abcde":
        s = s.replace(f"{{{c}}}", c)
    return s.rstrip(".").lstrip(":").strip()


def official_extract(response: str) -> tuple[str, str]:
    """(answer, rule): `answer_format` for a `\\boxed{}`, `official` for the letter / `is` / phrase
    rules, `fallback` when the whole cleaned response is the answer, `none` when it is empty."""
    text, rule = response.strip(), "fallback"
    letter = letter_at_edges(text)
    if letter:
        text, rule = letter, "official"
    tail = text.split("is ")[-1].rstrip(".")
    if is_number(tail):
        text, rule = tail, "official"
    if "oxed{" not in text:
        text, found = after_answer_phrases(text)
        rule = "official" if found else rule
    else:
        rule = "answer_format"
        if text.count("oxed{") > 1:
            text = "\\boxed{" + text.split("oxed{")[-1]
    answer = tidy_option_letters(find_math_answer(text))
    return answer, rule if answer else "none"


# ---- equality --------------------------------------------------------------------------------

class QuickValue:
    """A fast path for the common answer shapes (numbers, `\\frac`, `\\sqrt`, `\\pi`, powers, + - * / :),
    valued as the official `eval(str(latex2sympy(s)))` would: integers stay integers where sympy keeps
    them (sums, products, powers, perfect squares), `\\frac` and `/` divide into floats. Any other
    token raises NotImplementedError, and the caller parses the text properly."""

    TOKEN = re.compile(rf"{NUMBER}\\%|\\[a-zA-Z]+|\\\}}|{NUMBER}|\S")
    PRODUCT = frozenset({"*", "\\cdot", "\\times"})
    # Tokens that cannot continue an expression: the original parser stops before them and keeps
    # what it read (`\\frac{1}{4}}ofthearea` is 1/4, `5.so` is 5). A `.` before a digit is a number.
    STOPS = frozenset({"}", ")", "]", ".", "_", "'", "&", "\\}"})

    def __init__(self, s: str):
        self.tokens, self.i = self.TOKEN.findall(s), 0

    def value(self) -> int | float:
        result = self.sum()
        if self.i != len(self.tokens) and self.tokens[self.i] not in self.STOPS:
            raise NotImplementedError
        return result

    def peek(self) -> str | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self, expected: str | None = None) -> str:
        token = self.peek()
        if token is None or (expected is not None and token != expected):
            raise NotImplementedError
        self.i += 1
        return token

    def sum(self) -> int | float:
        total = self.product()
        while self.peek() in ("+", "-"):
            total = total + self.product() if self.take() == "+" else total - self.product()
        return total

    def product(self) -> int | float:
        result = self.signed()
        while self.peek() is not None and self.peek() not in ("+", "-", *self.STOPS):
            op = self.take() if self.peek() in self.PRODUCT | {"/", ":"} else "*"
            rhs = self.signed()
            result = result / rhs if op in ("/", ":") else result * rhs
        return result

    def signed(self) -> int | float:
        if self.peek() in ("+", "-"):
            return self.signed() if self.take() == "+" else -self.signed()
        base = self.atom()
        if self.peek() != "^":
            return base
        self.take()
        exponent = self.group() if self.peek() == "{" else self.number(self.take())
        if abs(exponent) > 1000:
            raise NotImplementedError  # let the guarded slow path judge the size
        return base**exponent

    def group(self) -> int | float:
        self.take("{")
        inner = self.sum()
        self.take("}")
        return inner

    def atom(self) -> int | float:
        token = self.take()
        if token == "\\pi":
            return math.pi
        if token == "\\frac":
            return self.group() / self.group()
        if token == "\\sqrt":
            radicand = self.group()  # sympy keeps the root of a perfect square an integer, of a float a float
            if isinstance(radicand, int) and radicand >= 0 and math.isqrt(radicand) ** 2 == radicand:
                return math.isqrt(radicand)
            return math.sqrt(radicand)
        if token in ("(", "{"):
            inner = self.sum()
            self.take(")" if token == "(" else "}")
            return inner
        return self.number(token)

    @staticmethod
    def number(token: str) -> int | float:
        if token.isdigit():
            return int(token)
        percent = PERCENT.fullmatch(token)
        if percent:  # the original's PERCENT_NUMBER: Rational(number, 100)
            exact = Fraction(percent.group(1).replace(",", "")) / 100
            return exact.numerator if exact.denominator == 1 else exact.numerator / exact.denominator
        if not DECIMAL.fullmatch(token):
            raise NotImplementedError
        exact = Fraction(token.replace(",", ""))  # decimals read as rationals: 2.0 is the integer 2
        return exact.numerator if exact.denominator == 1 else exact.numerator / exact.denominator


def has_symbol(s: str) -> bool:
    """A letter (other than `e`, Euler's number there) or a Greek letter that eval cannot name."""
    letters = [m.group().lstrip("^" + "".join(set(m.group()) - set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")))
               for m in STRAY_LETTER.finditer(s)]
    stray = any(word != "e" for word in letters)
    return (stray or bool(GREEK_SYMBOL.search(s))) and not COMMAND_WITH_NAME_ARGUMENT.search(s)


def import_parser() -> None:
    """latex2sympy and sympy, imported ahead of the first answer that needs them."""
    import latex2sympy2_extended.latex2sympy2  # noqa: F401


def parse_latex(s: str) -> object:
    """latex2sympy as the original behaves: no input normalisation, no mixed fractions, case kept."""
    from latex2sympy2_extended import latex2sympy
    from latex2sympy2_extended.latex2sympy2 import ConversionConfig

    config = ConversionConfig(interpret_as_mixed_fractions=False, lowercase_symbols=False)
    return latex2sympy(s, normalization_config=None, conversion_config=config)


def too_costly(expr: object) -> bool:
    """A power or factorial whose exact value would have more than MAX_RESULT_DIGITS digits."""
    import sympy

    for node in sympy.preorder_traversal(expr):
        if isinstance(node, sympy.Pow) and node.exp.is_number and node.base.is_number:
            base, exp = sympy.Abs(node.base).evalf(15), sympy.Abs(node.exp).evalf(15)
            if exp.is_comparable and base.is_comparable and exp * sympy.log(max(base, 2), 10) > MAX_RESULT_DIGITS:
                return True
        if isinstance(node, sympy.factorial) and node.args[0].is_number:
            arg = sympy.Abs(node.args[0]).evalf(15)
            if arg.is_comparable and arg > MAX_RESULT_DIGITS / 4:
                return True
    return False


def rounded_value(s: str, parser: OriginalParser | None = None) -> int | float | None:
    """`round(eval(str(latex2sympy(s))), 2)` of the official scorer; None where it raises.

    With `parser` (the original in its sidecar, `tasks.latex2sympy_sidecar`) the text is parsed
    there and the printout valued here without eval; without it the emulation below decides."""
    return sidecar_value(s, parser) if parser is not None else emulated_value(s)


def sidecar_value(s: str, parser: OriginalParser) -> int | float | None:
    """`rounded_value` by the original parser (its printouts are remembered per text by the parser)."""
    quick = quick_value(s, whole=True)  # prefix readings are the parser's to judge (`126.0\\times10^{-3}_` fails)
    if quick is not NotImplemented:
        return quick
    return printed_value(parser.printed(s))


def printed_value(printed: str | None) -> int | float | None:
    if printed is None:
        return None
    try:
        return rounded(evaluate_arithmetic(printed))
    except Exception:  # as the official try/except: any failure is "no value"
        return None


def texts_to_parse(gold: str, answer: str) -> list[str]:
    """The texts `official_equal(gold, answer)` may hand the parser (none where it decides on strings
    or by the quick path): what a batch sends to the sidecar ahead of scoring."""
    gold, answer = gold.lower(), answer.lower()
    if not gold.replace(" ", "") or not answer.replace(" ", "") or gold.strip() == answer.strip():
        return []
    texts = []
    for side in (gold, answer):
        parts = side[1:-1].split(",")
        if len(parts) >= 2 and side[:1] + side[-1:] in ("()", "[]"):
            texts += [p for p in parts if "infty" not in p and p not in ("a", "-a")]
        texts.append(side)
    return [t for t in texts if quick_value(t, whole=True) is NotImplemented]


@lru_cache(maxsize=65536)
def emulated_value(s: str) -> int | float | None:
    """The emulation of `rounded_value`: no other process, no eval. A common shape, read up to
    where the original parser stops, is valued directly; the rest is refused where the original
    cannot read or evaluate it, else parsed with math-verify's fork."""
    quick = quick_value(s)
    if quick is not NotImplemented:
        return quick
    s = without_outer_braces(before_unmatched_brace(s).strip())
    if NO_NUMBER.fullmatch(s) or UNLEXABLE.search(s) or NOT_EVALUABLE.search(s) or has_symbol(s):
        return None
    for old, new in ORIGINAL_PREPARSE_EDITS + GROUP_EDITS:
        s = s.replace(old, new)
    s = THOUSANDS.sub(r"\1\2", brackets_as_groups(s))
    return parsed_value(SPACED_NUMBERS.sub(r"\1\\cdot ", JUXTAPOSED.sub(r"\1\\cdot ", s)))


# The original's NUMBER has thousands groups (`23,802` is 23802; the fork reads a pair); a number
# before a group or `e` is a product there (`19(1)`, `2e^{0}`; the fork adds them).
THOUSANDS = re.compile(r"(\d),(\d{3})(?![\d])")
JUXTAPOSED = re.compile(r"([\d})])\s*(?=\(|e(?![a-z0-9+\-]))")
# Two numbers apart are a product there (`2~96` is 192); the fork reads a mixed number (2 + 96).
SPACED_NUMBERS = re.compile(r"(\d)\s+(?=\d|\.\d)")


def brackets_as_groups(s: str) -> str:
    """`[x]` as `(x)`, as the original groups it; the index of `\\sqrt[n]{}` stays. The original stops
    before a `]` that closes nothing (`-25[1]]` is -25): so does this."""
    out, kept = [], []
    for i, c in enumerate(s):
        if c == "[":
            kept.append(s[:i].endswith("\\sqrt"))
            out.append("[" if kept[-1] else "(")
        elif c == "]":
            if not kept:
                break
            out.append("]" if kept.pop() else ")")
        else:
            out.append(c)
    return "".join(out)


def before_unmatched_brace(s: str) -> str:
    """The text before the first `}` that closes nothing: the original parser stops there."""
    depth = 0
    for i, c in enumerate(s):
        if c in "{}" and i > 0 and s[i - 1] == "\\":
            continue
        depth += 1 if c == "{" else -1 if c == "}" else 0
        if depth < 0:
            return s[:i]
    return s


def without_outer_braces(s: str) -> str:
    """`{x}` is a group there, x; the fork would read a set."""
    while s.startswith("{") and before_unmatched_brace(s[1:]) == s[1:-1]:
        s = s[1:-1].strip()
    return s


def quick_value(s: str, whole: bool = False) -> int | float | None | object:
    """The value of a common shape read by `QuickValue` (read to its end if `whole`), or NotImplemented
    for anything else."""
    if OTHER_BLANK.search(s):
        return NotImplemented
    for old, new in ORIGINAL_PREPARSE_EDITS:
        s = s.replace(old, new)
    try:
        reader = QuickValue(s)
        found = reader.value()
        if whole and reader.i != len(reader.tokens):
            return NotImplemented
        return rounded(found)
    except NotImplementedError:
        return NotImplemented
    except Exception:  # ZeroDivisionError, a negative square root, an overflow: eval raises too
        return None


def parsed_value(s: str) -> int | float | None:
    """The slow path of `rounded_value`: parse, print, evaluate over `math`."""
    try:
        if UNPARSEABLY_LARGE.search(s):
            return None
        expr = natural_logs(parse_latex(s))
        printed = str(expr)
        if not PRINTED_EXPRESSION.fullmatch(printed) or too_costly(expr):
            return None
        return rounded(evaluate_arithmetic(printed))
    except Exception:  # untrusted text: every failure is "no value", as in the official try/except
        return None


def natural_logs(expr: object) -> object:
    """The fork writes `\\ln x` as `log(x, E)`, which sympy leaves be; the original's `log(x)` makes
    `\\exp(\\ln 12)` and `e^{\\ln 12}` the number 12 (while `\\ln(e^{2})` keeps an `E` there: no value)."""
    import sympy

    def exp_of_natural_log(node: object) -> bool:
        if not isinstance(node, sympy.exp):
            return False
        inner = node.args[0]
        return isinstance(inner, sympy.log) and len(inner.args) == 2 and inner.args[1] == sympy.E

    if not isinstance(expr, sympy.Basic):
        return expr
    return expr.replace(exp_of_natural_log, lambda node: node.args[0].args[0])


def evaluate_arithmetic(printed: str) -> object:
    """The value of sympy's printout as Python's eval over `math` would give it, without eval:
    only numbers, + - * / ** % //, unary signs and calls of `math` functions by name are walked;
    anything else (attributes, subscripts, other names) raises, which means "no value"."""
    tree = ast.parse(printed, mode="eval")
    for node in ast.walk(tree):
        if not isinstance(node, ARITHMETIC_NODES):
            raise ValueError(f"not arithmetic: {type(node).__name__}")
        if isinstance(node, ast.Name) and node.id not in MATH_NAMES:
            raise ValueError(f"unknown name {node.id}")
        if isinstance(node, ast.Call) and (not isinstance(node.func, ast.Name) or node.keywords):
            raise ValueError("only calls of math functions by name")
    return _value(tree.body)


def _value(node: ast.AST) -> object:
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name):
        return MATH_NAMES[node.id]
    if isinstance(node, ast.UnaryOp):
        operand = _value(node.operand)
        return -operand if isinstance(node.op, ast.USub) else +operand
    if isinstance(node, ast.Call):
        args = [_value(a) for a in node.args]
        if node.func.id in COMBINATORIAL and any(isinstance(a, int) and a > MAX_RESULT_DIGITS for a in args):
            raise OverflowError("factorial too large")
        return MATH_NAMES[node.func.id](*args)
    if isinstance(node, ast.Tuple):
        return tuple(_value(e) for e in node.elts)
    if isinstance(node, ast.Compare):  # a relation (`0 < 1`): True / False, as eval gives it
        values = [_value(node.left), *(_value(c) for c in node.comparators)]
        return all(COMPARISONS[type(op)](a, b) for op, a, b in zip(node.ops, values, values[1:]))
    left, right = _value(node.left), _value(node.right)
    if isinstance(node.op, ast.Pow) and isinstance(right, int) and (
            abs(right) > MAX_RESULT_DIGITS
            or isinstance(left, int) and abs(right) * left.bit_length() > 4 * MAX_RESULT_DIGITS):
        raise OverflowError("power too large")
    return BINARY_OPERATIONS[type(node.op)](left, right)


COMBINATORIAL = frozenset({"factorial", "comb", "perm"})
COMPARISONS = {ast.Lt: operator.lt, ast.Gt: operator.gt, ast.LtE: operator.le, ast.GtE: operator.ge,
               ast.Eq: operator.eq, ast.NotEq: operator.ne}
BINARY_OPERATIONS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
                     ast.Pow: operator.pow, ast.Mod: operator.mod, ast.FloorDiv: operator.floordiv}


def rounded(value: object) -> int | float | None:
    """`round(value, 2)`; a relation evaluated to True / False rounds to 1 / 0 there too (`0 < 1` is 1)."""
    if isinstance(value, bool):
        return int(value)
    return round(value, 2) if isinstance(value, (int, float)) else None


def round_tuple(s: str, parser: OriginalParser | None = None) -> str:
    """The official `eval_tuple`: `(a,b,...)` / `[a,b,...]` with each element rounded to 2 decimals."""
    parts = s[1:-1].split(",")
    if len(parts) < 2 or s[:1] + s[-1:] not in ("()", "[]"):
        return s
    out = []
    for p in parts:
        if "infty" in p or p in ("a", "-a"):
            out.append(p)
            continue
        value = rounded_value(p, parser)
        if value is None:
            return s
        out.append(str(value))
    return s[0] + ",".join(out) + s[-1]


def official_equal(gold: str, answer: str, parser: OriginalParser | None = None) -> bool:
    """The official `is_equal`; `parser`: the original parser's sidecar (None: the emulation)."""
    gold, answer = gold.lower(), answer.lower()
    if not gold.replace(" ", "") or not answer.replace(" ", ""):
        return False
    if gold.strip() == answer.strip():
        return True
    gold, answer = round_tuple(gold, parser), round_tuple(answer, parser)
    if gold == answer:
        return True
    g = rounded_value(gold, parser)
    return g is not None and g == rounded_value(answer, parser)
