#!/usr/bin/env bash
# The tensorization study (docs/results.md, "Tensorization"): well-trained bases on the real
# Fashion-MNIST, the equal-budget comparison of plain truncation (svd), Tucker-2, CP, MPO and
# ADTN, the t3f anchor and the ADTN runs. Every step resumes after a kill; finished steps are
# not recomputed. About 1.5 h on an idle 2-core CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
CA="${CA:-.venv/bin/corranalysis}"
R="${RUNS:-runs/tensorize}"
export OPENBLAS_NUM_THREADS="${OPENBLAS_NUM_THREADS:-1}"  # small matrices: no BLAS spin-waits

# ---- bases (the runtime's defaults: SGD Nesterov lr 0.02, batch 32, cosine, 10 % warm-up)
$CA train -m fc2 -d fashion-mnist -e 8 -o "$R/base_fc2"
$CA train -m lenet5 -d fashion-mnist -e 10 -o "$R/base_lenet5"
$CA train -m cnn4 -d fashion-mnist -e 10 -o "$R/base_cnn4"     # = the default study's model

# ---- one comparison at equal budgets: same loop, optimiser (Adam 1e-3), epochs and data
CMP=(--epochs 2 --train-size 20000)
$CA compare "$R/base_fc2/model.pt" --layers classifier.1 --compressions 2,5,10,50,100 \
    --methods svd,mpo,adtn --adtn-depths 1 "${CMP[@]}" -o "$R/compare_fc2"
$CA compare "$R/base_lenet5/model.pt" --layers classifier.1 --compressions 2,5,10,50,100 \
    --methods svd,mpo,adtn --adtn-depths 1 "${CMP[@]}" -o "$R/compare_lenet5"
$CA compare "$R/base_cnn4/model.pt" --layers 'features.[1-9]*' --compressions 2,5,10 \
    --methods svd,tucker,cp,mpo,adtn --adtn-depths 1 --epochs 1 --train-size 5000 \
    --test-size 2000 -o "$R/compare_cnn4"     # smaller: convolutions cost more on 2 cores

# step and inference time of every variant beside dense, interleaved, one thread
for m in fc2 lenet5 cnn4; do
    .venv/bin/python benchmarks/bench_compare.py "$R/compare_$m" --threads 1
done

# ---- the t3f anchor: fc2's first layer at TT rank 16, two epochs of fine-tuning
$CA tensorize "$R/base_fc2/model.pt" --spec configs/tensorize_fc2_t3f.yaml --epochs 2 \
    --out "$R/fc2_t3f"

# ---- ADTN on both linear layers of fc2, trained on the task loss from the trained rest
$CA tensorize "$R/base_fc2/model.pt" --spec configs/tensorize_fc2_adtn.yaml --epochs 3 \
    --batch-size 128 --lr 0.01 --out "$R/fc2_adtn"
