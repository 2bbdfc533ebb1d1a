"""Learning-rate schedules: the reference's per-epoch decay, cosine, or constant."""

from __future__ import annotations

import math

SCHEDULES = ("cosine", "reference", "constant")


def learning_rate(
    schedule: str,
    base_lr: float,
    *,
    epoch: int,
    step: int,
    progress: float,
    warmup_steps: int = 0,
    min_lr_ratio: float = 0.01,
) -> float:
    """Learning rate for this optimizer step.

    * ``reference``: ``base_lr * 0.75 ** (epoch - 1)`` with 0-based epochs, as train.py sets it at
      the start of each epoch (with base 1e-4: 1.333e-4, 1e-4, 7.5e-5, ...).
    * ``cosine``: from ``base_lr`` down to ``min_lr_ratio * base_lr`` over ``progress`` in [0, 1]
      (fraction of the planned steps or of the time limit).
    * ``constant``: ``base_lr``.

    A linear warm-up over ``warmup_steps`` optimizer steps scales any of them.
    """
    if schedule == "reference":
        lr = base_lr * 0.75 ** (epoch - 1)
    elif schedule == "cosine":
        p = min(max(progress, 0.0), 1.0)
        lr = base_lr * (min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * p)))
    elif schedule == "constant":
        lr = base_lr
    else:
        raise ValueError(f"unknown lr schedule {schedule!r}; choose one of: {', '.join(SCHEDULES)}")
    if warmup_steps > 0 and step < warmup_steps:
        lr *= (step + 1) / warmup_steps
    return lr
