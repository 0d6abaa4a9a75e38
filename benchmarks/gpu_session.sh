#!/usr/bin/env bash
# One prepared run on a lent GPU machine (see benchmarks/README.md for its output).
# Usage, from the repo root there:  bash benchmarks/gpu_session.sh [DATA_DIR]
# Needs: python3 with CUDA torch; polars wheels in .whl/ when polars is not installed there.
set -uo pipefail
DATA=${1:-.devdata/ml-1m-u2999}
OUT=${OUT:-/tmp/gpu-out}
mkdir -p "$OUT/repro"
if ! python3 -c "import polars" 2>/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="${PYTHONPATH:+$PYTHONPATH:}$PWD" PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
echo "== CUDA tests"
python3 -m pytest -q -p no:cacheprovider tests/test_cuda.py tests/test_model.py tests/test_train.py 2>&1 | tail -4
echo "== epoch time, paper config (d=16, d'=32, H=2, L=3), batch 1024, CUDA"
python3 -m autoint train --data-dir "$DATA" --device cuda --epochs 3 --patience 3 --quiet --out /tmp/gpu-run \
  | tail -1 | tee "$OUT/train_cuda.json"
echo "== reproduction: tune on validation, then 5 seeds of every experiment"
timeout "${REPRO_TIMEOUT:-400}" python3 benchmarks/reproduce.py --data-dir "$DATA" --seeds 5 --tune --workers 8 \
  --device cuda --out "$OUT/repro" > "$OUT/repro.log" 2>&1
echo "reproduce exit $?"
tail -40 "$OUT/repro.log"
