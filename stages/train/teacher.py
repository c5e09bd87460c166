"""The mean teacher: an exponential moving average (EMA) of the student's weights."""

from __future__ import annotations

import copy

import torch
from torch import nn


class EmaTeacher:
    """Keeps ``model``, a frozen copy of the student whose weights trail the student's.

    After iteration t (0-based) every floating-point parameter and buffer (BatchNorm statistics
    included) becomes ``m_t · teacher + (1 - m_t) · student`` with ``m_t = min(momentum, 1 - 1/(t+2))``,
    Mean Teacher's ramp: early on the teacher is the running average of all students so far, later a
    window of about ``1 / (1 - momentum)`` iterations. Integer buffers are copied.
    """

    def __init__(self, student: nn.Module, momentum: float):
        self.model = copy.deepcopy(student).eval()
        self.model.requires_grad_(False)
        self.momentum = momentum

    def momentum_at(self, iteration: int) -> float:
        return min(self.momentum, 1.0 - 1.0 / (iteration + 2))

    @torch.no_grad()
    def update(self, student: nn.Module, iteration: int) -> None:
        student_state = student.state_dict()
        averaged, targets = [], []
        for name, value in self.model.state_dict().items():
            if value.is_floating_point():
                averaged.append(value)
                targets.append(student_state[name])
            else:
                value.copy_(student_state[name])
        torch._foreach_lerp_(averaged, targets, 1.0 - self.momentum_at(iteration))
