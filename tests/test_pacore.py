"""PaCoRe mode (issue 5): the synthesis prompt, compaction and order, rounds, budgets, pool, and
end-to-end runs through the CLI against the local chat server."""

from __future__ import annotations

import base64
import json
from dataclasses import replace
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from chat_server import ChatServer, Reply
from conftest import AIME_FIXTURE, cli

from evals.modes import (
    PaCoRe, compact, reference_order, render_synthesis_prompt, synthesis_budget, synthesis_messages,
    trajectory_seed, wrap_mode,
)
from evals.runner import request_seed
from evals.types import (
    GenParams, Image, Message, Request, Response, RunSpec, Text, Usage, UserError, messages_digest,
)

SYNTHESIS_HEAD = "You are given a problem and a list of reference responses."


# ---- the synthesis prompt, byte for byte -------------------------------------------------------

def test_synthesis_prompt_is_the_trained_template_rendered_byte_for_byte():
    # DESIGN §6 rendered with jinja2's defaults: each block tag keeps the newline after it, the
    # references are numbered from 1, nothing is escaped, and the template's final newline is dropped.
    expected = (
        "You are given a problem and a list of reference responses. Your job is to analyze these references "
        "and provide your own response.\n"
        "\n"
        "Original Problem:\n"
        "What is $1+1$?\n\nPlease reason step by step.\n"
        "\n"
        "Reference Responses:\n"
        "\n"
        "Reference 1:\n"
        "It is \\boxed{2} since 1 < 2 & \"quotes\"\n"
        "\n"
        "Reference 2:\n"
        "{{ not a tag }} \\boxed{3}\n"
        "\n"
        "\n"
        "Now, based on the original problem and reference responses above, please provide your own "
        "comprehensive solution."
    )
    got = render_synthesis_prompt("What is $1+1$?\n\nPlease reason step by step.",
                                  ["It is \\boxed{2} since 1 < 2 & \"quotes\"", "{{ not a tag }} \\boxed{3}"])
    assert got == expected


def test_synthesis_prompt_with_one_reference():
    assert render_synthesis_prompt("Q", ["A"]).split("Reference Responses:\n", 1)[1] == (
        "\nReference 1:\nA\n\n\nNow, based on the original problem and reference responses above, please "
        "provide your own comprehensive solution.")


# ---- compaction and order ----------------------------------------------------------------------

def reply(text: str, finish: str | None = "stop", error: str | None = None, reasoning: str = "") -> Response:
    return Response("k", text=text, reasoning=reasoning, finish_reason=finish, error=error)


@pytest.mark.parametrize("r,expected,why", [
    (reply("\\boxed{2}", reasoning="long thought"), "\\boxed{2}", "the answer part; reasoning dropped"),
    (reply("  spaced  "), "spaced", "surrounding space is not content"),
    (reply("thought</think>the end"), "the end", "inline thinking split at the last </think>"),
    (reply(""), None, "empty"),
    (reply("   \n"), None, "blank"),
    (reply("", finish="length", reasoning="cut off while thinking"), None, "truncated before its answer"),
    (reply("The answer is 4", finish="length"), None, "truncated inside its answer: no conclusion"),
    (reply("", error="HTTP 500 (after 7 attempts)"), None, "failed"),
])
def test_compaction_keeps_the_conclusion_and_drops_empty_truncated_and_failed(r, expected, why):
    assert compact(r) == expected, why


def test_reference_order_sorts_by_length_then_shuffles_with_seed_42_then_drops():
    # lengths 5, 1, 3, 0 (failed), 2, 4 (truncated) -> by length (ties by index): 3, 1, 4, 2, 5, 0.
    # random.Random(42).shuffle on 6 items puts positions [3, 1, 2, 4, 0, 5] in order:
    # -> 2, 1, 4, 5, 3, 0; dropping the failed 3 and the truncated 5 leaves 2, 1, 4, 0.
    replies = [reply("aaaaa"), reply("b"), reply("ccc"), reply("", error="boom"), reply("ee"),
               reply("ffff", finish="length")]
    assert reference_order(replies) == [2, 1, 4, 0]


def test_reference_order_is_the_same_whatever_order_replies_finished_in():
    replies = [reply("x" * n) for n in (7, 3, 9, 1)]
    assert reference_order(replies) == reference_order(list(replies))
    # four usable replies: by length 3, 1, 0, 2; shuffled positions [2, 1, 3, 0] -> 0, 1, 2, 3
    assert reference_order(replies) == [0, 1, 2, 3]


# ---- the synthesis messages ----------------------------------------------------------------------

RED = Image(b64=base64.b64encode(b"red-pixels").decode(), mime="image/png")
BLUE = Image(path="/data/blue.png", mime="image/png")


