"""The training step rule (docs/protocol.md, D8) and the effective batch: plain arithmetic that the
training engine and the cost model share, kept free of heavy imports because the Snakefile reads
it (the Bonito training rule's retries come from the cost model)."""
from __future__ import annotations

import math


class TrainDataError(ValueError):
    """The training rows are unusable (nothing left to train on)."""


def effective_batch(params: dict) -> int:
    return params["per_device_batch_size"] * params["grad_accumulation"] * params["processes"]


def training_steps(n_examples: int, params: dict) -> int:
    """max_steps, or one epoch (ceil(n / effective batch) steps) when the set has fewer than
    one_epoch_below examples (docs/protocol.md, D8)."""
    if n_examples < 1:
        raise TrainDataError("no training examples")
    below = params["one_epoch_below"]
    if below is not None and n_examples < below:
        return math.ceil(n_examples / effective_batch(params))
    return params["max_steps"]
