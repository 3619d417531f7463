#!/usr/bin/env bash
# How the shipped `seed` checkpoints were trained: the paper's recipe (U-Net of Table I, MSE,
# Adam lr 1e-3, batch 32, 256x256 crops) for a fixed time budget on one GPU, then 1e-4 to settle;
# the landscape and people models start from the general one and are fine-tuned on their category.
# Usage: trainer/recipes/seed_models.sh DATA_DIR RUNS_DIR [OUT_DIR]
#   DATA_DIR: photos in {general,landscape,people}/ (see `trainer fetch-data`)
#   MINUTES_SCALE: multiply every phase's time budget (default 1; the budgets below are for a GPU)
set -uo pipefail
data=$1; runs=$2; out=${3:-$runs/final}
scale=${MINUTES_SCALE:-1}
extra=${TRAIN_EXTRA:-}
mkdir -p "$runs" "$out"
py=${PYTHON:-python3}
m() { "$py" -c "print($1 * $scale)"; }
common=(--size 256 --batch-size 32 --epoch-size 4096 --epochs 500 --val-fraction 0.15
        --cache-max-side 512 --loader-threads "${LOADER_THREADS:-8}" --checkpoint-minutes 1 $extra)
phase() {  # name, minutes, extra args...
  local name=$1 minutes; minutes=$(m "$2"); shift 2
  echo "=== $name ($minutes min) $(date -u +%T)"
  "$py" -m trainer train "$data" -o "$runs/$name" "${common[@]}" --max-minutes "$minutes" "$@" \
      2>&1 | grep -v '━' | tee "$runs/$name.log"
  cp "$runs/$name/best.safetensors" "$out/$name.safetensors" 2>/dev/null || true
}
phase general-lr1e-3 2.8 --lr 1e-3 --label general
phase general 0.8 --lr 1e-4 --label general --init "$runs/general-lr1e-3/best.safetensors"
phase landscape 0.6 --lr 1e-4 -c landscape --init "$runs/general/best.safetensors"
phase people 0.6 --lr 1e-4 -c people --init "$runs/general/best.safetensors"
