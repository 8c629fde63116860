"""bonito_repro: the Bonito paper (Nayak et al., 2024) as one reproducible Snakemake workflow.

Public API (stable, documented in docs/api.md):
  bonito_repro.tasks.TASK_TYPES
  bonito_repro.prompts.bonito_input, bonito_repro.prompts.parse_bonito_output
  bonito_repro.metrics.squad_f1, bonito_repro.metrics.macro_f1
  bonito_repro.generate.generate_tasks
"""
__version__ = "0.1.0"
