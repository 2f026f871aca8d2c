"""The original MATH-V parser (latex2sympy2 1.9.1 on ANTLR 4.7.2) in a process of its own.

latex2sympy2 1.9.1 cannot share an environment with math-verify (ANTLR 4.7.2 against 4.13.2), so
it runs in a process of its own, from one of two places:
- the side install: `pip install --target` of latex2sympy2 1.9.1 and its ANTLR runtime into the
  user cache (`$STEP3VL_CACHE`, else `$XDG_CACHE_HOME/step3vl-eval`, else `~/.cache/step3vl-eval`),
  made on first use or by `step3vl-eval setup mathvision`, run by this same interpreter with that
  folder first on its path;
- a Python that has it, named by STEP3VL_LATEX2SYMPY_PYTHON (an override, e.g. the venv that
  `.ci/setup_oracle_venv.sh` builds).
The sidecar only parses: it answers each text with sympy's printout of it (`str(latex2sympy(text))`,
what the official scorer hands to `eval`), or with nothing when the parser raises. The printout is
then valued by the project's eval-free walker (`tasks.mathvision_rules.evaluate_arithmetic`). Each
parse has a time limit: a text that runs past it has no value, and the process is replaced. Texts
go in batches (`printed_many`): one round trip per batch, not per text.

Run as a script (by path) this file is the worker: `--path DIR` puts DIR first on its path; JSON
lines `{"text": ...}` in, `{"printed": ...}` or `{"error": ...}` out. It imports nothing from the project.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

ENV_VAR = "STEP3VL_LATEX2SYMPY_PYTHON"
CACHE_ENV_VAR = "STEP3VL_CACHE"
SIDE_INSTALL = "latex2sympy2-1.9.1"
REQUIREMENTS = ("latex2sympy2==1.9.1", "antlr4-python3-runtime==4.7.2")
COMPLETE = ".complete"  # written last: a side install interrupted half-way is not one
SETUP_COMMAND = "step3vl-eval setup mathvision"
PARSE_TIMEOUT_S = 5.0
STARTUP_TIMEOUT_S = 120.0  # importing sympy and the parser on a busy machine
INSTALL_TIMEOUT_S = 600.0
READY = b'{"ready": true}\n'
MEMORY_LIMIT_BYTES = 4 << 30
CACHE_SIZE = 1 << 18


class OriginalParser:
    """A client of the worker below; one worker per process (scoring pools fork). `path`: the side
    install to put first on the worker's path (None for a Python that has the parser itself)."""

    def __init__(self, python: str, timeout: float = PARSE_TIMEOUT_S, path: str | None = None):
        self.python, self.timeout, self.path = python, timeout, path
        self.proc: subprocess.Popen[bytes] | None = None
        self.owner = os.getpid()
        self.lock = threading.Lock()
        self.cache: dict[str, str | None] = {}  # the parser is a pure function of its text
        self.pending = b""  # read from the worker, not yet taken as a reply

    def command(self) -> list[str]:
        # -E -s: nothing from the environment or the user site goes before the side install
        flags = ["-E", "-s"] if self.path else []
        return [self.python, *flags, "-u", str(Path(__file__).resolve()), *(["--path", self.path] if self.path else [])]

    def start(self) -> subprocess.Popen[bytes]:
        """The running worker, started (and its imports awaited, untimed by the per-parse limit) if need be."""
        if self.proc is None or self.owner != os.getpid() or self.proc.poll() is not None:
            self.proc, self.owner, self.pending = subprocess.Popen(
                self.command(), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                bufsize=0), os.getpid(), b""
            if self.read_line(self.proc, STARTUP_TIMEOUT_S) != READY:
                self.stop()
                raise OSError(f"{self.describe()} did not start the latex2sympy2 worker")
        return self.proc

    def printed(self, text: str) -> str | None:
        """sympy's printout of `text` as the original parser reads it; None where it raises or times out."""
        return self.printed_many([text])[0]

    def printed_many(self, texts: list[str]) -> list[str | None]:
        """`printed` of each text, the new ones sent at once; a text past the time limit (counted
        from the reply before it) is None and the worker is replaced for the texts after it."""
        with self.lock:
            todo = list(dict.fromkeys(t for t in texts if t not in self.cache))
            out: list[str | None] = []
            while len(out) < len(todo):
                try:
                    proc = self.start()
                except OSError:  # no value now, and none remembered: the next call tries again
                    return [self.cache.get(t) for t in texts]
                out += self.exchange(proc, todo[len(out):])
            found = {t: self.cache[t] for t in texts if t in self.cache}
            found.update(zip(todo, out))
            if len(self.cache) + len(todo) > CACHE_SIZE:
                self.cache.clear()
            self.cache.update(zip(todo, out))
            return [found[t] for t in texts]

    def exchange(self, proc: subprocess.Popen[bytes], texts: list[str]) -> list[str | None]:
        """Replies until the batch ends or one text fails to answer in time (that one is None)."""
        assert proc.stdin is not None and proc.stdout is not None
        payload = b"".join(json.dumps({"text": t}).encode() + b"\n" for t in texts)
        writer = threading.Thread(target=feed, args=(proc.stdin, payload), daemon=True)
        writer.start()  # a thread: a big batch would fill both pipes if written before reading
        replies: list[str | None] = []
        for _ in texts:
            line = self.read_line(proc, self.timeout)
            if not line:  # past the time limit, or the worker died: replace it
                self.stop()
                writer.join()
                return replies + [None]
            replies.append(json.loads(line).get("printed"))
        writer.join()
        return replies

    def read_line(self, proc: subprocess.Popen[bytes], timeout: float) -> bytes:
        """The worker's next reply line, b"" past `timeout` or at its end. Read from the pipe itself
        into our own buffer: a buffered reader could hold replies that `select` no longer sees."""
        assert proc.stdout is not None
        fd = proc.stdout.fileno()
        while b"\n" not in self.pending:
            ready, _, _ = select.select([fd], [], [], timeout)
            chunk = os.read(fd, 1 << 16) if ready else b""
            if not chunk:
                return b""
            self.pending += chunk
        line, self.pending = self.pending.split(b"\n", 1)
        return line + b"\n"

    def stop(self) -> None:
        if self.proc is not None and self.owner == os.getpid():
            self.proc.kill()
            self.proc.wait()
        self.proc, self.pending = None, b""

    def works(self) -> bool:
        """The original's prefix reading, which math-verify's fork does not have: `\\frac{1}{4}}x` is 1/4."""
        return self.printed("\\frac{1}{4}}x") == "1/4"

    def describe(self) -> str:
        return f"side install {self.path}" if self.path else f"{ENV_VAR}={self.python}"


