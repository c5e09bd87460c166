#!/usr/bin/env bash
# The CamVid label-source experiment (benchmarks/experiment_camvid.py) on a GPU machine, as one command.
#
# Prepare once where the working tree leaves from:   bash benchmarks/pack_for_gpu.sh
# Then on the GPU machine, in the repository root:     bash benchmarks/gpu_experiment.sh
#   (with the device tool: command "bash benchmarks/gpu_experiment.sh", carry [".gpu"], timeout 600)
#
# It needs only what .gpu/ holds (CamVid, the SAM model, the MobileNetV2 backbone) and a Python with
# torch, torchvision and sesam's other dependencies (python3 there; the working tree is put on
# PYTHONPATH, nothing is installed). Results go to $OUT (the device tool's folder; default gpu-out/):
# camvid.md (the tables), camvid.json (per seed, timings, commands), runs.jsonl (each finished run, as
# it finishes: what a run cut short by the time limit still returns), camvid.log (every command's
# stderr) and gpu.txt (the card).
#
# A dry run on a CPU: EXPERIMENT_ARGS="--tiny --seeds 0" PYTHON=.venv/bin/python bash benchmarks/gpu_experiment.sh
# Settings, as environment variables: KINDS (scribbles), SEEDS (0,1,2), ITERATIONS (train's CUDA
# default), TRAIN_ARGS, SAM_ARGS (more sam-predict options, e.g. the GPU SAM's), REFINE_ARGS (more
# refine options; default: SAM_ARGS), EXPERIMENT_ARGS (more experiment_camvid.py options), WORK.
set -euo pipefail
cd "$(dirname "$0")/.."
PACK=$PWD/.gpu
OUT=${OUT:-$PWD/gpu-out}
PYTHON=${PYTHON:-python3}
mkdir -p "$OUT"
[ -d "$PACK/camvid" ] || { echo "no $PACK/camvid: run benchmarks/pack_for_gpu.sh first and carry .gpu" >&2; exit 1; }
export SESAM_HOME=$PACK/sesam_home PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || echo "no nvidia-smi"; } | tee "$OUT/gpu.txt"
"$PYTHON" -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision', torchvision.__version__, 'cuda', torch.cuda.is_available())" | tee -a "$OUT/gpu.txt"

args=(--data "$PACK/camvid" --work "${WORK:-/tmp/sesam-camvid}" --kinds "${KINDS:-scribbles}" --seeds "${SEEDS:-0,1,2}"
      --train-args "--backbone-weights $PACK/mobilenet_v2-fp16.pth ${TRAIN_ARGS:-}" --sam-args "${SAM_ARGS:-}"
      --runs-log "$OUT/runs.jsonl" --json "$OUT/camvid.json")
[ -n "${ITERATIONS:-}" ] && args+=(--iterations "$ITERATIONS")
[ -n "${REFINE_ARGS+set}" ] && args+=(--refine-args "$REFINE_ARGS")
# shellcheck disable=SC2086
"$PYTHON" benchmarks/experiment_camvid.py "${args[@]}" ${EXPERIMENT_ARGS:-} 2> >(tee "$OUT/camvid.log" >&2) \
    | tee "$OUT/camvid.md"
