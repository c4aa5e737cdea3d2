"""Flow matching (rectified flow) parametrisation, noise schedules and the Euler sampler.

Kept apart from the network: the network predicts a velocity given
(x_t, t, d) and knows nothing about step counts; schedules are pure functions
returning the grid of t values; the sampler walks the grid. Few-step and
multi-step generation differ only in the schedule (and hence the step size d
given to the network).

Convention (Liu et al. 2022, rectified flow; Lipman et al. 2023):
    x_t = (1 − t) · x_0 + t · ε,   t ∈ [0, 1], t = 1 is pure noise,
    v   = dx_t/dt = ε − x_0,
and an Euler step from t to t' = t − d is x_{t'} = x_t − d · v̂(x_t, t, d).
"""
from __future__ import annotations

from typing import Callable, Mapping

import torch


class FlowMatching:
    """The one parametrisation used by both the training losses and the sampler."""

    @staticmethod
    def noisy(x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """x_t = (1 − t) x_0 + t ε; t broadcasts from the left (e.g. (B, C) against (B, C, ...))."""
        t = _expand(t, x0)
        return (1 - t) * x0 + t * noise

    @staticmethod
    def velocity_target(x0: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """v = ε − x_0 (the flow-matching regression target)."""
        return noise - x0

    @staticmethod
    def x0_from_velocity(xt: torch.Tensor, v: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Clean estimate x̂_0 = x_t − t · v̂."""
        return xt - _expand(t, xt) * v


def _expand(t: torch.Tensor | float, like: torch.Tensor) -> torch.Tensor:
    t = torch.as_tensor(t, dtype=like.dtype, device=like.device)
    return t.reshape(*t.shape, *([1] * (like.dim() - t.dim())))


def uniform_schedule(steps: int) -> torch.Tensor:
    """t grid 1 → 0 in ``steps`` equal steps: (steps + 1,) float64."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    return torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float64)


def shifted_schedule(steps: int, shift: float = 3.0) -> torch.Tensor:
    """Uniform grid warped by t' = s·t / (1 + (s − 1)·t) (SD3, Esser et al. 2024): more steps near t = 1 for s > 1."""
    if shift <= 0:
        raise ValueError(f"shift must be positive, got {shift}")
    t = uniform_schedule(steps)
    return shift * t / (1 + (shift - 1) * t)


SCHEDULES: dict[str, Callable[[int], torch.Tensor]] = {"uniform": uniform_schedule, "shifted": shifted_schedule}

StepFn = Callable[[Mapping[str, torch.Tensor], float, float, object], Mapping[str, torch.Tensor]]


def euler_sample(step_fn: StepFn, x: Mapping[str, torch.Tensor], schedule: torch.Tensor, cond: object = None,
                 callback: Callable[[int, Mapping[str, torch.Tensor]], None] | None = None) -> dict[str, torch.Tensor]:
    """Integrate the flow from schedule[0] to schedule[-1] with Euler steps.

    step_fn(x, t, d, cond) returns velocities for the streams being generated; streams it does not return
    (e.g. clean driving audio) are carried through unchanged.
    """
    if schedule.dim() != 1 or len(schedule) < 2:
        raise ValueError(f"schedule must be a 1-D grid of at least 2 t values, got shape {tuple(schedule.shape)}")
    x = dict(x)
    for i in range(len(schedule) - 1):
        t, t_next = float(schedule[i]), float(schedule[i + 1])
        d = t - t_next
        v = step_fn(x, t, d, cond)
        x = {k: (x[k] - d * v[k]) if k in v else x[k] for k in x}
        if callback is not None:
            callback(i, x)
    return x