def test_synthesis_turn_keeps_each_image_at_its_place_and_earlier_turns_unchanged():
    earlier = [Message("system", [Text("Be brief.")]), Message("user", [Text("Hi"), BLUE]),
               Message("assistant", [Text("Hello.")])]
    last = Message("user", [Text("Which colour is "), RED, Text("? Final answer: X")])
    messages, prompt = synthesis_messages([*earlier, last], ["red", "blue"])
    assert messages[:3] == earlier and all(a is b for a, b in zip(messages[:3], earlier))
    assert messages[3].role == "user"
    assert prompt == render_synthesis_prompt("Which colour is ? Final answer: X", ["red", "blue"])
    head, tail = prompt.split("Which colour is ? Final answer: X")
    # The template's text, then the original parts in their order, then the rest of the template.
    assert messages[3].content == [Text(head + "Which colour is "), RED, Text("? Final answer: X" + tail)]
    assert messages[3].content[1] is RED
    assert last.content == [Text("Which colour is "), RED, Text("? Final answer: X")]  # not modified


@pytest.mark.parametrize("original,expected_kinds,why", [
    ([Text("Q")], ["text"], "text only: one text part, the rendered prompt"),
    ([RED, Text("Q")], ["text", "image", "text"], "an image first stays first within the original problem"),
    ([Text("Q"), RED], ["text", "image", "text"], "an image last stays before the references"),
    ([RED, BLUE], ["text", "image", "image", "text"], "images only"),
    ([Text("a"), Text("b"), RED], ["text", "image", "text"], "adjacent text parts are joined"),
])
def test_synthesis_turn_splices_the_original_parts_into_the_template(original, expected_kinds, why):
    (turn,), prompt = synthesis_messages([Message("user", original)], ["{{ original_prompt }} ref \\x00"])
    assert [p.type for p in turn.content] == expected_kinds, why
    assert turn.text() == prompt == render_synthesis_prompt(Message("user", original).text(),
                                                           ["{{ original_prompt }} ref \\x00"]), why
    assert [p for p in turn.content if isinstance(p, Image)] == [p for p in original if isinstance(p, Image)]
    assert turn.content[0].text.startswith(SYNTHESIS_HEAD), why


def test_nothing_survived_sends_the_original_messages_unchanged():
    original = [Message("user", [RED, Text("Q")])]
    assert synthesis_messages(original, []) == (original, None)


# ---- rounds, seeds and budgets over a recording adapter -------------------------------------------

class RecordingAdapter:
    """An adapter that answers with `answer(request)` and records each generate() batch."""

    def __init__(self, answer: Callable[[Request], Response]):
        self.answer = answer
        self.batches: list[list[Request]] = []

    def generate(self, requests: list[Request], on_response=None) -> list[Response]:
        self.batches.append(list(requests))
        out = []
        for req in requests:
            resp = self.answer(req)
            resp.key = req.key
            out.append(resp)
            if on_response:
                on_response(resp)
        return out

    def close(self) -> None:
        pass


def answer_by_seed(req: Request) -> Response:
    return Response(req.key, text=f"\\boxed{{{req.params.seed % 10}}}", reasoning="r" * 5, finish_reason="stop",
                    usage=Usage(100, 10))


def requests_for(n: int, repeats: int = 1, max_tokens: int = 1000, messages=None) -> list[Request]:
    return [Request(f"s{i}#{r}", f"s{i}", r, messages or [Message("user", [Text(f"Problem {i}")])],
                    GenParams(max_tokens=max_tokens, seed=request_seed(0, f"s{i}", r)))
            for r in range(repeats) for i in range(n)]


def pacore(inner, widths: list[int], **spec_fields) -> PaCoRe:
    adapter = wrap_mode(inner, RunSpec(task="aime2025", model="rec/m", mode="pacore", pacore_widths=widths,
                                       **spec_fields))
    assert isinstance(adapter, PaCoRe)
    return adapter


def test_widths_32_4_make_32_then_4_then_1_calls_per_sample_and_rounds_schedule_sends_a_round_at_once():
    inner = RecordingAdapter(answer_by_seed)
    finals: list[Response] = []
    out = pacore(inner, [32, 4], adapter_options={"pacore_schedule": "rounds"}).generate(requests_for(3), finals.append)
    assert [len(b) for b in inner.batches] == [32 * 3, 4 * 3, 1 * 3]  # a round goes out all at once
    for batch, width in zip(inner.batches, (32, 4, 1)):
        assert Counter(r.sample_id for r in batch) == {"s0": width, "s1": width, "s2": width}
    assert [r.key for r in out] == ["s0#0", "s1#0", "s2#0"] and sorted(f.key for f in finals) == sorted(r.key for r in out)
    trace = out[0].trace
    assert [t["width"] for t in trace] == [32, 4, 1] and [len(t["replies"]) for t in trace] == [32, 4, 1]
    assert out[0].meta["pacore"]["calls"] == 37
    assert out[0].usage == Usage(37 * 100, 37 * 10)  # summed over every round


