"""ctga-v1, Bonito's training set (docs/protocol.md, section 4): P3 templates remixed into
meta-templates whose input is a passage and whose output is a whole task.

- tables: the two reference tables (annotated templates and task types; context expressions)
- templates: promptsource templates and the meta-templates made from them
- render: sampling and parallel rendering of one P3 dataset (ctga rows and P3 rows)
- build: the whole set from the configured P3 datasets, validation split, counts
- published: the published BatsResearch/ctga-v1 instead, and the comparison with it
- cli: ``python -m bonito_repro ctga``
"""
from .cli import main

__all__ = ["main"]
