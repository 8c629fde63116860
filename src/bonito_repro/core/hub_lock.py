"""The Hub lock: the commit of every model and dataset revision a run reads, so that a run a month
later reads the same rows, weights and chat templates although a branch (``revision: main``) has
moved since.

``bonito-repro preflight`` writes it (``bonito_repro.cluster.locking``) as
``hub.lock.yaml`` in the directory it runs from, the working directory Snakemake runs in; the
workflow reads it there (rules/common.smk) and hands each download job the locked commit inside
its origin or model spec (``hub.sha``, by ``HubLock.pin``), so a refreshed lock reruns exactly the
downloads whose commit changed, and what reads them. A revision the run reads that the lock does
not hold stops the job that reads it, saying how to lock it. The file::

    written: '2026-12-08T10:11:12+00:00'   # the last time the preflight changed it
    endpoint: https://huggingface.co       # the Hub it was resolved on (HF_ENDPOINT)
    models:
      mistralai/Mistral-7B-v0.1@main: <40 hex digits>
    datasets:
      BatsResearch/bonito-experiment@main: <40 hex digits>
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import yaml

from .errors import InputError
from .io import write_text

LOCK_FILE = "hub.lock.yaml"
# what a job says where the commit a lock holds is gone (a repository whose history was squashed)
LOCK_ADVICE = "refresh the lock with `bonito-repro preflight --refresh-lock`"
SECTIONS = {"model": "models", "dataset": "datasets"}   # repository type -> its section of the file
COMMIT = re.compile(r"^[0-9a-f]{40}$")
HEADER = ("# The Hub lock: the commit each model and dataset revision of the run was resolved to, read by\n"
          "# every download of later runs. Written by `bonito-repro preflight`; to read the\n"
          "# revisions as they are now, run it with --refresh-lock (docs/cluster.md, \"The Hub lock\").\n")


class HubLockError(InputError):
    """A lock file that cannot be read, or a Hub revision the run reads that it does not hold."""


def lock_key(hub: dict) -> str:
    """How the lock names a revision of a repository: ``ID@REVISION``."""
    return f"{hub['id']}@{hub.get('revision', 'main')}"


@dataclass(frozen=True)
class HubLock:
    path: Path
    written: str
    endpoint: str
    commits: dict[str, dict[str, str]] = field(default_factory=dict)  # section -> key -> commit
    digest: str = ""   # sha256 of the file

    def commit(self, repo_type: str, hub: dict) -> str | None:
        return self.commits.get(SECTIONS[repo_type], {}).get(lock_key(hub))

    def pin(self, hub: dict, repo_type: str, where: str) -> dict:
        """``hub`` with the locked commit as ``sha``, where the download reads it."""
        sha = self.commit(repo_type, hub)
        if sha is None:
            raise HubLockError(
                f"{where}: {repo_type} {lock_key(hub)} is not in the Hub lock {self.path} (written "
                f"{self.written}); run `bonito-repro preflight` (with the same --configfile "
                "overlays) to add it, the locked revisions staying as they are")
        return {**hub, "sha": sha}

    def pin_dataset_origin(self, origin: dict, where: str) -> dict:
        """A dataset origin with its Hub revision pinned; other origins as they are."""
        return {**origin, "hub": self.pin(origin["hub"], "dataset", where)} if "hub" in origin else origin

    def summary(self) -> dict:
        """What a table names of the lock: the file, its digest and when it was written."""
        return {"file": self.path.name, "sha256": self.digest[:12], "written": self.written}


def read_lock(path: str | Path = LOCK_FILE) -> HubLock | None:
    """The lock at ``path``, or None where there is none."""
    path = Path(path)
    if not path.is_file():
        return None
    data = path.read_bytes()
    try:
        content = yaml.safe_load(data) or {}
    except yaml.YAMLError as error:
        raise HubLockError(f"{path}: not YAML ({error}); write it again with `bonito-repro "
                           "preflight --refresh-lock`") from None
    problems = [] if isinstance(content, dict) else ["expected a mapping"]
    commits: dict[str, dict[str, str]] = {}
    for section in SECTIONS.values():
        entries = content.get(section) or {} if isinstance(content, dict) else {}
        if not isinstance(entries, dict):
            problems.append(f"{section}: expected a mapping of ID@REVISION to a commit")
            continue
        problems += [f"{section}.{key}: {sha!r} is not ID@REVISION and a 40-digit commit sha"
                     for key, sha in entries.items() if "@" not in str(key) or not COMMIT.match(str(sha))]
        commits[section] = {str(k): str(v) for k, v in entries.items()}
    if problems:
        raise HubLockError(f"{path}: {'; '.join(problems)}")
    return HubLock(path, str(content.get("written", "?")), str(content.get("endpoint", "?")), commits,
                   hashlib.sha256(data).hexdigest())


def write_lock(path: str | Path, commits: dict[str, dict[str, str]], endpoint: str) -> HubLock:
    """Write the lock (entries sorted, so that equal locks are equal files) and read it back."""
    path = Path(path)
    content = {"written": datetime.now(timezone.utc).replace(microsecond=0).isoformat(), "endpoint": endpoint,
               **{section: dict(sorted(commits.get(section, {}).items())) for section in SECTIONS.values()}}
    write_text(HEADER + yaml.safe_dump(content, sort_keys=False), path)
    return read_lock(path)
