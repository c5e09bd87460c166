"""The group: every command has help text with an example, --version, and a clean no-input error."""

from __future__ import annotations

import subprocess
import sys

import pytest

from commands import walk_commands
from sesam_cli.main import COMMANDS
from stages import __version__


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
