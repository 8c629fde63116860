"""The core layer: what every other part of the package reads and none of it changes. Config
loading and its schema, the rows' schemas, file io and manifests, data origins and Hub revisions,
the task types, the prompts, the metrics, the evaluation templates, the grammar of source names,
the training step rule. It imports no other part of the package (the import contract in
pyproject.toml holds it)."""
from pathlib import Path

# the package's data files (schema, dataset files, embedded rows, templates, prompts)
PACKAGE_DATA = Path(__file__).resolve().parents[1] / "data"
