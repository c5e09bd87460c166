"""sesam's library: one module per stage, plain functions on numpy arrays, no click.

Coordinates follow SAM throughout: points are (x, y) in pixels of the original image, boxes are
XYXY, arrays are indexed [row, col] = [y, x]. Label maps are uint8 (H, W) class indices with 255 =
ignore / unlabelled.
"""

__version__ = "0.1.0"

IGNORE_INDEX = 255
