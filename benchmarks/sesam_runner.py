"""Running sesam commands from the benchmark scripts: records from and to files, every command line logged.

``SESAM`` is the ``sesam`` console script beside this Python, or ``python -c 'from sesam_cli.main
import cli; cli()'`` where none is installed (a machine that runs the working tree from ``PYTHONPATH``).
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import subprocess
import sys

_SCRIPT = os.path.join(os.path.dirname(sys.executable), "sesam")
SESAM = [_SCRIPT] if os.path.exists(_SCRIPT) else [sys.executable, "-c", "from sesam_cli.main import cli; cli(prog_name='sesam')"]


def write_records(path: str, records: list[dict]) -> str:
    """Write records as JSON lines to ``path``; returns it."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        handle.writelines(json.dumps(record) + "\n" for record in records)
    return path


def read_records(path: str) -> list[dict]:
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


class Runner:
    """Runs sesam commands with records from/to files; ``log`` keeps each command line (also on stderr)."""

    def __init__(self, env: dict[str, str] | None = None):
        self.log: list[str] = []
        self.env = env

    def line(self, args: tuple[str, ...], stdin: str | None, stdout: str | None) -> str:
        text = "sesam " + " ".join(shlex.quote(str(a)) for a in args)
        return text + (f" < {stdin}" if stdin else "") + (f" > {stdout}" if stdout else "")

    def start(self, *args: str, stdin: str | None = None, stdout: str | None = None,
              stderr: str | None = None) -> subprocess.Popen:
        """Start one command (stderr to the file ``stderr``, else inherited); the caller waits for it."""
        line = self.line(args, stdin, stdout)
        print(f"$ {line}" + (f"  (log: {stderr})" if stderr else ""), file=sys.stderr, flush=True)
        self.log.append(line)
        if stdout:
            os.makedirs(os.path.dirname(os.path.abspath(stdout)), exist_ok=True)
        with contextlib.ExitStack() as files:
            source = files.enter_context(open(stdin) if stdin else open(os.devnull))
            sink = files.enter_context(open(stdout, "w") if stdout else open(os.devnull, "w"))
            errors = files.enter_context(open(stderr, "w")) if stderr else None
            return subprocess.Popen([*SESAM, *map(str, args)], stdin=source, stdout=sink, stderr=errors, env=self.env)

    def __call__(self, *args: str, stdin: str | None = None, stdout: str | None = None) -> None:
        """Run one command to its end; a failure raises CalledProcessError."""
        process = self.start(*args, stdin=stdin, stdout=stdout)
        if process.wait() != 0:
            raise subprocess.CalledProcessError(process.returncode, self.line(args, stdin, stdout))

    def score(self, records: str, key: str, report: str, classes: str) -> dict:
        """``sesam evaluate`` of the label maps under ``key`` against each record's gt; the JSON report."""
        os.makedirs(os.path.dirname(report), exist_ok=True)
        self("evaluate", "--classes", classes, "--key", key, "--gt-key", "gt", "--json", report, stdin=records)
        with open(report) as handle:
            return json.load(handle)
