"""Row counts of the datasets a run reads, read on the Hub before anything is downloaded (the
preflight's `rows` step), for the cost model and its step rule.

- footer: a Parquet file ends with a footer that holds its row count, so one ranged read of each
  file's tail (``HfFileSystem`` with pyarrow) counts a split without reading a row. The files are
  the split's as the loader reads them at the origin's commit where they are Parquet; otherwise
  the same config and split on the repository's ``refs/convert/parquet`` branch, where the Hub
  converts every data repository to Parquet (one folder per config; the files are found as
  ``datasets`` finds them there).
- estimate: where neither has Parquet (no branch, or the branch lacks the config or split), the
  bytes of the files the loader reads (the Hub's file sizes), Parquet counted three times over as
  its Arrow copy, divided by ``cost.bytes_per_row``: an order of magnitude, marked so.

A count from the branch is of its latest conversion, which follows ``main``: an origin at another
revision may hold other rows. A conversion that stopped at the Hub's size cap (``partial-SPLIT``
folders) counts its converted part only, a lower bound, marked so.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..core.io import write_text
from ..core.origins import PARQUET_BRANCH, describe_hub, load_arguments, pin_origin

if TYPE_CHECKING:
    import pyarrow.parquet as pq

FOOTER, ESTIMATE, ASSUMED = "footer", "estimate", "assumed"
# Arrow rows take about this many times the bytes of their Parquet file (compression); Arrow,
# JSON and CSV files about their own size
ARROW_PER_PARQUET_BYTE = 3
# pyarrow's first read of a Parquet file: the last 64 KiB, which hold the footer of any file
# short of thousands of row groups (a longer footer costs one more read)
FOOTER_READ_BYTES = 64 * 1024


@dataclass
class RowCount:
    where: str          # the config key that names the origin (as the preflight names it)
    id: str
    config: str | None
    split: str
    rows: int
    source: str         # footer | estimate
    detail: str         # the commit and files it was read from, or the bytes it was estimated from
    partial: bool = False  # a partial conversion: at least `rows`


# --- the keys the cost model looks counts up by: the config keys the preflight names origins by


def dataset_key(dataset: str, kind: str) -> str:
    """A dataset's unannotated or test origin."""
    return f"datasets.{dataset}.{kind}"


def released_key(generator: str, dataset: str) -> str:
    """A published generator's released set for one dataset."""
    return f"generators.{generator}.origin ({dataset})"


def p3_key(name: str) -> str:
    return f"ctga.p3_datasets.{name}"


CTGA_PUBLISHED_KEY = "ctga.published"


# --- the files of a split


def split_files(hub: dict) -> tuple[list[str], dict[str, int]]:
    """(the splits, {path in the repository: bytes} of the files of the origin's split) of a Hub
    origin pinned to a commit (``hub["sha"]``), as ``origins.load_origin`` would read them:
    ``load_dataset_builder`` with the loader's arguments reads the card and the listing, no rows.
    The loader's own exception (a missing config, a script, no data files) propagates."""
    import datasets
    from huggingface_hub import HfApi

    builder = datasets.load_dataset_builder(**load_arguments(hub))
    data_files = builder.config.data_files or {}
    splits = sorted(data_files) or sorted(builder.info.splits or {})
    prefix = f"@{hub['sha']}/"
    paths = [str(f).split(prefix, 1)[1] for f in data_files.get(hub.get("split", "train"), []) if prefix in str(f)]
    infos = HfApi().get_paths_info(hub["id"], paths, revision=hub["sha"], repo_type="dataset") if paths else []
    return splits, {i.path: getattr(i, "size", 0) or 0 for i in infos}


def arrow_bytes(files: dict[str, int]) -> int:
    """What the files take as the datasets library's Arrow copy."""
    return sum(size * (ARROW_PER_PARQUET_BYTE if path.endswith(".parquet") else 1) for path, size in files.items())


# --- counting


def conversion_commit(repo_id: str) -> str | None:
    """The commit of the repository's Parquet conversion branch, or None where it has none."""
    from huggingface_hub import HfApi

    refs = HfApi().list_repo_refs(repo_id, repo_type="dataset")
    return next((ref.target_commit for ref in refs.converts if ref.ref == PARQUET_BRANCH), None)


def footer_metadata(repo_id: str, sha: str, path: str) -> "pq.FileMetaData":
    """A Parquet file's footer (its row count, its schema): one ranged read of its tail (two for
    a footer over FOOTER_READ_BYTES), never its rows."""
    import pyarrow.parquet as pq
    from huggingface_hub import HfFileSystem

    url = f"hf://datasets/{repo_id}@{sha}/{path}"
    # no read-ahead cache: each read pyarrow asks for is one Range request of exactly its bytes
    with HfFileSystem().open(url, "rb", block_size=FOOTER_READ_BYTES, cache_type="none") as handle:
        return pq.ParquetFile(handle).metadata


