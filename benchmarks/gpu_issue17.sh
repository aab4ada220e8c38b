#!/usr/bin/env bash
# The prepared GPU check of issue 17 (one short run on a lent GPU machine; never part of the tests):
# `genrep train ddgm` at the FashionMNIST paper size (thesis Table 5.9.4: T = 500, UNet 64 channels ×
# (1, 2, 2), 3 res blocks, dropout 0.3, batch 128, Adam 1e-4) for STEPS steps in bf16-mixed and in 32-true,
# then `genrep sample` of N images with DDIM 50 steps, sharded. Prints steps/s and images/s as JSON lines.
#
#   STEPS=300 N=1000 ACCELERATOR=cuda bash benchmarks/gpu_issue17.sh [OUT]
#   STEPS=2 N=8 ACCELERATOR=cpu DATASET=digits bash benchmarks/gpu_issue17.sh /tmp/gpu17   # a dry run (2 min)
set -euo pipefail
OUT=${1:-/tmp/gpu_issue17}
STEPS=${STEPS:-300}
N=${N:-1000}
ACCELERATOR=${ACCELERATOR:-cuda}
PY=${PY:-python}
DATASET=${DATASET:-fashion_mnist}
mkdir -p "$OUT"
PAPER=(--dataset "$DATASET" --set model.steps=500 --set model.unet.model_channels=64
       --set 'model.unet.channel_mult=[1,2,2]' --set model.unet.num_res_blocks=3 --set model.unet.dropout=0.3
       --batch-size 128 --lr 1e-4 --set train.log_every=50 --set train.checkpoint_every=0 --no-progress)
for precision in bf16-mixed 32-true; do
  run="$OUT/ddgm-$precision"
  $PY -m genrep train ddgm "${PAPER[@]}" --steps "$STEPS" --precision "$precision" --accelerator "$ACCELERATOR" \
      --out "$run" --overwrite > "$run.log" 2>&1 || { tail -20 "$run.log"; exit 1; }
  $PY - "$run" "$precision" <<'EOF'
import json, sys
rows = [json.loads(line) for line in open(f"{sys.argv[1]}/metrics.jsonl") if '"images_per_s"' in line]
steady = rows[1:] or rows  # the first window holds the warm-up (cuDNN autotune, allocator)
ips = sum(r["images_per_s"] for r in steady) / len(steady)
print(json.dumps({"train": sys.argv[2], "steps": rows[-1]["step"], "images_per_s": round(ips, 1),
                  "steps_per_s": round(ips / 128, 2)}))
EOF
done
start=$(date +%s.%N)
$PY -m genrep sample "$OUT/ddgm-bf16-mixed" -n "$N" --shard-size 250 --out "$OUT/samples" --accelerator "$ACCELERATOR" \
    --set model.sampler=ddim --set model.sample_steps=50 --no-progress
end=$(date +%s.%N)
$PY -c "import json; print(json.dumps({'sample': 'ddim-50', 'n': $N, 'wall_s': round($end - $start, 2), 'images_per_s': round($N / ($end - $start), 1)}))"