def test_pipeline_sends_waves_of_concurrency_calls_later_rounds_first_and_the_same_calls_as_rounds():
    events: list[str] = []

    def answer(req: Request) -> Response:
        events.append(req.key)
        return answer_by_seed(req)

    piped = RecordingAdapter(answer)
    mode = pacore(piped, [32, 4], concurrency=40)
    mode.lookahead = 0  # no end of run (below): later rounds first to the last call
    out = mode.generate(requests_for(3), lambda r: events.append("final " + r.key))
    assert all(len(b) <= 40 for b in piped.batches)
    # wave 1: s0's 32 calls, then s1's first 8; wave 2: s0's 4 syntheses first, then the rest of round 0
    assert [r.sample_id for r in piped.batches[0]] == ["s0"] * 32 + ["s1"] * 8
    assert [r.key for r in piped.batches[1][:4]] == [f"s0#0/r1/t{i}" for i in range(4)]
    assert events.index("final s0#0") < max(i for i, e in enumerate(events) if e.startswith("s2#0/r0/"))
    barrier = RecordingAdapter(answer_by_seed)
    rounds = pacore(barrier, [32, 4], adapter_options={"pacore_schedule": "rounds"}).generate(requests_for(3))
    key = lambda r: (r.key, r.params.seed, r.params.max_tokens, messages_digest(r.messages))  # noqa: E731
    assert sorted(key(r) for b in piped.batches for r in b) == sorted(key(r) for b in barrier.batches for r in b)
    assert [(o.key, o.text, o.trace, o.meta, o.usage) for o in out] == [
        (o.key, o.text, o.trace, o.meta, o.usage) for o in rounds]


def test_at_the_end_of_a_run_the_remaining_problems_round0_calls_go_before_syntheses():
    # 8 problems x width 4, waves of 4: the end begins when 12 round-0 calls are left to send (s5, s6, s7)
    piped = RecordingAdapter(answer_by_seed)
    mode = pacore(piped, [4], concurrency=4)
    mode.lookahead = 12
    out = mode.generate(requests_for(8))
    sent = [r.key for b in piped.batches for r in b]
    end = sent.index("s5#0/r0/t0")
    # before the end: each problem's synthesis before the next problem's calls
    assert sent[:end].index("s2#0/r1/t0") < sent[:end].index("s3#0/r0/t2")
    assert sent[end:end + 12] == [f"s{i}#0/r0/t{t}" for i in range(5, 8) for t in range(4)]  # then round 0 first
    assert sent[end + 12:] == [f"s{i}#0/r1/t0" for i in range(4, 8)]
    barrier = pacore(RecordingAdapter(answer_by_seed), [4], concurrency=4,
                     adapter_options={"pacore_schedule": "rounds"}).generate(requests_for(8))
    assert [(o.key, o.text, o.trace, o.meta) for o in out] == [(o.key, o.text, o.trace, o.meta) for o in barrier]
    # by default the end is 3 windows of problems (concurrency x width: 48 round-0 calls here), less the
    # first window or half the run, whichever is fewer: here its last 16 round-0 calls (s4-s7) go before
    # the syntheses still to come
    whole = RecordingAdapter(answer_by_seed)
    pacore(whole, [4], concurrency=4).generate(requests_for(8))
    keys = [r.key for b in whole.batches for r in b]
    assert "s0#0/r1/t0" in keys[:keys.index("s4#0/r0/t0")]
    assert all("/r0/" in k for k in keys[keys.index("s4#0/r0/t0"):][:16]) and keys[-1].endswith("/r1/t0")


def test_trajectory_seeds_are_distinct_and_reproducible():
    inner = RecordingAdapter(answer_by_seed)
    pacore(inner, [16, 4]).generate(requests_for(2))
    seeds = [r.params.seed for b in inner.batches for r in b]
    assert len(set(seeds)) == len(seeds) == 2 * (16 + 4 + 1)
    again = RecordingAdapter(answer_by_seed)
    pacore(again, [16, 4]).generate(requests_for(2))
    assert [r.params.seed for b in again.batches for r in b] == seeds
    assert inner.batches[0][0].params.seed == trajectory_seed(request_seed(0, "s0", 0), 0, 0)


