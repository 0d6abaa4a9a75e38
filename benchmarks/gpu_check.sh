#!/usr/bin/env bash
# One short check on a CUDA machine, from the repo root:
#     bash benchmarks/gpu_check.sh [DATA_DIR]        (default .devdata/ml-1m-u2999)
# 1. the model/training/perf-guard tests with CUDA as the default device;
# 2. the fused interacting layer (issue 14) in its three CUDA modes, eager, CUDA graph and compiled
#    (benchmarks/gpu_modes.py, one fresh process each): correctness against the reference layer, then the
#    epoch time of the paper's config (d=16, d'=32, H=2, L=3, batch 1024), fp32, and the host<->device
#    synchronisations in the run (torch.cuda.set_sync_debug_mode);
# 3. the fastest correct mode, the value for CUDA_MODE in autoint/model/autoint.py (the CUDA default).
# Total on an H100/H200: about 4-6 minutes (timeouts: tests 150 s, eager and graph 100 s each, compiled 200 s).
# Prints one JSON object per line. Uses python3's own torch when it imports; otherwise (or for any other
# missing requirement) a --target folder put on PYTHONPATH, from .whl/ if there, else from pip's index.
# Without internet, fill .whl/ first: pip download -d .whl --only-binary=:all: --python-version 3.12 \
#   --platform manylinux_2_17_x86_64 --no-deps polars polars-runtime-32
set -uo pipefail
cd "$(dirname "$0")/.."
DATA="${1:-.devdata/ml-1m-u2999}"
PY="${PYTHON:-python3}"
json() { "$PY" -c 'import json,sys; print(json.dumps(dict(zip(sys.argv[1::2], sys.argv[2::2]))))' "$@"; }

if ! "$PY" -c "import torch" 2>/dev/null; then
  python3 -m venv /tmp/autoint-gpu-venv && /tmp/autoint-gpu-venv/bin/pip install -q -r requirements.txt
  PY=/tmp/autoint-gpu-venv/bin/python
fi
MISSING=$("$PY" - <<'PYEOF'
import importlib.util
need = {"numpy": "numpy", "polars": "polars", "_polars_runtime_32": "polars-runtime-32", "safetensors": "safetensors", "tqdm": "tqdm", "pytest": "pytest",
        "hypothesis": "hypothesis", "captum": "captum"}
print(" ".join(pkg for mod, pkg in need.items() if importlib.util.find_spec(mod) is None))
PYEOF
)
if [ -n "$MISSING" ]; then  # pip may have no index there: a wheelhouse in .whl/ (gitignored) is tried first
  EXTRA=/tmp/autoint-gpu-pkgs  # a --target folder on PYTHONPATH: works whether python3 is a venv or not
  for pkg in $MISSING; do
    "$PY" -m pip install -q --target "$EXTRA" --no-index --no-deps --find-links .whl "$pkg" 2>/dev/null \
      || "$PY" -m pip install -q --target "$EXTRA" --retries 0 --timeout 5 "$pkg" >/dev/null 2>&1 \
      || json step install missing "$pkg" note "not installable here (captum is only needed for attributions)"
  done
  export PYTHONPATH="$EXTRA${PYTHONPATH:+:$PYTHONPATH}"
fi
"$PY" -c 'import json, torch; print(json.dumps({"step": "env", "torch": torch.__version__, "cuda": torch.cuda.is_available(),
  "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}))'

# 1. tests (CUDA is the default device there when present). AUTOINT_COMPILE=0: the fused layer's kernels run
#    uncompiled here, so the tests' time stays bounded (CPU compilation is tested on the CPU machine; the
#    CUDA modes, compiled included, are checked one by one in step 2).
OUT=$(AUTOINT_COMPILE=0 timeout 150 "$PY" -m pytest -q -p no:cacheprovider tests/test_cuda.py tests/test_model.py tests/test_train.py tests/test_perf_guard.py 2>&1)
RC=$?
echo "$OUT" | tail -25 >&2
json step tests rc "$RC" summary "$(echo "$OUT" | tail -1)"

# 2. the three CUDA modes of the fused layer (issue 14), each in a fresh process: correctness against the
#    reference layer (logits, attention, gradients <= 1e-5), then the paper config's epoch time on DATA.
MODES_LOG=$(mktemp)
for MODE in eager graph compiled; do
  LIMIT=100; [ "$MODE" = compiled ] && LIMIT=200  # compiled: Triton builds the kernels first (~1-2 min)
  timeout "$LIMIT" "$PY" benchmarks/gpu_modes.py --mode "$MODE" --data-dir "$DATA" --epochs 3 2>&1 | tee -a "$MODES_LOG" | grep '^{'
  json step mode mode "$MODE" rc "${PIPESTATUS[0]}"
done
# 3. the fastest correct mode: the value to put in autoint/model/autoint.py's CUDA_MODE (the CUDA default)
"$PY" - "$MODES_LOG" <<'PYEOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
epochs = [r for r in rows if r.get("step") == "epoch" and "steady_epoch_s" in r]
# correct, and "compiled" only if it really ran compiled (a failed compile falls back to eager with a warning)
good = [r for r in epochs if r.get("correct") and (r["mode"] != "compiled" or r.get("kernels") == "compiled")]
if not good:
    print(json.dumps({"step": "choice", "skipped": "no mode measured correct (or no CUDA device)",
                      "modes": [(r["mode"], r.get("correct"), r.get("kernels")) for r in epochs]}))
else:
    best = min(good, key=lambda r: r["steady_epoch_s"])
    print(json.dumps({"step": "choice", "fastest_correct": best["mode"], "steady_epoch_s": best["steady_epoch_s"],
                      "all": {r["mode"]: r["steady_epoch_s"] for r in good},
                      "set": f"CUDA_MODE = \"{best['mode']}\" in autoint/model/autoint.py (now: see there)"}))
PYEOF
