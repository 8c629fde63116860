"""A generator named the way a user names it, for ``generate_tasks``: a model folder on disk, a
generator the config declares (``bonito_v1``), or a Hub id (``BatsResearch/bonito-v1``).

A Hub model is downloaded once per commit into a cache folder (``cache_dir``, else
``$BONITO_REPRO_CACHE``, else ``~/.cache/bonito_repro``): the revision is resolved to its full
commit first, each file is checked against the Hub's listing and pickled weights are converted to
safetensors without running code from them, as the workflow's download job does. What was read
(id, revision, commit) is returned with the folder, so the caller can record it.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from ..core.hub import resolve_revision
from ..runtime.hub_models import download
from ..runtime.models import ModelError
from .kinds import KINDS, PAPER_KIND


@dataclass(frozen=True)
class ResolvedGenerator:
    model_dir: Path
    kind: str
    source: dict   # what was read: {"path": ...} or {"name"?, "id", "revision", "sha"}


def cache_root(cache_dir: str | Path | None = None) -> Path:
    if cache_dir is not None:
        return Path(cache_dir)
    return Path(os.environ.get("BONITO_REPRO_CACHE") or Path.home() / ".cache" / "bonito_repro")


def weights_format(hub_id: str, sha: str) -> str:
    """``safetensors`` where the repository has them at ``sha``, else ``bin`` (pickled weights,
    converted on download): what a Hub id named by a user holds is not declared anywhere."""
    from huggingface_hub import HfApi

    files = HfApi().list_repo_files(hub_id, revision=sha)
    if any(name.endswith(".safetensors") for name in files):
        return "safetensors"
    if any(name.endswith(".bin") for name in files):
        return "bin"
    raise ModelError(f"{hub_id}@{sha}: no safetensors or pickled weights in the repository")


def fetch(hub: dict, cache_dir: str | Path | None = None) -> tuple[Path, dict]:
    """The model folder of ``hub`` (a config's ``hub`` mapping: id, revision, optional weights and
    subfolder) at the commit its revision points at now, downloaded unless the cache holds it."""
    revision = hub.get("revision", "main")
    sha = hub.get("sha") or resolve_revision(hub["id"], revision, "model")
    source = {"id": hub["id"], "revision": revision, "sha": sha}
    folder = cache_root(cache_dir) / "models" / hub["id"].replace("/", "--") / sha
    record = folder.with_name(f"{sha}.json")  # written last: a folder without it is redone
    if folder.is_dir() and record.is_file():
        return folder, source
    spec = {"weights": weights_format(hub["id"], sha), **hub, "sha": sha}
    folder.parent.mkdir(parents=True, exist_ok=True)
    record.write_text(json.dumps(download(spec, folder), indent=2, sort_keys=True) + "\n")
    return folder, source


def resolve_generator(generator: str | Path, generators: dict, models: dict, *, revision: str = "main",
                      cache_dir: str | Path | None = None) -> ResolvedGenerator:
    """``generator`` as a model folder, a declared generator name (``generators`` and ``models``:
    the config's sections; read at the revision the config declares) or a Hub id (read at
    ``revision``), to a model folder on disk and its generator kind."""
    path = Path(generator).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelError(f"{path}: not a model folder (no config.json)")
        return ResolvedGenerator(path, PAPER_KIND, {"path": str(path.resolve())})
    name = str(generator)
    if name in generators:
        spec = generators[name]
        kind = spec["kind"]
        if kind not in KINDS or "model" not in spec:
            runnable = sorted(g for g, s in generators.items() if s["kind"] in KINDS and "model" in s)
            raise ModelError(f"generator {name!r} (kind {kind}) is not a published model the Python API can "
                             f"run; the workflow makes it (`bonito-repro run`). Runnable here: {runnable}")
        model = models[spec["model"]]
        if "hub" not in model:
            raise ModelError(f"generator {name!r}: its model {spec['model']!r} is made by the workflow at this "
                             f"scale ({', '.join(model)}), not downloaded; pass its folder instead")
        folder, source = fetch(model["hub"], cache_dir)
        return ResolvedGenerator(folder, kind, {"name": name, **source})
    if name.count("/") == 1 and not name.startswith((".", "/", "~")):
        folder, source = fetch({"id": name, "revision": revision}, cache_dir)
        return ResolvedGenerator(folder, PAPER_KIND, source)
    raise ModelError(f"generator {name!r}: not a model folder, a declared generator "
                     f"({sorted(generators)}) or a Hub id (owner/name)")
