"""Training a segmentation network on weak labels, SAM pseudo-labels and a mean teacher (SeSAM step 5).

Modules: ``model`` (DeepLabV3 networks), ``augment`` and ``data`` (seed-determined samples),
``loss`` (the three-source loss), ``teacher`` (EMA), ``checkpoint`` (save, load, refuse mismatches),
``distributed`` (torchrun / DDP), ``interrupt`` (SIGINT/SIGTERM), ``loop`` (the ``Trainer``).
This package file imports no torch, so the CLI can list the architectures cheaply.
"""

ARCHITECTURE_NAMES = ("deeplabv3_mobilenet_v2", "deeplabv3_resnet50", "deeplabv3_resnet101")
DEFAULT_ARCHITECTURE = "deeplabv3_mobilenet_v2"
WEIGHTS = ("teacher", "student")
"""A checkpoint's networks: the EMA teacher (the default for predictions) and the student."""