def feed(stdin: object, payload: bytes) -> None:
    try:
        stdin.write(payload)  # type: ignore[attr-defined]
        stdin.flush()  # type: ignore[attr-defined]
    except (OSError, ValueError):  # the worker was replaced mid-batch
        pass


# ---- where the original comes from --------------------------------------------------------------

def cache_root() -> Path:
    explicit = os.environ.get(CACHE_ENV_VAR, "").strip()
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME", "").strip()
    return (Path(xdg) if xdg else Path.home() / ".cache") / "step3vl-eval"


def side_install_dir() -> Path:
    return cache_root() / SIDE_INSTALL


def side_install_ready() -> bool:
    return (side_install_dir() / COMPLETE).is_file()


def install_side(announce: bool = True) -> Path:
    """pip-install the original parser into the side install folder (a temporary folder beside it,
    renamed when complete and checked); UserError with one line when it cannot."""
    from evals.types import UserError

    target = side_install_dir()
    if announce:
        print(f"step3vl-eval: installing MATH-V's official parser (latex2sympy2 1.9.1, ANTLR 4.7.2) into {target} "
              "(once)", file=sys.stderr, flush=True)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{SIDE_INSTALL}.", dir=target.parent))
    except OSError as exc:
        raise UserError(f"cannot create {target.parent}: {exc.strerror}") from None
    try:
        proc = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                               "--no-warn-script-location", "--retries", "1", "--timeout", "15",
                               "--target", str(staging), *REQUIREMENTS],
                              capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S)
        why = last_line(proc.stderr) if proc.returncode else ""
        if not why and not OriginalParser(sys.executable, path=str(staging)).works():
            why = "the installed parser does not read `\\frac{1}{4}}x` as 1/4"
        if why:
            raise UserError(f"mathvision: the official parser could not be installed into {target} ({why}); "
                            f"run `{SETUP_COMMAND}` where the package registry is reachable, "
                            "or pass -T equality=emulated to score with the emulation")
        (staging / COMPLETE).write_text(" ".join(REQUIREMENTS) + "\n")
        shutil.rmtree(target, ignore_errors=True)
        os.replace(staging, target)
    except subprocess.TimeoutExpired:
        raise UserError(f"mathvision: installing the official parser into {target} took over "
                        f"{INSTALL_TIMEOUT_S:.0f} s; run `{SETUP_COMMAND}` again, or pass -T equality=emulated") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1][:200] if lines else "pip failed"


_parser: OriginalParser | None = None


def shared_parser(python: str, path: str | None) -> OriginalParser:
    """One worker per (python, path), started when first needed."""
    global _parser
    if _parser is None or (_parser.python, _parser.path) != (python, path):
        if _parser is not None:
            _parser.stop()
        _parser = OriginalParser(python, path=path)
    return _parser


