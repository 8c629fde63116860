"""The workflow's glue: what the Snakefile and rules read beside the config. The ablations' cells
and jobs (ablations), and a user's own text turned into a dataset file and an overlay (corpus)."""
