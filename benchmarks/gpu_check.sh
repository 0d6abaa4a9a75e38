#!/usr/bin/env bash
# One short check on a CUDA machine, from the repo root:
#     bash benchmarks/gpu_check.sh [DATA_DIR]        (default .devdata/ml-1m-u2999)
# 1. the model/training/perf-guard tests with CUDA as the default device;
# 2. epoch time of the paper's config (d=16, d'=32, H=2, L=3, batch 1024) on CUDA, fp32, with the
#    training step eager (the default) and replayed as a CUDA graph (AUTOINT_CUDA_GRAPH=1, opt-in),
#    counting host<->device synchronisations per epoch (torch.cuda.set_sync_debug_mode).
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
need = {"numpy": "numpy", "polars": "polars", "safetensors": "safetensors", "tqdm": "tqdm", "pytest": "pytest",
        "hypothesis": "hypothesis", "captum": "captum"}
print(" ".join(pkg for mod, pkg in need.items() if importlib.util.find_spec(mod) is None))
PYEOF
)
if [ -n "$MISSING" ]; then  # pip may have no index there: a wheelhouse in .whl/ (gitignored) is tried first
  EXTRA=/tmp/autoint-gpu-pkgs  # a --target folder on PYTHONPATH: works whether python3 is a venv or not
  for pkg in $MISSING; do
    "$PY" -m pip install -q --target "$EXTRA" --no-index --find-links .whl "$pkg" 2>/dev/null \
      || "$PY" -m pip install -q --target "$EXTRA" --retries 0 --timeout 5 "$pkg" >/dev/null 2>&1 \
      || json step install missing "$pkg" note "not installable here (captum is only needed for attributions)"
  done
  export PYTHONPATH="$EXTRA${PYTHONPATH:+:$PYTHONPATH}"
fi
"$PY" -c 'import json, torch; print(json.dumps({"step": "env", "torch": torch.__version__, "cuda": torch.cuda.is_available(),
  "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}))'

# 1. tests (CUDA is the default device there when present)
OUT=$(timeout 240 "$PY" -m pytest -q -p no:cacheprovider tests/test_cuda.py tests/test_model.py tests/test_train.py tests/test_perf_guard.py 2>&1)
RC=$?
echo "$OUT" | tail -25 >&2
json step tests rc "$RC" summary "$(echo "$OUT" | tail -1)"

# 2. epoch time of the paper's config on CUDA
timeout 200 "$PY" - "$DATA" <<'PYEOF'
import json, sys, time, warnings
import torch
sys.path.insert(0, ".")
from autoint.datasets.movielens import load_dataset
from autoint.model import AutoIntConfig
from autoint.train import TrainConfig, train
if not torch.cuda.is_available():
    print(json.dumps({"step": "epoch", "skipped": "no CUDA device"})); sys.exit(0)
dataset = load_dataset(sys.argv[1])
syncs = []
def callback(event):
    pass
import os
for label, graph in (("fp32, eager", "0"), ("fp32, CUDA graph (AUTOINT_CUDA_GRAPH=1)", "1")):
    os.environ["AUTOINT_CUDA_GRAPH"] = graph  # read by autoint.train.TrainStep
    torch.cuda.set_sync_debug_mode("warn")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        started = time.perf_counter()
        result = train(dataset, AutoIntConfig(embed_dim=16, attn_dim=32, heads=2, layers=3),
                       TrainConfig(epochs=4, patience=4, batch_size=1024, device="cuda"), progress=False)
        total = time.perf_counter() - started
    torch.cuda.set_sync_debug_mode("default")
    m = result.metrics
    n_sync = sum("synchroniz" in str(w.message) for w in caught)
    steps = -(-m["samples"]["train"] // 1024)
    print(json.dumps({"step": "epoch", "mode": label, "device": torch.cuda.get_device_name(0),
                      "epoch_seconds": m["epoch_seconds"], "steady_epoch_s": min(m["epoch_seconds"][1:]),
                      "steps_per_epoch": steps, "train_samples": m["samples"]["train"],
                      "test_auc": round(m["test_auc"], 4), "syncs_in_run": n_sync,
                      "syncs_per_epoch_upper": round(n_sync / len(m["epoch_seconds"]), 1),
                      "run_seconds_with_eval": round(total, 2), "target_epoch_s": 0.5}))
PYEOF
json step epoch rc "$?"
