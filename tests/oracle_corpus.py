"""Seeded response corpora for the differential (oracle) tests, generated at test time.

A response is one to three pieces, each drawn from the shapes models write: bare and wrapped
letters (`(B)`, ` B `, `**B**`, `\\(B\\)`, `$\\boxed{B}$`, `\\text{B}`, `"B"`, lower case), option
values, `Final answer:` variants as reasoning models write them (and the traps: `final answer:
e.g., ...`, an article after the label), Chinese answers, numbers in many spellings for open
questions, refusals, several letters, very long and empty responses, trailing text.
"""

from __future__ import annotations

import random
from collections.abc import Callable

FILLER = ("Let me look at the image carefully. The figure shows several labelled parts, and the question "
          "asks which statement fits best. Consider each option in turn before deciding. ")
CJK_FILLER = "我们先仔细观察图片，然后逐一分析每个选项。"
TRAILERS = ["", "", ".", "!", "?", "'", ";", ":", ",", " ", "\n", "\n\nI hope this helps!",
            " because it matches the figure.", "\n\nThis is consistent with the data shown.", " 。"]
SEPARATORS = [" ", "\n", "\n\n", ". ", ", ", "", "\t"]

Piece = Callable[[random.Random, str, dict[str, str], str], str]


def wrapped_letter(rng: random.Random, letter: str) -> str:
    wrap = rng.choice(["{}", "({})", " {} ", "**{}**", "\\({}\\)", "$\\boxed{{{}}}$", "\\boxed{{{}}}", "\\text{{{}}}",
                       '"{}"', "'{}'", "[{}]", "{}.", "{})", "*{}*", "$${}$$", "`{}`", "（{}）", "“{}”", "{}:"])
    return wrap.format(letter.lower() if rng.random() < 0.12 else letter)


def letter_piece(rng: random.Random, letter: str, choices: dict[str, str], gold: str) -> str:
    shape = rng.choice(["{w}", "The answer is {w}", "Answer: {w}", "I choose {w}", "Option {w}",
                        "{w} {text}", "{w}. {text}", "the correct option is {w}, {text}", "选{w}",
                        "答案是{w}", "答案是 {w}", "正确答案：{w}", "{w} is correct", "So the answer is {w} here"])
    return shape.format(w=wrapped_letter(rng, letter), text=choices.get(letter, ""))


def value_piece(rng: random.Random, letter: str, choices: dict[str, str], gold: str) -> str:
    text = choices.get(letter, gold)
    text = rng.choice([text, text.lower(), text.upper(), f"the {text}", f"It is {text}.", f"答案：{text}",
                       f"I think the answer is {text}", f"**{text}**"])
    return text


def final_piece(rng: random.Random, letter: str, choices: dict[str, str], gold: str) -> str:
    label = rng.choice(["Final answer:", "Final Answer:", "**Final Answer:**", "**Final answer**:", "FINAL ANSWER:",
                        "final answer:", "Final answer：", "最终答案：", "Final Answer :", "### Final Answer:",
                        "**Final Answer**\n\n:", "Final answer is"])
    body = rng.choice(["{w}", "{w}", "{w} {text}", "{text}", "e.g., {text}", "E.g. {text}", "{w}. {text}",
                       "A {text}", "\n\n{w}", "**{w}**", "$\\boxed{{\\text{{{L}}}}}$", "\\(\\boxed{{{L}}}\\)",
                       "{w}\n\nExplanation: {text}", "Option {w}", "{L}{L}", "{L}-{L}"])
    return f"{label} " + body.format(w=wrapped_letter(rng, letter), text=choices.get(letter, gold), L=letter)


def distractor_piece(rng: random.Random, letter: str, choices: dict[str, str], gold: str) -> str:
    others = [c for c in choices if c != letter] or [letter]
    other = rng.choice(others)
    return rng.choice([f"Option {other} is wrong because {choices.get(other, '')} does not fit.",
                       f"({other}) can be ruled out.", f"{other} or {letter}", f"Either {other} or {letter}",
                       f"Not {other}.", "Cannot determine the answer", "Sorry, I can't help with images of people yet.",
                       "Z", "None of the options.", "Failed to obtain answer via API.", "A or B", "(A) (B)",
                       f"{FILLER}{other}", "E", "e.g.", "I'm not sure."])