def footer_rows(repo_id: str, sha: str, path: str) -> int:
    """The row count in a Parquet file's footer."""
    return footer_metadata(repo_id, sha, path).num_rows


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'s' * (n != 1)}"


def from_footers(where: str, hub: dict, files: dict[str, int]) -> RowCount | str:
    """The rows in the footers of the split's Parquet files at a pinned commit, or why not."""
    parquet = sorted(p for p in files if p.endswith(".parquet"))
    if not parquet:
        return f"no Parquet files at {hub.get('revision', 'main')}"
    try:
        rows = sum(footer_rows(hub["id"], hub["sha"], path) for path in parquet)
    except Exception as error:  # a file that is not Parquet after all, a read refused
        return f"the footers cannot be read ({first_line(error)})"
    partial = any("/partial-" in f"/{path}" for path in parquet)
    detail = f"{hub.get('revision', 'main')}@{hub['sha'][:10]}, {_plural(len(parquet), 'file')}"
    return RowCount(where, hub["id"], hub.get("config"), hub.get("split", "train"), rows, FOOTER,
                    detail + (" (a partial conversion: at least this many)" if partial else ""), partial)


def from_conversion_branch(where: str, hub: dict) -> RowCount | str:
    """The split's rows from the footers of its files on the conversion branch, or why not."""
    sha = conversion_commit(hub["id"])
    if sha is None:
        return f"no {PARQUET_BRANCH} branch"
    branch = {**hub, "revision": PARQUET_BRANCH, "sha": sha}
    try:
        _, files = split_files(branch)
    except Exception as error:  # the branch lacks the config: the loader's message says how
        return f"{PARQUET_BRANCH}: {first_line(error)}"
    counted = from_footers(where, branch, files)
    return counted if isinstance(counted, RowCount) else f"{PARQUET_BRANCH}: {counted}"


def from_sizes(where: str, hub: dict, files: dict[str, int], bytes_per_row: int) -> RowCount | str:
    """The split's rows estimated from the sizes of its files, or why not."""
    if not files:
        return "no data files to size"
    nbytes = arrow_bytes(files)
    detail = (f"{_plural(len(files), 'file')} at {hub['sha'][:10]}, {nbytes / 1e6:.1f} MB as Arrow "
              f"/ cost.bytes_per_row {bytes_per_row}")
    return RowCount(where, hub["id"], hub.get("config"), hub.get("split", "train"),
                    max(1, round(nbytes / bytes_per_row)), ESTIMATE, detail)


def count_rows(where: str, hub: dict, bytes_per_row: int) -> RowCount | str:
    """Rows of a Hub origin's split, at the commit its revision points at: from the footers of
    the files the loader reads where they are Parquet, else from the footers of the conversion
    branch, else estimated from the files' sizes; a string saying why none worked."""
    try:
        pinned = pin_origin({"hub": hub})["hub"]
        _, files = split_files(pinned)
    except Exception as error:  # the hub check names this failure
        return f"{describe_hub(hub)}: {first_line(error)}"
    tried = []
    for count in (lambda: from_footers(where, pinned, files), lambda: from_conversion_branch(where, pinned),
                  lambda: from_sizes(where, pinned, files, bytes_per_row)):
        counted = count()
        if isinstance(counted, RowCount):
            if tried:
                counted.detail += f" ({'; '.join(tried)})"
            return counted
        tried.append(counted)
    return f"{describe_hub(hub)}: {'; '.join(tried)}"


def first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


# --- the file the preflight writes and the cost model reads


def write_counts(path: Path, counts: list[RowCount]) -> None:
    write_text(json.dumps({"counts": [asdict(c) for c in counts]}, indent=1) + "\n", path)


def read_counts(path: Path) -> dict[str, RowCount]:
    """The counts of a file ``write_counts`` wrote, by the config key of their origin."""
    try:
        entries = json.loads(Path(path).read_text())["counts"]
        return {entry["where"]: RowCount(**entry) for entry in entries}
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ValueError(f"{path}: not a row counts file of the preflight ({first_line(error)}); "
                         "run `bonito-repro preflight` again") from None


def format_counts(counts: list[RowCount]) -> str:
    """One line per origin: where the config names it, the repository and config, the split, the
    rows and where the number comes from."""
    head = ("origin", "repository (config)", "split", "rows", "source")
    lines = [(c.where, c.id + (f" ({c.config})" if c.config else ""), c.split,
              (">=" if c.partial else "") + f"{c.rows:,}", c.source) for c in counts]
    widths = [max(len(row[i]) for row in [head, *lines]) for i in range(len(head))]
    fmt = lambda row: "  ".join(  # noqa: E731 (rows right-aligned, the rest left)
        cell.rjust(w) if i == 3 else cell.ljust(w) for i, (cell, w) in enumerate(zip(row, widths))).rstrip()
    return "\n".join(fmt(row) for row in [head, *lines])
