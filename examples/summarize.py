"""Print the demo's quality table (Markdown) from the JSON reports ``sesam evaluate`` wrote.

Usage: python examples/summarize.py OUT    (OUT is the folder examples/run_demo.sh filled)
"""

import json
import os
import sys

KINDS = ("points", "scribbles", "coarse", "boxes")


def miou(path: str) -> str:
    """The mIoU of a report in percent, or '-' where the report does not exist (boxes have no weak map)."""
    if not os.path.exists(path):
        return "-"
    with open(path) as handle:
        return f"{100 * json.load(handle)['miou']:.1f}"


def teacher_line(metrics_path: str) -> str:
    """How the CT network's third source, its EMA teacher, came in: the first iteration where the
    teacher's confident share of the pixels was above 0, and the share at the end."""
    if not os.path.exists(metrics_path):
        return ""
    with open(metrics_path) as handle:
        steps = [entry for entry in map(json.loads, handle) if "confident_fraction" in entry]
    if not steps:
        return ""
    confident = [entry["iteration"] for entry in steps if entry["confident_fraction"] > 0]
    start = f"from iteration {confident[0]}" if confident else "never"
    return (f"\nThe network trained on all three sources: weak labels, SAM pseudo-labels and its EMA teacher's "
            f"confident predictions (above zero {start}; {100 * steps[-1]['confident_fraction']:.0f}% of the "
            f"pixels at iteration {steps[-1]['iteration']}).")


def main(out: str) -> None:
    print("## sesam demo: pseudo-label quality on the example photos (mIoU %)\n")
    print("| photo | weak labels | weak label alone | SeSAM pseudo-label |\n|---|---|---:|---:|")
    for dataset in ("voc", "arc2017"):
        for kind in KINDS:
            work = os.path.join(out, "photos", dataset, kind)
            print(f"| {dataset} | {kind} | {miou(os.path.join(work, 'weak.json'))} "
                  f"| {miou(os.path.join(work, 'pseudo.json'))} |")
    ct = os.path.join(out, "ct")
    print("\n## sesam demo: CT slices, scribbles -> SAM -> network -> refine (mIoU %)\n")
    print("| labels | mIoU |\n|---|---:|")
    print(f"| train part: scribbles alone | {miou(os.path.join(ct, 'weak.json'))} |")
    print(f"| train part: SAM pseudo-labels (select) | {miou(os.path.join(ct, 'pseudo.json'))} |")
    print(f"| train part: after one refine round | {miou(os.path.join(ct, 'refined.json'))} |")
    print(f"| held-out part: network predictions | {miou(os.path.join(ct, 'heldout.json'))} |")
    print(teacher_line(os.path.join(ct, "train", "metrics.jsonl")))
    print(f"\nPictures of every step: {out}/photos/*/*/show/ and {out}/ct/show/")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
