"""MATH-V's parser (latex2sympy2 1.9.1) with and without its frames kept in one stack block, side by side.

    python benchmarks/parser_stack.py [--texts 1000]

The texts are the MathVision fuzzer's answers (tests/mathvision_fuzz.py). Each pass runs in a fresh
process of the parser's Python (STEP3VL_LATEX2SYMPY_PYTHON, else the side install that
`step3vl-eval setup mathvision` made) and parses every text once, state reset as the sidecar does:
once plainly, once inside `on_one_stack_block` (tasks/latex2sympy_sidecar.py). It prints each pass's
CPU seconds (user and system: the frame-stack blocks are mapped and unmapped by system calls), the
ratio, and whether both passes printed the same thing for every text (they must).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

PASS = r'''
import importlib.util, json, os, sys
if sys.argv[4] != "-":
    sys.path.insert(0, sys.argv[4])
import latex2sympy2
from latex2sympy2 import latex2sympy
spec = importlib.util.spec_from_file_location("sidecar", sys.argv[3])
sidecar = importlib.util.module_from_spec(spec); spec.loader.exec_module(sidecar)
texts = json.load(open(sys.argv[1]))
def parse_all():
    out = []
    for t in texts:
        latex2sympy2.var, latex2sympy2.variances = {}, {}
        try:
            out.append(str(latex2sympy(t)))
        except Exception as exc:
            out.append(type(exc).__name__)
    return out
before = os.times()
out = sidecar.on_one_stack_block(parse_all) if sys.argv[2] == "block" else parse_all()
after = os.times()
print(json.dumps({"user": after.user - before.user, "system": after.system - before.system, "out": out}))
'''


def parser_python() -> tuple[str, str]:
    """(python, side install folder or "-") of MATH-V's parser."""
    from tasks.latex2sympy_sidecar import ENV_VAR, side_install_dir, side_install_ready

    if os.environ.get(ENV_VAR):
        return os.environ[ENV_VAR], "-"
    if side_install_ready():
        return sys.executable, str(side_install_dir())
    sys.exit(f"parser_stack: MATH-V's parser is not installed: run `step3vl-eval setup mathvision` or set {ENV_VAR}")


def one_pass(python: str, path: str, texts_file: Path, how: str) -> dict:
    proc = subprocess.run([python, "-c", PASS, str(texts_file), how, str(ROOT / "tasks" / "latex2sympy_sidecar.py"), path],
                          capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--texts", type=int, default=1000)
    args = p.parse_args()
    from mathvision_fuzz import fuzz_items

    texts = list(dict.fromkeys(item["answer"] for item in fuzz_items(args.texts * 2, 7)))[:args.texts]
    python, path = parser_python()
    with tempfile.TemporaryDirectory() as work:
        texts_file = Path(work) / "texts.json"
        texts_file.write_text(json.dumps(texts))
        plain, block = (one_pass(python, path, texts_file, how) for how in ("plain", "block"))
    cpu = {name: r["user"] + r["system"] for name, r in (("plain", plain), ("block", block))}
    for name, r in (("plain", plain), ("block", block)):
        print(f"{name:5s}: {len(texts)} texts, {cpu[name]:.2f} CPU s (user {r['user']:.2f}, system {r['system']:.2f})")
    same = plain["out"] == block["out"]
    print(f"one stack block / plain = {cpu['block'] / cpu['plain']:.2f} of the CPU time "
          f"({cpu['plain'] / cpu['block']:.2f}x faster); same printouts: {'yes' if same else 'NO'}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