def override_parser() -> OriginalParser | None:
    """The sidecar named by STEP3VL_LATEX2SYMPY_PYTHON; None when it is not set."""
    python = os.environ.get(ENV_VAR, "").strip()
    return shared_parser(python, None) if python else None


def official_parser(install: bool = True) -> OriginalParser:
    """The original parser, checked: the override, else the side install (made now if `install`).
    UserError with one line naming the setup command when there is none."""
    from evals.types import UserError

    parser = override_parser()
    if parser is None:
        if not side_install_ready():
            if not install:
                raise UserError(f"mathvision: the official parser is not installed ({side_install_dir()}): "
                                f"run `{SETUP_COMMAND}`, or pass -T equality=emulated")
            install_side()
        parser = shared_parser(sys.executable, str(side_install_dir()))
    if not parser.works():
        if parser.path is None:
            raise UserError(f"{ENV_VAR}={parser.python}: not a Python that runs latex2sympy2 1.9.1 (create one "
                            f"with .ci/setup_oracle_venv.sh, or unset {ENV_VAR} to use the side install)")
        raise UserError(f"mathvision: the official parser in {parser.path} does not run; run `{SETUP_COMMAND}` "
                        "again, or pass -T equality=emulated")
    return parser


# ---- the worker (runs with the side install on its path, or in the override's venv) ---------

FRAME_STACK_SLOTS = 1 << 17  # 1 MiB reserved in one frame: the parser's recursion runs in the rest of its block


def _call(work: Any) -> Any:
    return work()


def on_one_stack_block(work: Any) -> Any:
    """`work()`, with the Python frames it calls kept in one block allocated up front.

    CPython 3.11+ keeps frames in 16 KiB blocks: it maps a new one when the stack grows past the last
    and unmaps it when the stack shrinks back. ANTLR's prediction recurses up and down across such a
    boundary hundreds of times per text, and those mmap/munmap pairs took half of the parser's time.
    A frame that reserves a large stack makes CPython map one large block for it, and the frames
    `work` calls fit in the rest of that block. What is parsed, and how, is unchanged."""
    global _block_call
    if _block_call is None:
        code = _call.__code__
        try:
            code = code.replace(co_stacksize=code.co_stacksize + FRAME_STACK_SLOTS)
        except (AttributeError, TypeError, ValueError):  # an interpreter without this code object field
            return work()
        _block_call = type(_call)(code, _call.__globals__)
    return _block_call(work)


_block_call: Any = None


def serve() -> None:
    import resource

    if len(sys.argv) == 3 and sys.argv[1] == "--path":
        sys.path.insert(0, sys.argv[2])
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT_BYTES, MEMORY_LIMIT_BYTES))
    replies, sys.stdout = sys.stdout, sys.stderr  # whatever the libraries print stays off the protocol
    import latex2sympy2
    from latex2sympy2 import latex2sympy

    replies.write('{"ready": true}\n')
    replies.flush()
    on_one_stack_block(lambda: answer_lines(latex2sympy2, latex2sympy, replies))


def answer_lines(latex2sympy2: Any, latex2sympy: Any, replies: Any) -> None:
    for line in sys.stdin:
        text = json.loads(line)["text"]
        # The parser keeps module state across texts: a differential atom (`d` and a letter, as in
        # `rounded`) rebinds its global `var` to a Symbol, and from then on every text with a letter
        # fails. Each text is read as a fresh process reads it.
        latex2sympy2.var, latex2sympy2.variances = {}, {}
        try:
            reply = {"printed": str(latex2sympy(text))}
        except BaseException as exc:  # the parser's own errors, recursion, memory: all "no value"
            reply = {"error": type(exc).__name__}
        replies.write(json.dumps(reply) + "\n")
        replies.flush()


if __name__ == "__main__":
    serve()


def setup() -> int:
    """`step3vl-eval setup mathvision`: the side install of MATH-V's parser, made when missing, checked either way."""
    from evals.types import UserError

    target, ready = side_install_dir(), side_install_ready()
    if not ready:
        install_side()
    parser = OriginalParser(sys.executable, path=str(target))
    works = parser.works()
    parser.stop()
    if not works:
        raise UserError(f"mathvision: the official parser in {target} does not run; remove that folder and run "
                        "`step3vl-eval setup mathvision` again")
    print(f"mathvision: MATH-V's official parser (latex2sympy2 1.9.1) {'was already' if ready else 'is now'} "
          f"installed in {target}; runs score with it by default"
          + (f" ({ENV_VAR} is set and takes precedence)" if os.environ.get(ENV_VAR) else ""))
    return 0