def number_piece(rng: random.Random, letter: str, choices: dict[str, str], gold: str) -> str:
    try:
        value = float(gold.replace(",", ""))
    except ValueError:
        value = rng.choice([0.5, 12.97, -120.0, 2000000.0, 3.429, 1.06, 7243000.0, 0.1])
    spelled = rng.choice([gold, f"{value}", f"{value:.2f}", f"{value:.3f}", f"{value:,.2f}", f"{value:e}",
                          f"{round(value)}", f"{value + rng.choice([0.004, 0.006, 1, -0.01]):.3f}",
                          f"{value * 1.5:g}", f"{-value:g}", f"{value:.1E}", ".5", "1/64", "24/7"])
    return rng.choice(["The answer is {n}.", "so x = {n}", "x = {n}\ny = 2", "{n}", "{n} m/s", "Therefore, {n}",
                       "the result is approximately {n} units", "Final answer: {n}", "答案是{n}",
                       "could be {n} or {m}", "= {n}", "{n}\n= 3"]).format(n=spelled, m=rng.randint(0, 999))


def chinese_piece(rng: random.Random, letter: str, choices: dict[str, str], gold: str) -> str:
    return rng.choice([f"{CJK_FILLER}答案是{letter}。", f"{CJK_FILLER}\n最终答案：{letter}", f"我认为是{choices.get(letter, gold)}",
                       f"选项{letter}正确", f"因此选择 {letter} 。", CJK_FILLER])


PIECES: list[tuple[Piece, float]] = [(letter_piece, 4), (value_piece, 2), (final_piece, 4), (distractor_piece, 2),
                                     (number_piece, 1.5), (chinese_piece, 1)]


def response(rng: random.Random, choices: dict[str, str], gold: str, open_question: bool = False) -> str:
    """One generated response: gold-biased, built from one to three pieces, sometimes degenerate."""
    roll = rng.random()
    if roll < 0.02:
        return rng.choice(["", " ", "\n", "  \n\t"])
    if roll < 0.03:  # very long: reasoning with letters sprinkled, the answer at the end or not at all
        letters = list(choices) or ["A"]
        body = "".join(FILLER + (f"Option {rng.choice(letters)} " if rng.random() < 0.3 else "") for _ in range(400))
        return body + rng.choice(["", f"Final answer: {gold}", f"So {rng.choice(letters)}", "\n\n**Final Answer:** **B**"])
    letter = gold if rng.random() < 0.5 or not choices else rng.choice(list(choices))
    pieces, weights = zip(*PIECES)
    if open_question:
        weights = tuple(w * (4 if p is number_piece else 1) for p, w in zip(pieces, weights))
    chosen = rng.choices(pieces, weights, k=rng.choice([1, 1, 2, 2, 3]))
    parts = [piece(rng, letter, choices, gold) for piece in chosen]
    text = ""
    for part in parts:
        text = (text + rng.choice(SEPARATORS) if text else "") + part
    return text + rng.choice(TRAILERS)


CJK_OPTIONS = ["猫", "狗", "一只鸟", "红色", "蓝色的天空", "北京", "上海", "左边", "右边", "以上都不是", "3个", "五"]
EN_OPTIONS = ["cat", "dog", "a bird", "red", "blue sky", "left", "right", "None of the above", "3", "five",
              "The man is running", "B", "A cat", "e.g.", "Not applicable", "2.5 cm", "rabbit", "It is sunny"]
# Every text pandas' default `na_values` reads as missing (an empty cell is an absent option here),
# and near misses that pandas keeps as text.
NA_CELLS = ["#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN", "<NA>", "N/A",
            "NA", "NULL", "NaN", "None", "n/a", "nan", "null", " NA", "none", "Nan", "NA ", "-NA"]


def mmbench_options(rng: random.Random) -> list[str]:
    """2 to 5 option texts (E included), English or Chinese; sometimes a cell pandas reads as missing."""
    pool = CJK_OPTIONS if rng.random() < 0.35 else EN_OPTIONS
    options = rng.sample(pool, rng.randint(2, 5))
    if rng.random() < 0.08:
        options[rng.randrange(1, len(options))] = rng.choice(NA_CELLS)
    return options
