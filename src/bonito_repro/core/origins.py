"""Where rows come from (an origin): one loader for the three kinds of origin in the config.

- ``{hub: {id, config, split, revision}}``: the Hugging Face Hub (paper scale). The revision is
  resolved to its commit sha first and the rows are loaded by that sha (``pin_origin``), which
  manifests record; an offline job reads back the datasets-cache files a download step recorded
  for that commit (``hub_record``).
- ``{embedded: NAME}``: demo data the project ships in ``data/embedded/KIND/NAME.jsonl``
  (local and smoke scales), in exactly the schema of the Hub dataset it stands in for (KIND
  ``seed``: a backtranslation generator's seed conversations).
- ``{files: PATH or [PATHS]}``: a user's own parquet, json, jsonl or csv files.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from . import PACKAGE_DATA
from .errors import InputError
from .hub import HubError, resolve_revision
from .hub_lock import LOCK_ADVICE

if TYPE_CHECKING:
    import datasets

EMBEDDED_DIR = PACKAGE_DATA / "embedded"
KINDS = ("unannotated", "test", "ctga", "seed")
_BUILDERS = {".parquet": "parquet", ".json": "json", ".jsonl": "json", ".csv": "csv"}
# The Hub's automatic Parquet conversion of a dataset: one folder per config and no README, so
# datasets 4+ sees a single config `default` there and a config is chosen by folder (data_dir).
PARQUET_BRANCH = "refs/convert/parquet"


class OriginError(InputError):
    """An origin names something that does not exist or cannot be read."""


def embedded_path(kind: str, name: str) -> Path:
    if kind not in KINDS:
        raise OriginError(f"unknown embedded kind {kind!r}; use one of {KINDS}")
    return EMBEDDED_DIR / kind / f"{name.replace('/', '__')}.jsonl"


def embedded_names(kind: str) -> list[str]:
    return sorted(p.stem.replace("__", "/") for p in (EMBEDDED_DIR / kind).glob("*.jsonl"))


def _builder(paths: list[str]) -> str:
    suffixes = {Path(p).suffix for p in paths}
    if len(suffixes) != 1 or next(iter(suffixes)) not in _BUILDERS:
        raise OriginError(f"files {paths}: use one format of {sorted(_BUILDERS)}")
    return _BUILDERS[suffixes.pop()]


def describe_hub(hub: dict) -> str:
    """How errors name a Hub origin."""
    return (f"hub {hub['id']} config={hub.get('config')} split={hub.get('split', 'train')} "
            f"revision={hub.get('revision', 'main')}")


def pin_origin(origin: dict) -> dict:
    """The origin with its Hub revision resolved to a commit sha (``hub.sha``); a sha it already
    has (the Hub lock's) is checked to be on the Hub; downloaded rows (``hub.arrow``) and other
    origins as they are. Loading by the sha makes every later read of the origin read the same rows."""
    if "hub" not in origin or "arrow" in origin["hub"]:
        return origin
    hub = origin["hub"]
    try:
        sha = resolve_revision(hub["id"], hub.get("sha") or hub.get("revision", "main"), "dataset")
    except HubError as error:
        locked = f" (the commit the Hub lock holds: {LOCK_ADVICE})" if "sha" in hub else ""
        raise OriginError(f"{describe_hub(hub)}: {error}{locked}") from None
    return {**origin, "hub": {**hub, "sha": sha}}


def hub_record(origin: dict, dataset: "datasets.Dataset") -> dict:
    """What a download manifest records of a loaded Hub origin: its ``hub`` entry, the commit
    sha, and the datasets-cache files that hold its rows (read back offline by ``load_origin``)."""
    return {**origin["hub"], "sha": _cached_sha(dataset),
            "arrow": [f["filename"] for f in dataset.cache_files]}


def _cached_sha(dataset: "datasets.Dataset") -> str | None:
    """The commit a Hub dataset's cached rows came from: datasets keeps them in a folder named
    after the sha (``.../<config>/<version>/<sha>/*.arrow``)."""
    shas = {Path(f["filename"]).parent.name for f in dataset.cache_files}
    return shas.pop() if len(shas) == 1 else None


def load_arguments(hub: dict) -> dict:
    """How ``datasets.load_dataset`` (or ``load_dataset_builder``) is called for a pinned Hub
    origin, split aside: on the conversion branch a config is a folder, since a name would fail
    ("BuilderConfig not found") or, with no name, every config's folder would load as one."""
    config = hub.get("config")
    by_folder = hub.get("revision") == PARQUET_BRANCH
    return {"path": hub["id"], "name": None if by_folder else config, "data_dir": config if by_folder else None,
            "revision": hub["sha"]}


def _load_hub(hub: dict) -> "datasets.Dataset":
    import datasets

    where = f"{describe_hub(hub)} (commit {hub['sha']})"
    if "arrow" in hub:
        # rows a download step cached, read back by an offline job: the files of that very commit
        missing = [f for f in hub["arrow"] if not Path(f).exists()]
        if missing or any(Path(f).parent.name != hub["sha"] for f in hub["arrow"]):
            raise OriginError(f"{where}: the downloaded rows are gone from the datasets cache or "
                              f"belong to another commit ({missing or hub['arrow']}); download again")
        return datasets.concatenate_datasets([datasets.Dataset.from_file(f) for f in hub["arrow"]])
    rows = datasets.load_dataset(**load_arguments(hub), split=hub.get("split", "train"))
    cached = _cached_sha(rows)
    if cached != hub["sha"]:
        # datasets falls back to whatever it has cached for the repository when loading fails
        # (a script-based revision, an unreachable Hub), with only a log line
        raise OriginError(f"{where}: datasets returned rows of commit {cached} instead (its cache "
                          "fallback after a failed load; is this revision script-based? then load "
                          f"its {PARQUET_BRANCH} branch)")
    return rows


def load_origin(origin: dict, kind: str) -> "datasets.Dataset":
    """Rows of one origin as a ``datasets.Dataset`` (same code path for Hub and local files)."""
    import datasets  # here, not at the top: the Snakefile imports this module and stays fast

    from .io import check_rows_file

    if "hub" in origin:
        return _load_hub(origin["hub"] if "sha" in origin["hub"] else pin_origin(origin)["hub"])
    if "embedded" in origin:
        path = embedded_path(kind, origin["embedded"])
        if not path.exists():
            raise OriginError(f"no embedded {kind} data named {origin['embedded']!r} ({path}); "
                              f"available: {embedded_names(kind)}")
        return datasets.load_dataset("json", data_files=str(path), split="train")
    if "files" in origin:
        paths = [origin["files"]] if isinstance(origin["files"], str) else list(origin["files"])
        missing = [p for p in paths if not Path(p).exists()]
        if missing:
            raise OriginError(f"files not found: {missing}")
        builder = _builder(paths)
        for path in paths:  # datasets' own errors name neither the file nor the row
            check_rows_file(path)
        return datasets.load_dataset(builder, data_files=paths, split="train")
    raise OriginError(f"origin {origin!r} needs one of: hub, embedded, files")
