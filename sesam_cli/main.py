"""The ``sesam`` click group: logging flags, version, and lazily loaded commands.

Commands are imported only when invoked, so ``sesam --help`` and the light stages start fast even
though SAM and training pull in onnxruntime and torch.
"""

from __future__ import annotations

import importlib

import click

from stages import __version__

COMMANDS = {
    "records": "sesam_cli.records:records",
    "simulate": "sesam_cli.simulate:simulate",
    "decompose": "sesam_cli.decompose:decompose",
    "sample-prompts": "sesam_cli.sample_prompts:sample_prompts",
    "show": "sesam_cli.show:show",
    "models": "sesam_cli.models:models",
    "embed": "sesam_cli.embed:embed",
    "sam-predict": "sesam_cli.sam_predict:sam_predict",
    "select": "sesam_cli.select:select",
    "evaluate": "sesam_cli.evaluate:evaluate",
    "train": "sesam_cli.train:train",
    "refine": "sesam_cli.refine:refine",
    "cam": "sesam_cli.cam:cam",
}


class LazyGroup(click.Group):
    """A click group whose subcommands are imported from ``COMMANDS`` on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        target = COMMANDS.get(name)
        if target is None:
            return None
        module_name, attr = target.split(":")
        return getattr(importlib.import_module(module_name), attr)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="sesam")
@click.option("-v", "--verbose", count=True, help="More log output on stderr; -v also shows tracebacks.")
@click.option("-q", "--quiet", is_flag=True, help="Only errors on stderr, no progress bars.")
@click.pass_context
def cli(ctx: click.Context, verbose: int, quiet: bool) -> None:
    """Weak labels to dense semantic segmentation with the Segment Anything Model.

    Commands read newline-delimited JSON records on stdin (one per image) and write them on stdout,
    so they chain in shell pipes; logs and progress bars go to stderr.

    \b
    Example:
      sesam simulate --kind scribbles --images data/JPEGImages -o work/weak data/SegmentationClass \\
        | sesam decompose -o work/components \\
        | sesam sample-prompts -o work/prompts \\
        | sesam sam-predict -o work/masks \\
        | sesam select -o work/pseudo > work/pseudo.jsonl
    """
    from stages.progress import configure_logging  # tqdm stays out of `sesam --help`

    configure_logging(verbose, quiet)
    ctx.obj = {"verbose": verbose, "quiet": quiet}
