"""Empty synthetic sets of alternative generators: a result, carried to every table and figure.

A prompted or endpoint generator may keep no task for a dataset (a weak local model often does).
The generate stage then writes an empty set whose manifest says ``empty_is_result``; adaptation
on it writes, instead of an adapter, a directory holding only ``no_tasks.json``; evaluation of
that adapter writes a result with ``no_tasks`` instead of scores; the tables and the loss
figure show the cell as "no tasks (0 of N kept)". No model is loaded for a skipped cell. A
Bonito set that keeps nothing still stops the generate stage (generate.cli.require_tasks).
"""
from __future__ import annotations

from pathlib import Path

from .io import read_json, write_json

MARKER = "no_tasks.json"


def cell_note(generated: int) -> str:
    """What a table cell of an empty set shows."""
    return f"no tasks (0 of {generated} kept)"


def empty_set(data: str | Path) -> dict | None:
    """``{"generated": N, "note": ...}`` when ``data`` (synthetic/{generator}/{dataset}.parquet)
    is an alternative generator's empty set, as the manifest the generate stage wrote beside it
    says; None for any other training data."""
    manifest = Path(data).with_suffix(".manifest.json")
    if Path(data).suffix != ".parquet" or not manifest.exists():
        return None
    record = read_json(manifest)
    if not record.get("empty_is_result"):
        return None
    generated = record["funnel"]["generated"]
    return {"generated": generated, "note": cell_note(generated)}


def write_marker(adapter_dir: str | Path, empty: dict) -> None:
    """The adapter directory of a skipped adaptation: only the marker."""
    write_json(empty, Path(adapter_dir) / MARKER)


def skipped_adapter(adapter_dir: str | Path | None) -> dict | None:
    """The marker's content when ``adapter_dir`` is a skipped adaptation's, else None."""
    if adapter_dir is None or not (Path(adapter_dir) / MARKER).exists():
        return None
    return read_json(Path(adapter_dir) / MARKER)
