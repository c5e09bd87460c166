"""SeSAM's training loss: three cross-entropy terms, each with its own weight (0 switches it off).

``L = λ_weak · CE(student, weak label) + λ_sam · CE(student, SAM pseudo-label)
     + λ_pl · CE(student, teacher's prediction where its confidence ≥ τ)``

The first two average over their labelled pixels (255 = ignore). The teacher term averages over
all non-padding pixels, so it grows with the share of confident pixels (as UniMatch/FixMatch do)
instead of letting a handful of confident pixels weigh as much as a whole image.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .. import IGNORE_INDEX


@dataclass(frozen=True)
class LossWeights:
    """Weights of the three sources (weak labels, SAM pseudo-labels, the teacher's pseudo-labels)
    and the teacher's confidence threshold τ."""

    weak: float = 1.0
    sam: float = 1.0
    pl: float = 1.0
    threshold: float = 0.95

    @property
    def uses_teacher(self) -> bool:
        return self.pl > 0


def masked_cross_entropy(logits: torch.Tensor, target: torch.Tensor,
                         denominator: torch.Tensor | None = None) -> torch.Tensor:
    """Summed pixel cross-entropy over ``target != 255``, divided by ``denominator`` (default: that count).

    logits (N, K, H, W) float; target (N, H, W) int64. An all-ignored target gives 0, not NaN.
    """
    losses = F.cross_entropy(logits.float(), target, ignore_index=IGNORE_INDEX, reduction="sum")
    count = (target != IGNORE_INDEX).sum() if denominator is None else denominator
    return losses / count.clamp(min=1)


def teacher_targets(teacher_logits: torch.Tensor, valid: torch.Tensor, threshold: float,
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """The teacher's arg-max class where its softmax confidence ≥ ``threshold`` and the pixel is real.

    teacher_logits (N, K, H, W); valid (N, H, W) bool. Returns (N, H, W) int64 targets (255
    elsewhere) and the fraction of valid pixels that are confident (a 0-d tensor).
    """
    confidence, label = teacher_logits.float().softmax(dim=1).max(dim=1)
    keep = (confidence >= threshold) & valid
    targets = torch.where(keep, label, torch.full_like(label, IGNORE_INDEX))
    return targets, keep.sum() / valid.sum().clamp(min=1)


def sesam_loss(student_logits: torch.Tensor, weak: torch.Tensor, pseudo: torch.Tensor, valid: torch.Tensor,
               teacher_logits: torch.Tensor | None, weights: LossWeights,
               ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The weighted sum of the enabled terms and each term's unweighted value (plus the confident fraction).

    student_logits (N, K, H, W); weak, pseudo (N, H, W) int64 with 255 = ignore; valid (N, H, W)
    bool; teacher_logits (N, K, H, W) on the weak view, or None when ``weights.pl`` is 0.
    """
    parts: dict[str, torch.Tensor] = {}
    total = student_logits.new_zeros(())
    if weights.weak > 0:
        parts["loss_weak"] = masked_cross_entropy(student_logits, weak)
        total = total + weights.weak * parts["loss_weak"]
    if weights.sam > 0:
        parts["loss_sam"] = masked_cross_entropy(student_logits, pseudo)
        total = total + weights.sam * parts["loss_sam"]
    if weights.uses_teacher:
        if teacher_logits is None:
            raise ValueError("the teacher term is on but no teacher logits were given")
        targets, parts["confident_fraction"] = teacher_targets(teacher_logits, valid, weights.threshold)
        parts["loss_pl"] = masked_cross_entropy(student_logits, targets, valid.sum())
        total = total + weights.pl * parts["loss_pl"]
    return total, parts
