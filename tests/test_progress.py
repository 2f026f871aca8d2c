"""The progress bar counts what a user watches: answers, model calls, tokens, errors."""

from evals.progress import RunProgress
from evals.types import Response, Usage


def reply(tokens: int, error: str | None = None) -> Response:
    return Response("k", usage=Usage(0, tokens), error=error)


def test_sere_counts_tokens_from_answers():
    p = RunProgress(total=2, done=0, enabled=False)
    p.advance(reply(10))
    p.advance(reply(0, error="HTTP 500"))
    assert (p.tokens, p.errors, p.calls) == (10, 1, 0)


def test_pacore_calls_move_the_bar_and_their_tokens_are_not_counted_twice():
    p = RunProgress(total=1, done=0, enabled=False)
    for _ in range(4):  # round 0
        p.note_call(reply(100))
    p.note_call(reply(50))  # synthesis
    assert p.bar.tasks[0].fields["calls"] == "5 calls" and p.tokens == 450
    p.advance(reply(450))  # the final answer carries the summed usage
    assert p.tokens == 450 and p.bar.tasks[0].completed == 1
