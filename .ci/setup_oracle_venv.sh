#!/usr/bin/env bash
# Create .venv-oracle at the repository root: the original MATH-V scorer's parser
# (latex2sympy2 1.9.1 on ANTLR 4.7.2) for the oracle test tier (tests/test_oracle_mathvision.py).
# Idempotent: a venv that already imports latex2sympy2 is left as it is.
#
# latex2sympy2 1.9.1 needs antlr4-python3-runtime 4.7.2, math-verify needs 4.13.2: they cannot
# share an environment. `fire` only because evaluate.py imports it. The oracle code itself is not
# installed: tests run it from ../shared/oracles. The same venv can serve the product's parser sidecar
# (STEP3VL_LATEX2SYMPY_PYTHON=.venv-oracle/bin/python, see docs/tasks.md).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv-oracle"
PYTHON="${PYTHON:-python3}"
SPECS=("latex2sympy2==1.9.1" "antlr4-python3-runtime==4.7.2" "numpy" "tqdm" "fire")

probe() {
    "$VENV/bin/python" -c "import latex2sympy2, numpy, tqdm, fire
assert str(latex2sympy2.latex2sympy('\\\\frac{1}{4}}x')) == '1/4'" >/dev/null 2>&1
}

if [ -x "$VENV/bin/python" ] && probe; then
    echo "setup_oracle_venv: $VENV is ready"
    exit 0
fi

start=$(date +%s)
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
# (this machine's pip config lists mirror folders that may be absent: drop those warnings only)
"$VENV/bin/pip" install --quiet --disable-pip-version-check "${SPECS[@]}" 2>&1 \
    | { grep -v "is ignored: it is neither a file nor a directory" || true; }

probe || { echo "setup_oracle_venv: $VENV does not import latex2sympy2 1.9.1" >&2; exit 1; }
echo "setup_oracle_venv: $VENV ready in $(( $(date +%s) - start ))s"
