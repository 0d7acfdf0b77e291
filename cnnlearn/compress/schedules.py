"""Pruning schedules: when masks are recomputed and how sparse (chapter 6).

Same semantics as tensorflow-model-optimization (``begin_step``, ``end_step``,
``frequency``, initial and final sparsity), plus :meth:`PruningSchedule.check`,
which refuses a schedule that cannot reach its target in the run it is given.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "ConstantSparsity",
    "PolynomialDecay",
    "PruningSchedule",
    "check_sparsity",
    "ramp_end_step",
]


@dataclass(frozen=True, kw_only=True)
class PruningSchedule:
    """When to recompute masks, and the sparsity they then get.

    A step prunes when ``begin_step <= step`` (and ``step <= end_step`` unless
    ``end_step == -1``) and ``(step - begin_step) % frequency == 0``. Steps are
    the training steps (batches), counted from 0 at the start of ``fit``.
    """

    begin_step: int = 0
    end_step: int = -1
    frequency: int = 100

    def __post_init__(self):
        if self.begin_step < 0 or self.frequency < 1:
            raise ValueError(
                f"need begin_step >= 0 and frequency >= 1, got {self.begin_step}, "
                f"{self.frequency}"
            )
        if self.end_step != -1 and self.end_step < self.begin_step:
            raise ValueError(
                f"end_step ({self.end_step}) is before begin_step ({self.begin_step})"
            )

    @property
    def target(self) -> float:
        """The sparsity the schedule ends at."""
        raise NotImplementedError

    def sparsity(self, step: int) -> float:
        """Fraction of weights a mask computed at ``step`` sets to zero."""
        raise NotImplementedError

    def should_prune(self, step: int) -> bool:
        """Whether masks are recomputed at ``step``."""
        in_range = step >= self.begin_step and (
            self.end_step == -1 or step <= self.end_step
        )
        return in_range and (step - self.begin_step) % self.frequency == 0

    def last_pruning_step(self, total_steps: int) -> int | None:
        """The last step below ``total_steps`` at which masks are recomputed."""
        last = total_steps - 1
        if self.end_step != -1:
            last = min(last, self.end_step)
        if last < self.begin_step:
            return None
        return last - (last - self.begin_step) % self.frequency

    def check(self, total_steps: int) -> None:
        """Raise ``ValueError`` if ``total_steps`` steps never reach :attr:`target`."""
        last = self.last_pruning_step(total_steps)
        if last is None:
            raise ValueError(
                f"pruning schedule never prunes: begin_step={self.begin_step} but "
                f"training has only {total_steps} steps"
            )
        reached = self.sparsity(last)
        if reached < self.target - 1e-6:
            raise ValueError(
                f"pruning schedule reaches only {reached:.2%} sparsity, not its "
                f"target {self.target:.2%}: its last pruning step is {last} "
                f"(frequency={self.frequency}, end_step={self.end_step}) in a run of "
                f"{total_steps} steps; lower frequency or end_step, or train longer"
            )


@dataclass(frozen=True, kw_only=True)
class ConstantSparsity(PruningSchedule):
    """The same ``target_sparsity`` at every pruning step (tfmot's ConstantSparsity)."""

    target_sparsity: float = 0.5

    def __post_init__(self):
        super().__post_init__()
        check_sparsity(self.target_sparsity)

    @property
    def target(self) -> float:
        return self.target_sparsity

    def sparsity(self, step: int) -> float:
        return self.target_sparsity


@dataclass(frozen=True, kw_only=True)
class PolynomialDecay(PruningSchedule):
    """Sparsity rising from ``initial`` to ``final`` between begin and end step.

    ``s(t) = final + (initial - final) * (1 - p) ** power`` with
    ``p = clip((t - begin_step) / (end_step - begin_step), 0, 1)``: fast at first,
    while the network has redundant weights to spare, gently at the end
    (Zhu & Gupta, 2017; tfmot's PolynomialDecay). ``end_step`` is required.
    """

    initial_sparsity: float = 0.0
    final_sparsity: float = 0.8
    power: float = 3.0

    def __post_init__(self):
        super().__post_init__()
        check_sparsity(self.initial_sparsity)
        check_sparsity(self.final_sparsity)
        if self.end_step <= self.begin_step:
            raise ValueError(
                f"PolynomialDecay needs end_step > begin_step, got {self.end_step}"
            )

    @property
    def target(self) -> float:
        return self.final_sparsity

    def sparsity(self, step: int) -> float:
        p = (step - self.begin_step) / (self.end_step - self.begin_step)
        p = min(1.0, max(0.0, p))
        s = (
            self.final_sparsity
            + (self.initial_sparsity - self.final_sparsity) * (1.0 - p) ** self.power
        )
        return float(s)


def check_sparsity(value: float) -> None:
    if not 0.0 <= value < 1.0:
        raise ValueError(f"sparsity must be in [0, 1), got {value}")


def ramp_end_step(total_steps: int, frequency: int, ramp: float = 1.0) -> int:
    """The last pruning step within the first ``ramp`` fraction of a run.

    A PolynomialDecay ending there reaches its target on a pruning step
    (tfmot's guide sets ``end_step`` to the run's last step, which a
    ``frequency`` that does not divide it never reaches).
    """
    if total_steps < 1 or not 0.0 < ramp <= 1.0:
        raise ValueError(
            f"need total_steps >= 1 and ramp in (0, 1], got {total_steps}, {ramp}"
        )
    last = max(0, int(total_steps * ramp) - 1)
    return last - last % frequency
