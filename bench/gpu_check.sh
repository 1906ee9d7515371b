#!/usr/bin/env bash
# The GPU measurements of docs/performance.md in one run of under 8 minutes on one H100/H200 class
# card. From the repository root:   bash bench/gpu_check.sh
# Writes bench/results.json entries under the card's name (earlier entries stay):
#   train_cmdsprites_sa_{fp32,bf16}, train_coco_dinosaur_{fp32,bf16}  trainer vs eager fp32 baseline
#   data_wait_cmdsprites_sa, data_wait_coco_dinosaur                 fraction of step time waiting for data
#   learning_curve_cmdsprites_sa                                     paper-scale FG-ARI curve (fp32)
# and bench/profile-<card>.txt, the kernel-family table of the fp32 and bf16 SA/ColoredMDSprites step.
# Each stage has a time limit; a stage that hits it loses only its own entries.
set -uo pipefail
cd "$(dirname "$0")/.."
BUDGET=${BUDGET:-470}                                  # seconds for everything
export SLOTCOV_BENCH_DIR=${SLOTCOV_BENCH_DIR:-/tmp}    # a local disk: the data-wait benchmark reads from it
CARD=$(python -c "import torch; print(torch.cuda.get_device_name())") || exit 1
echo "card: $CARD"
stage() { echo "== $1 (at ${SECONDS}s)"; }

# the replica for the learning curve renders on the CPU cores while the GPU benchmarks run
python bench/learning_curve.py --prepare-only > "$SLOTCOV_BENCH_DIR/curve-prep.log" 2>&1 &
PREP=$!

# one model family per call: a timeout loses only that family (each call compiles its variants once)
stage "training SA / ColoredMDSprites: fp32 and bf16 vs the eager fp32 baseline, 3 interleaved repeats"
timeout 110 python bench/run.py --device cuda --repeats 3 --only train_cmdsprites_sa --note "bench/gpu_check.sh" \
    || echo "SA training benchmark: failed or timed out (exit $?)"
stage "training DINOSAUR: fp32 and bf16 vs the eager fp32 baseline, 3 interleaved repeats"
timeout 90 python bench/run.py --device cuda --repeats 3 --only train_coco_dinosaur --note "bench/gpu_check.sh" \
    || echo "DINOSAUR training benchmark: failed or timed out (exit $?)"

stage "data wait, both model families (store on $SLOTCOV_BENCH_DIR)"
timeout 60 python bench/run.py --device cuda --repeats 2 --only data_wait_cmdsprites_sa data_wait_coco_dinosaur \
    --note "bench/gpu_check.sh" || echo "data-wait benchmarks: failed or timed out (exit $?)"

stage "kernel table of the SA / ColoredMDSprites step"
PROFILE="bench/profile-$(echo "$CARD" | tr ' /' '__').txt"
{ timeout 25 python bench/profile_step.py cmdsprites/sa --amp fp32 --steps 10
  timeout 25 python bench/profile_step.py cmdsprites/sa --amp bf16 --steps 10; } > "$PROFILE" 2>&1
grep -v -e USDT -e "^ERROR" "$PROFILE" | head -30

stage "paper-scale learning curve of cmdsprites/sa (fp32)"
wait $PREP || { echo "replica preparation failed:"; tail -5 "$SLOTCOV_BENCH_DIR/curve-prep.log"; exit 1; }
LEFT=$(( BUDGET - SECONDS - 30 ))                      # 30 s for the last evaluations and the write
MINUTES=$(python -c "print(max(0.5, min(5.0, $LEFT / 60 * 0.85)))")
echo "training for $MINUTES minutes"
python bench/learning_curve.py --minutes "$MINUTES" --every 2000
echo "== done in ${SECONDS}s; commit bench/results.json and $PROFILE, and add the curve to docs/demo-tuning.md"