def test_synthesis_round_lists_the_kept_replies_in_reference_order():
    texts = {0: "\\boxed{7} because seven", 1: "", 2: "\\boxed{8}", 3: "\\boxed{7}"}

    def answer(req: Request) -> Response:
        if SYNTHESIS_HEAD in req.messages[-1].text():
            return Response(req.key, text="\\boxed{7}", finish_reason="stop")
        i = int(req.key.rsplit("/t", 1)[1])
        return Response(req.key, text=texts[i], finish_reason="stop" if texts[i] else "length")

    inner = RecordingAdapter(answer)
    (out,) = pacore(inner, [4]).generate(requests_for(1))
    (synth,) = inner.batches[1]
    # lengths 22, 0, 9, 9 -> by length 1, 2, 3, 0; shuffled positions [2, 1, 3, 0] -> 3, 2, 0, 1; drop 1
    assert out.trace[1]["references"] == [3, 2, 0]
    assert synth.messages[-1].text() == render_synthesis_prompt("Problem 0", [texts[3], texts[2], texts[0]])
    assert [r["kept"] for r in out.trace[0]["replies"]] == [True, False, True, True]
    assert out.text == "\\boxed{7}"


def test_all_replies_failed_sends_the_original_messages_for_synthesis():
    def answer(req: Request) -> Response:
        if req.key.endswith("/r0/t0") or req.key.endswith("/r0/t1"):
            return Response(req.key, error="HTTP 500")
        return Response(req.key, text="\\boxed{1}", finish_reason="stop")

    inner = RecordingAdapter(answer)
    reqs = requests_for(1)
    (out,) = pacore(inner, [2]).generate(reqs)
    assert inner.batches[1][0].messages is reqs[0].messages
    assert "fallback" in out.trace[1] and out.meta["pacore"]["failed_calls"] == 2
    assert out.error is None and out.text == "\\boxed{1}"


def test_a_failed_synthesis_is_an_error_record():
    def answer(req: Request) -> Response:
        if "/r1/" in req.key:
            return Response(req.key, error="HTTP 500 (after 7 attempts)")
        return Response(req.key, text="\\boxed{1}", finish_reason="stop")

    (out,) = pacore(RecordingAdapter(answer), [2]).generate(requests_for(1))
    assert out.error == "HTTP 500 (after 7 attempts)"


def test_parallel_rounds_use_max_tokens_and_synthesis_fits_the_context():
    inner = RecordingAdapter(answer_by_seed)
    out = pacore(inner, [4], adapter_options={"pacore_context": 1150}).generate(requests_for(1, max_tokens=1000))
    assert {r.params.max_tokens for r in inner.batches[0]} == {1000}
    synth = out[0].trace[1]
    # round 0 reported 100 prompt tokens; the synthesis adds its text at one token per 3 bytes
    added = (len(inner.batches[1][0].messages[-1].text().encode()) + 2) // 3 - (len("Problem 0") + 2) // 3
    assert synth["prompt_tokens_estimate"] == 100 + added
    assert inner.batches[1][0].params.max_tokens == synth["max_tokens"] == 1150 - (100 + added)
    assert synth["prompt_tokens"] == 100 and synth["prompt_tokens_source"] == "usage"  # the server's count
    assert out[0].meta["pacore"]["synthesis_prompt_tokens"] == 100
    assert synthesis_budget(65536, 131072, 20000) == 65536
    assert synthesis_budget(65536, 131072, 100000) == 31072


def test_synthesis_prompt_tokens_are_estimated_when_the_backend_reports_none():
    def answer(req: Request) -> Response:
        return Response(req.key, text="\\boxed{1}", finish_reason="stop")  # usage all zero

    (out,) = pacore(RecordingAdapter(answer), [2]).generate(requests_for(1))
    assert out.trace[1]["prompt_tokens_source"] == "estimate"
    assert out.trace[1]["prompt_tokens"] == out.trace[1]["prompt_tokens_estimate"] > 0


def test_pool_draws_first_round_replies_from_one_pool_per_problem():
    inner = RecordingAdapter(answer_by_seed)
    out = pacore(inner, [4], pacore_pool=6).generate(requests_for(2, repeats=3))
    assert len(inner.batches[0]) == 2 * 6  # one pool per problem, not per repeat
    assert len(inner.batches[1]) == 2 * 3
    draws = [tuple(r["pool_index"] for r in o.trace[0]["replies"]) for o in out]
    assert all(len(set(d)) == 4 and set(d) <= set(range(6)) for d in draws)
    assert len(set(draws)) > 1  # repeats draw differently (seeded by their own seed)


def test_pacore_refuses_replay_and_pools_smaller_than_the_first_width():
    with pytest.raises(UserError, match="needs a model to call"):
        wrap_mode(RecordingAdapter(answer_by_seed), RunSpec(task="aime2025", model="replay:preds.jsonl", mode="pacore"))
    with pytest.raises(UserError, match="smaller than the first width"):
        pacore(RecordingAdapter(answer_by_seed), [8], pacore_pool=4)


def test_pacore_wraps_sere_so_inline_thinking_is_split():
    def answer(req: Request) -> Response:
        return Response(req.key, text="<think>hidden</think>\\boxed{5}", finish_reason="stop")

    (out,) = pacore(RecordingAdapter(answer), [2]).generate(requests_for(1))
    assert out.text == "\\boxed{5}" and out.reasoning == "hidden"
    assert out.trace[0]["replies"][0]["text"] == "\\boxed{5}" and out.trace[0]["replies"][0]["reasoning_chars"] == 6


