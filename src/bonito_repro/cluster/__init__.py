"""The cluster side: what is checked and projected before GPU hours are spent. The preflight
(``bonito-repro preflight``), the cost model (``cost``, over the jobs ``dry_run`` reads
from Snakemake's dry run) and the Python environments the jobs run in (environments)."""
