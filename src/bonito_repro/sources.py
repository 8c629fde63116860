"""Where rows come from: one loader for the three kinds of source spec in the config.

- ``{hub: {id, config, split, revision}}``: the Hugging Face Hub (paper scale; downloads once,
  then the datasets cache serves it offline).
- ``{embedded: NAME}``: demo data the project ships in ``data/embedded/KIND/NAME.jsonl``
  (local and smoke scales), in exactly the schema of the Hub source it stands in for.
- ``{files: PATH or [PATHS]}``: a user's own parquet, json, jsonl or csv files.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import datasets

EMBEDDED_DIR = Path(__file__).parent / "data" / "embedded"
KINDS = ("unannotated", "test", "ctga")
_BUILDERS = {".parquet": "parquet", ".json": "json", ".jsonl": "json", ".csv": "csv"}
# The Hub's automatic Parquet conversion of a dataset: one folder per config and no README, so
# datasets 4+ sees a single config `default` there and a config is chosen by folder (data_dir).
PARQUET_BRANCH = "refs/convert/parquet"


class SourceError(ValueError):
    """A source spec names something that does not exist or cannot be read."""


def embedded_path(kind: str, name: str) -> Path:
    if kind not in KINDS:
        raise SourceError(f"unknown embedded kind {kind!r}; use one of {KINDS}")
    return EMBEDDED_DIR / kind / f"{name.replace('/', '__')}.jsonl"


def embedded_names(kind: str) -> list[str]:
    return sorted(p.stem.replace("__", "/") for p in (EMBEDDED_DIR / kind).glob("*.jsonl"))


def _builder(paths: list[str]) -> str:
    suffixes = {Path(p).suffix for p in paths}
    if len(suffixes) != 1 or next(iter(suffixes)) not in _BUILDERS:
        raise SourceError(f"files {paths}: use one format of {sorted(_BUILDERS)}")
    return _BUILDERS[suffixes.pop()]


def load_source(spec: dict, kind: str) -> "datasets.Dataset":
    """Rows of one source as a ``datasets.Dataset`` (same code path for Hub and local files)."""
    import datasets  # here, not at the top: the Snakefile imports this module and stays fast

    if "hub" in spec:
        hub = spec["hub"]
        config = hub.get("config")
        # on the conversion branch a config is a folder; a name would fail ("BuilderConfig not found")
        # or, with no name, every config's folder would load as one
        by_folder = hub.get("revision") == PARQUET_BRANCH
        return datasets.load_dataset(hub["id"], None if by_folder else config,
                                     data_dir=config if by_folder else None,
                                     split=hub.get("split", "train"), revision=hub.get("revision"))
    if "embedded" in spec:
        path = embedded_path(kind, spec["embedded"])
        if not path.exists():
            raise SourceError(f"no embedded {kind} data named {spec['embedded']!r} ({path}); "
                              f"available: {embedded_names(kind)}")
        return datasets.load_dataset("json", data_files=str(path), split="train")
    if "files" in spec:
        paths = [spec["files"]] if isinstance(spec["files"], str) else list(spec["files"])
        missing = [p for p in paths if not Path(p).exists()]
        if missing:
            raise SourceError(f"files not found: {missing}")
        return datasets.load_dataset(_builder(paths), data_files=paths, split="train")
    raise SourceError(f"source spec {spec!r} needs one of: hub, embedded, files")
