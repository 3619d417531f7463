#!/usr/bin/env bash
# Every results file the README and MODELS.md quote, measured again (one after the other, on an
# otherwise idle machine): `bash benchmarks/recipes.sh`, then `python -m benchmarks.readme`.
set -euo pipefail
cd "$(dirname "$0")/.."
R=benchmarks/results
engine benchmark --mode compute,e2e --batch 1,8,32 --count 48 --vs torch:fp32/ort:fp32 \
  --json $R/cpu-2core-amd-epyc.json --markdown $R/cpu-2core-amd-epyc.md --plot $R/cpu-2core-amd-epyc.png
engine benchmark --precision fp32,int8 --batch 1,8,32 --vs ort:int8/ort:fp32 \
  --json $R/cpu-2core-amd-epyc-int8.json --markdown $R/cpu-2core-amd-epyc-int8.md
for model in effunet-general vivid-general seed-general; do
  engine benchmark --mode e2e --model $model --batch 1,8,32 --count 32 --no-matmul-peak \
    --json $R/memory-$model.json
done
python -m benchmarks.large_image
python -m benchmarks.soak --files 2000
python -m benchmarks.ray_scaling                  # needs the [ray] extra
python -m benchmarks.test_command                 # the README's test command, fresh venv
python -m benchmarks.third_party_images           # Pillow's test images (pip download)
# Validation evals (need ../shared/data, the training photos):
if [ -d ../shared/data/extra ]; then
  engine models --make effunet-general --precision int8
  int8=$(ls ~/.cache/colorization-engine/variants/effunet-general-*-int8.onnx | head -1)
  E=trainer/checkpoints/eval
  trainer eval engine/models/effunet-general.onnx ../shared/data/train ../shared/data/extra \
    --boost none --summary-only --json $E/effunet-general-fp32-onnx-noboost.json
  trainer eval "$int8" ../shared/data/train ../shared/data/extra \
    --boost none --summary-only --json $E/effunet-general-int8-noboost.json
fi
