"""Records: one dict per image naming its photo and the artifacts made for it so far, by key.

``{"id": "2007_000032", "image": "data/JPEGImages/2007_000032.jpg", "weak": "work/weak/2007_000032.png"}``;
the CLI streams them as JSON lines (``sesam_cli.stream``), the library's per-image functions read them.
"""

from __future__ import annotations

from typing import Any, Mapping

from .errors import SesamInputError

Record = dict[str, Any]

KEY_SOURCES = {
    "image": "pass --images DIR (photos paired by file stem)",
    "gt": "start the chain with `sesam records --images DIR --key gt=DIR`",
    "gt_instances": "pass --instances DIR, or `sesam records --key gt_instances=DIR`",
    "weak": "run `sesam simulate` first, or give weak-label files as arguments",
    "components": "run `sesam decompose` first",
    "prompts": "run `sesam sample-prompts` first",
    "masks": "run `sesam sam-predict` first",
    "pseudo": "run `sesam select` first",
    "prediction": "run `sesam refine --predict-only` first",
    "cam": "give each record a CAM pseudo-label PNG under 'cam'",
}
"""How a record gets each key, for the error that names a missing one."""


def require(record: Mapping[str, Any], *keys: str, hint: str | None = None) -> None:
    """Raise SesamInputError if ``record`` lacks any of ``keys``, saying how to get the first missing
    one (``hint``, else ``KEY_SOURCES``)."""
    missing = [k for k in keys if not record.get(k)]
    if missing:
        how = hint or KEY_SOURCES.get(missing[0], "run the stage that makes it first")
        raise SesamInputError(None, f"record '{record.get('id')}' has no {', '.join(repr(k) for k in missing)}; {how}")
