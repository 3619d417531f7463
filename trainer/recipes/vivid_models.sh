#!/usr/bin/env bash
# How the shipped `vivid-general` checkpoint was trained (on this project's 2-core CPU: no GPU was
# lent to that session). The `vivid` preset is the seed U-Net with a classification head over 222
# in-gamut ab colours (trainer/bins.py), rarity-rebalanced cross-entropy and annealed-mean
# decoding with a per-L gamut mask in the graph. Budget: far below the seed recipe's (CPU), so it
# is fine-tuned from the shipped seed-general weights (trunk kept, new head), 128x128 crops,
# batch 16, lr 3e-4 cosine-decayed over 11 epochs x 2048 crops, at most 80 minutes.
# Usage: trainer/recipes/vivid_models.sh DATA_DIR RUNS_DIR
set -euo pipefail
data=$1; runs=$2
py=${PYTHON:-python3}
"$py" -m trainer train "$data" -o "$runs/vivid-general" --preset vivid --label general \
    --size 128 --batch-size 16 --epochs 11 --epoch-size 2048 --lr 3e-4 --lr-schedule cosine \
    --init trainer/checkpoints/seed-general.safetensors --checkpoint-minutes 5 --max-minutes 80 \
    --threads 2
# shipped: the final weights, no post-boost, inference at 256 like the seed models
"$py" -m trainer strip "$runs/vivid-general/last.safetensors" \
    trainer/checkpoints/vivid-general.safetensors --boost none --input-size 256
# category models: fine-tuned from vivid-general on their category's photos, lr 1e-4 cosine,
# 5 epochs x 1024 crops (about 8 minutes each here), final weights, no boost, inference at 256
for category in landscape people; do
  "$py" -m trainer train "$data" -o "$runs/vivid-$category" --preset vivid -c "$category" \
      --label "$category" --size 128 --batch-size 16 --epochs 5 --epoch-size 1024 --lr 1e-4 \
      --lr-schedule cosine --init "$runs/vivid-general/last.safetensors" --checkpoint-minutes 5 \
      --max-minutes 12 --threads 2
  "$py" -m trainer strip "$runs/vivid-$category/last.safetensors" \
      "trainer/checkpoints/vivid-$category.safetensors" --boost none --input-size 256
done
