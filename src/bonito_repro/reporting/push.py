"""Push a card folder to the Hugging Face Hub: a synthetic set's (``synthetic/G/D.hub`` under the
results, a dataset repository) or an adapter's (``adapters/T/S/D.hub``, a model repository).

    bonito-repro push FOLDER USER/NAME [--private] [--revision BRANCH] [--message TEXT]

The kind of repository comes from the folder (``data/train.parquet``: a dataset; an
``adapter_config.json``: a model). The repository is created if it does not exist, then the folder
is uploaded in one commit with ``huggingface_hub``'s ``upload_folder``. The token is read from
``HF_TOKEN`` (a token with write access) and never printed or logged. The card's metadata is
checked before anything is sent (a license the Hub knows; the Hub checks the rest again).
"""
from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

from ..core import layout
from ..core.errors import InputError
from ..core.io import setup_logging
from ..core.licenses import license_problem

log = logging.getLogger(__name__)


class PushError(InputError):
    """The folder is not a card folder, or no token is set."""


def folder_kind(folder: Path) -> str:
    """``dataset`` or ``model``: which card folder ``folder`` is."""
    if not (folder / "README.md").is_file():
        raise PushError(f"{folder}: no README.md; push a card folder the workflow writes "
                        f"({layout.synthetic('G', 'D', '.hub')} or {layout.adapter('T', 'S', 'D', '.hub')})")
    if (folder / "data" / "train.parquet").is_file():
        return "dataset"
    if (folder / "adapter_config.json").is_file():
        return "model"
    raise PushError(f"{folder}: neither a synthetic set's card folder (data/train.parquet) nor an "
                    "adapter's (adapter_config.json)")


def check_card(folder: Path, kind: str) -> None:
    """The card's metadata as the Hub will check it: it parses, and its license is one the Hub knows."""
    from huggingface_hub import DatasetCard, ModelCard

    card = (DatasetCard if kind == "dataset" else ModelCard).load(folder / "README.md")
    license_id = getattr(card.data, "license", None)
    if kind == "dataset" and not license_id:
        raise PushError(f"{folder / 'README.md'}: the dataset card names no license")
    wrong = license_problem(license_id) if license_id else None
    if wrong:
        raise PushError(f"{folder / 'README.md'}: {wrong}")


def push(folder: Path, repo_id: str, *, private: bool = False, revision: str | None = None,
         message: str | None = None) -> str:
    """Create ``repo_id`` if needed and upload ``folder`` to it in one commit; returns the commit's URL."""
    from huggingface_hub import HfApi

    kind = folder_kind(folder)
    check_card(folder, kind)
    token = os.environ.get("HF_TOKEN")
    if not token:
        raise PushError("HF_TOKEN is not set: export a Hugging Face token with write access "
                        "(https://huggingface.co/settings/tokens)")
    api = HfApi(token=token)
    api.create_repo(repo_id, repo_type=kind, private=private, exist_ok=True)
    commit = api.upload_folder(repo_id=repo_id, folder_path=folder, repo_type=kind, revision=revision,
                               commit_message=message or f"Upload {folder.name} from bonito-repro")
    return commit.commit_url


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bonito-repro push", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path, help=f"a card folder ({layout.synthetic('G', 'D', '.hub')} or "
                        f"{layout.adapter('T', 'S', 'D', '.hub')})")
    parser.add_argument("repo_id", help="the Hub repository, USER/NAME or ORG/NAME")
    parser.add_argument("--private", action="store_true", help="create the repository private")
    parser.add_argument("--revision", help="the branch to commit to (default: main)")
    parser.add_argument("--message", help="the commit message")
    args = parser.parse_args(argv)
    setup_logging()
    if args.repo_id.count("/") != 1 or not all(args.repo_id.split("/")):
        parser.error(f"repo_id {args.repo_id!r}: write it as USER/NAME or ORG/NAME")
    url = push(args.folder, args.repo_id, private=args.private, revision=args.revision, message=args.message)
    log.info("pushed %s to %s", args.folder, url)
    return 0
