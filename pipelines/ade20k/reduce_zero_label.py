"""Write ADE20K annotations as sesam label maps: 0 ("other") becomes 255, class k becomes k-1.

`sesam simulate --reduce-zero-label` reads ADE20K's encoding directly, but `sesam evaluate` and
`sesam train --val` read ground truth as class indices, so the pipeline scores against these copies.
Converts every PNG of SOURCE_DIR into DEST_DIR (palette PNGs of the ade20k preset), skipping
copies newer than their source; a bad file stops it with a message naming the file.

Usage: python reduce_zero_label.py SOURCE_DIR DEST_DIR
"""

from __future__ import annotations

import os
import sys

from stages.errors import SesamInputError
from stages.io.images import read_label, write_label
from stages.presets import get_preset


def reduce_directory(source_dir: str, dest_dir: str) -> int:
    """Convert the PNGs of ``source_dir`` whose copy in ``dest_dir`` is missing or older; how many."""
    preset = get_preset("ade20k")
    names = sorted(name for name in os.listdir(source_dir) if name.lower().endswith(".png"))
    if not names:
        raise SesamInputError(source_dir, "holds no PNG annotations")
    converted = 0
    for name in names:
        source, dest = os.path.join(source_dir, name), os.path.join(dest_dir, name)
        if os.path.exists(dest) and os.path.getmtime(dest) >= os.path.getmtime(source):
            continue
        write_label(dest, read_label(source, preset, reduce_zero_label=True), preset)
        converted += 1
    return converted


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    try:
        count = reduce_directory(*sys.argv[1:])
    except (SesamInputError, OSError) as exc:
        sys.exit(f"reduce_zero_label: {exc}")
    print(f"reduce_zero_label: {count} annotation(s) converted into {sys.argv[2]}", file=sys.stderr)
