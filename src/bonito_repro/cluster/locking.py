"""The preflight's lock step: the commit of every Hub revision the run reads, written to the Hub
lock (``bonito_repro.core.hub_lock``) that the workflow then reads its downloads at.

A revision already in the lock keeps its commit (a branch that moved since is reported, and still
read at the locked commit); one the lock lacks (a new config entry) is resolved now and added;
``refresh`` resolves every revision anew and drops what the run no longer reads. The file changes
only where a commit does, so rerunning the preflight leaves the lock, and every job, as it is.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..core.hub import HubError, resolve_revision
from ..core.hub_lock import SECTIONS, HubLock, lock_key, read_lock, write_lock


@dataclass
class LockResult:
    lock: HubLock | None
    added: list[str] = field(default_factory=list)                     # keys the lock did not hold
    changed: list[tuple[str, str, str]] = field(default_factory=list)  # refreshed: (key, former commit, new)
    moved: list[tuple[str, str, str]] = field(default_factory=list)    # kept: (key, locked commit, commit now)
    failed: list[tuple[str, str]] = field(default_factory=list)        # (key, why it cannot be resolved)


def lock_revisions(references: list[tuple[str, dict]], path: Path, refresh: bool) -> LockResult:
    """Lock the revisions of ``references`` ((repository type, hub spec) pairs) in the lock at
    ``path``, writing it where a commit was added or changed."""
    from huggingface_hub import constants

    existing = read_lock(path)
    before = {section: dict(existing.commits.get(section, {})) if existing else {} for section in SECTIONS.values()}
    commits = {section: {} if refresh else dict(entries) for section, entries in before.items()}
    result = LockResult(existing)
    unique = {(repo_type, lock_key(hub)): hub for repo_type, hub in references}
    for (repo_type, key), hub in sorted(unique.items()):
        try:
            now = resolve_revision(hub["id"], hub.get("revision", "main"), repo_type)
        except HubError as error:
            result.failed.append((key, str(error)))
            continue
        section, former = commits[SECTIONS[repo_type]], before[SECTIONS[repo_type]].get(key)
        if key in section and section[key] != now:
            result.moved.append((key, section[key], now))
        elif key not in section:
            section[key] = now
            if former is None:
                result.added.append(key)
            elif former != now:
                result.changed.append((key, former, now))
    if existing is None and not any(commits.values()):
        return result  # nothing read from the Hub: no lock to write
    if existing is None or commits != before:
        result.lock = write_lock(path, commits, constants.ENDPOINT)
    return result
