"""The original MATH-V parser (latex2sympy2 1.9.1 on ANTLR 4.7.2) in a process of its own.

latex2sympy2 1.9.1 cannot share an environment with math-verify (ANTLR 4.7.2 against 4.13.2), so
it runs in a venv of its own, e.g. the one `.ci/setup_oracle_venv.sh` builds:
`STEP3VL_LATEX2SYMPY_PYTHON=/path/to/.venv-oracle/bin/python`. The sidecar only parses: it answers
each text with sympy's printout of it (`str(latex2sympy(text))`, what the official scorer hands to
`eval`), or with nothing when the parser raises. The printout is then valued by the project's
eval-free walker (`tasks.mathvision_rules.evaluate_arithmetic`). Each parse has a time limit: a
text that runs past it (sympy evaluating a huge power while parsing) has no value, and the
process is replaced.

Run as a script (by path, with the sidecar venv's Python) this file is the worker: JSON lines
`{"text": ...}` in, `{"printed": ...}` or `{"error": ...}` out. It imports nothing from the project.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import threading
from pathlib import Path

ENV_VAR = "STEP3VL_LATEX2SYMPY_PYTHON"
PARSE_TIMEOUT_S = 5.0
STARTUP_TIMEOUT_S = 120.0  # importing sympy and the parser on a busy machine
READY = b'{"ready": true}\n'
MEMORY_LIMIT_BYTES = 4 << 30


class OriginalParser:
    """A client of the worker below; one worker per process (scoring pools fork)."""

    def __init__(self, python: str, timeout: float = PARSE_TIMEOUT_S):
        self.python, self.timeout = python, timeout
        self.proc: subprocess.Popen[bytes] | None = None
        self.owner = os.getpid()
        self.lock = threading.Lock()

    def start(self) -> subprocess.Popen[bytes]:
        """The running worker, started (and its imports awaited, untimed by the per-parse limit) if need be."""
        if self.proc is None or self.owner != os.getpid() or self.proc.poll() is not None:
            self.proc, self.owner = subprocess.Popen(
                [self.python, "-u", str(Path(__file__).resolve())], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL), os.getpid()
            assert self.proc.stdout is not None
            ready, _, _ = select.select([self.proc.stdout], [], [], STARTUP_TIMEOUT_S)
            if not ready or self.proc.stdout.readline() != READY:
                self.stop()
                raise OSError(f"{self.python} did not start the latex2sympy2 worker")
        return self.proc

    def printed(self, text: str) -> str | None:
        """sympy's printout of `text` as the original parser reads it; None where it raises or times out."""
        with self.lock:
            try:
                proc = self.start()
            except OSError:
                return None
            assert proc.stdin is not None and proc.stdout is not None
            try:
                proc.stdin.write(json.dumps({"text": text}).encode() + b"\n")
                proc.stdin.flush()
                ready, _, _ = select.select([proc.stdout], [], [], self.timeout)
                line = proc.stdout.readline() if ready else b""
            except OSError:
                line = b""
            if not line:  # past the time limit, or the worker died: replace it
                self.stop()
                return None
            return json.loads(line).get("printed")

    def stop(self) -> None:
        if self.proc is not None and self.owner == os.getpid():
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def works(self) -> bool:
        """The original's prefix reading, which math-verify's fork does not have: `\\frac{1}{4}}x` is 1/4."""
        return self.printed("\\frac{1}{4}}x") == "1/4"


_parser: OriginalParser | None = None


def original_parser() -> OriginalParser | None:
    """The sidecar named by STEP3VL_LATEX2SYMPY_PYTHON, started once; None when it is not set."""
    global _parser
    python = os.environ.get(ENV_VAR, "").strip()
    if not python:
        return None
    if _parser is None or _parser.python != python:
        if _parser is not None:
            _parser.stop()
        _parser = OriginalParser(python)
    return _parser


def check_original_parser() -> None:
    """Refuse a STEP3VL_LATEX2SYMPY_PYTHON that does not run latex2sympy2 1.9.1, before any scoring."""
    parser = original_parser()
    if parser is not None and not parser.works():
        from evals.types import UserError

        raise UserError(f"{ENV_VAR}={parser.python}: not a Python that runs latex2sympy2 1.9.1 "
                        f"(create one with .ci/setup_oracle_venv.sh, or unset {ENV_VAR} to use the emulation)")


# ---- the worker (runs in the sidecar venv) ---------------------------------------------------

def serve() -> None:
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT_BYTES, MEMORY_LIMIT_BYTES))
    replies, sys.stdout = sys.stdout, sys.stderr  # whatever the libraries print stays off the protocol
    from latex2sympy2 import latex2sympy

    replies.write('{"ready": true}\n')
    replies.flush()
    for line in sys.stdin:
        text = json.loads(line)["text"]
        try:
            reply = {"printed": str(latex2sympy(text))}
        except BaseException as exc:  # the parser's own errors, recursion, memory: all "no value"
            reply = {"error": type(exc).__name__}
        replies.write(json.dumps(reply) + "\n")
        replies.flush()


if __name__ == "__main__":
    serve()