def test_sub_calls_are_cached_in_the_run_dir_and_not_sent_again(tmp_path: Path):
    inner = RecordingAdapter(answer_by_seed)
    first = pacore(inner, [4])
    first.attach(tmp_path)
    out1 = first.generate(requests_for(2))
    first.close()
    lines = (tmp_path / "calls.jsonl").read_text().splitlines()
    assert len(lines) == 2 * (4 + 1)
    again = RecordingAdapter(answer_by_seed)
    second = pacore(again, [4])
    second.attach(tmp_path)
    out2 = second.generate(requests_for(2))
    assert again.batches == [] and second.sent == 0
    assert [o.text for o in out2] == [o.text for o in out1]
    assert all(r["cached"] for t in out2[0].trace for r in t["replies"])


# ---- end to end through the CLI ----------------------------------------------------------------------

WIDTH, K = 4, 2
GOLD = {r["id"]: r["answer"] for r in AIME_FIXTURE}
PROMPTS = {r["id"]: f"{r['problem']}\n\nPlease reason step by step, and put your final answer within \\boxed{{}}."
           for r in AIME_FIXTURE}


def round0_plan() -> dict[int, tuple[str, int, int]]:
    """seed -> (problem, repeat, trajectory) for every round-0 call the run should make."""
    return {trajectory_seed(request_seed(0, pid, rep), 0, i): (pid, rep, i)
            for pid in GOLD for rep in range(K) for i in range(WIDTH)}


def round0_reply(pid: str, i: int) -> Reply:
    # trajectory 0 right, 1 wrong (longer), 2 cut off while thinking, 3 empty
    return [Reply(f"\\boxed{{{GOLD[pid]}}}", reasoning_content="thinking"),
            Reply(f"So the answer is \\boxed{{{int(GOLD[pid]) + 1}}}"),
            Reply(None, reasoning_content="never ends", finish_reason="length"),
            Reply("")][i]


def test_pacore_on_aime_sends_the_planned_calls_and_checked_synthesis_prompts(tmp_path: Path, aime_data: Path):
    plan = round0_plan()
    problems: list[str] = []

    def responder(body: dict) -> Reply:
        text = body["messages"][-1]["content"]
        if not text.startswith(SYNTHESIS_HEAD):
            pid, _, i = plan[body["seed"]]
            return round0_reply(pid, i)
        pid = next(p for p, prompt in PROMPTS.items() if f"Original Problem:\n{prompt}\n" in text)
        # kept: trajectories 0 and 1; by length 2, 3, 0, 1 -> shuffled positions [2, 1, 3, 0] -> 0, 3, 1, 2
        right, wrong = round0_reply(pid, 0).content, round0_reply(pid, 1).content
        assert text == render_synthesis_prompt(PROMPTS[pid], [right, wrong]), "synthesis prompt"
        assert body["max_tokens"] <= 2000 and len(body["messages"]) == 1
        problems.append(pid)
        return Reply(f"<think>weighing both</think>\\boxed{{{GOLD[pid]}}}", prompt_tokens=321)

    with ChatServer(responder=responder) as server:
        proc = cli("run", "aime2025", "--model", "openai/test-model", "--base-url", server.url, "--mode", "pacore",
                   "--pacore-widths", str(WIDTH), "-k", str(K), "--max-tokens", "2000", "--data", str(aime_data),
                   "--out", str(tmp_path / "runs"), "--quiet")
        assert proc.returncode == 0, proc.stderr
        bodies = server.received
    assert len(bodies) == len(GOLD) * K * (WIDTH + 1)  # the plan, no more
    assert sorted(b["seed"] for b in bodies if not b["messages"][-1]["content"].startswith(SYNTHESIS_HEAD)) == sorted(plan)
    assert Counter(problems) == {pid: K for pid in GOLD}
    (run_dir,) = (tmp_path / "runs").iterdir()
    res = json.loads((run_dir / "results.json").read_text())
    assert res["metrics"]["accuracy"]["value"] == 1.0
    assert res["metrics"]["pacore_round0_agreement"]["value"] == pytest.approx(0.5)  # 1 of 2 kept answers
    assert res["counts"]["prompt_tokens"] == len(GOLD) * K * (WIDTH * 10 + 321)
    assert res["counts"]["mean_tokens_per_request"] == WIDTH * 15 + 321 + 5
    records = [json.loads(line) for line in (run_dir / "samples.jsonl").read_text().splitlines()]
    assert len(records) == len(GOLD) * K
    trace = records[0]["response"]["trace"]
    assert [len(t["replies"]) for t in trace] == [WIDTH, 1]
    assert [r["finish_reason"] for r in trace[0]["replies"]] == ["stop", "stop", "length", "stop"]
    assert [r["kept"] for r in trace[0]["replies"]] == [True, True, False, False]
    assert trace[1]["prompt_tokens"] == 321 and records[0]["response"]["reasoning"] == "weighing both"
    calls = (run_dir / "calls.jsonl").read_text().splitlines()
    assert len(calls) == len(bodies)
    log = (run_dir / "run.log").read_text()
    assert f"pacore round 0 (width {WIDTH}): {len(GOLD) * K * WIDTH} calls, 0 from calls.jsonl" in log


