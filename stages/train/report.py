"""Running a :class:`stages.train.loop.Trainer` for people: progress on stderr, a one-line summary at
the end (train, cam train and refine --rounds all run theirs through :func:`run_with_progress`)."""

from __future__ import annotations

import logging
import signal
from typing import Any

from ..io.atomic import remove_stale_temporaries
from ..progress import format_duration, progress

log = logging.getLogger("sesam")


class TrainingProgress:
    """Training progress on stderr (``stages.progress.progress``: a bar on a terminal, a line every
    $SESAM_PROGRESS_INTERVAL seconds otherwise) with the loss and learning rate. The bar starts at
    the first reported iteration, so that a resumed run's speed and ETA count only its own iterations."""

    def __init__(self, iterations: int):
        self.iterations = iterations
        self.bar = None

    def __call__(self, entry: dict[str, Any]) -> None:
        if "val_miou" in entry:
            log.info("iteration %d: validation mIoU %.4f", entry["iteration"], entry["val_miou"])
            return
        done = entry["iteration"]
        if self.bar is None:
            self.bar = progress(None, "train", total=self.iterations, unit="it", initial=done - 1)
        self.bar.set_postfix(loss=f"{entry['loss']:.4f}", lr=f"{entry['lr']:.2e}", refresh=False)
        self.bar.update(done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def summary(result, iterations: int) -> str:
    """The one-line summary of a finished TrainResult: iterations, time, speed, last loss, the teacher's
    confident share (when its term is on) and val mIoU."""
    if result.iteration == result.start:
        return f"train: nothing to do, {result.checkpoint} holds all {result.iteration} iterations"
    trained = result.iteration - result.start
    span = f"{trained} iterations" if result.start == 0 else f"iterations {result.start + 1}-{result.iteration}"
    line = f"train: {span} of {iterations} in {format_duration(result.seconds)} ({trained / result.seconds:.2f} it/s)"
    if result.last is not None:
        line += f", last loss {result.last['loss']:.4f}"
        if "confident_fraction" in result.last:
            line += f", teacher confident on {100 * result.last['confident_fraction']:.0f}% of the pixels"
    if result.validation is not None:
        line += f", val mIoU {100 * result.validation['val_miou']:.1f}"
    return f"{line} -> {result.checkpoint}"


def run_with_progress(trainer, resume: bool = False, overwrite: bool = False):
    """Run a ``stages.train.loop.Trainer`` with progress on stderr (see TrainingProgress) and a one-line
    summary at the end; returns its TrainResult. A run stopped by SIGINT/SIGTERM (``stopped_by``) logs
    how to resume instead of the summary. Temporaries that a killed run left in the run directory
    (``.iter_N.pt.*.tmp``) are removed first."""
    if trainer.distributed.is_main:
        for path in remove_stale_temporaries(trainer.output_dir):
            log.info("train: removed %s, left behind by a killed run", path)
    report = TrainingProgress(trainer.config.iterations)
    try:
        result = trainer.run(resume=resume, overwrite=overwrite,
                             on_iteration=report if trainer.distributed.is_main else None)
    finally:
        report.close()
    if result.stopped_by is not None:
        log.error("%s at iteration %d: checkpoint %s; continue with the same command and --resume",
                  signal.Signals(result.stopped_by).name, result.iteration, result.checkpoint)
    elif trainer.distributed.is_main:
        log.info("%s", summary(result, trainer.config.iterations))
    return result
