#!/bin/bash
# One task of a SLURM job array: shard K of N of a benchmark's per-image SAM stages, where K is the
# task's id (SLURM_ARRAY_TASK_ID; arrays start at 0) and N the array's size (SLURM_ARRAY_TASK_COUNT),
# so --array=0-15 splits the images 16 ways by a hash of their ids. To run some tasks again, give N:
# sbatch --array=5,9 ... SHARDS=16.
#
#   sbatch --array=0-15 pipelines/slurm/sesam_array.sh BENCHMARK DATA TARGET [VARIABLE=value ...]
#
# BENCHMARK: voc, cityscapes or ade20k; DATA: the dataset root; TARGET: shard (the SAM pseudo-labels:
# decompose | sample-prompts | sam-predict | select) or refine-shard (refinement round ROUND, after
# the training of round ROUND-1). Further VARIABLE=value words go to make (WORK, KINDS, CHECKPOINT,
# ...); give every job of a run the same ones. WORK must be on a file system all nodes share. The
# first task to start makes the weak labels and fetches the model under a lock; the others wait for
# it, then find them up to date. Submit from the repository root, or set SESAM_PIPELINES to the
# pipelines/ directory. See pipelines/README.md for the whole chain of jobs.
#
#SBATCH --job-name=sesam-shard
#SBATCH --gres=gpu:1
#SBATCH --cpus-per-task=8
#SBATCH --mem=32G
#SBATCH --time=08:00:00
#SBATCH --output=sesam-shard-%A_%a.log
set -euo pipefail

if [ $# -lt 3 ]; then
    sed -n '2,15s/^# \{0,1\}//p' "$0" >&2
    exit 2
fi
benchmark=$1 data=$2 target=$3
shift 3
# sbatch runs a copy of this script: find pipelines/ from the submission directory (the repository
# root in the README's commands) unless SESAM_PIPELINES names it.
if [ -n "${SESAM_PIPELINES:-}" ]; then
    pipelines=$SESAM_PIPELINES
elif [ -n "${SLURM_SUBMIT_DIR:-}" ]; then
    pipelines=$SLURM_SUBMIT_DIR/pipelines
else
    pipelines=$(cd "$(dirname "$0")/.." && pwd)
fi
shard=${SLURM_ARRAY_TASK_ID:?run this script as a job array: sbatch --array=0-N}
shards=$SLURM_ARRAY_TASK_COUNT

run_make() {
    make -C "$pipelines/$benchmark" DATA="$data" SHARD="$shard" SHARDS="$shards" GPUS=1 "$@"
}

work=$(run_make -s --no-print-directory "$@" print-work)
mkdir -p "$work"
flock "$work/.prepare.lock" make -C "$pipelines/$benchmark" DATA="$data" "$@" weak val model
run_make "$@" "$target"
