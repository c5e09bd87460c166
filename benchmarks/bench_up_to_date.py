"""Cost of the up-to-date check: what a rerun pays per image to skip it (``stages.io.artifacts.is_current``).

The check reads the artifact's stored provenance and compares the identity of every input file the
record names: the sha256 of files up to 64 MiB, size and mtime above. This measures, per record, on
records shaped like a CamVid ``sample-prompts`` input (a 480x360 photo as PNG, its ground truth and
weak label PNGs, the components HDF5):

1. reading the stored provenance (the part an mtime-only check also paid);
2. the input identities (hashing the four files, no process memo);
3. the whole ``is_current``.

Times are CPU time of this process (``time.process_time``), so other work on a shared machine does
not count.

Usage: .venv/bin/python benchmarks/bench_up_to_date.py [--images 100]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np
from PIL import Image

from stages.io.artifacts import _sha256, input_identities, is_current, provenance, stored_provenance, write_h5
from stages.decompose import decompose
from stages.io.components import write_components
from stages.io.images import write_label
from stages.presets import get_preset

HEIGHT, WIDTH = 360, 480


def make_records(root: str, count: int) -> list[dict]:
    """``count`` records with real files on disk, and a finished artifact for each."""
    preset = get_preset("camvid")
    rng = np.random.default_rng(0)
    records = []
    for index in range(count):
        image_id = f"img{index:04d}"
        paths = {key: os.path.join(root, key, f"{image_id}.png") for key in ("image", "gt", "weak")}
        for path in paths.values():
            os.makedirs(os.path.dirname(path), exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)).save(paths["image"])
        gt = np.kron(rng.integers(0, 11, (HEIGHT // 40, WIDTH // 40)), np.ones((40, 40), int)).astype(np.uint8)
        write_label(paths["gt"], gt, preset)
        weak = np.where(rng.random(gt.shape) < 0.03, gt, 255).astype(np.uint8)
        write_label(paths["weak"], weak, preset)
        record = {"id": image_id, **paths}
        components = os.path.join(root, "components", f"{image_id}.h5")
        write_components(components, decompose(weak), provenance("decompose", {}, record))
        record["components"] = components
        artifact = os.path.join(root, "prompts", f"{image_id}.h5")
        write_h5(artifact, {"x": np.zeros(1)}, provenance("sample-prompts", {"p": 1}, record))
        records.append({**record, "prompts": artifact})
    return records


def per_record_ms(step, records: list[dict]) -> float:
    _sha256.cache_clear()
    start = time.process_time()
    for record in records:
        step(record)
    return 1000 * (time.process_time() - start) / len(records)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=100)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as root:
        records = make_records(root, args.images)
        size = sum(os.path.getsize(record[key]) for record in records
                   for key in ("image", "gt", "weak", "components")) / len(records)
        provenance_ms = per_record_ms(lambda r: stored_provenance(r["prompts"]), records)
        identities_ms = per_record_ms(lambda r: input_identities(r, exclude=("prompts",)), records)
        current = []
        check_ms = per_record_ms(lambda r: current.append(
            is_current(r["prompts"], "sample-prompts", {"p": 1}, r, exclude=("prompts",))), records)
    assert all(current)
    print(f"{args.images} records, {size / 1e3:.0f} kB of input files each (480x360 photo PNG, gt, weak, components)")
    print("| step | CPU ms per record |\n|---|---:|")
    print(f"| read the stored provenance | {provenance_ms:.2f} |")
    print(f"| input identities (sha256 of 4 files) | {identities_ms:.2f} |")
    print(f"| whole is_current | {check_ms:.2f} |")
    print(f"hashing throughput: {size / 1e6 / (identities_ms / 1000):.0f} MB/s")


if __name__ == "__main__":
    main()
