#!/usr/bin/env bash
# How the shipped `seed` checkpoints were trained (on one GPU; every phase also runs on a CPU,
# about 150x slower). The paper's recipe: U-Net of Table I, MSE, Adam, batch 32, 256x256 crops.
#   1. general-lr1e-3  all photos, lr 1e-3 (the paper's), 2.8 min; best epoch by validation loss
#   2. general-lr1e-4  from 1, lr 1e-4, 0.8 min; best epoch by validation loss
#   3. general         from 2, lr 1e-4 cosine-decayed over 22 epochs; the final weights are shipped
#   4. landscape, people  from 3, fine-tuned on their category, lr 5e-5 cosine over 10 epochs; final
# Usage: trainer/recipes/seed_models.sh DATA_DIR RUNS_DIR [OUT_DIR]
#   DATA_DIR: photos in {general,landscape,people}/ (see `trainer fetch-data`)
#   START_AT=3 with GENERAL_INIT=path skips phases 1-2 (used for the second GPU session).
set -uo pipefail
data=$1; runs=$2; out=${3:-$runs/final}
py=${PYTHON:-python3}
start=${START_AT:-1}
mkdir -p "$runs" "$out"
common=(--size 256 --batch-size 32 --val-fraction 0.15 --cache-max-side 512
        --loader-threads "${LOADER_THREADS:-14}" --checkpoint-minutes 1 ${TRAIN_EXTRA:-})
phase() {  # name, shipped (best|last), extra args...
  local name=$1 ship=$2; shift 2
  echo "=== $name $(date -u +%T)"
  "$py" -m trainer train "$data" -o "$runs/$name" "${common[@]}" "$@" 2>&1 | grep -v '━' \
      | tee "$runs/$name.log"
  "$py" -m trainer strip "$runs/$name/$ship.safetensors" "$out/$name.safetensors" || true
}
if [ "$start" -le 1 ]; then
  phase general-lr1e-3 best --lr 1e-3 --label general --epochs 500 --epoch-size 4096 --max-minutes 2.8
  phase general-lr1e-4 best --lr 1e-4 --label general --epochs 500 --epoch-size 4096 --max-minutes 0.8 \
      --init "$runs/general-lr1e-3/best.safetensors"
fi
general_init=${GENERAL_INIT:-$runs/general-lr1e-4/best.safetensors}
phase general last --lr 1e-4 --lr-schedule cosine --label general --epochs 22 --epoch-size 4096 \
    --max-minutes 3 --init "$general_init"
for category in landscape people; do
  phase "$category" last --lr 5e-5 --lr-schedule cosine -c "$category" --epochs 10 --epoch-size 2048 \
      --max-minutes 0.8 --init "$runs/general/last.safetensors"
done