def test_pacore_pool_flag_generates_one_pool_per_problem(tmp_path: Path, aime_data: Path):
    with ChatServer() as server:
        proc = cli("run", "aime2025", "--model", "openai/test-model", "--base-url", server.url, "--mode", "pacore",
                   "--pacore-widths", "4", "--pacore-pool", "6", "-k", "3", "--data", str(aime_data),
                   "--out", str(tmp_path / "runs"), "--quiet")
        assert proc.returncode == 0, proc.stderr
        synthesis = sum(b["messages"][-1]["content"].startswith(SYNTHESIS_HEAD) for b in server.received)
        assert len(server.received) - synthesis == len(GOLD) * 6 and synthesis == len(GOLD) * 3
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert json.loads((run_dir / "results.json").read_text())["spec"]["pacore_pool"] == 6


def png_bytes(color: tuple[int, int, int]) -> bytes:
    import io

    from PIL import Image as PILImage

    buf = io.BytesIO()
    PILImage.new("RGB", (28, 28), color).save(buf, "PNG")
    return buf.getvalue()


def write_mmmu(tmp_path: Path) -> Path:
    (tmp_path / "pics").mkdir()
    rows = []
    for n, color in enumerate([(255, 0, 0), (0, 0, 255)]):
        (tmp_path / "pics" / f"{n}.png").write_bytes(png_bytes(color))
        row = {"id": f"dev_Art_{n}", "question": f"Which colour is <image 1>? ({n})",
               "options": "['red', 'blue', 'green']", "answer": "AB"[n], "question_type": "multiple-choice",
               "subfield": "sub", "topic_difficulty": "Easy", "image_1": f"pics/{n}.png"}
        rows.append(row)
    path = tmp_path / "mmmu.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


COLOURS = [(255, 0, 0), (0, 0, 255), (0, 160, 0), (250, 200, 0)]


def write_mmmu_multi_image(tmp_path: Path) -> Path:
    """One MMMU question naming two images in its text and two more as its options."""
    (tmp_path / "pics").mkdir(exist_ok=True)
    row = {"id": "dev_Art_7", "question": "Compare <image 1> and <image 2>. Which one is drawn like them?",
           "options": "['<image 3>', '<image 4>']", "answer": "A", "question_type": "multiple-choice",
           "subfield": "sub", "topic_difficulty": "Hard"}
    for k, color in enumerate(COLOURS, 1):
        (tmp_path / "pics" / f"m{k}.png").write_bytes(png_bytes(color))
        row[f"image_{k}"] = f"pics/m{k}.png"
    path = tmp_path / "mmmu_multi.jsonl"
    path.write_text(json.dumps(row) + "\n")
    return path


def shape(content: list[dict], image_number: dict[str, int]) -> list[str | int]:
    """A chat message's parts as the server got them: texts, and images by their number."""
    return [p["text"] if p["type"] == "text" else image_number[p["image_url"]["url"]] for p in content]


