"""The docs name every command and every option (sqlite-utils' test_docs.py, for this CLI).

README.md and docs/*.md together must mention each command as it is typed (``sesam models fetch``
as ``models fetch``) and each of its long options (``--cache-dir``; both spellings of an on/off flag).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from commands import option_names, walk_commands

ROOT = Path(__file__).resolve().parent.parent
DOCS = "\n".join(path.read_text(encoding="utf-8") for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))])
COMMANDS = [(path, command) for path, command in walk_commands() if path]


def _mentioned(text: str) -> bool:
    return re.search(rf"(?<![\w-]){re.escape(text)}(?![\w-])", DOCS) is not None


@pytest.mark.parametrize("path", [path for path, _command in COMMANDS], ids=" ".join)
def test_every_command_is_documented(path):
    assert _mentioned(" ".join(path)), f"no doc mentions `sesam {' '.join(path)}`"


@pytest.mark.parametrize("path, command", [(path, command) for path, command in walk_commands()],
                         ids=lambda value: " ".join(value) if isinstance(value, tuple) else "")
def test_every_option_is_documented(path, command):
    missing = [name for name in option_names(command) if not _mentioned(name)]
    assert not missing, f"`sesam {' '.join(path)}`: no doc mentions {', '.join(missing)}"


def test_the_walk_sees_subcommands_and_flags():
    paths = {path for path, _command in COMMANDS}
    assert {("models", "fetch"), ("cam", "train"), ("select",)} <= paths
    assert "--single" in option_names(dict(COMMANDS)[("sam-predict",)])
