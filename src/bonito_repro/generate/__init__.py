"""Task generation (docs/protocol.md, section 6): synthetic tasks from unannotated text with a
Bonito generator, checked and counted by the funnel.

- synthetic_tasks: ``generate_tasks`` and ``run_generation``, the Python API
- shards: raw generations shard by shard, resumed after a kill
- funnel: parsing and the checks of every generation, counted by reason
- embeddings: MiniLM vectors and cosine search for the near-duplicate and contamination checks
- inputs: the passages of an unannotated file, or a published synthetic set
- formats: a synthetic set in bagel's four prompt formats
- backtranslation: generator kind ``backtranslation`` (instruction backtranslation with
  self-curation), ``python -m bonito_repro backtranslation``
- cli: ``python -m bonito_repro generate``
"""
from .synthetic_tasks import SyntheticTasks, generate_tasks, run_generation

__all__ = ["SyntheticTasks", "generate_tasks", "run_generation"]
