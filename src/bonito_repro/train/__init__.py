"""Training (docs/protocol.md, sections 5 and 7): one engine for the Bonito generator (Q-LoRA on
ctga-v1), the P3 stand-in adapter, LoRA adaptation of targets on synthetic tasks, and the TAPT
baseline.

- engine: ``run(TrainJob)``, the one training path (Trainer, resume, manifest)
- data: training sequences (pairs or TAPT blocks) and the collator (the step rule: bonito_repro.core.steps)
- model: the base model quantized or not, with a fresh or given LoRA adapter
- checkpoints: resume checkpoints, complete and of this very run
- parse_check: ``python -m bonito_repro parse-check``, how often a trained generator's output parses
- cli: ``python -m bonito_repro train``
"""
from ..core.steps import training_steps
from .engine import TrainError, TrainJob, run

__all__ = ["TrainJob", "TrainError", "run", "training_steps"]
