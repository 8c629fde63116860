"""Reporting: tables, figures, cards and profiles, made from the compute stages' outputs and
manifests only, so that a change here reruns no training or generation.

- table: every evaluation's scores in one table (``python -m bonito_repro table``)
- main_table: the paper's main table, its deltas and the published comparison (``main-table``)
- delta_intervals: the deltas' paired bootstrap intervals, from the evaluations' predictions
- baselines: the no-model baselines on the same test rows (``baselines``)
- ablation_figures: the ablations' figures and tables (``ablation-figures``)
- plot: funnels and loss curves (``plot``)
- quality_profile: one table describing every synthetic set (``quality-profile``)
- cards: Hugging Face dataset and model cards (``cards``)
"""
