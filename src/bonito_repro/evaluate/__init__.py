"""Evaluation (docs/protocol.md, section 8): F1 of a target model over a dataset's five prompt
templates (the templates themselves: bonito_repro.core.templates; the scores of a run collected
into one table: bonito_repro.reporting.table).

- encoder: token ids of prompts and answer choices (BOS, wrapper, prompts over max_length)
- truncation: the passage cut that lets an over-long prompt keep its question and instruction
- rank_classification: yes-no QA and NLI, every answer choice scored (``runtime.scoring``)
- greedy_generation: extractive QA, greedy answers against the gold answer
- job: one evaluation, its rows, its scores and the result record
- cli: ``python -m bonito_repro evaluate``
"""