def test_pacore_on_mmmu_keeps_every_image_at_its_place_in_every_round(tmp_path: Path):
    from tasks.mmmu import MMMU

    data = write_mmmu_multi_image(tmp_path)
    (sample,) = MMMU().load(str(data), "dev", None)
    original = sample.messages[-1]
    assert [type(p).__name__ for p in original.content] == ["Text", "Image"] * 4 + ["Text"]
    assert original.content[0].text.endswith("Compare ") and original.content[2].text.startswith(" and ")
    texts = [p.text for p in original.content if isinstance(p, Text)]
    image_number = {f"data:image/png;base64,{base64.b64encode(png_bytes(c)).decode()}": k
                    for k, c in enumerate(COLOURS, 1)}
    synthesis_bodies: list[dict] = []

    def responder(body: dict) -> Reply:
        first = body["messages"][-1]["content"][0]
        if first["type"] == "text" and first["text"].startswith(SYNTHESIS_HEAD):
            synthesis_bodies.append(body)
        return Reply("Final answer: A" if body["seed"] % 2 else "Final answer: B")

    with ChatServer(responder=responder) as server:
        proc = cli("run", "mmmu", "--model", "openai/test-model", "--base-url", server.url, "--mode", "pacore",
                   "--pacore-widths", "2,2", "-k", "1", "--split", "dev", "--data", str(data),
                   "--out", str(tmp_path / "runs"), "--quiet")
        assert proc.returncode == 0, proc.stderr
        round0 = [b for b in server.received if b not in synthesis_bodies]
    assert len(round0) == 2 and len(synthesis_bodies) == 2 + 1  # widths 2,2 and the final 1
    for body in round0:
        (message,) = body["messages"]
        assert shape(message["content"], image_number) == [texts[0], 1, texts[1], 2, texts[2], 3, texts[3], 4,
                                                           texts[4]]
    for body in synthesis_bodies:
        (message,) = body["messages"]
        got = shape(message["content"], image_number)
        # The template's text with the question spliced in: each image where its <image k> stood.
        assert got[1:-1] == [1, texts[1], 2, texts[2], 3, texts[3], 4], got
        assert got[0].startswith(SYNTHESIS_HEAD) and got[0].endswith("Original Problem:\n" + texts[0])
        assert got[-1].startswith(texts[4] + "\n\nReference Responses:\n")
        assert "Final answer: " in got[-1].split("Reference Responses:", 1)[1]
    (run_dir,) = (tmp_path / "runs").iterdir()
    record = json.loads((run_dir / "samples.jsonl").read_text())
    assert [r["width"] for r in record["response"]["trace"]] == [2, 2, 1]
    res = json.loads((run_dir / "results.json").read_text())
    assert res["spec"]["mode"] == "pacore" and res["status"] == "complete"
    assert "pacore_round0_agreement" in res["metrics"]


def test_pacore_rounds_over_mmmu_send_the_spliced_messages_to_the_adapter(tmp_path: Path):
    """The same through the wrapped adapter: every synthesis request, every round, widths 2,2."""
    from evals.runner import build_requests
    from tasks.mmmu import MMMU

    samples = MMMU().load(str(write_mmmu_multi_image(tmp_path)), "dev", None)
    spec = RunSpec(task="mmmu", model="rec/m", mode="pacore", pacore_widths=[2, 2])
    inner = RecordingAdapter(lambda req: Response(req.key, text=f"Final answer: {'AB'[req.params.seed % 2]}",
                                                  finish_reason="stop"))
    (out,) = wrap_mode(inner, spec).generate(build_requests(samples, spec))
    original = samples[0].messages[-1].content
    assert [len(b) for b in inner.batches] == [2, 2, 1]
    for batch in inner.batches[1:]:
        for req in batch:
            (turn,) = req.messages
            assert turn.content[1:-1] == original[1:-1]  # images and the text between them, untouched
            assert turn.content[0].text.endswith("Original Problem:\n" + original[0].text)
            assert turn.content[-1].text.startswith(original[-1].text + "\n\nReference Responses:")
    assert out.error is None and len(out.trace) == 3


# ---- the tiny hf model, with images ------------------------------------------------------------------

def build_answering_tiny_vlm(random_vlm: Path, out: Path) -> Path:
    """The tiny random Qwen2.5-VL, edited so that it stops on its own: every step it emits `A`
    (3 parts) or `<|im_end|>` (1 part), whatever the input. Random weights rarely stop within a few
    tokens, and a reply cut off by the limit is dropped, so no synthesis would get references."""
    import math

    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    model = AutoModelForImageTextToText.from_pretrained(random_vlm)
    processor = AutoProcessor.from_pretrained(random_vlm)
    letter, stop = processor.tokenizer.convert_tokens_to_ids(["A", "<|im_end|>"])
    with torch.no_grad():
        lm = model.model.language_model
        lm.embed_tokens.weight[:, 0] = 1000.0  # residual dim 0 dominates every text position ...
        for layer in lm.layers:  # ... and no layer writes to it, so the final norm gives it ~8
            layer.self_attn.o_proj.weight[0, :] = 0
            layer.mlp.down_proj.weight[0, :] = 0
        lm.norm.weight[0] = 1.0
        model.lm_head.weight.zero_()  # logits read dim 0 only: input-independent
        model.lm_head.weight[stop, 0] = 3.0
        model.lm_head.weight[letter, 0] = 3.0 + math.log(3) / 8
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out


class BatchSpy:
    """Hands every batch to a real adapter and records it."""

    def __init__(self, inner):
        self.inner = inner
        self.batches: list[list[Request]] = []

    def generate(self, requests: list[Request], on_response=None) -> list[Response]:
        self.batches.append(list(requests))
        return self.inner.generate(requests, on_response)

    def close(self) -> None:
        self.inner.close()


