"""Model and adapter repositories from the Hub, as every job and the Python API read them: once,
at a resolved commit, each file checked against the Hub's listing, pickled weights converted to
safetensors without running code from them, the finished folder moved into place whole."""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

from ..core.hub import HubError, resolve_revision
from ..core.hub_lock import LOCK_ADVICE
from ..core.io import move_into_place, staging_dir
from .models import ModelError

# Files a model or adapter directory needs; weights come only as safetensors.
HUB_PATTERNS = ["*.json", "*.safetensors", "tokenizer.model", "*.txt", "*.jinja"]


def _digests(path: Path) -> tuple[str, str]:
    """(sha256, git blob sha1) of a file in one read: the Hub lists an LFS file by the first,
    any other file by the second."""
    sha256, sha1 = hashlib.sha256(), hashlib.sha1(b"blob %d\0" % path.stat().st_size)
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 24), b""):
            sha256.update(block)
            sha1.update(block)
    return sha256.hexdigest(), sha1.hexdigest()


def _safetensors_name(name: str) -> str:
    """The safetensors name transformers and peft look for in place of a pickle's."""
    return name.replace("pytorch_model", "model").removesuffix(".bin") + ".safetensors"


def pickle_to_safetensors(src: Path, dst: Path) -> None:
    """Convert PyTorch pickled weights without running code from them (weights_only=True refuses
    anything but tensors and plain containers)."""
    import torch
    from safetensors.torch import save_file

    try:
        state = torch.load(src, map_location="cpu", weights_only=True, mmap=True)
    except Exception as error:
        raise ModelError(f"{src.name}: not loadable as plain weights ({error})") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelError(f"{src.name}: not a state dict of tensors")
    tensors, storages = {}, set()
    for key, tensor in state.items():
        storage = tensor.untyped_storage().data_ptr()
        # safetensors refuses tensors sharing memory (tied weights): later ones get their own copy
        tensors[key] = tensor.clone().contiguous() if storage in storages else tensor.contiguous()
        storages.add(storage)
    save_file(tensors, str(dst), metadata={"format": "pt"})


def convert_pickles(folder: Path) -> dict[str, str]:
    """Replace every ``*.bin`` (and its ``*.bin.index.json``) by safetensors: {pickle: safetensors}."""
    converted = {}
    for index in sorted(folder.glob("*.bin.index.json")):
        data = json.loads(index.read_text())
        data["weight_map"] = {k: _safetensors_name(v) for k, v in data["weight_map"].items()}
        target = _safetensors_name(index.name.removesuffix(".index.json")) + ".index.json"
        (folder / target).write_text(json.dumps(data, indent=2))
        index.unlink()
    for src in sorted(folder.glob("*.bin")):
        dst = folder / _safetensors_name(src.name)
        pickle_to_safetensors(src, dst)
        src.unlink()
        converted[src.name] = dst.name
    return converted


def _hub_listing(hub_id: str, sha: str, subfolder: str | None) -> dict[str, tuple[str, bool]]:
    """path in repo -> (its sha256 if the Hub stores it in LFS, else its git blob sha1; in LFS)."""
    from huggingface_hub import HfApi
    from huggingface_hub.hf_api import RepoFile

    entries = HfApi().list_repo_tree(hub_id, path_in_repo=subfolder, recursive=True, revision=sha)
    return {e.path: (e.lfs.sha256, True) if e.lfs else (e.blob_id, False)
            for e in entries if isinstance(e, RepoFile)}


def download_patterns(hub: dict) -> tuple[list[str], list[str]]:
    """(allow, ignore) patterns of the files ``download`` fetches from a model repository: one
    kind of weights and only its index (a repository may hold both kinds), under the subfolder."""
    if hub.get("weights", "safetensors") == "bin":
        patterns, ignore = [p for p in HUB_PATTERNS if p != "*.safetensors"] + ["*.bin"], ["*.safetensors.index.json"]
    else:
        patterns, ignore = HUB_PATTERNS, ["*.bin.index.json"]
    subfolder = hub.get("subfolder", "").strip("/")
    prefix = f"{subfolder}/" if subfolder else ""
    return [prefix + p for p in patterns], ignore


def download(hub: dict, out_dir: str | Path) -> dict:
    """Download a model or adapter repository once, at the commit its revision points at (or at
    ``sha``, the commit a Hub lock holds for it, checked to exist), and return what the manifest
    records: the commit, and the sha256 of every file downloaded (checked against the Hub's
    listing) and written.

    ``subfolder``: the directory in the repository that holds the model (its files become
    out_dir). ``weights: bin``: the repository has only pickled weights; they are converted to
    safetensors here, once, so every later job loads safetensors only. HF_TOKEN is read from the
    environment where a repository is gated, never written anywhere."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import GatedRepoError

    hub_id, revision = hub["id"], hub.get("revision", "main")
    subfolder = hub.get("subfolder", "").strip("/")
    weights = hub.get("weights", "safetensors")
    where = f"{hub_id}@{revision}" + (f" ({subfolder}/)" if subfolder else "")
    try:
        sha = resolve_revision(hub_id, hub.get("sha") or revision, "model")
    except HubError as error:
        locked = f" (the commit the Hub lock holds for {revision}: {LOCK_ADVICE})" if "sha" in hub else ""
        raise ModelError(f"{error}{locked}") from None
    patterns, ignore = download_patterns(hub)
    prefix = f"{subfolder}/" if subfolder else ""
    out_dir = Path(out_dir)
    tmp = staging_dir(out_dir)
    fetched = tmp / ".hub"
    try:
        snapshot_download(repo_id=hub_id, revision=sha, local_dir=fetched, allow_patterns=patterns,
                          ignore_patterns=ignore)
    except GatedRepoError:
        raise ModelError(f"{where}: gated repository; set HF_TOKEN to a token that has been granted "
                         "access on its Hub page") from None
    listing = _hub_listing(hub_id, sha, subfolder or None)
    downloaded = {}
    for path in sorted(p for p in fetched.rglob("*") if p.is_file() and ".cache" not in p.parts):
        name = path.relative_to(fetched).as_posix()
        if name not in listing:
            raise ModelError(f"{where}: {name} was downloaded but is not in the Hub's listing at {sha}")
        (expected, lfs), (sha256, sha1) = listing[name], _digests(path)
        if expected != (sha256 if lfs else sha1):
            raise ModelError(f"{where}: {name} does not match the Hub's listing at {sha} "
                             f"({'sha256' if lfs else 'git sha1'} {expected})")
        downloaded[name] = sha256
        target = tmp / name.removeprefix(prefix)  # the subfolder's files become the model directory
        target.parent.mkdir(parents=True, exist_ok=True)
        path.rename(target)
    shutil.rmtree(fetched)
    converted = convert_pickles(tmp) if weights == "bin" else {}
    if not list(tmp.glob("*.safetensors")):
        found = sorted(downloaded) or "nothing"
        raise ModelError(f"{where}: no {'pickled' if weights == 'bin' else 'safetensors'} weights at "
                         f"commit {sha} (downloaded {found}); see `subfolder` and `weights` in the model spec")
    files = {p.relative_to(tmp).as_posix(): _digests(p)[0] for p in sorted(tmp.rglob("*")) if p.is_file()}
    move_into_place(tmp, out_dir)
    return {"id": hub_id, "revision": revision, "sha": sha, "subfolder": subfolder or None,
            "weights": weights, "downloaded_sha256": downloaded, "converted": converted,
            "files_sha256": files}
