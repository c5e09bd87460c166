"""The group: every command has help text with an example, --version, and a clean no-input error."""

from __future__ import annotations

import subprocess
import sys

import click
import pytest
from click.testing import CliRunner

from commands import walk_commands
from sesam_cli.main import COMMANDS
from sesam_cli.options import handle_errors
from stages import __version__
from stages.errors import SesamUsageError, StageFailed, StageInterrupted


@pytest.mark.parametrize("path", [path for path, _command in walk_commands() if path], ids=" ".join)
def test_every_command_has_help_with_an_example(sesam, path):
    """Every command and subcommand (``models fetch``, ``cam train``, ...)."""
    command = " ".join(path)
    result = sesam(*path, "--help")
    assert "Example" in result.stdout, f"sesam {command} --help shows no example"
    assert f"sesam {command}" in result.stdout.split("Example", 1)[1]


def test_group_help_lists_every_command_and_version(sesam):
    help_text = sesam("--help").stdout
    assert all(name in help_text for name in COMMANDS)
    assert __version__ in sesam("--version").stdout


def test_help_does_not_import_torch_or_onnxruntime():
    code = ("import sys; from click.testing import CliRunner; from sesam_cli.main import cli; "
            "CliRunner().invoke(cli, ['--help']); "
            "print(sorted(m for m in ('torch', 'onnxruntime', 'segment_anything') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


COMPUTING = [("train",), ("refine",), ("sam-predict",), ("embed",), ("cam", "train"), ("cam", "predict")]


@pytest.mark.parametrize("command", COMPUTING, ids=" ".join)
def test_device_is_one_kind_of_option_everywhere(sesam, command):
    assert "--device auto|cpu|cuda|cuda:N" in sesam(*command, "--help").stdout
    result = sesam(*command, "--device", "gpu0", expect=2)
    assert "'gpu0' is no device: use auto, cpu, cuda, cuda:N" in result.stderr


@pytest.mark.parametrize("command", ["refine", "sam-predict", "embed"])
def test_the_sam_checkpoint_is_sam_checkpoint_everywhere(sesam, command):
    assert "--sam-checkpoint FILE" in sesam(command, "--help").stdout


def test_a_gpu_index_reaches_the_sam_backends(sesam, tmp_path):
    """cuda:N is accepted by every backend; without that GPU each says so, naming the device."""
    import onnxruntime
    import torch

    if torch.cuda.is_available() or "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this machine can use a GPU: the refusal cannot be observed")
    for backend, problem in (("onnx", "this onnxruntime has no CUDA provider"),
                             ("torch", "no CUDA device is available to PyTorch here")):
        result = sesam("embed", "--device", "cuda:1", "--backend", backend, tmp_path, expect=1)
        assert f"--device cuda:1: {problem}" in result.stderr


def _raising(error: Exception) -> click.Command:
    @click.command()
    @handle_errors
    def command() -> None:
        raise error
    return command


def test_library_errors_become_click_errors_and_exit_statuses():
    """A usage error exits 2 (naming its option), a failed stage 1 with its line, Ctrl-C in a stage 130."""
    runner = CliRunner()
    result = runner.invoke(_raising(SesamUsageError("x: no such directory", "--images")))
    assert result.exit_code == 2 and "Invalid value for --images: x: no such directory" in result.output
    result = runner.invoke(_raising(SesamUsageError("no input: give files", bad_value=False)))
    assert result.exit_code == 2 and "Error: no input: give files" in result.output
    assert "Invalid value" not in result.output
    result = runner.invoke(_raising(StageFailed("unit: 2 image(s) failed (see above)")))
    assert result.exit_code == 1 and "Error: unit: 2 image(s) failed (see above)" in result.output
    assert runner.invoke(_raising(StageInterrupted("unit"))).exit_code == 130