@pytest.fixture(scope="module")
def answering_vlm(tiny_qwen_vl: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_answering_tiny_vlm(tiny_qwen_vl, tmp_path_factory.mktemp("answering_vlm"))


@pytest.mark.hf
def test_pacore_over_the_hf_adapter_batches_each_round_and_keeps_images(tmp_path: Path, answering_vlm: Path):
    from evals.runner import build_requests
    from model_adapters.hf import HFAdapter
    from tasks.mmmu import MMMU

    samples = MMMU().load(str(write_mmmu(tmp_path)), "dev", None)
    spec = RunSpec(task="mmmu", model=f"hf/{answering_vlm}", mode="pacore", pacore_widths=[4],
                   params=GenParams(max_tokens=12), adapter_options={"batch_size": 16})
    hf = HFAdapter(str(answering_vlm), spec)
    spy = BatchSpy(hf)
    out = wrap_mode(spy, spec).generate(build_requests(samples, spec))
    assert [len(b) for b in spy.batches] == [2 * 4, 2 * 1]  # the plan, one generate() per round
    assert all(o.error is None for o in out)
    synthesized = [(o, b) for o, b in zip(out, spy.batches[1]) if o.trace[1]["references"]]
    assert synthesized, "no reply survived round 0 (the edited model should stop on its own)"
    for final, request in synthesized:
        (turn,) = request.messages
        assert [type(p) for p in turn.content] == [Text, Image, Text]  # the image where the question had it
        assert turn.content[0].text.startswith(SYNTHESIS_HEAD)
        assert final.trace[1]["prompt_tokens_source"] == "usage"
        assert final.trace[1]["prompt_tokens"] > final.trace[0]["replies"][0]["usage"]["prompt_tokens"]


@pytest.mark.hf
def test_pacore_mmmu_run_on_the_tiny_hf_model_through_the_cli(tmp_path: Path, answering_vlm: Path):
    data = write_mmmu(tmp_path)
    proc = cli("run", "mmmu", "--model", f"hf/{answering_vlm}", "--mode", "pacore", "--pacore-widths", "3",
               "-k", "2", "--max-tokens", "12", "--split", "dev", "--data", str(data), "--out", str(tmp_path / "runs"),
               "--quiet", timeout=300)
    assert proc.returncode == 0, proc.stderr
    (run_dir,) = (tmp_path / "runs").iterdir()
    calls = [json.loads(line) for line in (run_dir / "calls.jsonl").read_text().splitlines()]
    assert Counter(c["round"] for c in calls) == {0: 2 * 2 * 3, 1: 2 * 2}  # the plan: no more model calls
    records = [json.loads(line) for line in (run_dir / "samples.jsonl").read_text().splitlines()]
    assert len(records) == 4 and all(len(r["response"]["trace"]) == 2 for r in records)
    res = json.loads((run_dir / "results.json").read_text())
    assert res["status"] == "complete" and res["counts"]["mean_tokens_per_request"] > 0


def without_timing(responses: list[Response]) -> list[tuple]:
    out = []
    for r in responses:
        trace = [{**t, "replies": [{k: v for k, v in x.items() if k != "latency"} for x in t["replies"]]}
                 for t in r.trace]
        out.append((r.key, r.text, r.reasoning, r.finish_reason, r.usage, r.error, trace, r.meta))
    return out


@pytest.mark.hf
@pytest.mark.parametrize("pool", [None, 5], ids=["independent", "pool"])
def test_pipeline_in_waves_over_the_hf_adapter_gives_the_barriers_answers(tmp_path: Path, answering_vlm: Path,
                                                                           pool: int | None):
    """hf takes a list: the pipeline hands it waves of `--concurrency` ready calls (here 4, so the
    rounds of different problems share waves); sampling is seeded per request, so the answers are
    the barrier's."""
    from evals.runner import build_requests
    from model_adapters.hf import HFAdapter
    from tasks.mmmu import MMMU

    samples = MMMU().load(str(write_mmmu(tmp_path)), "dev", None)
    spec = RunSpec(task="mmmu", model=f"hf/{answering_vlm}", mode="pacore", pacore_widths=[3], repeats=2,
                   pacore_pool=pool, params=GenParams(max_tokens=12), concurrency=4,
                   adapter_options={"batch_size": 4})
    spy = BatchSpy(HFAdapter(str(answering_vlm), spec))
    requests = build_requests(samples, spec)
    mode = wrap_mode(spy, spec)
    assert isinstance(mode, PaCoRe)
    mode.lookahead = 0  # later rounds first throughout, so that waves mix rounds (a run this small is all end)
    piped = mode.generate(requests)
    waves = list(spy.batches)
    spy.batches.clear()
    barrier = wrap_mode(spy, replace(spec, adapter_options={"batch_size": 4, "pacore_schedule": "rounds"}))
    rounds = barrier.generate(requests)
    assert all(len(w) <= 4 for w in waves) and len(spy.batches) == 2  # waves vs one generate() per round
    assert any(len({r.key.split("/")[1] for r in w}) > 1 for w in waves)  # a wave mixes rounds
    assert all(o.error is None for o in piped)
    assert without_timing(piped) == without_timing(rounds)
